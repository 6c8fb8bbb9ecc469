"""Training on a batched env (torch tensors, many worlds): collection, batched replay inserts,
update-to-data ratio, batched evaluation and resume.

``BatchedClock`` is a fake batched env in the ``robotrl.envs.BatchedEnv`` contract whose frames
encode (world, episode, step), so every stored and sampled transition says whether it stayed
inside one episode. The Trainer is told it is a batched suite by patching ``is_batched_suite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

import robotrl.trainer
from robotrl.agents.drqv2 import DrQV2Agent
from robotrl.config import TaskConfig, TrainConfig
from robotrl.envs.batched import SingleWorldEnv
from robotrl.evaluation import run_episodes_batched
from robotrl.logger import Logger
from robotrl.replay import EpisodicReplay, load_episode
from robotrl.trainer import Trainer
from tests.core.test_trainer import make_cfg, read_csv

SIZE = 24
STACK = 3


class BatchedClock:
    """N worlds; world ``w``'s ``k``-th episode (k from 0 since the last seeded reset) lasts
    ``3 + (w + seed + 2 k) % 5`` steps, odd lengths terminate, even ones are truncated. Pixels
    (stacked ``STACK`` frames, repeated at a reset): channel 0 = step, 1 = world, 2 = episode
    count % 256. Reward = step + action; ``success`` = step is even. Tensors on the CPU."""

    def __init__(self, num_worlds: int) -> None:
        self.num_envs = num_worlds
        self.device = torch.device("cpu")
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        frame = spaces.Box(0, 255, (3 * STACK, SIZE, SIZE), np.uint8)
        self.single_observation_space = spaces.Dict({"pixels": frame})
        self.observation_space = batch_space(self.single_observation_space, num_worlds)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.world = torch.arange(num_worlds)
        self.t = torch.zeros(num_worlds, dtype=torch.int64)
        self.episode = torch.full((num_worlds,), -1, dtype=torch.int64)
        self.since_seed = torch.zeros(num_worlds, dtype=torch.int64)
        self.seed = 0
        self.returns = torch.zeros(num_worlds)
        self.stack = torch.zeros(num_worlds, 3 * STACK, SIZE, SIZE, dtype=torch.uint8)
        self.closed = False

    def length(self) -> torch.Tensor:
        return 3 + (self.world + self.seed + 2 * self.since_seed) % 5

    def frame(self) -> torch.Tensor:
        values = torch.stack((self.t, self.world, self.episode % 256), dim=1).to(torch.uint8)
        return values[:, :, None, None].expand(-1, -1, SIZE, SIZE)

    def _reset(self, mask: torch.Tensor, seeded: bool) -> None:
        self.episode += mask.long()
        self.since_seed = torch.where(mask, 0 if seeded else self.since_seed + 1, self.since_seed)
        self.t = torch.where(mask, 0, self.t)
        self.returns = torch.where(mask, 0.0, self.returns)
        first = self.frame().repeat(1, STACK, 1, 1)
        self.stack = torch.where(mask[:, None, None, None], first, self.stack)

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.seed = int(seed) % 5
        self._reset(torch.ones(self.num_envs, dtype=torch.bool), seeded=True)
        return {"pixels": self.stack.clone()}, {}

    def step(self, actions: Any):
        action = torch.as_tensor(actions, dtype=torch.float32)[:, 0]
        self.t += 1
        reward = self.t.float() + action
        self.returns += reward
        stack = torch.cat((self.stack[:, 3:], self.frame()), dim=1)
        length = self.length()
        done = self.t >= length
        terminated = done & (length % 2 == 1)
        truncated = done & (length % 2 == 0)
        info: dict[str, Any] = {"success": self.t % 2 == 0, "_final_obs": done}
        info["final_obs"] = {"pixels": stack.clone()}
        if done.any():
            info["episode_return"] = self.returns.clone()
            info["episode_length"] = self.t.clone()
        self.stack = stack
        self._reset(done, seeded=False)
        return {"pixels": self.stack.clone()}, reward, terminated, truncated, info

    def close(self) -> None:
        self.closed = True


def clock_of(stack: np.ndarray) -> tuple[int, int, int]:
    """(world, episode, step) of a stack's newest frame."""
    step, world, episode = stack[-3:, 0, 0].astype(int)
    return world, episode, step


