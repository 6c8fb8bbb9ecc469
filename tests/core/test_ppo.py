"""PPO (robotrl.agents.ppo) and the on-policy loop (robotrl.onpolicy): GAE, the clipped losses,
bootstrapping from ``final_obs`` in rollouts from batched/vector/single envs, learning on the
fake dot task through the trainer, save/load/resume, residual PPO and config errors."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from robotrl.agents import class_path
from robotrl.agents.bc_chunk import BCChunkAgent, BCChunkConfig
from robotrl.agents.ppo import (
    PolicyStep,
    PPOAgent,
    PPOConfig,
    clipped_surrogate_loss,
    generalized_advantages,
    value_loss,
)
from robotrl.builders import to_train_config
from robotrl.checkpoint import load_checkpoint, save_checkpoint
from robotrl.config import (
    EnvConfig,
    LoggerConfig,
    ReplayConfig,
    TaskConfig,
    TrainConfig,
    register_configs,
)
from robotrl.envs.vector import vector_env
from robotrl.envs.wrappers import FrameStack
from robotrl.logger import Logger
from robotrl.onpolicy import (
    BatchedSource,
    FinishedEpisodes,
    RolloutCollector,
    SingleSource,
    VectorSource,
)
from robotrl.replay import EpisodicReplay
from robotrl.trainer import Trainer
from tests.core.fakes import DotEnv, stacked_clock_env, stacked_dot_env
from tests.core.test_batched_training import BatchedClock
from tests.core.test_trainer import read_csv

OBS_SHAPE = (9, 24, 24)


def small_cfg(**overrides) -> PPOConfig:
    # NCHW: at 24x24 channels_last convolutions are several times slower on CPU.
    values = {"hidden_dim": 32, "feature_dim": 16, "rollout_steps": 8, "num_minibatches": 2,
              "channels_last": False}  # fmt: skip
    return PPOConfig(**(values | overrides))


def small_agent(seed: int = 0, proprio_dim: int = 0, **overrides) -> PPOAgent:
    torch.manual_seed(seed)
    return PPOAgent(
        small_cfg(**overrides),
        obs_shape=OBS_SHAPE,
        action_dim=2,
        device="cpu",
        proprio_dim=proprio_dim,
    )


# ------------------------------------------------------------------------ GAE


def gae_by_sums(rewards, values, next_values, terminated, truncated, discount, lam):
    """Â_t = Σ_k (γλ)^(k−t) δ_k over k = t .. the end of t's episode or of the rollout."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for env in range(envs):
        for t in range(steps):
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                bootstrap = 0.0 if terminated[k, env] else discount * next_values[k, env]
                total += weight * (rewards[k, env] + bootstrap - values[k, env])
                if terminated[k, env] or truncated[k, env]:
                    break
                weight *= discount * lam
            advantages[t, env] = total
    return advantages


