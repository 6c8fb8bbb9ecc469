"""Demonstrations: episodes from a scripted expert (or any policy) in the replay's on-disk format.

A demo directory is what a run's ``replay/`` directory is: one ``episode_<i>_len<T>.npz`` per
episode (newest frame of each observation, actions, rewards, extras such as ``proprio``), written
by :class:`~robotrl.replay.EpisodicReplay` itself, so :func:`load_demos` (or ``load_episode``) reads
them back and the same frames are stacked again at sample time. Behaviour cloning
(``agent=bc_chunk agent.demos=PATH``) trains from such a directory, and an RLPD-style learner can
mix it with online data.

An expert is a callable ``expert(env) -> action`` given the *unwrapped* env, so it can read the
privileged state a pixel agent never sees (``robotrl_sim.builtin.reach.scripted_action`` for
``builtin/reach``). With ``action_noise > 0`` the env executes a noisy copy of the expert's action
while the demo records the clean one (DART, Laskey et al. 2017): the demos then visit the states
a slightly wrong clone drifts into, labelled with the expert's correction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from robotrl.replay import EPISODE_FILE, EpisodicReplay, load_episode

Expert = Callable[[Any], np.ndarray]


@dataclass
class DemoStats:
    """What :func:`collect_demos` recorded."""

    episodes: int
    transitions: int
    mean_return: float
    success_rate: float  # NaN when the task reports no success


def collect_demos(
    env: gym.Env,
    expert: Expert,
    *,
    episodes: int,
    directory: Path,
    frame_stack: int,
    seed: int = 0,
    action_noise: float = 0.0,
) -> DemoStats:
    """Play ``episodes`` episodes of ``expert`` on ``env`` (frame-stacked pixels, as the trainer
    builds it) and write them to ``directory`` (which must hold no episodes yet).

    Episode ``i`` resets with ``seed + i``; keep demo seeds apart from evaluation seeds.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if action_noise < 0:
        raise ValueError(f"action_noise must be >= 0, got {action_noise}")
    # Only the disk matters here: the in-memory ring just has to hold the longest episode.
    replay = EpisodicReplay(
        capacity=100_000, frame_stack=frame_stack, nstep=1, discount=1.0, directory=directory
    )
    rng = np.random.default_rng(seed)
    returns, successes, transitions = [], [], 0
    for index in range(episodes):
        obs, info = env.reset(seed=seed + index)
        replay.start_episode(obs)
        total, done = 0.0, False
        while not done:
            action = np.asarray(expert(env.unwrapped), np.float32)
            executed = action
            if action_noise > 0:
                noise = rng.normal(0.0, action_noise, action.shape)
                executed = np.clip(action + noise, -1.0, 1.0).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(executed)
            replay.add(action, float(reward), obs, bool(terminated), bool(truncated))
            total += float(reward)
            transitions += 1
            done = terminated or truncated
        returns.append(total)
        if "success" in info:
            successes.append(float(info["success"]))
    return DemoStats(
        episodes=episodes,
        transitions=transitions,
        mean_return=float(np.mean(returns)),
        success_rate=float(np.mean(successes)) if successes else float("nan"),
    )


def demo_files(directory: Path) -> list[Path]:
    """The episode files of a demo directory, in episode order; a clear error if there are none."""
    directory = Path(directory)
    files = sorted(p for p in directory.glob("episode_*.npz") if EPISODE_FILE.match(p.name))
    if not files:
        raise FileNotFoundError(f"no demonstration episodes (episode_*.npz) in {directory}")
    return files


def load_demos(
    directory: Path,
    *,
    frame_stack: int,
    nstep: int = 1,
    discount: float = 0.99,
    seed: int = 0,
    pixels_shape: tuple[int, ...] | None = None,
) -> EpisodicReplay:
    """A replay (no directory: never written to) holding every demo episode of ``directory``.

    ``pixels_shape``: the env's stacked ``pixels`` shape; demos recorded with other images (size,
    cameras, channels) are refused with an error naming both shapes.
    """
    episodes = [load_episode(path) for path in demo_files(directory)]
    slots = sum(len(episode["frames"]) for episode in episodes)
    replay = EpisodicReplay(
        capacity=max(slots, 2), frame_stack=frame_stack, nstep=nstep, discount=discount, seed=seed
    )
    for episode in episodes:
        if pixels_shape is not None:
            frame = episode["frames"].shape[1:]
            stacked = (*frame[:-3], frame[-3] * frame_stack, *frame[-2:])
            if stacked != tuple(pixels_shape):
                raise ValueError(
                    f"demos in {directory} stack to pixels {stacked} with frame_stack="
                    f"{frame_stack}, but the env observes {tuple(pixels_shape)}"
                )
        replay.add_episode(episode)
    return replay