@pytest.fixture
def batched_suite(monkeypatch):
    monkeypatch.setattr(robotrl.trainer, "is_batched_suite", lambda suite: suite == "clock")


def batched_cfg(frames: int, num_worlds: int, **overrides: Any) -> TrainConfig:
    cfg = make_cfg(frames=frames)
    cfg.task = TaskConfig(suite="clock", name="clock")
    cfg.num_envs = num_worlds
    cfg.replay.nstep = 1
    cfg.logger.save_video = True
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cfg


def batched_trainer(cfg: TrainConfig, run_dir: Path, eval_worlds: int) -> Trainer:
    torch.manual_seed(0)
    train_envs, eval_envs = BatchedClock(cfg.num_envs), BatchedClock(eval_worlds)
    agent = DrQV2Agent(cfg.agent, obs_shape=(3 * STACK, SIZE, SIZE), action_dim=1, device="cpu")
    replay = EpisodicReplay(
        capacity=cfg.replay.capacity,
        frame_stack=STACK,
        nstep=cfg.replay.nstep,
        discount=cfg.agent.discount,
        directory=run_dir / "replay",
        seed=cfg.seed,
    )
    single = SingleWorldEnv(BatchedClock(1))  # type: ignore[arg-type]  # the CLI's; not stepped
    return Trainer(
        cfg,
        run_dir,
        env=single,
        eval_env=single,
        agent=agent,
        replay=replay,
        logger=Logger(run_dir, tensorboard=False),
        config_record={"note": "test"},
        train_envs=train_envs,  # type: ignore[arg-type]
        eval_envs=eval_envs,  # type: ignore[arg-type]
    )


def count_updates(trainer: Trainer) -> list[int]:
    steps: list[int] = []
    original = trainer.agent.update

    def counting(batch, step):
        steps.append(step)
        return original(batch, step)

    trainer.agent.update = counting  # type: ignore[method-assign]
    return steps


# ------------------------------------------------------------------------ replay: add_batch