def test_gae_matches_a_hand_computed_example_with_truncation_and_termination():
    # env 0: truncated at t=1 (V(final_obs) = 10 is bootstrapped), rollout ends with V(s_T) = 2.
    # env 1: terminated at t=2 (its final_obs value 100 must be ignored).
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [0.6, 1.0], [0.7, 1.0], [0.8, 1.0]])
    next_values = torch.tensor([[0.6, 1.0], [10.0, 1.0], [0.8, 100.0], [2.0, 3.0]])
    terminated = torch.tensor([[False, False], [False, False], [False, True], [False, False]])
    truncated = torch.tensor([[False, False], [True, False], [False, False], [False, False]])
    advantages, returns = generalized_advantages(
        rewards, values, next_values, terminated, truncated, discount=0.9, gae_lambda=0.8
    )
    # By hand, γλ = 0.72. env 0: δ = [1.04, 10.4, 3.02, 5.0]; A3 = 5, A2 = 3.02 + 0.72·5,
    # A1 = δ1 (episode end), A0 = 1.04 + 0.72·10.4. env 1: δ = [0.9, 0.9, 0, 2.7].
    expected = torch.tensor([[8.528, 1.548], [10.4, 0.9], [6.62, 0.0], [5.0, 2.7]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)
    by_sums = gae_by_sums(*(x.numpy() for x in (rewards, values, next_values)),
                          terminated.numpy(), truncated.numpy(), 0.9, 0.8)  # fmt: skip
    np.testing.assert_allclose(advantages.numpy(), by_sums, rtol=1e-6)


def test_gae_agrees_with_explicit_sums_on_random_rollouts():
    rng = np.random.default_rng(3)
    steps, envs = 9, 4
    rewards, values, next_values = (rng.normal(size=(steps, envs)) for _ in range(3))
    done = rng.random((steps, envs)) < 0.3
    terminated = done & (rng.random((steps, envs)) < 0.5)
    truncated = done & ~terminated
    assert terminated.any() and truncated.any()
    advantages, _ = generalized_advantages(
        *(torch.tensor(x, dtype=torch.float64) for x in (rewards, values, next_values)),
        torch.tensor(terminated),
        torch.tensor(truncated),
        discount=0.97,
        gae_lambda=0.9,
    )
    expected = gae_by_sums(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-10)


# ------------------------------------------------------------------------ losses


def test_clipped_surrogate_value_and_zero_gradient_where_clipped():
    ratio = torch.tensor([1.5, 0.5, 0.5, 1.5, 1.1], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    loss = clipped_surrogate_loss(ratio, advantages, clip_coef=0.2)
    # min(ρA, clip(ρ)A) = [1.2, -0.8, 0.5, -1.5, 2.2]; the loss is minus their mean.
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 0.5 - 1.5 + 2.2) / 5)
    loss.backward()
    assert ratio.grad is not None
    # Rows 0 and 1 are outside [0.8, 1.2] in the direction the advantage pushes: no gradient.
    # Rows 2 and 3 are outside in the other direction and keep it, as does the inside row 4.
    torch.testing.assert_close(ratio.grad, torch.tensor([0.0, 0.0, -0.2, 0.2, -0.4]))


def test_value_loss_clipped_and_unclipped_by_hand():
    values = torch.tensor([1.0, 3.0])
    old, returns = torch.tensor([0.0, 2.0]), torch.tensor([2.0, 2.0])
    assert value_loss(values, old, returns, None).item() == pytest.approx(0.5)
    # Clipped predictions: 0.2 and 2.2 -> squared errors max(1, 3.24) and max(1, 0.04).
    assert value_loss(values, old, returns, 0.2).item() == pytest.approx(0.5 * (3.24 + 1.0) / 2)


# ------------------------------------------------------------------------ rollouts


def clock_code(pixels: torch.Tensor) -> torch.Tensor:
    """world·10⁴ + episode·100 + step of each stack's newest frame (``[B, 9, H, W]``)."""
    newest = pixels[:, -3:, 0, 0].long()
    return newest[:, 1] * 10_000 + newest[:, 2] * 100 + newest[:, 0]


class ClockReadingAgent(PPOAgent):
    """Acts 0 and values an observation by its clock, so each bootstrap names its source."""

    def explore(self, obs):
        code = clock_code(torch.as_tensor(obs["pixels"]))
        zeros = torch.zeros(len(code), self.action_dim)
        return PolicyStep(zeros, zeros, torch.zeros(len(code)), code.float())

    def value(self, obs):
        return clock_code(torch.as_tensor(obs["pixels"])).float()


def clock_source(kind: str):
    if kind == "batched":
        return BatchedSource(BatchedClock(4), torch.device("cpu"))  # type: ignore[arg-type]
    if kind == "vector":
        envs = vector_env([partial(stacked_clock_env, i) for i in range(3)], asynchronous=False)
        return VectorSource(envs, torch.device("cpu"))
    return SingleSource(stacked_clock_env(0), torch.device("cpu"))


