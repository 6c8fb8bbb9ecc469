"""Running deterministic evaluation episodes."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from robotrl.agents.base import Agent
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
    if env.render_mode == "rgb_array":
        frame = env.render()
        if isinstance(frame, np.ndarray):
            return frame
    return np.asarray(obs["pixels"][-3:]).transpose(1, 2, 0)


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
