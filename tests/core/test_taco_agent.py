"""TACO inside the agent family: latent actions in the critic, its own update, composition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from robotrl.agents import make_agent
from robotrl.agents.drm import DrMAgent
from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.agents.taco import TacoConfig
from robotrl.builders import to_train_config
from robotrl.checkpoint import load_checkpoint, save_checkpoint
from robotrl.config import register_configs
from tests.core.fakes import pixel_batch as batch

HORIZON = 3


def taco_batch(seed: int = 0, size: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1000)
    return batch(seed, size) | {
        "obs_horizon": rng.integers(0, 256, (size, 9, 32, 32), dtype=np.uint8),
        "action_seq": rng.uniform(-1, 1, (size, HORIZON, 2)).astype(np.float32),
        "reward_seq": rng.uniform(0, 1, (size, HORIZON)).astype(np.float32),
    }


def make_taco_agent(**taco_overrides) -> DrQV2Agent:
    taco = TacoConfig(
        horizon=HORIZON, projection_dim=16, projection_hidden_dim=32, **taco_overrides
    )
    cfg = DrQV2Config(hidden_dim=32, feature_dim=16, aux="taco", taco=taco, num_expl_steps=0)
    return DrQV2Agent(cfg, obs_shape=(9, 32, 32), action_dim=2, device="cpu")


def test_critic_consumes_latent_actions_and_replay_must_supply_the_horizon():
    torch.manual_seed(0)
    agent = make_taco_agent()
    latent = agent.cfg.taco.latent_dim(2)
    assert latent == 3  # ⌊1.25·2⌋ + 1
    assert agent.critic.q1[0].in_features == 16 + latent
    assert agent.replay_horizon == HORIZON
    assert {"action_encoder", "taco"} <= set(agent.modules) and "taco" in agent.optimizers
    plain = DrQV2Agent(
        DrQV2Config(hidden_dim=32, feature_dim=16),
        obs_shape=(9, 32, 32),
        action_dim=2,
        device="cpu",
    )
    assert plain.replay_horizon == 0 and plain.critic.q1[0].in_features == 16 + 2
    with pytest.raises(ValueError, match="aux must be"):
        DrQV2Config(aux="byol")


def test_update_trains_taco_heads_encoder_and_action_encoder():
    torch.manual_seed(0)
    agent = make_taco_agent(curl=True, reward_prediction=True)
    assert agent.action_encoder is not None and agent.taco is not None
    watched = {
        "W": agent.taco.W,
        "encoder": agent.encoder.convnet[0].weight,
        "action_encoder": agent.action_encoder.net[0].weight,
        "reward_head": agent.taco.reward_head[0].weight,
    }
    before = {name: p.detach().clone() for name, p in watched.items()}
    metrics = agent.update(taco_batch(), step=10)
    for key in ("taco_contrastive_loss", "taco_curl_loss", "taco_reward_loss", "critic_loss"):
        assert math.isfinite(metrics[key]), key
    # B = 16 in-batch candidates: the untrained contrastive loss sits near ln 16.
    assert math.log(16) - 0.5 < metrics["taco_contrastive_loss"] < math.log(16) + 1.5
    for name, param in watched.items():
        assert not torch.equal(param, before[name]), name


def test_contrastive_loss_falls_when_the_future_is_predictable_from_the_actions():
    """o_{t+K} is o_t shifted by the summed actions: the loss must fall below chance (ln 32)."""
    torch.manual_seed(0)
    agent = make_taco_agent(lr=1e-3)
    rng = np.random.default_rng(0)
    size = 32
    losses = []
    for step in range(150):
        actions = rng.uniform(-1, 1, (size, HORIZON, 2)).astype(np.float32)
        start = rng.integers(4, 24, (size, 2))
        end = np.clip(start + np.rint(actions.sum(axis=1) * 3).astype(int), 0, 28)
        obs = np.zeros((size, 9, 32, 32), np.uint8)
        future = np.zeros_like(obs)
        for i in range(size):
            obs[i, :, start[i, 0] : start[i, 0] + 4, start[i, 1] : start[i, 1] + 4] = 255
            future[i, :, end[i, 0] : end[i, 0] + 4, end[i, 1] : end[i, 1] + 4] = 255
        data = taco_batch(step, size) | {"obs": obs, "obs_horizon": future, "action_seq": actions}
        losses.append(agent.update(data, step=10 + step)["taco_contrastive_loss"])
    assert np.mean(losses[:5]) > math.log(size) - 0.5
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.4  # measured: 3.48 -> 2.91


def test_checkpoint_round_trip_gives_identical_actions_and_updates(tmp_path):
    torch.manual_seed(0)
    agent = make_taco_agent()
    for step in range(2, 8, 2):
        agent.update(taco_batch(step), step)
    path = save_checkpoint(tmp_path, 8, {"agent": agent.state_dict()}, {"counters": {"frame": 8}})
    restored = make_taco_agent()
    restored.load_state_dict(load_checkpoint(path).state["agent"])
    obs = {"pixels": np.random.default_rng(1).integers(0, 256, (9, 32, 32), dtype=np.uint8)}
    np.testing.assert_array_equal(
        restored.act(obs, 8, eval_mode=True), agent.act(obs, 8, eval_mode=True)
    )
    torch.manual_seed(3)
    next_a = agent.update(taco_batch(99), 8)
    torch.manual_seed(3)
    next_b = restored.update(taco_batch(99), 8)
    assert next_a == pytest.approx(next_b)


@pytest.mark.parametrize("agent_name", ["taco", "drm", "mentor"])
def test_taco_loss_composes_with_every_agent_by_config(agent_name):
    register_configs()
    overrides = [f"agent={agent_name}", "agent.aux=taco", "agent.hidden_dim=32"]
    overrides += ["agent.moe.num_experts=4", "agent.moe.top_k=2"]
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        cfg = to_train_config(compose("train", overrides=overrides))
    assert cfg.agent.name == agent_name and cfg.agent.aux == "taco"
    torch.manual_seed(0)
    agent = make_agent(cfg.agent, obs_shape=(9, 32, 32), action_dim=2)
    assert agent.replay_horizon == 3
    assert isinstance(agent, DrMAgent) == (agent_name != "taco")
    metrics = agent.update(taco_batch(), step=10)
    assert math.isfinite(metrics["taco_loss"]) and math.isfinite(metrics["critic_loss"])
    if agent_name == "mentor":
        assert math.isfinite(metrics["moe_aux_loss"])