def test_add_batch_stores_exactly_what_per_stream_adds_store(tmp_path):
    rng = np.random.default_rng(0)
    worlds, steps = 3, 12
    single = EpisodicReplay(capacity=200, frame_stack=STACK, nstep=2, discount=0.9, seed=5,
                            directory=tmp_path / "single")  # fmt: skip
    batched = EpisodicReplay(capacity=200, frame_stack=STACK, nstep=2, discount=0.9, seed=5,
                             directory=tmp_path / "batched")  # fmt: skip

    def observation() -> dict[str, np.ndarray]:
        frame = rng.integers(0, 255, (worlds, 3, 4, 4), dtype=np.uint8)
        proprio = rng.normal(size=(worlds, 2)).astype(np.float32)
        return {"pixels": np.concatenate([frame] * STACK, axis=1), "proprio": proprio}

    obs = observation()
    for world in range(worlds):
        single.start_episode({k: v[world] for k, v in obs.items()}, stream=world)
    batched.start_episodes(obs)
    for t in range(steps):
        action = rng.uniform(-1, 1, (worlds, 2))  # float64: both cast to float32
        reward = rng.normal(size=worlds)
        done = np.array([t % 4 == 3, t % 5 == 4, t == steps - 1])
        terminated, truncated = done & (np.arange(worlds) == 0), done & (np.arange(worlds) > 0)
        obs = observation()
        for world in range(worlds):
            single.add(
                action[world],
                float(reward[world]),
                {k: v[world] for k, v in obs.items()},
                bool(terminated[world]),
                bool(truncated[world]),
                stream=world,
            )
        batched.add_batch(action, reward, obs, terminated, truncated)
        fresh = observation()  # the next episodes' first observations
        for world in np.flatnonzero(done):
            single.start_episode({k: v[world] for k, v in fresh.items()}, stream=int(world))
        batched.start_episodes(fresh, mask=done)

    assert single.num_episodes == batched.num_episodes == 3 + 2 + 1 > 0
    assert len(single) == len(batched) > 0
    assert single._storage is not None and batched._storage is not None
    used = single._cursor  # slots past it were never written (np.empty)
    assert used == batched._cursor == len(single) + single.num_episodes
    # An episode's last slot holds its final observation but no action or reward (unwritten).
    acting = np.arange(used) != single._storage.episode_last[:used]
    for ours, theirs in zip(single._storage.arrays(), batched._storage.arrays(), strict=True):
        rows = acting if ours.dtype == np.float32 and ours.ndim <= 2 else slice(None)
        np.testing.assert_array_equal(ours[:used][rows], theirs[:used][rows])
    names = sorted(p.name for p in (tmp_path / "single").glob("*.npz"))
    assert names == sorted(p.name for p in (tmp_path / "batched").glob("*.npz"))
    for name in names:
        a, b = load_episode(tmp_path / "single" / name), load_episode(tmp_path / "batched" / name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
            assert a[key].dtype == b[key].dtype
    sampled, sampled_batched = single.sample(64), batched.sample(64)
    assert sampled.keys() == sampled_batched.keys()
    for key, value in sampled.items():
        np.testing.assert_array_equal(value, sampled_batched[key])


def test_add_batch_rejects_streams_without_an_episode_and_bad_shapes():
    replay = EpisodicReplay(capacity=100, frame_stack=1, nstep=1, discount=0.9)
    obs = {"pixels": np.zeros((2, 3, 4, 4), np.uint8)}
    replay.start_episodes(obs, mask=np.array([True, False]))
    flags = np.zeros(2, bool)
    with pytest.raises(RuntimeError, match=r"start_episode\(stream=1\)"):
        replay.add_batch(np.zeros((2, 1)), np.zeros(2), obs, flags, flags)
    replay.start_episodes(obs)
    with pytest.raises(ValueError, match=r"2 distinct streams"):
        replay.add_batch(np.zeros((2, 1)), np.zeros(2), obs, flags, flags, streams=[0, 0])
    with pytest.raises(ValueError, match=r"add_batch needs \[2, ...\] arrays"):
        replay.add_batch(np.zeros((3, 1)), np.zeros(2), obs, flags, flags)


# ------------------------------------------------------------------------ training


def test_batched_collection_never_stores_a_transition_across_an_episode_end(
    tmp_path, batched_suite
):
    cfg = batched_cfg(frames=160, num_worlds=4)
    trainer = batched_trainer(cfg, tmp_path, eval_worlds=2)
    update_steps = count_updates(trainer)
    trainer.train()
    trainer.logger.close()
    counters, replay = trainer.counters, trainer.replay
    assert counters.step == counters.frame == 160  # 40 batched steps of 4 worlds
    assert counters.episode == replay.num_episodes == len(read_csv(tmp_path / "train.csv")) > 30
    # The default ratio: one update per agent step that is a multiple of update_every (2).
    first = update_steps[0]
    assert first >= 20 and update_steps == list(range(first, 160, 2))

    seen: dict[int, list[int]] = {world: [] for world in range(4)}
    for path in sorted((tmp_path / "replay").glob("*.npz")):
        episode = load_episode(path)
        frames = episode["frames"][:, :, 0, 0].astype(int)  # [T + 1, (t, world, episode)]
        length = len(episode["reward"])
        world, number = frames[0, 1], frames[0, 2]
        assert frames[:, 0].tolist() == list(range(length + 1))  # reset obs ... final_obs
        assert (frames[:, 1] == world).all() and (frames[:, 2] == number).all()
        assert 3 <= length <= 7 and bool(episode["terminated"]) == (length % 2 == 1)
        np.testing.assert_allclose(
            episode["reward"] - episode["action"][:, 0], range(1, length + 1)
        )
        seen[world].append(number)
    for numbers in seen.values():  # each world's episodes, all stored, in order, none twice
        assert numbers and numbers == list(range(len(numbers)))
    batch = replay.sample(1000)
    for obs, next_obs in zip(batch["obs"], batch["next_obs"], strict=True):
        world, number, step = clock_of(obs)
        assert clock_of(next_obs) == (world, number, step + 1)
        frames = obs.reshape(STACK, 3, SIZE, SIZE)[:, :, 0, 0].astype(int)
        assert frames[:, 0].tolist() == [max(step - 2, 0), max(step - 1, 0), step]
        assert (frames[:, 1] == world).all() and (frames[:, 2] == number).all()

    rows = read_csv(tmp_path / "train.csv")
    assert {float(r["success"]) for r in rows} <= {0.0, 1.0}
    assert all(3 <= float(row["episode_length"]) <= 7 for row in rows)
    evals = read_csv(tmp_path / "eval.csv")
    assert [int(r["frame"]) for r in evals] == [0, 52, 100, 152, 160]
    assert all(float(r["episode_length"]) >= 3 for r in evals)
    assert trainer.last_video is not None and trainer.last_video.exists()


@pytest.mark.parametrize(("utd_ratio", "expected"), [(2.0, 2), (0.25, 1 / 4), (0.5, 1 / 2)])
def test_utd_ratio_sets_updates_per_world_step(tmp_path, batched_suite, utd_ratio, expected):
    cfg = batched_cfg(frames=120, num_worlds=4, utd_ratio=utd_ratio, eval_every_frames=1000)
    trainer = batched_trainer(cfg, tmp_path, eval_worlds=2)
    update_steps = count_updates(trainer)
    trainer.train()
    trainer.logger.close()
    assert trainer.counters.step == 120
    # Updates start after the seed steps (once an episode is stored) and continue to the end.
    first = update_steps[0]
    assert 20 <= first <= 24
    made = len(update_steps)
    assert abs(made - expected * (120 - first)) <= 1, (made, first)
    if utd_ratio == 2.0:
        assert update_steps == [s for s in range(first, 120) for _ in range(2)]
    if utd_ratio == 0.25:
        assert np.all(np.diff(update_steps) == 4)


def test_batched_training_resumes_from_its_checkpoint(tmp_path, batched_suite):
    first = batched_trainer(batched_cfg(frames=64, num_worlds=4), tmp_path, eval_worlds=2)
    first.train()
    first.logger.close()
    episodes, checkpoint = first.counters.episode, first.last_checkpoint
    assert checkpoint is not None and first.counters.frame == 64

    second = batched_trainer(batched_cfg(frames=128, num_worlds=4), tmp_path, eval_worlds=2)
    result = second.train()
    second.logger.close()
    assert result.resumed_from == 64
    assert second.counters.frame == 128 and second.counters.episode > episodes
    assert second.replay.num_episodes == second.counters.episode
    frames = [int(r["frame"]) for r in read_csv(tmp_path / "train.csv")]
    assert frames == sorted(frames) and frames[-1] == 128


# ------------------------------------------------------------------------ evaluation


class FixedAgent:
    """Acts 0.5 everywhere; counts ``train`` switches."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def act_batch(self, obs, step, eval_mode):
        assert eval_mode
        return np.full((len(obs["pixels"]), 1), 0.5, np.float32)

    def train(self, mode: bool = True) -> None:
        self.modes.append(mode)

    def begin_episodes(self, mask=None) -> None:
        """The Agent hook evaluation calls after resets (nothing to clear here)."""


def test_batched_evaluation_plays_each_worlds_episodes_in_order(tmp_path):
    env, agent = BatchedClock(3), FixedAgent()
    results = run_episodes_batched(env, agent, episodes=7, step=0, seed=1)  # type: ignore[arg-type]
    assert [r.episode for r in results] == list(range(7))
    for result in results:
        world, k = result.episode % 3, result.episode // 3  # episode w + k W
        length = 3 + (world + 1 + 2 * k) % 5
        assert result.length == length
        assert result.episode_return == pytest.approx(sum(range(1, length + 1)) + 0.5 * length)
        assert result.success == float(length % 2 == 0)
    assert agent.modes == [False, True]
    again = run_episodes_batched(BatchedClock(3), agent, episodes=7, step=0, seed=1)  # type: ignore[arg-type]
    assert again == results
