"""Vector envs: SAME_STEP autoreset, vectorised training collection and evaluation.

The collection tests use ClockEnv, whose frames encode (env, episode, step), so every stored and
sampled transition says whether it stayed inside one episode. Worker processes are real
(``AsyncVectorEnv`` with shared memory, started with ``spawn``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.config import EnvConfig, TaskConfig, TrainConfig
from robotrl.envs import make_env
from robotrl.envs.vector import (
    ENV_SEED_STRIDE,
    VectorEnvs,
    env_seeds,
    make_vector_env,
    step_observation,
    vector_env,
)
from robotrl.evaluation import run_episodes, run_episodes_vectorized
from robotrl.logger import Logger
from robotrl.replay import EpisodicReplay, load_episode
from robotrl.schedules import LinearSchedule
from robotrl.trainer import Trainer, train_reset_seeds
from robotrl.video import VideoRecorder
from tests.core.fakes import stacked_clock_env, stacked_dot_env
from tests.core.test_trainer import make_cfg, make_trainer, read_csv


def clock_envs(
    num_envs: int, *, asynchronous: bool = True, render_mode: str | None = None, tag: bool = True
):
    return vector_env(
        [partial(stacked_clock_env, i, render_mode, tag) for i in range(num_envs)],
        asynchronous=asynchronous,
    )


def small_agent(obs_shape: tuple[int, ...], action_dim: int) -> DrQV2Agent:
    torch.manual_seed(0)
    cfg = DrQV2Config(hidden_dim=16, feature_dim=8, stddev_schedule=LinearSchedule(1.0, 0.1, 100))
    return DrQV2Agent(cfg, obs_shape=obs_shape, action_dim=action_dim, device="cpu")


def clock_of(stack: np.ndarray) -> tuple[int, int, int]:
    """(env, episode, step) of a stack's newest frame."""
    step, env_id, episode = stack[-3:, 0, 0].astype(int)
    return env_id, episode, step


# -------------------------------------------------------------------------- the vector env


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_num_envs_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"num_envs must be a positive integer, got"):
        make_vector_env(
            "builtin", "reach", num_envs=bad, seed=0, image_size=48, action_repeat=1, frame_stack=3
        )
    with pytest.raises(ValueError, match=r"num_envs must be a positive integer"):
        TrainConfig(agent=None, num_envs=bad)
    with pytest.raises(ValueError, match=r"number of env factories must be a positive integer"):
        vector_env([])


def test_trainer_refuses_a_vector_env_of_the_wrong_size(tmp_path):
    cfg = make_cfg(frames=10)
    cfg.num_envs = 3
    envs = clock_envs(2, asynchronous=False)
    with pytest.raises(ValueError, match=r"train_envs has 2 envs but the config's num_envs is 3"):
        make_trainer(cfg, tmp_path, train_envs=envs)
    envs.close()


def test_same_step_autoreset_returns_the_next_first_obs_and_keeps_final_obs():
    """Gymnasium 1.4's exact keys, on which the trainer and evaluation rely."""
    envs = clock_envs(2, asynchronous=False)
    assert isinstance(envs, SyncVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=[0, 1])  # episode lengths 3 and 4
    for _ in range(2):
        obs, *_ = envs.step(np.zeros((2, 1), np.float32))
    obs, _, terminated, truncated, info = envs.step(np.zeros((2, 1), np.float32))
    assert terminated.tolist() == [True, False] and truncated.tolist() == [False, False]
    assert info["_final_obs"].tolist() == [True, False]
    assert clock_of(obs["pixels"][0]) == (0, 1, 0)  # already the next episode's first obs
    final = step_observation(obs, info, True, 0)
    assert clock_of(final["pixels"]) == (0, 0, 3)  # the true last obs
    assert clock_of(step_observation(obs, info, False, 1)["pixels"]) == (1, 0, 3)
    assert info["final_info"]["_success"].tolist() == [True, False]
    assert not info["final_info"]["success"][0]  # t = 3 is odd
    envs.close()


def test_builtin_reach_copies_run_in_shared_memory_processes_with_distinct_seeds():
    kwargs = {"image_size": 48, "action_repeat": 1, "frame_stack": 3}
    envs = make_vector_env("builtin", "reach", num_envs=2, seed=7, **kwargs)
    try:
        assert isinstance(envs, AsyncVectorEnv) and envs.shared_memory
        assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        assert env_seeds(7, 2) == [7, 7 + ENV_SEED_STRIDE]
        obs, _ = envs.reset()  # unseeded: each copy's factory seed drives its first episode
        assert obs["pixels"].shape == (2, 9, 48, 48) and obs["pixels"].dtype == np.uint8
        for index, seed in enumerate(env_seeds(7, 2)):
            single = make_env("builtin", "reach", seed=seed, **kwargs)
            np.testing.assert_array_equal(obs["pixels"][index], single.reset()[0]["pixels"])
            single.close()
        assert not np.array_equal(obs["pixels"][0], obs["pixels"][1])
        obs, *_ = envs.step(np.zeros((2, *envs.single_action_space.shape), np.float32))
        assert obs["pixels"].shape == (2, 9, 48, 48)
    finally:
        envs.close()
    assert make_vector_env("builtin", "reach", num_envs=1, seed=0, **kwargs).num_envs == 1


