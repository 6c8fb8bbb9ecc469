"""Agents that consume ``proprio``: DrM's/MENTOR's Adroit fusion in every head.

Each head computes ``fusion(trunk(pixel features) + state_mlp(proprio))``; without proprio the
agents are unchanged (the DrQ-v2/DrM/MENTOR/TACO tests cover that path).
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from robotrl.agents import make_agent
from robotrl.builders import agent_config, build_agent
from robotrl.checkpoint import load_checkpoint, save_checkpoint
from robotrl.nn.heads import ProprioFusion
from robotrl.replay import EpisodicReplay

PIXELS = (3, 24, 24)
PROPRIO = 5
ACTIONS = 2
SMALL = {"hidden_dim": 16, "feature_dim": 8, "num_expl_steps": 0}
AGENTS = ("drqv2", "drm", "mentor", "taco")


def small_agent(name: str, proprio_dim: int = PROPRIO, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = agent_config({"name": name, **SMALL, **overrides})
    return make_agent(cfg, PIXELS, ACTIONS, proprio_dim=proprio_dim)


def fill_replay(rng: np.random.Generator, episodes: int = 3, steps: int = 8) -> EpisodicReplay:
    """A real replay buffer with episodes whose observations carry pixels and proprio."""
    replay = EpisodicReplay(capacity=200, frame_stack=1, nstep=3, discount=0.99, seed=0)

    def obs() -> dict[str, np.ndarray]:
        return {
            "pixels": rng.integers(0, 256, PIXELS, dtype=np.uint8),
            "proprio": rng.normal(size=PROPRIO).astype(np.float32),
        }

    for _ in range(episodes):
        replay.start_episode(obs())
        for step in range(steps):
            action = rng.uniform(-1, 1, ACTIONS).astype(np.float32)
            replay.add(action, float(rng.normal()), obs(), False, step == steps - 1)
    return replay


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sampled = fill_replay(rng).sample(16, horizon=3)
    assert sampled["proprio"].shape == sampled["next_proprio"].shape == (16, PROPRIO)
    return sampled


@pytest.mark.parametrize("name", AGENTS)
def test_every_head_fuses_proprio_after_its_trunk(name):
    agent = small_agent(name)
    heads = [agent.actor, agent.critic, agent.critic_target]
    heads += [agent.value_net] if name in ("drm", "mentor") else []
    for head in heads:
        assert isinstance(head.proprio, ProprioFusion)
        assert head.proprio.state[0].in_features == PROPRIO
        assert head.proprio.fusion[-1].out_features == SMALL["feature_dim"]
    plain = small_agent(name, proprio_dim=0)
    assert plain.actor.proprio is None and plain.critic.proprio is None
    assert not any("proprio" in key for key in plain.actor.state_dict())


@pytest.mark.parametrize("name", ("drqv2", "mentor"))
def test_proprio_changes_the_action(name):
    agent = small_agent(name)
    agent.train(False)  # MENTOR's gate dropout
    pixels = np.random.default_rng(1).integers(0, 256, PIXELS, dtype=np.uint8)
    zeros = {"pixels": pixels, "proprio": np.zeros(PROPRIO, np.float32)}
    ones = {"pixels": pixels, "proprio": np.ones(PROPRIO, np.float32)}
    first = agent.act(zeros, step=10_000, eval_mode=True)
    assert np.array_equal(first, agent.act(zeros, step=10_000, eval_mode=True))
    assert not np.allclose(first, agent.act(ones, step=10_000, eval_mode=True))
    batched = agent.act_batch(
        {key: np.stack([zeros[key], ones[key]]) for key in zeros}, step=10_000, eval_mode=True
    )
    np.testing.assert_allclose(batched[0], first, atol=1e-6)


def test_missing_or_misshaped_proprio_is_a_clear_error():
    agent = small_agent("drqv2")
    pixels = np.zeros(PIXELS, np.uint8)
    with pytest.raises(KeyError, match="built for 5 proprio values"):
        agent.act({"pixels": pixels}, step=0, eval_mode=True)
    features = torch.zeros(2, agent.encoder.repr_dim + PROPRIO + 1)
    with pytest.raises(ValueError, match=r"width \d+ \(pixels\) \+ 5 \(proprio\), got"):
        agent.actor(features, 0.1)


def test_plain_agents_ignore_a_proprio_key():
    agent = small_agent("drqv2", proprio_dim=0)
    pixels = np.random.default_rng(2).integers(0, 256, PIXELS, dtype=np.uint8)
    with_key = agent.act({"pixels": pixels, "proprio": np.ones(3, np.float32)}, 10_000, True)
    np.testing.assert_array_equal(with_key, agent.act({"pixels": pixels}, 10_000, True))


@pytest.mark.parametrize("name", AGENTS)
def test_update_on_a_real_replay_batch_trains_every_fusion(name, batch):
    agent = small_agent(name)
    fusions = {"actor": agent.actor.proprio, "critic": agent.critic.proprio}
    if name in ("drm", "mentor"):
        fusions["value_net"] = agent.value_net.proprio
    before = {
        head: [p.detach().clone() for p in fusion.parameters()] for head, fusion in fusions.items()
    }
    metrics = agent.update(batch, step=10_000)
    assert all(np.isfinite(value) for value in metrics.values())
    for head, fusion in fusions.items():
        for old, new in zip(before[head], fusion.parameters(), strict=True):
            assert not torch.equal(old, new), f"{head}'s proprio fusion got no gradient"
    # The critic's loss back-propagates into the proprio MLP; the encoder sees pixels only.
    assert agent.encoder.convnet[0].weight.shape[1] == PIXELS[0]


def test_gradient_reaches_proprio_through_the_critic():
    agent = small_agent("drqv2")
    features = torch.randn(4, agent.encoder.repr_dim)
    proprio = torch.randn(4, PROPRIO, requires_grad=True)
    q1, q2 = agent.critic(torch.cat([features, proprio], -1), torch.zeros(4, ACTIONS))
    (q1 + q2).sum().backward()
    assert proprio.grad is not None and proprio.grad.abs().sum() > 0
    assert all(p.grad is not None for p in agent.critic.proprio.state.parameters())


@pytest.mark.parametrize("name", ("drm", "mentor"))
def test_checkpoint_round_trip_keeps_proprio_weights_and_actions(name, batch, tmp_path: Path):
    agent = small_agent(name)
    agent.update(batch, step=10_000)
    path = save_checkpoint(tmp_path, 1, agent.state_dict(), {"counters": {"frame": 1}})
    restored = small_agent(name, seed=123)
    restored.load_state_dict(load_checkpoint(path).state)
    agent.train(False)  # MENTOR's gate dropout
    restored.train(False)
    obs = {"pixels": batch["obs"][0], "proprio": batch["proprio"][0]}
    np.testing.assert_array_equal(
        agent.act(obs, 10_000, eval_mode=True), restored.act(obs, 10_000, eval_mode=True)
    )
    torch.testing.assert_close(
        restored.critic.proprio.state_dict(), agent.critic.proprio.state_dict(), rtol=0, atol=0
    )
    without = small_agent(name, proprio_dim=0)
    with pytest.raises(RuntimeError, match="proprio"):
        without.load_state_dict(load_checkpoint(path).state)


class ProprioEnv(gym.Env):
    observation_space = spaces.Dict(
        {
            "pixels": spaces.Box(0, 255, PIXELS, np.uint8),
            "proprio": spaces.Box(-np.inf, np.inf, (PROPRIO,), np.float32),
        }
    )
    action_space = spaces.Box(-1.0, 1.0, (ACTIONS,), np.float32)


def test_build_agent_sizes_the_fusion_from_the_env():
    cfg = agent_config({"name": "drm", **SMALL})
    agent = build_agent(cfg, ProprioEnv(), "cpu")
    assert agent.proprio_dim == PROPRIO
    assert agent.value_net.proprio.proprio_dim == PROPRIO
