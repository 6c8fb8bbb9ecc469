"""The robot cell (suite ``cell``): the sim twin of the real Panda table-top cell.

``robotrl_sim.cell.scene`` builds the MuJoCo model (robosuite's Panda MJCF and meshes, a table,
a cube, a reach target, ``front`` and ``wrist`` cameras); ``robotrl_sim.cell.arm.CellSim`` owns the
physics and the MoveIt-Servo-like TCP control, with no Gymnasium in it, so the robot driver's sim
backend can own one; ``robotrl_sim.cell.env`` wraps it as the pixel tasks ``reach`` and
``pick_cube``; ``robotrl_sim.cell.scripted`` holds privileged-state experts for both.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from robotrl_sim._common import UnknownTaskError, check_common_arguments, parse_options
from robotrl_sim.cell.arm import CellSim, WorkspaceBox
from robotrl_sim.cell.env import TASKS, CellEnv, CellOptions
from robotrl_sim.cell.scripted import scripted_action

__all__ = [
    "TASKS",
    "CellEnv",
    "CellOptions",
    "CellSim",
    "WorkspaceBox",
    "make_env",
    "scripted_action",
]


def make_env(
    task: str, *, seed: int, image_size: int, action_repeat: int, **options: Any
) -> gym.Env:
    """Builds ``cell/<task>`` (``reach`` or ``pick_cube``); ``options`` are :class:`CellOptions`
    fields: ``episode_steps`` (50 / 100), ``cameras`` (front and wrist), ``rotation`` (False: 4-D
    actions), ``max_step`` (0.02 m), ``max_rotation`` (0.1 rad), ``joint_noise`` (0.02 rad),
    ``randomize`` (True), ``proprio`` (True), ``state`` (False), ``render_size`` (256) and
    ``render_mode`` ("rgb_array")."""
    if task not in TASKS:
        raise UnknownTaskError(f"unknown cell task {task!r}; valid tasks: {', '.join(TASKS)}")
    parsed = parse_options(CellOptions, options, where=f"cell/{task}")
    check_common_arguments(
        image_size=image_size, action_repeat=action_repeat, render_size=parsed.render_size
    )
    return CellEnv(
        task, seed=seed, image_size=image_size, action_repeat=action_repeat, options=parsed
    )
