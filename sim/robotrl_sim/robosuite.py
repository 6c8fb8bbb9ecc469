"""robosuite 1.5 from pixels (suite ``robosuite``): a Panda arm under OSC pose control.

**Tasks.** ``lift``, ``door``, ``stack`` and ``pick_place_can`` (robosuite's ``Lift``, ``Door``,
``Stack``, ``PickPlaceCan``; those names are accepted too), each with robosuite's defaults for
objects, placement noise and rewards (``Door`` keeps its latch). The robot is a Panda with its
default gripper.

**Actions.** robosuite's ``BASIC`` composite controller for the Panda, whose arm part is
``OSC_POSE`` (``load_composite_controller_config(controller="BASIC", robot="Panda")``): 7 numbers
in [-1, 1], a Cartesian end-effector displacement (x, y, z up to 5 cm per control step, in the
robot base frame), a rotation (axis-angle, up to 0.5 rad) and the gripper (-1 open, +1 close).
robosuite runs at ``control_freq`` 20 Hz (25 physics steps of 2 ms); each agent action is repeated
``action_repeat`` times, summing robosuite's rewards.

**Rewards and episodes.** Dense (shaped) rewards by default, as in robosuite's benchmark;
``reward_shaping=False`` gives robosuite's sparse ones. Rewards keep robosuite's
``reward_scale=1``: at most 1 per robosuite step. An episode is ``episode_steps`` agent steps (250:
500 robosuite steps at action repeat 2, the horizon of robosuite's benchmark); it is truncated then
and never terminated, since robosuite tasks do not end on success, unless
``terminate_on_success=True`` asks for it.

**Success.** ``info["success"]`` is "success so far": True from the first robosuite step in which
the task's ``_check_success()`` held (inside an action repeat too) to the end of the episode, as in
``robotrl_sim.metaworld``. Its last value is the episode's success.

**Pixels.** ``cameras`` names one or more cameras of robosuite's scene (default: ``agentview`` and
the wrist camera ``robot0_eye_in_hand``). One camera gives ``pixels`` of shape ``[3, H, W]``,
several give ``[V, 3, H, W]`` (frame stacking then yields ``[V, 3*stack, H, W]``). Frames are
rendered by ``robotrl_sim``'s own renderer with robosuite's visibility (visual geoms only, not the
collision geoms of group 0) and are upright: robosuite's own camera observations follow OpenGL's
bottom-up rows (``macros.IMAGE_CONVENTION = "opengl"``) and are therefore upside down unless
flipped. ``proprio`` adds the end effector's position (3) and quaternion (4, xyzw) and the two
gripper finger positions (2), from robosuite's observations. ``state`` adds privileged information
(robosuite's ``robot0_proprio-state`` followed by its ``object-state``) for scripted experts and
asymmetric critics, not for pixel policies.

**Fast rendering.** ``fast_render=True`` turns shadows, reflections and the skybox off. The images
then differ from robosuite's, so use it for smoke tests and CPU development, not for benchmark
numbers.

**Differences from robosuite's published setups.** Envs are built once and reset softly by
default (``hard_reset=False``), where robosuite's default rebuilds the MuJoCo model at every
reset. In these four tasks that only matters for Lift, whose cube size (half-side 2.0 to 2.2 cm)
is drawn when the model is built: here once per env, from its seed, instead of once per episode.
``hard_reset=True`` restores robosuite's behaviour (and rebuilds the renderer with the model) at
the cost of slower resets. robosuite's ``lite_physics`` default (True in 1.5) is kept. Our frames
are upright where robosuite's raw camera observations are upside down. robosuite 1.5.2 needs
MuJoCo >= 3.3; it runs on the project's MuJoCo 3.17 through the shim in
``robotrl_sim._robosuite_compat`` (joint address lookup, mass-matrix API), applied when this
adapter first imports robosuite and proved by ``tests/sim/test_robosuite.py`` (a scripted expert
lifts the cube with OSC; the mass matrix matches MuJoCo's).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from robotrl_sim import _robosuite_compat
from robotrl_sim._common import (
    Obs,
    UnknownTaskError,
    action_space,
    check_action,
    check_common_arguments,
    check_render_mode,
    parse_options,
    reset_seed,
)
from robotrl_sim._mujoco import FixedCameraRenderer

ROBOSUITE_VERSION = "1.5.2"
INSTALL_HINT = (
    f"pip install robosuite=={ROBOSUITE_VERSION} (robotrl's lock file pins it and its "
    "dependencies; robotrl_sim runs it on the project's MuJoCo through a shim)"
)
# Our task names → robosuite's environment names.
TASKS = {"lift": "Lift", "door": "Door", "stack": "Stack", "pick_place_can": "PickPlaceCan"}
ROBOT = "Panda"
CONTROLLER = "BASIC"  # robosuite 1.5's composite controller; for a single arm, OSC_POSE + gripper
ARM = "right"  # robosuite's name for a single-arm robot's arm
ACTION_SIZE = 7  # OSC pose delta (6) + gripper (1)
CONTROL_FREQ = 20  # Hz, robosuite's default and its benchmark's
DEFAULT_EPISODE_STEPS = 250  # agent steps: robosuite's 500-step benchmark horizon at repeat 2
DEFAULT_CAMERAS = ("agentview", "robot0_eye_in_hand")
PROPRIO_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
PROPRIO_SIZE = 9
STATE_KEYS = ("robot0_proprio-state", "object-state")
COLLISION_GEOM_GROUP = 0  # robosuite's collision geoms; its renderers hide this group


def load_robosuite() -> ModuleType:
    """Imports robosuite with the MuJoCo compatibility shim applied; says how to install it."""
    _robosuite_compat.quiet_import_notices()
    try:
        module = importlib.import_module("robosuite")
    except ImportError as error:
        raise ImportError(
            f"The robosuite suite needs robosuite {ROBOSUITE_VERSION}, which is not installed. "
            f"Install it with: {INSTALL_HINT}"
        ) from error
    _robosuite_compat.apply()
    return module


def robosuite_env_name(task: str) -> str:
    """``"pick_place_can"`` (or robosuite's ``"PickPlaceCan"``) → ``"PickPlaceCan"``."""
    if task in TASKS:
        return TASKS[task]
    if task in TASKS.values():
        return task
    valid = sorted(TASKS)
    close = difflib.get_close_matches(task.lower(), valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownTaskError(
        f"unknown robosuite task {task!r}.{hint} Valid tasks: {', '.join(valid)} "
        f"(or robosuite's names: {', '.join(TASKS.values())})"
    )


@dataclass(frozen=True)
class RobosuiteOptions:
    """Options of the ``robosuite`` suite, passed to ``make_env`` as keywords."""

    episode_steps: int = DEFAULT_EPISODE_STEPS  # agent steps until the episode is truncated
    # A camera name or a list of them; several give pixels of shape [V, 3, H, W].
    cameras: str | Sequence[str] = DEFAULT_CAMERAS
    reward_shaping: bool = True  # robosuite's dense rewards; False: its sparse ones
    terminate_on_success: bool = False  # end the episode (terminated) at the first success
    # Rebuild robosuite's model at every reset, as robosuite's own default does: Lift then draws
    # its cube's size anew each episode instead of once per env. Slower resets.
    hard_reset: bool = False
    # Shadows, reflections and skybox off: faster on CPU, but the images differ from robosuite's,
    # so results are not comparable with published curves.
    fast_render: bool = False
    render_size: int = 256  # side of each camera's view in render() (eval videos)
    render_mode: str | None = "rgb_array"
    proprio: bool = False  # add "proprio": eef position and quaternion, gripper finger positions
    # Add "state": robosuite's robot proprio-state and object-state. Privileged information, for
    # scripted experts and asymmetric critics, not pixel policies.
    state: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.episode_steps, bool) or not isinstance(self.episode_steps, int):
            raise ValueError(f"episode_steps must be an int, got {self.episode_steps!r}")
        if self.episode_steps < 1:
            raise ValueError(f"episode_steps must be >= 1, got {self.episode_steps}")
        # Hydra hands lists over as ListConfig; keep a plain tuple so the options stay hashable.
        cameras = (self.cameras,) if isinstance(self.cameras, str) else tuple(self.cameras)
        if not cameras or not all(isinstance(camera, str) for camera in cameras):
            raise ValueError(f"cameras must be a camera name or a list of them, got {cameras!r}")
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must not repeat, got {cameras!r}")
        object.__setattr__(self, "cameras", cameras)
        check_render_mode(self.render_mode)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self.cameras)


