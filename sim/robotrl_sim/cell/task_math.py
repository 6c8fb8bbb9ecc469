"""The cell tasks' maths on arrays: rewards, success and the TCP-target update of an action.

Shared by the CPU env (``robotrl_sim.cell.env``, numpy, one world) and the batched Warp tasks
(``robotrl_sim.warp.cell``, torch tensors ``[N, ...]`` on the sim's device), so both suites define
the tasks with the same code. Every function takes numpy arrays (or Python floats) or torch
tensors and returns the same kind; torch is never imported here.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

SUCCESS_DISTANCE = 0.025  # m, reach
LIFT_HEIGHT = 0.05  # m above the table, pick_cube
GRASP_BONUS = 0.5
MAX_LEAD = 0.05  # m: how far the TCP target may run ahead of the measured TCP

Array = Any  # a numpy array (or Python float) or a torch tensor; functions return the same kind


def array_namespace(array: Any) -> ModuleType:
    """``torch`` for torch tensors, else ``numpy`` (torch is looked up only if already loaded)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(array, torch.Tensor):
        return torch
    return np


def as_array(value: Any) -> Any:
    """Torch tensors as they are; anything else (floats, lists) as a float64 numpy array."""
    if array_namespace(value) is np:
        return np.asarray(value, dtype=np.float64)
    return value


def norm(vectors: Array) -> Array:
    """Euclidean norm over the last axis."""
    return (vectors**2).sum(-1) ** 0.5


def reach_reward(distance: Array) -> Array:
    """``1 - tanh(10 d)``: 1 on the target, 0.24 at 10 cm."""
    distance = as_array(distance)
    return 1.0 - array_namespace(distance).tanh(10.0 * distance)


def pick_reward(tcp_to_cube: Array, grasped: Array, height: Array) -> Array:
    """Staged pick reward: reaching (≤ 1), then + 0.5 and + lift progress (≤ 1) while grasped."""
    lift = (as_array(height) / LIFT_HEIGHT).clip(0.0, 1.0)
    return reach_reward(tcp_to_cube) + as_array(grasped) * (GRASP_BONUS + lift)


def reach_success(distance: Array) -> Array:
    """The TCP within ``SUCCESS_DISTANCE`` of the target."""
    return as_array(distance) <= SUCCESS_DISTANCE


def pick_success(height: Array) -> Array:
    """The cube ``LIFT_HEIGHT`` or more above its resting height."""
    return as_array(height) >= LIFT_HEIGHT


def next_tcp_target(target: Array, measured: Array, unit_delta: Array, max_step: float) -> Array:
    """The TCP position target after a unit delta action ``[..., 3]``, before workspace clipping.

    The delta is added to the previous *target* (as MoveIt Servo integrates twists), first pulled
    back to within ``MAX_LEAD`` of the ``measured`` TCP so that a blocked arm does not wind up.
    """
    xp = array_namespace(target)
    lead = target - measured
    lead_norm = norm(lead)[..., None]
    pulled_back = measured + lead * (MAX_LEAD / lead_norm.clip(MAX_LEAD, None))
    return xp.where(lead_norm > MAX_LEAD, pulled_back, target) + max_step * unit_delta


def gripper_width_command(unit_gripper: Array, max_width: float) -> Array:
    """Finger opening (m) of the gripper action: -1 fully open, +1 closed."""
    return max_width * (1.0 - unit_gripper) / 2.0
