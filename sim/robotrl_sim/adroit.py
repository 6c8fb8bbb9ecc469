"""Adroit dexterous-hand tasks from pixels (suite ``adroit``), set up as in DrM and MENTOR.

Tasks: ``door``, ``hammer``, ``pen``, ``relocate``: Gymnasium-Robotics' ``AdroitHand*-v1`` models
and physics (the DAPG/mj_envs ``-v0`` tasks ported to MuJoCo 3), with the task definition DrM and
MENTOR use (both take it from VRL3, which takes it from RRL's fork of mj_envs):

- **Pixels**: one RGB frame of ``image_size`` (84), frame stack 1 (``env.frame_stack``), action
  repeat 2. Cameras: ``top`` for door and hammer, ``vil_camera`` for pen (VRL3/DrM
  ``adroit.py``, ``default_env_to_cam_list``). ``top`` is not in Gymnasium-Robotics' models: it is
  RRL's camera (``DAPG_door_rd_obj.xml``: 1.5 m above the table; ``DAPG_hammer_rd_obj.xml``: 1.1 m)
  looking straight down, rebuilt by moving the model's ``fixed`` camera there.
- **Proprio**: ``proprio`` (float32, 24) is the hand's joint positions (wrist and fingers, WRJ1 …
  THJ0), without the arm's base joints or the objects: VRL3's ``rrl_multicam.get_obs`` sensor
  vector (``qpos[4:-2]`` door, ``qpos[2:-7]`` hammer, ``qpos[:-6]`` pen, ``qpos[6:-6]`` relocate).
- **Episode**: mj_envs' horizon in simulator steps (200; 100 for pen), i.e. 100 (pen: 50) agent
  steps at repeat 2; truncated then, never terminated (see ``pen_drop_terminates``).
- **Reward**: mj_envs ``-v0``'s dense reward with its bonuses, summed over the repeat and scaled
  by DrM's ``reward_rescale`` (door 1/20, hammer 1/100, pen 1/50, relocate 1/30). It is computed
  here from the simulator state, because Gymnasium-Robotics 1.4.2's dense door, hammer and
  relocate rewards reward the palm for moving *away* from the handle/object (fixed in its v2).
- **Success**: ``info["success"]`` is True once mj_envs' ``goal_achieved`` has held on more than
  25 simulator steps of the episode (more than 20 for pen), counting every step inside an action
  repeat: DrM's ``train_adroit.py`` eval rule (``n_goal_achieved_total > threshold``), which is
  mj_envs' ``evaluate_success``. It is "success so far", so its value on the last step is the
  episode's success. ``goal_achieved`` is RRL's mj_envs' (``rrl-dependencies`` in DrM's repo):
  door hinge > 1.4 rad; nail within 1 cm of its goal; pen orientation similarity > 0.95 (position
  not required, unlike Gymnasium-Robotics' pen); ball within 10 cm of the target.

**Departures.** Relocate: VRL3 renders three cameras (``cam1``-``cam3``) of its own mj_envs
fork whose poses are not published with DrM or VRL3, and DrM/MENTOR report no relocate results;
we use the one ``vil_camera`` (any camera of the model can be chosen with ``camera``). Frame
orientation: mujoco-py's ``sim.render`` (VRL3, DrM) returned OpenGL's bottom-up rows unflipped,
so their frames were upside down (``vil_camera``), or mirrored (``top``); ours are upright: the
top view is rolled so the hand enters from the bottom edge (image up = +y, away from the
forearm), which is DrM's frame mirrored left to right, and ``vil_camera`` is DrM's frame flipped
vertically. Pen: mj_envs ends the episode when the pen falls (z < 0.075, reward −5); Gymnasium-
Robotics does not, and neither do we by default: ``pen_drop_terminates=True`` restores it.

**Fast rendering.** ``fast_render=True`` turns shadows, reflections and the skybox off; the images
then differ from the published setups, so use it for tests and CPU development, not benchmarks.

**Installing.** ``pip install gymnasium-robotics==1.4.2`` (robotrl's ``sim`` lock file pins it).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from robotrl_sim._common import (
    Obs,
    UnknownTaskError,
    action_space,
    channels_first,
    check_action,
    check_common_arguments,
    check_render_mode,
    observation_space,
    parse_options,
    reset_seed,
)
from robotrl_sim._mujoco import FixedCameraRenderer

GYMNASIUM_ROBOTICS_VERSION = "1.4.2"
INSTALL_HINT = f"pip install gymnasium-robotics=={GYMNASIUM_ROBOTICS_VERSION}"
PROPRIO_SIZE = 24  # the Adroit hand's joints: wrist (2), four fingers (4, 4, 4, 5), thumb (5)
PROPRIO_MARGIN = 0.5  # radians past the joint limits that the proprio space still admits
HAND_JOINT_PREFIXES = ("WRJ", "FFJ", "MFJ", "RFJ", "LFJ", "THJ")
TOP_CAMERA = "top"


@dataclass(frozen=True)
class AdroitTask:
    """How DrM/VRL3 set up one Adroit task (sources in the module docstring)."""

    env_class: str  # in gymnasium_robotics.envs.adroit_hand
    camera: str
    horizon: int  # mj_envs' max_episode_steps, in simulator steps
    success_steps: int  # success: goal_achieved on more than this many simulator steps
    reward_scale: float  # DrM's reward_rescale_dict
    top_camera_height: float | None = None  # RRL's "top" camera for this task, metres


TASKS: dict[str, AdroitTask] = {
    "door": AdroitTask("AdroitHandDoorEnv", TOP_CAMERA, 200, 25, 1 / 20, top_camera_height=1.5),
    "hammer": AdroitTask(
        "AdroitHandHammerEnv", TOP_CAMERA, 200, 25, 1 / 100, top_camera_height=1.1
    ),
    "pen": AdroitTask("AdroitHandPenEnv", "vil_camera", 100, 20, 1 / 50),
    "relocate": AdroitTask("AdroitHandRelocateEnv", "vil_camera", 200, 25, 1 / 30),
}


def load_adroit() -> ModuleType:
    """Gymnasium-Robotics' Adroit module; says how to install it when it is missing."""
    try:
        return importlib.import_module("gymnasium_robotics.envs.adroit_hand")
    except ImportError as error:
        raise ImportError(
            "The adroit suite needs Gymnasium-Robotics, which is not installed. "
            f"Install it with: {INSTALL_HINT}"
        ) from error


