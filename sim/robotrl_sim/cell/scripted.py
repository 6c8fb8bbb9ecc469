"""Scripted experts for the cell tasks, from privileged state (for tests and demonstrations).

They act through the env's own action interface (unit TCP deltas and the gripper command), so a
solved episode shows that the delta control, the IK and the grasp physics work end to end.
Positions are compared with the commanded TCP target rather than the measured TCP: the env adds
deltas to the target, so steering the target avoids winding up against the servo lag.
"""

from __future__ import annotations

import numpy as np

from robotrl_sim.cell import scene
from robotrl_sim.cell.env import CellEnv

OPEN, CLOSE = -1.0, 1.0
HOVER_HEIGHT = 0.08  # m above the cube centre before descending
LIFT_TO = 0.15  # m, TCP height to carry the cube to
XY_TOLERANCE = 0.008  # m, how well the TCP must sit over the cube before descending
GRASP_DEPTH = 0.0  # m, TCP height relative to the cube centre when closing


def _move(env: CellEnv, goal: np.ndarray, gripper: float) -> np.ndarray:
    target, _ = env.sim.tcp_target
    max_step = env._options.max_step
    delta = np.clip((goal - target) / max_step, -1.0, 1.0)
    action = np.zeros(env.action_size, dtype=np.float32)
    action[:3] = delta
    action[-1] = gripper
    return action


def reach_action(env: CellEnv) -> np.ndarray:
    """Straight at the target, gripper open."""
    return _move(env, env.sim.target_position(), OPEN)


def pick_action(env: CellEnv) -> np.ndarray:
    """Hover over the cube, descend, close, lift; re-plans from the state at every step."""
    sim = env.sim
    cube, _ = sim.cube_pose()
    tcp, _ = sim.tcp_pose()
    target, _ = sim.tcp_target
    width = sim.gripper_width()
    size = 2 * scene.CUBE_HALF_SIZE
    xy_error = float(np.linalg.norm(tcp[:2] - cube[:2]))
    holding = (
        size - 0.01 < width < size + 0.003 and xy_error < 0.02 and abs(tcp[2] - cube[2]) < 0.02
    )
    if holding:
        return _move(env, np.array([target[0], target[1], LIFT_TO]), CLOSE)
    if width < size - 0.01 and sim.gripper_target < size:
        # Closed on nothing: open up, rising.
        return _move(env, np.array([target[0], target[1], cube[2] + HOVER_HEIGHT]), OPEN)
    if xy_error > XY_TOLERANCE or float(np.linalg.norm(target[:2] - cube[:2])) > XY_TOLERANCE:
        hover = np.array([cube[0], cube[1], cube[2] + HOVER_HEIGHT])
        if tcp[2] < cube[2] + 0.5 * HOVER_HEIGHT and xy_error > 0.02:
            hover[:2] = target[:2]  # rise first: never sweep the fingers through the cube
        return _move(env, hover, OPEN)
    if tcp[2] > cube[2] + GRASP_DEPTH + 0.005 and width > size + 0.01:
        return _move(env, np.array([cube[0], cube[1], cube[2] + GRASP_DEPTH]), OPEN)
    return _move(env, np.array([cube[0], cube[1], cube[2] + GRASP_DEPTH]), CLOSE)


def scripted_action(env: CellEnv) -> np.ndarray:
    """The expert's next unit action for ``env``'s task."""
    if env.task == "reach":
        return reach_action(env)
    return pick_action(env)