def camera_ids(model: mujoco.MjModel, cameras: Sequence[str]) -> list[int]:
    """The ids of ``cameras`` in ``model``; an unknown name lists the scene's cameras."""
    names = [model.camera(index).name for index in range(model.ncam)]
    unknown = [camera for camera in cameras if camera not in names]
    if unknown:
        raise ValueError(
            f"robosuite's scene has no camera {', '.join(map(repr, unknown))}; "
            f"cameras: {', '.join(names)}"
        )
    return [names.index(camera) for camera in cameras]


class RobosuiteRenderer(FixedCameraRenderer):
    """Several cameras of a robosuite scene through one GL context, visual geoms only."""

    def __init__(
        self, model: mujoco.MjModel, cameras: Sequence[str], max_size: int, *, fast_visuals: bool
    ) -> None:
        super().__init__(model, cameras[0], max_size, fast_visuals=fast_visuals)
        self.camera_ids = camera_ids(model, cameras)
        # robosuite draws each body twice: coarse collision geoms (group 0) and meshes (group 1).
        self._option.geomgroup[COLLISION_GEOM_GROUP] = 0

    def render_camera(self, data: mujoco.MjData, camera_index: int, size: int) -> np.ndarray:
        """The ``camera_index``-th camera's upright ``[size, size, 3]`` uint8 frame."""
        self._camera.fixedcamid = self.camera_ids[camera_index]
        return self.render(data, size)


