"""The robot cell as Gymnasium pixel tasks: ``cell/reach`` and ``cell/pick_cube``.

**Actions.** End-effector deltas in [-1, 1], as the real cell's servo commands. The default 4-D
action is ``[dx, dy, dz, gripper]``: the TCP target moves by ``max_step`` (2 cm) times the first
three numbers per control step, with the gripper held top-down; ``gripper`` is an absolute
opening command, -1 fully open (8 cm) to +1 closed, as robosuite's. ``rotation=True`` gives 7-D
actions ``[dx, dy, dz, rx, ry, rz, gripper]`` whose ``r`` part turns the TCP target by up to
``max_rotation`` rad (a world-frame rotation vector) per control step. The delta is added to the
previous TCP *target* (as MoveIt Servo integrates twists), kept within ``MAX_LEAD`` of the
measured TCP so that a blocked arm does not wind up, and clipped to the workspace box
(``WorkspaceBox``: x 0.3-0.75, y ±0.3, z 0.02-0.45 m), which the real driver enforces too.
Control runs at 10 Hz; each agent action is applied for ``action_repeat`` control steps.

**Observations.** ``pixels``: the cameras in ``cameras`` (default ``front`` and ``wrist``), upright,
``[V, 3, H, W]`` uint8, or ``[3, H, W]`` for one camera. ``proprio`` (on by default, float32):
TCP position (3, m, world = robot base frame), TCP linear velocity (3, m/s) and gripper opening
(1, m); with ``rotation=True`` also the first two columns of the TCP's rotation matrix (6), a
continuous orientation code (a quaternion would flip sign around the top-down pose). Values are
clipped into finite bounds (``PROPRIO_BOUNDS``) so the space is a bounded box. ``state``
(off by default) adds privileged information for asymmetric critics: cube position and
quaternion (7) and target position (3).

**Tasks and rewards.** ``reach``: move the TCP onto a green target sphere drawn in a box above the
table; the reward per control step is ``1 - tanh(10 d)`` for the TCP-target distance ``d`` (the
reaching term of robosuite's Lift), success when ``d <= SUCCESS_DISTANCE`` (2.5 cm). 50 agent
steps. ``pick_cube``: lift the 5 cm red cube; staged dense reward per control step
``reach + grasp + lift`` with ``reach = 1 - tanh(10 |tcp - cube|)``, ``grasp = 0.5`` while both
finger pads touch the cube and ``lift = min(height / 5 cm, 1)`` while grasped (height of the cube
above its resting height); at most 2.5. Success when the cube is 5 cm (``LIFT_HEIGHT``) or more
above the table. 100 agent steps. ``info["success"]`` is "success so far" (as the robosuite and
MetaWorld adapters report it): True from the first control step that succeeded. Episodes are
truncated, never terminated.

**Randomisation.** Each reset adds uniform noise of ±``joint_noise`` rad (0.02) to the home joint
angles and, with ``randomize=True``, draws the target (reach) or the cube's place (pick_cube) from
``robotrl_sim.cell.arm``'s regions; everything is drawn from the env's seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from robotrl_sim._common import (
    Obs,
    UnknownTaskError,
    action_space,
    check_action,
    check_render_mode,
    reset_seed,
)
from robotrl_sim.cell import scene, task_math
from robotrl_sim.cell.arm import CellSim, rotate_quat
from robotrl_sim.cell.task_math import (
    GRASP_BONUS,
    LIFT_HEIGHT,
    MAX_LEAD,
    SUCCESS_DISTANCE,
)

__all__ = [
    "GRASP_BONUS",
    "LIFT_HEIGHT",
    "MAX_LEAD",
    "SUCCESS_DISTANCE",
    "TASKS",
    "CellEnv",
    "CellOptions",
    "pick_reward",
    "reach_reward",
]

TASKS = ("reach", "pick_cube")
DEFAULT_EPISODE_STEPS = {"reach": 50, "pick_cube": 100}
# In reach, the cube waits off to the side, outside the target region.
REACH_CUBE_XY = (0.72, 0.26)


# Bounds of the vector observations (values are clipped into them): positions within 3 m of the
# base, TCP speed up to 5 m/s, the gripper opening, rotation-matrix entries and quaternions.
# (name, size, low, high); the last entry of PROPRIO_BOUNDS is used with rotation=True only.
_Bounds = tuple[tuple[str, int, float, float], ...]
PROPRIO_BOUNDS: _Bounds = (
    ("tcp_position", 3, -3.0, 3.0),
    ("tcp_velocity", 3, -5.0, 5.0),
    ("gripper_width", 1, 0.0, scene.GRIPPER_MAX_WIDTH + 0.01),
    ("tcp_rotation_columns", 6, -1.0, 1.0),
)
STATE_BOUNDS: _Bounds = (
    ("cube_position", 3, -3.0, 3.0),
    ("cube_quaternion", 4, -1.0, 1.0),
    ("target_position", 3, -3.0, 3.0),
)


def _bounded_box(bounds: _Bounds, with_last: bool) -> spaces.Box:
    used = bounds if with_last else bounds[:-1]
    low = np.concatenate([np.full(size, lo) for _, size, lo, _ in used]).astype(np.float32)
    high = np.concatenate([np.full(size, hi) for _, size, _, hi in used]).astype(np.float32)
    return spaces.Box(low, high, dtype=np.float32)


def reach_reward(distance: float) -> float:
    """``task_math.reach_reward`` of one distance, as a Python float."""
    return float(task_math.reach_reward(distance))


def pick_reward(tcp_to_cube: float, grasped: bool, height: float) -> float:
    """``task_math.pick_reward`` of one state, as a Python float."""
    return float(task_math.pick_reward(tcp_to_cube, grasped, height))


@dataclass(frozen=True)
class CellOptions:
    """Options of the ``cell`` suite, passed to ``make_env`` as keywords."""

    episode_steps: int | None = None  # agent steps until truncation; None: 50 reach, 100 pick_cube
    # A camera name or a list of them ("front", "wrist"); several give pixels [V, 3, H, W].
    cameras: str | Sequence[str] = scene.CAMERAS
    rotation: bool = False  # 7-D actions with rotation deltas; False: 4-D, gripper top-down
    max_step: float = 0.02  # m of TCP target motion per control step at action 1
    max_rotation: float = 0.1  # rad of TCP target rotation per control step at action 1
    joint_noise: float = 0.02  # rad, uniform noise on the home joint angles at reset
    randomize: bool = True  # random target (reach) / cube place (pick_cube) at each reset
    proprio: bool = True  # add "proprio" (see the module docs)
    state: bool = False  # add privileged "state": cube pose and target position
    render_size: int = 256  # side of each camera's view in render() (eval videos)
    render_mode: str | None = "rgb_array"

    def __post_init__(self) -> None:
        if self.episode_steps is not None and (
            isinstance(self.episode_steps, bool)
            or not isinstance(self.episode_steps, int)
            or self.episode_steps < 1
        ):
            raise ValueError(
                f"episode_steps must be a positive int or None, got {self.episode_steps!r}"
            )
        # Hydra hands lists over as ListConfig; keep a plain tuple so the options stay hashable.
        cameras = (self.cameras,) if isinstance(self.cameras, str) else tuple(self.cameras)
        if not cameras or len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must be one or more distinct names, got {cameras!r}")
        unknown = [camera for camera in cameras if camera not in scene.CAMERAS]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; the cell has {list(scene.CAMERAS)}")
        object.__setattr__(self, "cameras", cameras)
        for name in ("max_step", "max_rotation"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not np.isfinite(self.joint_noise) or self.joint_noise < 0:
            raise ValueError(f"joint_noise must be >= 0, got {self.joint_noise}")
        check_render_mode(self.render_mode)


class CellEnv(gym.Env[Obs, np.ndarray]):
    """A cell task as a Gymnasium pixel env; build it with ``make_env("reach" | "pick_cube")``.

    ``sim`` is the underlying :class:`CellSim` (privileged state for tests and scripted experts).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012 (gym's API)

    def __init__(
        self, task: str, *, seed: int, image_size: int, action_repeat: int, options: CellOptions
    ) -> None:
        if task not in TASKS:
            raise UnknownTaskError(f"unknown cell task {task!r}; valid tasks: {', '.join(TASKS)}")
        self.task = task
        self._seed = seed
        self._image_size = image_size
        self._action_repeat = action_repeat
        self._options = options
        self.render_mode = options.render_mode
        self.cameras: tuple[str, ...] = tuple(options.cameras)
        self.episode_steps = options.episode_steps or DEFAULT_EPISODE_STEPS[task]
        self.sim = CellSim(show_target=task == "reach")

        self.action_size = 7 if options.rotation else 4
        self.action_space = action_space(self.action_size, seed)
        views = len(self.cameras)
        pixels_shape: tuple[int, ...] = (3, image_size, image_size)
        if views > 1:
            pixels_shape = (views, *pixels_shape)
        entries: dict[str, spaces.Space[Any]] = {
            "pixels": spaces.Box(0, 255, pixels_shape, np.uint8)
        }
        self._proprio_box = _bounded_box(PROPRIO_BOUNDS, options.rotation)
        self._state_box = _bounded_box(STATE_BOUNDS, True)
        if options.proprio:
            entries["proprio"] = self._proprio_box
        if options.state:
            entries["state"] = self._state_box
        self.observation_space = spaces.Dict(entries)
        agent_step_seconds = self.sim.control_dt * action_repeat
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / agent_step_seconds))}
        self._steps_taken: int | None = None  # None until reset, and again after truncation
        self._success = False

    # ----------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        seed = reset_seed(seed, self._seed, seeded=self._np_random is not None)
        super().reset(seed=seed)
        randomize = self._options.randomize
        if self.task == "reach":
            cube_xy: Any = REACH_CUBE_XY
            target: Any = "random" if randomize else None
        else:
            cube_xy = "random" if randomize else None
            target = None
        self.sim.reset(
            self.np_random,
            joint_noise=self._options.joint_noise,
            cube_xy=cube_xy,
            target_pos=target,
        )
        self._steps_taken = 0
        self._success = self._succeeded()
        return self._observation(), {"success": self._success}

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._steps_taken is None:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        unit_action = check_action(action, self.action_size)
        reward = 0.0
        for _ in range(self._action_repeat):
            self._apply(unit_action)
            self.sim.step()
            reward += self._reward()
            self._success = self._success or self._succeeded()
        self._steps_taken += 1
        truncated = self._steps_taken >= self.episode_steps
        if truncated:
            self._steps_taken = None
        return self._observation(), reward, False, truncated, {"success": self._success}

    def render(self) -> np.ndarray | None:
        """Every pixel camera's view at ``render_size``, side by side, as ``[H, V*H, 3]`` uint8."""
        if self.render_mode is None:
            return None
        size = self._options.render_size
        return np.concatenate([self.sim.render(camera, size, size) for camera in self.cameras], 1)

    def close(self) -> None:
        self.sim.close()

    # ----------------------------------------------------------------------------- internals
    def _apply(self, unit_action: np.ndarray) -> None:
        """Turns a unit action into a TCP target and gripper command for the sim."""
        sim, options = self.sim, self._options
        target_pos, target_quat = sim.tcp_target
        measured, _ = sim.tcp_pose()
        target_pos = task_math.next_tcp_target(
            target_pos, measured, unit_action[:3].astype(np.float64), options.max_step
        )
        if options.rotation:
            target_quat = rotate_quat(target_quat, options.max_rotation * unit_action[3:6])
        else:
            target_quat = sim.home_tcp_quat
        width = task_math.gripper_width_command(float(unit_action[-1]), scene.GRIPPER_MAX_WIDTH)
        sim.command_tcp(target_pos, target_quat, width)

    def _cube_height(self) -> float:
        return float(self.sim.cube_pose()[0][2] - self.sim.cube_rest_height)

    def _reward(self) -> float:
        tcp, _ = self.sim.tcp_pose()
        if self.task == "reach":
            return reach_reward(float(np.linalg.norm(tcp - self.sim.target_position())))
        cube, _ = self.sim.cube_pose()
        return pick_reward(
            float(np.linalg.norm(tcp - cube)), self.sim.cube_grasped(), self._cube_height()
        )

    def _succeeded(self) -> bool:
        if self.task == "reach":
            tcp, _ = self.sim.tcp_pose()
            distance = float(np.linalg.norm(tcp - self.sim.target_position()))
            return bool(task_math.reach_success(distance))
        return bool(task_math.pick_success(self._cube_height()))

    def _pixels(self) -> np.ndarray:
        size = self._image_size
        views = [self.sim.render(camera, size, size).transpose(2, 0, 1) for camera in self.cameras]
        return np.ascontiguousarray(views[0] if len(views) == 1 else np.stack(views))

    def _observation(self) -> Obs:
        obs = {"pixels": self._pixels()}
        sim = self.sim
        if self._options.proprio:
            position, quat = sim.tcp_pose()
            parts = [position, sim.tcp_velocity()[:3], [sim.gripper_width()]]
            if self._options.rotation:
                rotation = np.zeros(9)
                mujoco.mju_quat2Mat(rotation, quat)
                parts.append(rotation.reshape(3, 3)[:, :2].T.ravel())
            box = self._proprio_box
            obs["proprio"] = np.clip(np.concatenate(parts), box.low, box.high).astype(np.float32)
        if self._options.state:
            cube_pos, cube_quat = sim.cube_pose()
            state = np.concatenate([cube_pos, cube_quat, sim.target_position()])
            box = self._state_box
            obs["state"] = np.clip(state, box.low, box.high).astype(np.float32)
        return obs
