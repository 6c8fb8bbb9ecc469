"""Running deterministic evaluation episodes, with one env or several at once.

Seeding. Evaluation episode ``k`` always starts with ``reset(seed=seed + k)``, whichever env plays
it, so :func:`run_episodes` and :func:`run_episodes_vectorized` replay the same start states and
(with deterministic mean actions) return the same per-episode results, in episode order; the
vector version only acts on N observations per forward pass, which can move returns by float32
rounding (~1e-7 relative in the tests).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robotrl.agents.base import Agent
from robotrl.envs import BatchedEnv
from robotrl.envs.batched import to_numpy
from robotrl.envs.vector import (
    VectorEnvs,
    build_vector_env,
    final_info_value,
    info_value,
    newest_frame,
    render_frame,
    step_observation,
    unbatch,
)
from robotrl.video import VideoRecorder


@dataclass
class EpisodeResult:
    """One evaluation episode, as a row of the tidy per-episode table."""

    episode: int
    episode_return: float
    length: int
    success: float  # 1.0 / 0.0, or NaN where the task defines no success

    def as_row(self) -> dict[str, float | int]:
        return asdict(self)


def video_frame(env: gym.Env, obs: dict[str, np.ndarray]) -> np.ndarray:
    """A frame for the eval video: the env's ``render()`` if it has one, else the newest pixels."""
    return render_frame(env, obs)


