"""Scripted experts for the cell tasks, from privileged state (for tests and demonstrations).

They act through the env's own action interface (unit TCP deltas and the gripper command), so a
solved episode shows that the delta control, the IK and the grasp physics work end to end.
Positions are compared with the commanded TCP target rather than the measured TCP: the env adds
deltas to the target, so steering the target avoids winding up against the servo lag.

The experts read an :class:`ExpertView` of ``[N, ...]`` arrays, numpy or torch, so the same code
drives the CPU env (``scripted_action``, one world) and the batched Warp worlds
(``robotrl_sim.warp.cell.scripted_actions``, torch on the sim's device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robotrl_sim.cell import scene
from robotrl_sim.cell.env import CellEnv
from robotrl_sim.cell.task_math import array_namespace, norm

OPEN, CLOSE = -1.0, 1.0
HOVER_HEIGHT = 0.08  # m above the cube centre before descending
LIFT_TO = 0.15  # m, TCP height to carry the cube to
XY_TOLERANCE = 0.008  # m, how well the TCP must sit over the cube before descending
GRASP_DEPTH = 0.0  # m, TCP height relative to the cube centre when closing


@dataclass(frozen=True)
class ExpertView:
    """The privileged state the experts read, as ``[N, ...]`` float arrays (numpy or torch)."""

    tcp: Any  # [N, 3] measured TCP position
    tcp_target: Any  # [N, 3] commanded TCP position
    cube: Any  # [N, 3] cube centre
    target: Any  # [N, 3] reach target
    gripper_width: Any  # [N] measured finger opening
    gripper_target: Any  # [N] commanded finger opening


def _move(view: ExpertView, goal: Any, gripper: Any, max_step: float) -> Any:
    """``[N, 4]`` unit actions steering the TCP target towards ``goal`` with ``gripper``."""
    xp = array_namespace(goal)
    delta = ((goal - view.tcp_target) / max_step).clip(-1.0, 1.0)
    return xp.concatenate([delta, gripper[:, None]], -1)


def _with_xyz(xp: Any, x: Any, y: Any, z: Any) -> Any:
    return xp.stack([x, y, z], -1)


def reach_actions(view: ExpertView, max_step: float) -> Any:
    """Straight at the target, gripper open."""
    open_ = view.gripper_width * 0.0 + OPEN
    return _move(view, view.target, open_, max_step)


def pick_actions(view: ExpertView, max_step: float) -> Any:
    """Hover over the cube, descend, close, lift; re-plans from the state at every step.

    The phases, first match wins: holding the cube → lift; closed on nothing → open, rising;
    not over the cube → hover over it (rising first when low, never sweeping through it);
    above the grasp height → descend open; else close.
    """
    xp = array_namespace(view.tcp)
    tcp, target, cube, width = view.tcp, view.tcp_target, view.cube, view.gripper_width
    size = 2 * scene.CUBE_HALF_SIZE
    xy_error = norm(tcp[:, :2] - cube[:, :2])
    holding = (
        (size - 0.01 < width)
        & (width < size + 0.003)
        & (xy_error < 0.02)
        & (abs(tcp[:, 2] - cube[:, 2]) < 0.02)
    )
    closed_on_nothing = (width < size - 0.01) & (view.gripper_target < size)
    off_centre = (xy_error > XY_TOLERANCE) | (norm(target[:, :2] - cube[:, :2]) > XY_TOLERANCE)
    above_grasp = (tcp[:, 2] > cube[:, 2] + GRASP_DEPTH + 0.005) & (width > size + 0.01)

    open_ = width * 0.0 + OPEN
    close = width * 0.0 + CLOSE
    grasp_point = _with_xyz(xp, cube[:, 0], cube[:, 1], cube[:, 2] + GRASP_DEPTH)
    rise_first = (tcp[:, 2] < cube[:, 2] + 0.5 * HOVER_HEIGHT) & (xy_error > 0.02)
    hover = _with_xyz(
        xp,
        xp.where(rise_first, target[:, 0], cube[:, 0]),
        xp.where(rise_first, target[:, 1], cube[:, 1]),
        cube[:, 2] + HOVER_HEIGHT,
    )
    back_up = _with_xyz(xp, target[:, 0], target[:, 1], cube[:, 2] + HOVER_HEIGHT)
    lift = _with_xyz(xp, target[:, 0], target[:, 1], target[:, 2] * 0.0 + LIFT_TO)

    # From the last phase to the first, so that earlier phases override later ones.
    goal, gripper = grasp_point, xp.where(above_grasp, open_, close)
    for phase, phase_goal, phase_gripper in (
        (off_centre, hover, open_),
        (closed_on_nothing, back_up, open_),
        (holding, lift, close),
    ):
        goal = xp.where(phase[:, None], phase_goal, goal)
        gripper = xp.where(phase, phase_gripper, gripper)
    return _move(view, goal, gripper, max_step)


def expert_view(env: CellEnv) -> ExpertView:
    """A one-world view of ``env``'s state."""
    sim = env.sim
    tcp, _ = sim.tcp_pose()
    target, _ = sim.tcp_target
    return ExpertView(
        tcp=tcp[None],
        tcp_target=target[None],
        cube=sim.cube_pose()[0][None],
        target=sim.target_position()[None],
        gripper_width=np.array([sim.gripper_width()]),
        gripper_target=np.array([sim.gripper_target]),
    )


def reach_action(env: CellEnv) -> np.ndarray:
    """Straight at the target, gripper open."""
    return _env_action(env, reach_actions(expert_view(env), env._options.max_step)[0])


def pick_action(env: CellEnv) -> np.ndarray:
    """Hover over the cube, descend, close, lift (see ``pick_actions``)."""
    return _env_action(env, pick_actions(expert_view(env), env._options.max_step)[0])


def _env_action(env: CellEnv, action: np.ndarray) -> np.ndarray:
    """A 4-D expert action in ``env``'s action layout (7-D: no rotation)."""
    out = np.zeros(env.action_size, dtype=np.float32)
    out[:3] = action[:3]
    out[-1] = action[3]
    return out


def scripted_action(env: CellEnv) -> np.ndarray:
    """The expert's next unit action for ``env``'s task."""
    if env.task == "reach":
        return reach_action(env)
    return pick_action(env)