def adroit_task(task: str) -> AdroitTask:
    try:
        return TASKS[task]
    except KeyError:
        raise UnknownTaskError(
            f"unknown adroit task {task!r}; valid tasks: {', '.join(sorted(TASKS))}"
        ) from None


@dataclass(frozen=True)
class AdroitOptions:
    """Options of the ``adroit`` suite, passed to ``make_env`` as keywords."""

    # Agent steps until truncation; None: mj_envs' horizon at this action repeat (100, pen 50).
    episode_steps: int | None = None
    camera: str | None = None  # None: DrM's ("top" door/hammer, "vil_camera" pen/relocate)
    # Shadows, reflections and skybox off: faster on CPU, but the images differ from published
    # setups, so results are not comparable with published curves.
    fast_render: bool = False
    render_size: int = 256  # side of the frames render() returns (eval videos)
    render_mode: str | None = "rgb_array"
    proprio: bool = True  # "proprio": the hand's 24 joint positions (DrM/VRL3's sensor input)
    reward_scale: float | None = None  # None: DrM's per-task factor; 1.0: mj_envs' raw reward
    pen_drop_terminates: bool = False  # mj_envs -v0's pen: terminate when the pen falls

    def __post_init__(self) -> None:
        if self.episode_steps is not None:
            if isinstance(self.episode_steps, bool) or not isinstance(self.episode_steps, int):
                raise ValueError(f"episode_steps must be an int, got {self.episode_steps!r}")
            if self.episode_steps < 1:
                raise ValueError(f"episode_steps must be >= 1, got {self.episode_steps}")
        if self.camera is not None and not isinstance(self.camera, str):
            raise ValueError(f"camera must be a camera name, got {self.camera!r}")
        if self.reward_scale is not None and not math.isfinite(self.reward_scale):
            raise ValueError(f"reward_scale must be finite, got {self.reward_scale!r}")
        check_render_mode(self.render_mode)