def run_episodes(
    env: gym.Env,
    agent: Agent,
    *,
    episodes: int,
    step: int,
    seed: int,
    recorder: VideoRecorder | None = None,
    video_episodes: int = 1,
) -> list[EpisodeResult]:
    """Play ``episodes`` episodes with the agent's deterministic (mean) actions.

    Episode ``i`` resets with ``seed + i``, so successive evaluations start from the same states.
    The first ``video_episodes`` episodes are recorded when a ``recorder`` is given.
    """
    agent.train(False)
    results = []
    for index in range(episodes):
        obs, info = env.reset(seed=seed + index)
        agent.begin_episodes()
        recording = recorder is not None and index < video_episodes
        if recording and recorder is not None:
            recorder.record(video_frame(env, obs))
        total, length, done = 0.0, 0, False
        while not done:
            action = agent.act(obs, step, eval_mode=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            if recording and recorder is not None:
                recorder.record(video_frame(env, obs))
        success = float(info["success"]) if "success" in info else float("nan")
        results.append(EpisodeResult(index, total, length, success))
    agent.train(True)
    return results


def run_episodes_vectorized(
    envs: VectorEnvs,
    agent: Agent,
    *,
    episodes: int,
    step: int,
    seed: int,
    recorder: VideoRecorder | None = None,
    video_episodes: int = 1,
) -> list[EpisodeResult]:
    """:func:`run_episodes` on a ``SAME_STEP`` vector env: exactly ``episodes`` episodes, N at once.

    Episodes are handed out in order to whichever env is free: episode ``k`` resets its env with
    ``seed + k`` (a masked reset right after the autoreset), so results match the single-env
    version episode for episode; they are returned in episode order. Envs left without an episode
    near the end keep stepping, and their steps are ignored. The first ``video_episodes``
    episodes are recorded (episode 0 on env 0), in episode order; frames come from the envs'
    :class:`~robotrl.envs.vector.VideoFrames` wrapper (``render()`` in the worker, so an
    episode's last frame survives the autoreset), else from the observations' newest pixels.
    ``success`` is read from the info of each episode's last step.
    """
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    num_envs = envs.num_envs
    assigned: list[int | None] = [k if k < episodes else None for k in range(num_envs)]
    next_episode = min(num_envs, episodes)
    results: dict[int, EpisodeResult] = {}
    frames: dict[int, list[np.ndarray]] = {}  # video frames of the recorded episodes
    returns, lengths = [0.0] * num_envs, [0] * num_envs

    def recorded(episode: int | None) -> bool:
        return recorder is not None and episode is not None and episode < video_episodes

    flags = [False] * num_envs  # VideoFrames starts switched off

    def reset(seeds: list[int | None], mask: np.ndarray | None) -> dict[str, np.ndarray]:
        nonlocal flags
        wanted = [recorded(k) for k in assigned]
        if recorder is not None and wanted != flags:
            envs.set_attr("record_frames", wanted)
            flags = wanted
        options = None if mask is None else {"reset_mask": mask}
        obs, info = envs.reset(seed=seeds, options=options)
        agent.begin_episodes(mask)
        for index, episode in enumerate(assigned):
            if recorded(episode) and (mask is None or mask[index]):
                assert episode is not None
                frames[episode] = [
                    _frame(info_value(info, "video_frame", index), unbatch(obs, index))
                ]
        return obs

    agent.train(False)
    try:
        obs = reset([None if k is None else seed + k for k in assigned], None)
        while len(results) < episodes:
            actions = agent.act_batch(obs, step, eval_mode=True)
            obs, rewards, terminated, truncated, info = envs.step(actions)
            done = np.logical_or(terminated, truncated)
            mask = np.zeros(num_envs, bool)
            seeds: list[int | None] = [None] * num_envs
            for index, episode in enumerate(assigned):
                if episode is None:
                    continue
                returns[index] += float(rewards[index])
                lengths[index] += 1
                if episode in frames:
                    if done[index]:
                        frame = final_info_value(info, "video_frame", index)
                    else:
                        frame = info_value(info, "video_frame", index)
                    reached = step_observation(obs, info, bool(done[index]), index)
                    frames[episode].append(_frame(frame, reached))
                if not done[index]:
                    continue
                success = final_info_value(info, "success", index)
                results[episode] = EpisodeResult(
                    episode,
                    returns[index],
                    lengths[index],
                    float("nan") if success is None else float(success),
                )
                returns[index], lengths[index] = 0.0, 0
                if next_episode < episodes:
                    assigned[index], seeds[index] = next_episode, seed + next_episode
                    mask[index] = True
                    next_episode += 1
                else:
                    assigned[index] = None
            if mask.any():
                obs = reset(seeds, mask)
    finally:
        agent.train(True)
        if any(flags):  # leave the envs as found: rendering off
            envs.set_attr("record_frames", False)
    if recorder is not None:
        for episode in sorted(frames):
            for frame in frames[episode]:
                recorder.record(frame)
    return [results[k] for k in range(episodes)]


def run_episodes_batched(
    env: BatchedEnv,
    agent: Agent,
    *,
    episodes: int,
    step: int,
    seed: int,
    recorder: VideoRecorder | None = None,
    video_episodes: int = 1,
) -> list[EpisodeResult]:
    """``episodes`` deterministic episodes on the W worlds of a batched env (torch tensors).

    All worlds reset with ``seed`` (each world's stream is hashed from it and the world index),
    and world ``w`` plays episodes ``w, w + W, w + 2W, ...`` back to back in its own stream, so
    every evaluation with the same seed replays the same start states. Worlds with no episode
    left keep stepping and are ignored. The first ``video_episodes`` episodes of world 0 are
    recorded from the observations' newest frames (episode 0 first).
    """
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    num_worlds = env.num_envs
    # World w's k-th episode is episode w + k W; it still has episodes to play while that < total.
    played = np.zeros(num_worlds, np.int64)
    returns = np.zeros(num_worlds, np.float64)
    results: dict[int, EpisodeResult] = {}
    recorded = min(video_episodes, -(-episodes // num_worlds)) if recorder is not None else 0

    agent.train(False)
    try:
        tensors, _ = env.reset(seed=seed)
        obs = to_numpy(tensors)
        agent.begin_episodes()
        if recorded and recorder is not None:
            recorder.record(obs["pixels"][0])
        while len(results) < episodes:
            actions = agent.act_batch(obs, step, eval_mode=True)
            tensors, rewards, terminated, truncated, info = env.step(
                torch.as_tensor(actions, device=env.device)
            )
            obs = to_numpy(tensors)
            returns += to_numpy(rewards)
            done = to_numpy(terminated) | to_numpy(truncated)
            if recorder is not None and played[0] < recorded:
                final = to_numpy(info["final_obs"]["pixels"][0]) if done[0] else obs["pixels"][0]
                recorder.record(final)
                if done[0] and played[0] + 1 < recorded:
                    recorder.record(obs["pixels"][0])
            if not done.any():
                continue
            agent.begin_episodes(done)  # SAME_STEP autoreset: their rows are new episodes
            lengths = to_numpy(info["episode_length"])
            success = to_numpy(info["success"]) if "success" in info else None
            for world in np.flatnonzero(done):
                episode = int(world + played[world] * num_worlds)
                if episode < episodes:
                    results[episode] = EpisodeResult(
                        episode,
                        float(returns[world]),
                        int(lengths[world]),
                        float("nan") if success is None else float(success[world]),
                    )
                played[world] += 1
                returns[world] = 0.0
    finally:
        agent.train(True)
    return [results[k] for k in range(episodes)]


def evaluate_vectorized(
    task: Any,
    env_cfg: Any,
    *,
    seed: int,
    num_envs: int,
    agent: Agent,
    episodes: int,
    step: int = 0,
    recorder: VideoRecorder | None = None,
    video_episodes: int = 1,
    asynchronous: bool = True,
) -> list[EpisodeResult]:
    """Build ``num_envs`` copies of ``task`` (a TaskConfig; ``env_cfg`` an EnvConfig), run
    :func:`run_episodes_vectorized` and close them. Env 0 is built like
    ``build_env(task, env_cfg, seed)``; ``render_mode="rgb_array"`` when a recorder is given."""
    envs = build_vector_env(
        task,
        env_cfg,
        seed=seed,
        num_envs=num_envs,
        render_mode="rgb_array" if recorder is not None else None,
        asynchronous=asynchronous,
    )
    try:
        return run_episodes_vectorized(
            envs,
            agent,
            episodes=episodes,
            step=step,
            seed=seed,
            recorder=recorder,
            video_episodes=video_episodes,
        )
    finally:
        envs.close()


def _frame(rendered: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The frame the env rendered if it sent one, else the observation's newest pixels."""
    if isinstance(rendered, np.ndarray):
        return rendered
    return newest_frame(obs)


def summarize(results: list[EpisodeResult]) -> dict[str, float]:
    """Mean return, length and success rate (NaN success when the task has none)."""
    successes = [r.success for r in results if not np.isnan(r.success)]
    return {
        "episode_return": float(np.mean([r.episode_return for r in results])),
        "episode_length": float(np.mean([r.length for r in results])),
        "success_rate": float(np.mean(successes)) if successes else float("nan"),
    }


def write_episode_csv(path: Path, rows: list[dict[str, object]]) -> None:
    """Write the tidy per-episode table (one row per episode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
