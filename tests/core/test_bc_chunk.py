"""Chunked BC and residual agents: padded chunk batches, inference modes, the residual's start
at the base, a frozen base, checkpoints. Tiny images and networks; no simulator."""

from __future__ import annotations

import copy
from dataclasses import asdict

import numpy as np
import pytest
import torch

from robotrl.agents import class_path
from robotrl.agents.bc_chunk import BCChunkAgent, BCChunkConfig
from robotrl.agents.residual import ResidualAgent, ResidualConfig
from robotrl.checkpoint import CheckpointError, save_checkpoint
from robotrl.replay import EpisodicReplay

OBS_SHAPE = (9, 24, 24)  # 3 stacked RGB frames
ACTION_DIM = 2


def episode(length: int, seed: int = 0, proprio: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {
        "frames": rng.integers(0, 256, (length + 1, 3, 24, 24), dtype=np.uint8),
        "action": np.stack([np.full(ACTION_DIM, t, np.float32) for t in range(length)]),
        "reward": np.arange(length, dtype=np.float32) + 1.0,
        "terminated": np.array(False),
    }
    if proprio:
        data["proprio"] = rng.normal(size=(length + 1, 4)).astype(np.float32)
    return data


def bc_agent(proprio_dim: int = 0, **overrides) -> BCChunkAgent:
    cfg = BCChunkConfig(chunk_size=4, hidden_dim=32, feature_dim=16, **overrides)
    return BCChunkAgent(
        cfg, obs_shape=OBS_SHAPE, action_dim=ACTION_DIM, device="cpu", proprio_dim=proprio_dim
    )


def observations(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"pixels": rng.integers(0, 256, (count, *OBS_SHAPE), dtype=np.uint8)}


# -- replay: padded action chunks ------------------------------------------------------------


def test_padded_horizon_draws_every_step_and_masks_the_padding():
    replay = EpisodicReplay(capacity=100, frame_stack=3, nstep=1, discount=0.9, seed=0)
    replay.add_episode(episode(5))
    batch = replay.sample(500, horizon=3, pad=True)
    starts = batch["action_seq"][:, 0, 0].astype(int)  # action t is t: the step drawn
    assert set(starts) == {0, 1, 2, 3, 4}, "every step, the last ones too"
    for t, actions, rewards, mask in zip(
        starts,
        batch["action_seq"][..., 0],
        batch["reward_seq"],
        batch["action_seq_mask"],
        strict=True,
    ):
        real = np.arange(t, t + 3) < 5
        np.testing.assert_array_equal(mask, real)
        np.testing.assert_array_equal(actions, np.minimum(np.arange(t, t + 3), 4))  # last repeated
        np.testing.assert_array_equal(rewards, np.where(real, np.arange(t, t + 3) + 1.0, 0.0))
    # Unpadded, the same horizon keeps its meaning: only steps with o_{t+K} in the episode.
    unpadded = replay.sample(200, horizon=3)
    assert set(unpadded["action_seq"][:, 0, 0].astype(int)) == {0, 1, 2}
    assert "action_seq_mask" not in unpadded
    with pytest.raises(ValueError, match="horizon > 0"):
        replay.sample(4, pad=True)


def test_add_episode_checks_its_arrays():
    replay = EpisodicReplay(capacity=100, frame_stack=3, nstep=1, discount=0.9)
    broken = episode(5)
    broken["action"] = broken["action"][:-1]
    with pytest.raises(ValueError, match="not an episode"):
        replay.add_episode(broken)


# -- BC: loss and inference ----------------------------------------------------------------


def test_bc_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    agent = bc_agent(augment_pad=0)
    replay = EpisodicReplay(capacity=100, frame_stack=3, nstep=1, discount=0.9, seed=1)
    replay.add_episode(episode(6))
    batch = replay.sample(16, horizon=4, pad=True)
    # Targets scaled into [-1, 1], where the tanh head can fit them.
    batch["action_seq"] = (batch["action_seq"] / 6.0).astype(np.float32)
    losses = [agent.update(batch, step)["bc_loss"] for step in range(150)]
    assert losses[-1] < 0.25 * losses[0]


def test_padded_targets_do_not_change_the_loss():
    agent = bc_agent(augment_pad=0)
    replay = EpisodicReplay(capacity=100, frame_stack=3, nstep=1, discount=0.9, seed=1)
    replay.add_episode(episode(6))
    batch = replay.sample(16, horizon=4, pad=True)
    garbage = dict(batch)
    garbage["action_seq"] = np.where(batch["action_seq_mask"][..., None], batch["action_seq"], 99.0)
    state = copy.deepcopy(agent.state_dict())  # state_dict() shares the live tensors
    loss = agent.update(batch, 0)["bc_loss"]
    agent.load_state_dict(state)
    assert agent.update(garbage, 0)["bc_loss"] == pytest.approx(loss, rel=1e-6)
    agent.load_state_dict(state)
    unmasked = {k: v for k, v in garbage.items() if k != "action_seq_mask"}
    assert agent.update(unmasked, 0)["bc_loss"] > loss + 10  # without the mask it would count


class ScriptedChunks:
    """Stands in for the network: call i predicts chunk[k] = 10 i + k (+ 100 row) for each row."""

    def __init__(self, chunk_size: int) -> None:
        self.calls, self.chunk_size = 0, chunk_size

    def __call__(self, pixels, proprio=None):
        rows = torch.arange(len(pixels), dtype=torch.float32)[:, None, None]
        steps = torch.arange(self.chunk_size, dtype=torch.float32)[None, :, None]
        chunk = 10.0 * self.calls + steps + 100.0 * rows
        self.calls += 1
        return chunk.expand(-1, -1, ACTION_DIM).clone()


def test_temporal_ensembling_is_acts_weighted_mean():
    decay = 0.5
    agent = bc_agent(inference="ensemble", ensemble_decay=decay)
    agent.predict_chunk = ScriptedChunks(4)  # type: ignore[method-assign]
    obs = observations(1)
    predictions: list[np.ndarray] = []  # ACT's reference loop: all chunks, oldest first
    for t in range(7):
        action = agent.act_batch(obs, 0, eval_mode=True)[0, 0]
        predictions.append(10.0 * t + np.arange(4))
        # Predictions made at steps t-3..t still cover step t (chunk size 4), oldest first.
        candidates = [(p[t - s]) for s, p in enumerate(predictions) if 0 <= t - s < 4]
        weights = np.exp(-decay * np.arange(len(candidates)))
        expected = np.sum(weights * np.array(candidates)) / weights.sum()
        assert action == pytest.approx(expected, rel=1e-6)


def test_chunk_execution_runs_each_chunk_open_loop_and_resets_rows_on_new_episodes():
    agent = bc_agent(inference="chunk", execute_steps=3)
    agent.predict_chunk = ScriptedChunks(4)  # type: ignore[method-assign]
    obs = observations(2)
    actions = [agent.act_batch(obs, 0, eval_mode=True)[:, 0] for _ in range(4)]
    # Row 0: chunk 0's first three actions, then a new chunk (call 1); row 1 likewise (+100).
    np.testing.assert_array_equal([a[0] for a in actions], [0, 1, 2, 10])
    np.testing.assert_array_equal([a[1] for a in actions], [100, 101, 102, 110])
    agent.begin_episodes(np.array([False, True]))  # env 1 starts a new episode
    row_obs = agent.act_batch(obs, 0, eval_mode=True)[:, 0]
    # Row 0 continues its chunk (entry 1 of call 1); row 1 predicts afresh (call 2, its row 0).
    np.testing.assert_array_equal(row_obs, [11, 20])
    agent.begin_episodes()  # all: every row predicts again
    np.testing.assert_array_equal(agent.act_batch(obs, 0, eval_mode=True)[:, 0], [30, 130])


def test_act_matches_act_batch_and_proprio_is_used():
    torch.manual_seed(0)
    agent = bc_agent(proprio_dim=4)
    obs = observations(3) | {
        "proprio": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    }
    batched = agent.step_action(obs)
    single = agent.step_action({k: v[1:2] for k, v in obs.items()})
    torch.testing.assert_close(single[0], batched[1])
    other = dict(obs, proprio=obs["proprio"] + 1.0)
    assert not torch.equal(agent.step_action(other), batched)


# -- residual --------------------------------------------------------------------------------


def save_bc_checkpoint(tmp_path, agent: BCChunkAgent, frame: int = 100):
    meta = {
        "agent_name": "bc_chunk",
        "agent_class": class_path(BCChunkAgent),
        "config": {"agent": asdict(agent.cfg)},
        "counters": {"step": 0, "frame": frame},
    }
    return save_checkpoint(tmp_path / "base", frame, {"agent": agent.state_dict()}, meta)


def residual_agent(base_path, proprio_dim: int = 0, **overrides) -> ResidualAgent:
    cfg = ResidualConfig(base_checkpoint=str(base_path), hidden_dim=32, feature_dim=16, **overrides)
    return ResidualAgent(
        cfg, obs_shape=OBS_SHAPE, action_dim=ACTION_DIM, device="cpu", proprio_dim=proprio_dim
    )


@pytest.fixture
def trained_base(tmp_path):
    """A base whose actions are far from zero, so 'equal to the base' is not 'equal to 0'."""
    torch.manual_seed(0)
    base = bc_agent(proprio_dim=4)
    with torch.no_grad():
        base.policy.head[-1].bias.fill_(0.7)
    return base, save_bc_checkpoint(tmp_path, base)


@pytest.mark.parametrize("proprio_dim", [0, 4])
def test_residual_starts_exactly_at_the_base_policy(tmp_path, proprio_dim):
    torch.manual_seed(0)
    base = bc_agent(proprio_dim=proprio_dim)
    with torch.no_grad():
        base.policy.head[-1].bias.fill_(0.7)
    agent = residual_agent(save_bc_checkpoint(tmp_path, base), proprio_dim=proprio_dim)
    obs = observations(5, seed=3)
    if proprio_dim:
        obs["proprio"] = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    expected = base.step_action(obs).numpy()
    assert np.abs(expected).min() > 0.05
    np.testing.assert_array_equal(agent.act_batch(obs, 0, eval_mode=True), expected)
    for row in range(5):
        single = agent.act({k: v[row] for k, v in obs.items()}, 0, eval_mode=True)
        np.testing.assert_array_equal(
            single, base.step_action({k: v[row : row + 1] for k, v in obs.items()}).numpy()[0]
        )
    # Exploration noise perturbs the residual only, by at most residual_scale per action.
    noisy = agent.act_batch(obs, 0, eval_mode=False)
    assert 0 < np.abs(noisy - expected).max() <= agent.cfg.residual_scale + 1e-6


def test_base_never_changes_while_the_residual_learns(tmp_path, trained_base):
    _, path = trained_base
    agent = residual_agent(path, proprio_dim=4, augment_pad=0)
    before = {k: v.clone() for k, v in agent.base.policy.state_dict().items()}
    before |= {f"enc.{k}": v.clone() for k, v in agent.base.encoder.state_dict().items()}
    actor_before = agent.actor.policy[-1].weight.clone()
    replay = EpisodicReplay(capacity=200, frame_stack=3, nstep=2, discount=0.9, seed=0)
    for seed in range(3):
        data = episode(10, seed=seed, proprio=True)
        data["action"] = np.random.default_rng(seed).uniform(-1, 1, (10, 2)).astype(np.float32)
        replay.add_episode(data)
    for step in range(5):
        metrics = agent.update(replay.sample(8), step)
    assert np.isfinite(list(metrics.values())).all()
    after = {k: v for k, v in agent.base.policy.state_dict().items()}
    after |= {f"enc.{k}": v for k, v in agent.base.encoder.state_dict().items()}
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)
    assert not torch.equal(agent.actor.policy[-1].weight, actor_before), "the residual learns"
    assert all(not p.requires_grad for p in agent.base.policy.parameters())