# -------------------------------------------------------------------------- training


def test_vectorised_collection_never_stores_a_transition_across_an_episode_end(tmp_path):
    cfg = make_cfg(frames=120)
    cfg.num_envs, cfg.replay.nstep = 3, 1
    trainer = make_trainer(cfg, tmp_path, train_envs=clock_envs(3))
    update_steps: list[int] = []
    original_update = trainer.agent.update

    def counting_update(batch, step):
        update_steps.append(step)
        return original_update(batch, step)

    trainer.agent.update = counting_update  # type: ignore[method-assign]
    trainer.train()
    trainer.logger.close()
    trainer.train_envs.close()

    counters, replay = trainer.counters, trainer.replay
    assert counters.step == counters.frame == 120  # 40 vector steps of 3 agent steps
    assert counters.episode == replay.num_episodes == len(read_csv(tmp_path / "train.csv")) > 20
    # One update per agent step that is a multiple of update_every, as with a single env.
    first = update_steps[0]
    assert first >= 20 and update_steps == list(range(first, 120, 2))

    # Every stored episode: one env's one episode, from its reset obs (t = 0) to its final obs.
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for path in sorted((tmp_path / "replay").glob("*.npz")):
        episode = load_episode(path)
        frames = episode["frames"][:, :, 0, 0].astype(int)  # [T + 1, (t, env, episode)]
        length = len(episode["reward"])
        env_id, number = frames[0, 1], frames[0, 2]
        assert frames[:, 0].tolist() == list(range(length + 1))  # reset obs ... final_obs
        assert (frames[:, 1] == env_id).all() and (frames[:, 2] == number).all()
        assert 3 <= length <= 7 and bool(episode["terminated"]) == (length % 2 == 1)
        seen[env_id].append(number)
    for numbers in seen.values():  # each env's episodes, all stored, none twice
        assert numbers == list(range(len(numbers))) and numbers
    # Sampled transitions: obs and next_obs are consecutive steps of one episode.
    batch = replay.sample(1000)
    for obs, next_obs, discount in zip(
        batch["obs"], batch["next_obs"], batch["discount"], strict=True
    ):
        env_id, number, step = clock_of(obs)
        assert clock_of(next_obs) == (env_id, number, step + 1)
        frames = obs.reshape(3, 3, *obs.shape[1:])[:, :, 0, 0].astype(int)
        assert frames[:, 0].tolist() == [max(step - 2, 0), max(step - 1, 0), step]
        assert (frames[:, 1] == env_id).all() and (frames[:, 2] == number).all()
        assert discount[0] in (0.0, np.float32(cfg.agent.discount))


def test_vectorised_training_resumes_after_a_crash(tmp_path):
    def vector_trainer(frames: int) -> Trainer:
        cfg = make_cfg(frames=frames)
        cfg.num_envs, cfg.eval_num_envs = 2, 2
        dot = partial(stacked_dot_env, render_mode="rgb_array")
        return make_trainer(
            cfg,
            tmp_path,
            train_envs=vector_env([partial(stacked_dot_env)] * 2),
            eval_envs=vector_env([dot, dot]),
        )

    first = vector_trainer(frames=200)
    original_update = first.agent.update

    def update_then_crash(batch, step):
        if step >= 70:
            raise KeyboardInterrupt("killed")
        return original_update(batch, step)

    first.agent.update = update_then_crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        first.train()
    first.logger.close()
    checkpoint_frame = first.counters.last_checkpoint_frame
    assert 0 < checkpoint_frame < 70

    second = vector_trainer(frames=120)
    result = second.train()
    second.logger.close()
    assert result.resumed_from == checkpoint_frame
    assert second.counters.frame == 120 and second.counters.episode == 12
    assert second.replay.num_episodes == 12 and len(second.replay) == 120
    rows = read_csv(tmp_path / "train.csv")
    assert [int(float(r["episode"])) for r in rows] == list(range(1, 13))  # no gaps, no repeats
    eval_rows = read_csv(tmp_path / "eval.csv")
    assert [int(r["frame"]) for r in eval_rows] == [0, 50, 100, 120]
    assert result.video is not None and result.video.stat().st_size > 0
    for trainer in (first, second):
        trainer.train_envs.close()
        trainer.eval_envs.close()


def test_train_reset_seeds_match_the_single_env_loop_and_differ_per_env():
    assert train_reset_seeds(3, 5, 1) == [3 * 100_003 + 5]
    seeds = train_reset_seeds(3, 5, 4)
    assert seeds[0] == 3 * 100_003 + 5 and len(set(seeds)) == 4


# -------------------------------------------------------------------------- evaluation