@pytest.mark.parametrize("kind", ["batched", "vector", "single"])
def test_rollouts_bootstrap_from_final_obs_never_from_the_autoreset_obs(kind):
    torch.manual_seed(0)
    agent = ClockReadingAgent(small_cfg(), obs_shape=OBS_SHAPE, action_dim=1, device="cpu")
    source = clock_source(kind)
    collector = RolloutCollector(source, agent, steps=17)
    collector.start([11, 12, 13, 14][: source.num_envs])
    finished: list[FinishedEpisodes] = []
    rollouts = [collector.collect(lambda f: finished.append(f) if f else None) for _ in range(2)]

    for rollout in rollouts:
        steps = len(rollout.reward)
        codes = torch.stack([clock_code(rollout.obs["pixels"][t]) for t in range(steps)])
        # Every step's next value is V of the same world and episode one step later: at an
        # episode end that is final_obs (the autoreset obs would be step 0 of the next episode).
        torch.testing.assert_close(rollout.next_value, codes.float() + 1)
        torch.testing.assert_close(rollout.reward, (codes % 100).float() + 1)  # r = t + 1 + 0
        torch.testing.assert_close(rollout.value, codes.float())
        done = rollout.terminated | rollout.truncated
        assert rollout.terminated.any() and rollout.truncated.any()
        # After an episode end the next row starts a new episode of the same world at step 0.
        starts = codes[1:][done[:-1]]
        assert (starts % 100 == 0).all()
        assert not (rollout.terminated & rollout.truncated).any()
    for episodes in finished:  # returns of the clock: 1 + 2 + ... + length
        for ret, length in zip(episodes.returns, episodes.lengths, strict=True):
            assert 3 <= length <= 7 and ret == pytest.approx(length * (length + 1) / 2)
    # Episodes running across the rollout boundary keep counting (lengths stay in 3..7 above).
    assert sum(len(e.envs) for e in finished) >= 2 * 17 * source.num_envs // 7


# ------------------------------------------------------------------------ save / load


