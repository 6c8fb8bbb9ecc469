"""Built-in MuJoCo pixel tasks shipped with ``robotrl_sim`` (suite ``builtin``).

``builtin/reach`` is the default task: easy enough that a pixel agent visibly learns on a laptop
CPU in minutes, so the stack can be tried and tested without any benchmark suite.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from robotrl_sim._common import UnknownTaskError, check_common_arguments, parse_options
from robotrl_sim.builtin.reach import ReachEnv, ReachOptions, scripted_action

TASKS = ("reach",)

__all__ = ["TASKS", "ReachEnv", "ReachOptions", "make_env", "scripted_action"]


def make_env(
    task: str, *, seed: int, image_size: int, action_repeat: int, **options: Any
) -> gym.Env:
    """Builds a built-in task; ``options`` are the fields of the task's options class.

    ``reach`` takes :class:`ReachOptions`: ``episode_steps`` (50), ``target`` ("random" or
    "fixed"), ``control_timestep`` (0.05 s), ``render_size`` (256), ``render_mode``
    ("rgb_array"), ``proprio`` (False), ``distractors`` (None), and the harder variants'
    ``action_bias`` ((0, 0)) and ``action_noise`` (0).
    """
    if task not in TASKS:
        raise UnknownTaskError(f"unknown builtin task {task!r}; valid tasks: {', '.join(TASKS)}")
    parsed = parse_options(ReachOptions, options, where=f"builtin/{task}")
    check_common_arguments(
        image_size=image_size, action_repeat=action_repeat, render_size=parsed.render_size
    )
    return ReachEnv(seed=seed, image_size=image_size, action_repeat=action_repeat, options=parsed)
