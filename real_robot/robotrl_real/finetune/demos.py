"""Demonstrations for fine-tuning, recorded with a teleop device driving the arm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from robotrl.replay import EpisodicReplay
from robotrl_real.env import RobotEnv
from robotrl_real.finetune.common import ACTION_DIM
from robotrl_real.labeling import teleop_episode
from robotrl_real.teleop import TeleopPublisher


def collect_teleop_demos(
    env: RobotEnv,
    directory: str | Path,
    *,
    episodes: int,
    teleop: TeleopPublisher | None = None,
    seed: int = 0,
    between_episodes: Callable[[int], None] | None = None,
) -> int:
    """Record ``episodes`` episodes in which a teleop device drives the arm, as a demo directory
    (:mod:`robotrl.demos`): the env is stepped with zero actions and the executed (teleop)
    actions are stored; an episode ends at success (terminated) or the step limit. ``teleop``
    (not started) is published during each episode only (:func:`~robotrl_real.labeling.
    teleop_episode`). Returns the number of transitions."""
    replay = EpisodicReplay(
        capacity=100_000, frame_stack=1, nstep=1, discount=1.0, directory=Path(directory)
    )
    transitions = 0
    for index in range(episodes):
        if between_episodes is not None:
            between_episodes(index)
        obs, _ = env.reset(seed=seed + index)
        replay.start_episode(obs)
        with teleop_episode(teleop):
            while True:
                obs, reward, terminated, truncated, info = env.step(np.zeros(ACTION_DIM))
                success = bool(info.get("success", False))
                replay.add(info["executed_action"], float(reward), obs, success, truncated)
                transitions += 1
                if success or truncated or terminated:
                    break
    return transitions