def test_residual_checkpoint_round_trip_and_base_hash(tmp_path, trained_base):
    base, path = trained_base
    agent = residual_agent(path, proprio_dim=4)
    with torch.no_grad():  # a residual that is no longer zero
        agent.actor.policy[-1].bias.fill_(0.3)
    obs = observations(4) | {"proprio": np.ones((4, 4), np.float32)}
    state = agent.state_dict()
    assert {"base_encoder", "base_policy", "actor", "critic"} <= set(state["modules"])
    assert state["extra"]["base_sha256"] == agent.base_sha256

    fresh = residual_agent(path, proprio_dim=4)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(
        fresh.act_batch(obs, 0, eval_mode=True), agent.act_batch(obs, 0, eval_mode=True)
    )
    combined, alone = agent.act_batch(obs, 0, True), base.step_action(obs).numpy()
    assert not np.array_equal(combined, alone)
    base_only = residual_agent(path, proprio_dim=4, act_with="base")
    base_only.load_state_dict(state)
    np.testing.assert_array_equal(base_only.act_batch(obs, 0, eval_mode=True), alone)

    damaged = {**state, "modules": {**state["modules"]}}
    damaged["modules"]["base_policy"] = {
        k: v + 1.0 for k, v in state["modules"]["base_policy"].items()
    }
    with pytest.raises(ValueError, match="damaged"):
        residual_agent(path, proprio_dim=4).load_state_dict(damaged)


def test_residual_needs_a_bc_chunk_base(tmp_path):
    with pytest.raises(ValueError, match="base_checkpoint"):
        ResidualAgent(ResidualConfig(), obs_shape=OBS_SHAPE, action_dim=2, device="cpu")
    meta = {"agent_class": "robotrl.agents.drqv2:DrQV2Agent", "config": {"agent": {}}}
    path = save_checkpoint(tmp_path / "other", 1, {"agent": {}}, meta)
    with pytest.raises(CheckpointError, match="bc_chunk"):
        residual_agent(path)