class RobosuiteEnv(gym.Env[Obs, np.ndarray]):
    """A robosuite task as a Gymnasium pixel env; build it with ``make_env``.

    ``robosuite_env`` is the underlying robosuite env and ``robosuite_obs`` its latest observation
    dict (privileged state, for tests and scripted experts).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012 (gym's API)

    def __init__(
        self,
        task: str,
        *,
        seed: int,
        image_size: int,
        action_repeat: int,
        options: RobosuiteOptions,
    ) -> None:
        robosuite = load_robosuite()
        env_name = robosuite_env_name(task)
        self._seed = seed
        self._image_size = image_size
        self._action_repeat = action_repeat
        self._options = options
        self.render_mode = options.render_mode
        self.cameras = options.camera_names

        controller = robosuite.load_composite_controller_config(controller=CONTROLLER, robot=ROBOT)
        # BASIC also configures parts a Panda lacks (second arm, torso, base...), and robosuite
        # warns about each one at every build: keep the arm's.
        controller["body_parts"] = {ARM: controller["body_parts"][ARM]}
        self.robosuite_env = robosuite.make(
            env_name,
            robots=ROBOT,
            controller_configs=controller,
            reward_shaping=options.reward_shaping,
            control_freq=CONTROL_FREQ,
            horizon=options.episode_steps * action_repeat,
            ignore_done=True,  # we truncate; robosuite would refuse to step past its horizon
            hard_reset=options.hard_reset,
            has_renderer=False,
            has_offscreen_renderer=False,  # we render ourselves, upright and at our sizes
            use_camera_obs=False,
            use_object_obs=True,
            seed=seed,
        )
        self.robosuite_obs: dict[str, np.ndarray] = self.robosuite_env.reset()
        self._renderer = self._make_renderer()

        self.action_space = action_space(ACTION_SIZE, seed)
        views = len(self.cameras)
        pixels_shape = (
            (3, image_size, image_size) if views == 1 else (views, 3, image_size, image_size)
        )
        entries: dict[str, spaces.Space[Any]] = {
            "pixels": spaces.Box(0, 255, pixels_shape, np.uint8)
        }
        if options.proprio:
            entries["proprio"] = spaces.Box(-np.inf, np.inf, (PROPRIO_SIZE,), np.float32)
        if options.state:
            state_size = self._state().size
            entries["state"] = spaces.Box(-np.inf, np.inf, (state_size,), np.float32)
        self.observation_space = spaces.Dict(entries)
        agent_step_seconds = action_repeat / CONTROL_FREQ
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / agent_step_seconds))}
        self._steps_taken: int | None = None  # None until reset, and again after the episode ends
        self._success = False
        self._closed = False

    def _make_renderer(self) -> RobosuiteRenderer:
        self._rendered_model = self.robosuite_env.sim.model._model
        camera_ids(self._rendered_model, self.cameras)  # name bad cameras before GL is set up
        return RobosuiteRenderer(
            self._rendered_model,
            self.cameras,
            max(self._image_size, self._options.render_size),
            fast_visuals=self._options.fast_render,
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        seed = reset_seed(seed, self._seed, seeded=self._np_random is not None)
        super().reset(seed=seed)
        if seed is not None:
            # robosuite draws object placements and joint noise from env.rng, which its placement
            # samplers hold a reference to: reseed that generator in place.
            rng = self.robosuite_env.rng
            rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self.robosuite_obs = self.robosuite_env.reset()
        if self.robosuite_env.sim.model._model is not self._rendered_model:  # a hard reset
            self._renderer.close()
            self._renderer = self._make_renderer()
        self._steps_taken = 0
        self._success = False
        return self._observation(), {"success": False}

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._steps_taken is None:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        unit_action = check_action(action, ACTION_SIZE)
        reward = 0.0
        for _ in range(self._action_repeat):
            self.robosuite_obs, step_reward, _, _ = self.robosuite_env.step(unit_action)
            reward += float(step_reward)
            self._success = self._success or bool(self.robosuite_env._check_success())
        self._steps_taken += 1
        terminated = self._options.terminate_on_success and self._success
        truncated = not terminated and self._steps_taken >= self._options.episode_steps
        if terminated or truncated:
            self._steps_taken = None
        info = {"success": self._success}
        return self._observation(), reward, terminated, truncated, info

    def _pixels(self) -> np.ndarray:
        """The policy's ``[3, H, W]`` frame, or ``[V, 3, H, W]`` for several cameras."""
        if self._closed:
            raise RuntimeError("the env is closed")
        data = self.robosuite_env.sim.data._data
        views = [
            self._renderer.render_camera(data, index, self._image_size).transpose(2, 0, 1)
            for index in range(len(self.cameras))
        ]
        return np.ascontiguousarray(views[0] if len(views) == 1 else np.stack(views))

    def _state(self) -> np.ndarray:
        return np.concatenate([self.robosuite_obs[key] for key in STATE_KEYS]).astype(np.float32)

    def _observation(self) -> Obs:
        obs = {"pixels": self._pixels()}
        if self._options.proprio:
            parts = [self.robosuite_obs[key] for key in PROPRIO_KEYS]
            obs["proprio"] = np.concatenate(parts).astype(np.float32)
        if self._options.state:
            obs["state"] = self._state()
        return obs

    def render(self) -> np.ndarray | None:
        """Every pixel camera's view at ``render_size``, side by side, as ``[H, V*H, 3]`` uint8."""
        if self.render_mode is None:
            return None
        if self._closed:
            raise RuntimeError("the env is closed")
        data = self.robosuite_env.sim.data._data
        size = self._options.render_size
        views = [self._renderer.render_camera(data, i, size) for i in range(len(self.cameras))]
        return np.concatenate(views, axis=1)

    def close(self) -> None:
        """Frees the renderer's GL context and robosuite's env; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._renderer.close()
        self.robosuite_env.close()


def make_env(
    task: str, *, seed: int, image_size: int, action_repeat: int, **options: Any
) -> gym.Env:
    """Builds ``robosuite/<task>``; ``options`` are :class:`RobosuiteOptions` fields.

    Options: ``episode_steps`` (250 agent steps), ``cameras`` (agentview and robot0_eye_in_hand),
    ``reward_shaping`` (True), ``terminate_on_success`` (False), ``hard_reset`` (False),
    ``fast_render`` (False; see the module docs), ``render_size`` (256), ``render_mode``
    ("rgb_array"), ``proprio`` (False) and ``state`` (False).
    """
    parsed = parse_options(RobosuiteOptions, options, where=f"robosuite/{task}")
    check_common_arguments(
        image_size=image_size, action_repeat=action_repeat, render_size=parsed.render_size
    )
    robosuite_env_name(task)  # an unknown task fails before robosuite is built
    return RobosuiteEnv(
        task, seed=seed, image_size=image_size, action_repeat=action_repeat, options=parsed
    )