class GoalCounter:
    """DrM's success rule: True once ``goal_achieved`` held on more than ``threshold`` steps."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.count = 0

    def reset(self) -> None:
        self.count = 0

    def observe(self, goal_achieved: bool) -> bool:
        self.count += bool(goal_achieved)
        return self.success

    @property
    def success(self) -> bool:
        return self.count > self.threshold


def _ids(model: mujoco.MjModel, kind: mujoco.mjtObj, *names: str) -> list[int]:
    return [mujoco.mj_name2id(model, kind, name) for name in names]


def mj_envs_reward(task: str, model: mujoco.MjModel, data: mujoco.MjData) -> tuple[float, bool]:
    """mj_envs ``-v0``'s dense reward (with bonuses) and RRL's ``goal_achieved`` for ``data``."""
    site, body = mujoco.mjtObj.mjOBJ_SITE, mujoco.mjtObj.mjOBJ_BODY
    if task == "door":
        handle, grasp = _ids(model, site, "S_handle", "S_grasp")
        hinge = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "door_hinge")]
        door = float(data.qpos[hinge])
        reward = -0.1 * np.linalg.norm(data.site_xpos[grasp] - data.site_xpos[handle])
        reward += -0.1 * (door - 1.57) ** 2 - 1e-5 * np.sum(data.qvel**2)
        reward += 2 * (door > 0.2) + 8 * (door > 1.0) + 10 * (door > 1.35)
        return float(reward), door > 1.4
    if task == "hammer":
        (hammer,) = _ids(model, body, "Object")
        grasp, tool, nail, goal = _ids(model, site, "S_grasp", "tool", "S_target", "nail_goal")
        hammer_pos, tool_pos = data.xpos[hammer], data.site_xpos[tool]
        nail_to_goal = float(np.linalg.norm(data.site_xpos[nail] - data.site_xpos[goal]))
        reward = -0.1 * np.linalg.norm(data.site_xpos[grasp] - hammer_pos)
        reward -= np.linalg.norm(tool_pos - data.site_xpos[nail]) + 10 * nail_to_goal
        reward -= 1e-2 * np.linalg.norm(data.qvel)
        reward += 2 * (hammer_pos[2] > 0.04 and tool_pos[2] > 0.04)
        reward += 25 * (nail_to_goal < 0.02) + 75 * (nail_to_goal < 0.01)
        return float(reward), nail_to_goal < 0.01
    if task == "pen":
        (pen,) = _ids(model, body, "Object")
        ball, top, bottom, target_top, target_bottom = _ids(
            model, site, "eps_ball", "object_top", "object_bottom", "target_top", "target_bottom"
        )
        orientation = data.site_xpos[top] - data.site_xpos[bottom]
        desired = data.site_xpos[target_top] - data.site_xpos[target_bottom]
        similarity = float(
            np.dot(orientation, desired) / (np.linalg.norm(orientation) * np.linalg.norm(desired))
        )
        distance = float(np.linalg.norm(data.xpos[pen] - data.site_xpos[ball]))
        pen_reward = -distance + similarity
        pen_reward += 10 * (distance < 0.075 and similarity > 0.9)
        pen_reward += 50 * (distance < 0.075 and similarity > 0.95)
        pen_reward -= 5 * bool(data.xpos[pen][2] < 0.075)
        return pen_reward, similarity > 0.95
    if task == "relocate":
        (ball,) = _ids(model, body, "Object")
        grasp, target = _ids(model, site, "S_grasp", "target")
        ball_pos, palm, target_pos = data.xpos[ball], data.site_xpos[grasp], data.site_xpos[target]
        to_target = float(np.linalg.norm(ball_pos - target_pos))
        reward = -0.1 * np.linalg.norm(palm - ball_pos)
        if ball_pos[2] > 0.04:
            reward += 1.0 - 0.5 * np.linalg.norm(palm - target_pos) - 0.5 * to_target
        reward += 10 * (to_target < 0.1) + 20 * (to_target < 0.05)
        return float(reward), to_target < 0.1
    raise UnknownTaskError(f"unknown adroit task {task!r}")


def hand_joints(model: mujoco.MjModel) -> np.ndarray:
    """Ids of the hand's 24 joints (wrist and fingers, not the arm's base), in model order."""
    joints = [j for j in range(model.njnt) if model.joint(j).name.startswith(HAND_JOINT_PREFIXES)]
    if len(joints) != PROPRIO_SIZE:
        raise RuntimeError(f"expected {PROPRIO_SIZE} Adroit hand joints, found {len(joints)}")
    return np.asarray(joints)


def place_top_camera(model: mujoco.MjModel, data: mujoco.MjData, height: float) -> int:
    """Moves the model's ``fixed`` camera to RRL's ``top`` view; returns its id.

    RRL's camera sits ``height`` above the table centre looking straight down (``euler="0 0
    3.14"``). Its correct rendering has image up = world −y (the forearm at the top edge); the
    identity orientation used here is that view rolled half a turn, so the hand reaches in from
    the bottom edge and image right is +x.
    """
    camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "fixed")
    model.cam_pos[camera] = (0.0, 0.0, height)
    model.cam_quat[camera] = (1.0, 0.0, 0.0, 0.0)
    mujoco.mj_forward(model, data)
    return camera


class AdroitEnv(gym.Env[Obs, np.ndarray]):
    """An Adroit task as a Gymnasium pixel env; build it with ``make_env``.

    ``adroit_env`` is the underlying Gymnasium-Robotics env (for tests and inspection).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012 (gym's API)

    def __init__(
        self,
        task: str,
        *,
        seed: int,
        image_size: int,
        action_repeat: int,
        options: AdroitOptions,
    ) -> None:
        self.task = task
        self.spec_ = spec = adroit_task(task)
        adroit = load_adroit()
        self._seed = seed
        self._image_size = image_size
        self._action_repeat = action_repeat
        self._options = options
        self.render_mode = options.render_mode
        self.episode_steps = options.episode_steps or math.ceil(spec.horizon / action_repeat)
        self.reward_scale = (
            spec.reward_scale if options.reward_scale is None else options.reward_scale
        )

        self.adroit_env = getattr(adroit, spec.env_class)(reward_type="dense")
        model, data = self.adroit_env.model, self.adroit_env.data
        self.camera = options.camera or spec.camera
        if self.camera == TOP_CAMERA:
            if spec.top_camera_height is None:
                raise ValueError(
                    f"adroit/{task} has no 'top' camera (RRL defines it for door, hammer)"
                )
            camera_id = place_top_camera(model, data, spec.top_camera_height)
            camera_name = model.camera(camera_id).name
        else:
            if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera) < 0:
                cameras = ", ".join(
                    [TOP_CAMERA] * (spec.top_camera_height is not None)
                    + [model.camera(index).name for index in range(model.ncam)]
                )
                raise ValueError(f"adroit/{task} has no camera {self.camera!r}; cameras: {cameras}")
            camera_name = self.camera
        self._renderer = FixedCameraRenderer(
            model,
            camera_name,
            max(image_size, options.render_size),
            fast_visuals=options.fast_render,
        )
        joints = hand_joints(model)
        self._hand_qpos = model.jnt_qposadr[joints]
        self._goal = GoalCounter(spec.success_steps)

        self.action_space = action_space(model.nu, seed)
        self._action_size = int(model.nu)
        observations = observation_space(image_size, None)
        if options.proprio:
            # Joint limits bound the hand; MuJoCo's limits are soft, so allow a margin past them.
            ranges = model.jnt_range[joints]
            observations.spaces["proprio"] = spaces.Box(
                (ranges[:, 0] - PROPRIO_MARGIN).astype(np.float32),
                (ranges[:, 1] + PROPRIO_MARGIN).astype(np.float32),
                dtype=np.float32,
            )
        self.observation_space = observations
        agent_step_seconds = self.adroit_env.dt * action_repeat
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / agent_step_seconds))}
        self._steps_taken: int | None = None  # None until reset, and again after an episode ends
        self._closed = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        seed = reset_seed(seed, self._seed, seeded=self._np_random is not None)
        super().reset(seed=seed)
        # The task's random layout (door, nail board, pen goal, ball and target) comes from here.
        self.adroit_env.reset(seed=int(self.np_random.integers(2**31)))
        self._steps_taken = 0
        self._goal.reset()
        return self._observation(), self._info()

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._steps_taken is None:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        unit_action = check_action(action, self._action_size)
        model, data = self.adroit_env.model, self.adroit_env.data
        reward, terminated = 0.0, False
        for _ in range(self._action_repeat):
            self.adroit_env.step(unit_action)
            step_reward, goal_achieved = mj_envs_reward(self.task, model, data)
            reward += step_reward
            self._goal.observe(goal_achieved)
            if self._options.pen_drop_terminates and self.task == "pen":
                terminated = bool(data.xpos[model.body("Object").id][2] < 0.075)
                if terminated:
                    break
        self._steps_taken += 1
        truncated = not terminated and self._steps_taken >= self.episode_steps
        if terminated or truncated:
            self._steps_taken = None
        return self._observation(), reward * self.reward_scale, terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        return {"success": self._goal.success, "goal_achieved_steps": self._goal.count}

    def _pixels(self) -> np.ndarray:
        """The policy's ``[3, H, W]`` frame of the current state."""
        if self._closed:
            raise RuntimeError("the env is closed")
        return channels_first(self._renderer.render(self.adroit_env.data, self._image_size))

    def _observation(self) -> Obs:
        obs = {"pixels": self._pixels()}
        if self._options.proprio:
            obs["proprio"] = self.adroit_env.data.qpos[self._hand_qpos].astype(np.float32)
        return obs

    def render(self) -> np.ndarray | None:
        """The pixel camera's view at ``render_size`` as ``[H, W, 3]`` uint8."""
        if self.render_mode is None:
            return None
        if self._closed:
            raise RuntimeError("the env is closed")
        return self._renderer.render(self.adroit_env.data, self._options.render_size)

    def close(self) -> None:
        """Frees the renderer's GL context and the underlying env; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._renderer.close()
        self.adroit_env.close()


def make_env(
    task: str, *, seed: int, image_size: int, action_repeat: int, **options: Any
) -> gym.Env:
    """Builds ``adroit/<task>``; ``options`` are :class:`AdroitOptions` fields.

    Options: ``episode_steps`` (mj_envs' horizon), ``camera`` (DrM's), ``fast_render`` (False; see
    the module docs), ``render_size`` (256), ``render_mode`` ("rgb_array"), ``proprio`` (True),
    ``reward_scale`` (DrM's) and ``pen_drop_terminates`` (False).
    """
    adroit_task(task)
    parsed = parse_options(AdroitOptions, options, where=f"adroit/{task}")
    check_common_arguments(
        image_size=image_size, action_repeat=action_repeat, render_size=parsed.render_size
    )
    return AdroitEnv(
        task, seed=seed, image_size=image_size, action_repeat=action_repeat, options=parsed
    )