def sequential_and_vectorised(single, envs, agent, episodes, seed, video_episodes):
    recorders = [VideoRecorder(Path("unused")) for _ in range(2)]
    sequential = run_episodes(
        single,
        agent,
        episodes=episodes,
        step=0,
        seed=seed,
        recorder=recorders[0],
        video_episodes=video_episodes,
    )
    vectorised = run_episodes_vectorized(
        envs,
        agent,
        episodes=episodes,
        step=0,
        seed=seed,
        recorder=recorders[1],
        video_episodes=video_episodes,
    )
    return sequential, vectorised, [recorder._frames for recorder in recorders]


def assert_same_results(sequential, vectorised):
    assert [(r.episode, r.length) for r in vectorised] == [
        (r.episode, r.length) for r in sequential
    ]
    for ours, reference in zip(vectorised, sequential, strict=True):
        assert ours.episode_return == pytest.approx(reference.episode_return, rel=1e-5, abs=1e-5)
        assert ours.success == reference.success or np.isnan(reference.success)


def test_vectorised_eval_plays_the_same_episodes_as_sequential_eval():
    """Episodes of different lengths, 5 episodes over 2 envs: order, seeds, success, video."""
    agent = small_agent((9, 24, 24), 1)
    single = stacked_clock_env(render_mode="rgb_array", tag=False)
    envs = clock_envs(2, render_mode="rgb_array", tag=False)
    sequential, vectorised, (frames, vector_frames) = sequential_and_vectorised(
        single, envs, agent, episodes=5, seed=11, video_episodes=2
    )
    envs.close()
    assert len({r.length for r in sequential}) > 1  # the envs really finish at different steps
    assert_same_results(sequential, vectorised)
    assert [r.success for r in vectorised] == [r.success for r in sequential]
    # Episodes 0 and 1 recorded in order, each from its reset frame to its last frame.
    assert len(vector_frames) == len(frames) == sequential[0].length + sequential[1].length + 2
    for ours, reference in zip(vector_frames, frames, strict=True):
        np.testing.assert_array_equal(ours, reference)
    assert agent.modules["actor"].training  # train mode restored


def test_vectorised_eval_on_builtin_reach_matches_sequential_eval():
    kwargs = {"image_size": 48, "action_repeat": 2, "frame_stack": 3}
    options = {"episode_steps": 15, "render_size": 64, "render_mode": "rgb_array"}
    single = make_env("builtin", "reach", seed=100, options=options, **kwargs)
    envs = make_vector_env("builtin", "reach", num_envs=2, seed=100, options=options, **kwargs)
    agent = small_agent((9, 48, 48), single.action_space.shape[0])
    try:
        sequential, vectorised, (frames, vector_frames) = sequential_and_vectorised(
            single, envs, agent, episodes=3, seed=100, video_episodes=1
        )
    finally:
        envs.close()
        single.close()
    assert_same_results(sequential, vectorised)
    assert len(vector_frames) == len(frames) == 16 and vector_frames[0].shape == (64, 64, 3)
    for ours, reference in zip(vector_frames, frames, strict=True):
        np.testing.assert_allclose(ours, reference, atol=2)


def test_trainer_builds_and_closes_its_vector_envs_from_the_config(tmp_path):
    """The CLI path: no vector env passed in, so the trainer builds worker processes itself."""
    cfg = make_cfg(frames=32)  # 16 agent steps: 8 per env, 2 episodes each
    cfg.task = TaskConfig(suite="builtin", name="reach", options={"episode_steps": 4})
    cfg.env = EnvConfig(image_size=48, action_repeat=2, frame_stack=3)
    cfg.num_envs, cfg.eval_num_envs, cfg.seed_frames = 2, 2, 8
    cfg.eval_every_frames, cfg.eval_episodes = 100, 3
    kwargs = {"image_size": 48, "action_repeat": 2, "frame_stack": 3, "options": cfg.task.options}
    env = make_env("builtin", "reach", seed=cfg.seed, **kwargs)
    agent = small_agent((9, 48, 48), env.action_space.shape[0])
    replay = EpisodicReplay(
        capacity=1000, frame_stack=3, nstep=3, discount=0.99, directory=tmp_path / "replay"
    )
    logger = Logger(tmp_path, tensorboard=False)
    trainer = Trainer(
        cfg,
        tmp_path,
        env=env,
        eval_env=env,
        agent=agent,
        replay=replay,
        logger=logger,
        config_record={},
    )
    built: list[VectorEnvs] = []
    build = trainer._build_envs

    def remember(*args):
        built.append(build(*args))
        return built[-1]

    trainer._build_envs = remember  # type: ignore[method-assign]
    result = trainer.train()
    logger.close()
    env.close()
    assert [type(envs) for envs in built] == [AsyncVectorEnv, AsyncVectorEnv]
    assert all(envs.closed for envs in built) and trainer.train_envs is None
    assert trainer.counters.frame == 32 and trainer.counters.episode == 4
    assert len(replay) == 16 and replay.num_episodes == 4
    assert result.video is not None
    assert [int(r["frame"]) for r in read_csv(tmp_path / "eval.csv")] == [0, 32]