def random_rollout(count: int = 32, proprio_dim: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    batch = {
        "pixels": torch.randint(0, 256, (count, *OBS_SHAPE), dtype=torch.uint8,
                                generator=generator),
        "action": torch.randn(count, 2, generator=generator),
        "log_prob": -torch.rand(count, generator=generator) - 1.0,
        "value": torch.randn(count, generator=generator),
        "advantage": torch.randn(count, generator=generator),
        "return": torch.randn(count, generator=generator),
    }  # fmt: skip
    if proprio_dim:
        batch["proprio"] = torch.randn(count, proprio_dim, generator=generator)
    return batch


def test_save_load_then_the_next_update_gives_equal_losses(tmp_path):
    batch = random_rollout(proprio_dim=3)
    agent = small_agent(seed=0, proprio_dim=3)
    first = agent.update_rollout(batch)  # Adam has moments now
    assert {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"} <= set(first)
    path = save_checkpoint(tmp_path, 10, {"agent": agent.state_dict()}, {"counters": {}})
    other = small_agent(seed=7, proprio_dim=3)
    other.load_state_dict(load_checkpoint(path).state["agent"])
    torch.manual_seed(3)
    expected = agent.update_rollout(batch)
    torch.manual_seed(3)
    assert other.update_rollout(batch) == expected
    fresh = small_agent(seed=7, proprio_dim=3)
    torch.manual_seed(3)
    assert fresh.update_rollout(batch)["value_loss"] != expected["value_loss"]  # it can fail


def test_update_changes_the_policy_and_acting_shapes():
    agent = small_agent()
    obs = {"pixels": np.random.default_rng(0).integers(0, 256, (5, *OBS_SHAPE), dtype=np.uint8)}
    before = agent.act_batch(obs, 0, eval_mode=True)
    assert before.shape == (5, 2) and before.dtype == np.float32
    assert np.abs(before).max() < 0.1  # last layer's gain 0.01: the mean starts near 0
    sampled = agent.act_batch(obs, 0, eval_mode=False)
    assert np.all(np.abs(sampled) <= 1.0) and not np.allclose(sampled, before)
    batch = random_rollout()
    batch["advantage"] = batch["action"][:, 0] * 5.0  # reward pushing action[0] up
    for _ in range(5):
        agent.update_rollout(batch)
    after = agent.act_batch(obs, 0, eval_mode=True)
    assert after[:, 0].mean() > before[:, 0].mean() + 0.05


# ------------------------------------------------------------------------ through the trainer


def ppo_train_cfg(frames: int, num_envs: int, **agent) -> TrainConfig:
    return TrainConfig(
        agent=small_cfg(**agent),
        task=TaskConfig(suite="fake", name="dot"),
        env=EnvConfig(image_size=24, action_repeat=1, frame_stack=3),
        replay=ReplayConfig(capacity=1000, batch_size=8, nstep=1),
        logger=LoggerConfig(tensorboard=False, progress_bar=False, save_video=False),
        frames=frames,
        seed_frames=0,
        eval_every_frames=frames // 2,
        eval_episodes=10,
        checkpoint_every_frames=frames // 2,
        num_envs=num_envs,
    )


def ppo_trainer(cfg: TrainConfig, run_dir: Path, seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    train_envs = None
    if cfg.num_envs > 1:
        train_envs = vector_env([stacked_dot_env] * cfg.num_envs, asynchronous=False)
    agent = PPOAgent(cfg.agent, obs_shape=OBS_SHAPE, action_dim=1, device="cpu")
    replay = EpisodicReplay(
        capacity=1000, frame_stack=3, nstep=1, discount=0.99, directory=run_dir / "replay"
    )
    return Trainer(
        cfg,
        run_dir,
        env=FrameStack(DotEnv(), 3),
        eval_env=FrameStack(DotEnv(), 3),
        agent=agent,
        replay=replay,
        logger=Logger(run_dir, tensorboard=False),
        config_record={"note": "test"},
        train_envs=train_envs,
    )


def test_ppo_learns_the_dot_task_through_the_trainer(tmp_path):
    cfg = ppo_train_cfg(
        frames=6144, num_envs=8, rollout_steps=32, num_minibatches=4, lr=1e-3, update_epochs=4
    )
    trainer = ppo_trainer(cfg, tmp_path)
    trainer.train()
    trainer.logger.close()
    evals = read_csv(tmp_path / "eval.csv")
    first, last = float(evals[0]["episode_return"]), float(evals[-1]["episode_return"])
    # DotEnv: reward 1 − |x| over 10 steps; standing still from x ~ U(-1, 1) earns ~5, walking
    # to the centre at 0.25 per step ~9.
    assert int(evals[0]["frame"]) == 0 and last > first + 1.5 and last > 7.5, (first, last)
    rows = read_csv(tmp_path / "train.csv")
    episodes = [r for r in rows if r.get("episode_return")]
    updates = [r for r in rows if r.get("policy_loss")]
    assert trainer.counters.episode == len(episodes) == 8 * (6144 // 8 // 10)
    assert len(updates) == 6144 // (32 * 8)
    assert trainer.counters.frame == trainer.counters.step == 6144


def test_single_env_training_and_resume_continue_from_the_checkpoint_frame(tmp_path):
    cfg = ppo_train_cfg(frames=64, num_envs=1, rollout_steps=16)
    first = ppo_trainer(cfg, tmp_path)
    first.train()
    first.logger.close()
    assert first.counters.frame == 64 and first.counters.episode == 6
    checkpoint = load_checkpoint(first.last_checkpoint)  # type: ignore[arg-type]
    assert checkpoint.frame == 64

    second = ppo_trainer(ppo_train_cfg(frames=128, num_envs=1, rollout_steps=16), tmp_path, 5)
    resumed = {}
    original = second.agent.load_state_dict

    def loading(state):
        original(state)
        resumed["policy"] = second.agent.get_weights()["actor"]

    second.agent.load_state_dict = loading  # type: ignore[method-assign]
    result = second.train()
    second.logger.close()
    assert result.resumed_from == 64
    assert second.counters.frame == 128 and second.counters.episode == 12
    saved = checkpoint.state["agent"]["modules"]["actor"]
    for name, tensor in resumed["policy"].items():
        torch.testing.assert_close(tensor, saved[name])
    frames = [int(r["frame"]) for r in read_csv(tmp_path / "train.csv")]
    assert frames == sorted(frames) and frames[-1] == 128 and frames.count(64) <= 2
    # The first run's final evaluation at 64 counted as the one due there, so it saved 96 (its
    # schedule: every 32) as the next; the resumed run evaluates at 96, then finally at 128.
    assert [int(r["frame"]) for r in read_csv(tmp_path / "eval.csv")] == [0, 32, 64, 96, 128]


# ------------------------------------------------------------------------ residual PPO


def bc_checkpoint(tmp_path: Path) -> tuple[BCChunkAgent, Path]:
    torch.manual_seed(0)
    cfg = BCChunkConfig(chunk_size=2, hidden_dim=16, feature_dim=8, inference="chunk")
    base = BCChunkAgent(cfg, obs_shape=OBS_SHAPE, action_dim=2, device="cpu")
    with torch.no_grad():
        base.policy.head[-1].bias.fill_(1.5)  # actions far from 0
    meta = {
        "agent_name": "bc_chunk",
        "agent_class": class_path(BCChunkAgent),
        "config": {"agent": asdict(cfg)},
        "counters": {"step": 0, "frame": 100},
    }
    return base, save_checkpoint(tmp_path / "base", 100, {"agent": base.state_dict()}, meta)


def test_residual_ppo_starts_at_the_base_and_never_trains_it(tmp_path):
    base, path = bc_checkpoint(tmp_path)
    agent = small_agent(base_checkpoint=str(path), residual_scale=0.1)
    obs = {"pixels": np.random.default_rng(0).integers(0, 256, (4, *OBS_SHAPE), dtype=np.uint8)}
    expected = base.step_action(obs).numpy()
    assert np.abs(expected).min() > 0.3
    np.testing.assert_allclose(agent.act_batch(obs, 0, eval_mode=True), expected, atol=1e-6)
    step = agent.explore(obs)
    np.testing.assert_allclose(  # executed = clip(base + scale · raw sample)
        step.env_action.numpy(), np.clip(expected + 0.1 * step.action.numpy(), -1, 1), atol=1e-6
    )
    base_before = {k: v.clone() for k, v in agent.modules["base_policy"].state_dict().items()}
    agent.update_rollout(random_rollout())
    for name, tensor in agent.modules["base_policy"].state_dict().items():
        torch.testing.assert_close(tensor, base_before[name])
    state = agent.state_dict()
    state["modules"]["base_policy"]["head.4.bias"] += 1.0
    with pytest.raises(ValueError, match="checkpoint is damaged"):
        small_agent(base_checkpoint=str(path)).load_state_dict(state)


# ------------------------------------------------------------------------ config


@pytest.mark.parametrize("task", ["warp/reach", "dmc/walker_walk", "builtin/reach"])
def test_agent_ppo_composes_with_task_presets(task):
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        cfg = to_train_config(compose("train", overrides=["agent=ppo", f"task={task}"]))
    assert isinstance(cfg.agent, PPOConfig)
    assert (cfg.agent.rollout_steps, cfg.agent.update_epochs, cfg.agent.lr) == (64, 4, 3e-4)
    assert cfg.agent.clip_coef == 0.2 and cfg.agent.gae_lambda == 0.95
    if task.endswith("reach"):  # presets' DrQ-v2 keys are accepted (hidden_dim used)
        assert cfg.agent.hidden_dim == 256 and cfg.agent.num_expl_steps == 1000


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rollout_steps": 0}, "rollout_steps must be a positive integer"),
        ({"num_minibatches": 0}, "num_minibatches must be a positive integer"),
        ({"update_epochs": -1}, "update_epochs must be a positive integer"),
        ({"discount": 1.5}, r"discount must be in \(0, 1\]"),
        ({"gae_lambda": -0.1}, r"gae_lambda must be in \[0, 1\]"),
        ({"clip_coef": 0.0}, "clip_coef must be > 0"),
        ({"lr": -1e-3}, "lr must be > 0"),
        ({"entropy_coef": -0.01}, "entropy_coef must be >= 0"),
        ({"target_kl": 0.0}, "target_kl must be > 0 or None"),
    ],
)
def test_bad_config_values_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**overrides)


def test_loop_refuses_too_small_rollouts_and_utd_ratio(tmp_path):
    cfg = ppo_train_cfg(frames=64, num_envs=1, rollout_steps=4, num_minibatches=4)
    with pytest.raises(ValueError, match=r"rollout_steps × num_envs = 4 × 1"):
        ppo_trainer(cfg, tmp_path / "small").train()
    cfg = ppo_train_cfg(frames=64, num_envs=1)
    cfg.utd_ratio = 2.0
    with pytest.raises(ValueError, match="utd_ratio does not apply"):
        ppo_trainer(cfg, tmp_path / "utd").train()
    with pytest.raises(KeyError, match="rollout keys"):
        small_agent().update_rollout({"pixels": torch.zeros(4, *OBS_SHAPE)})
