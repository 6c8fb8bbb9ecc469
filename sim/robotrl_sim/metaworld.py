"""MetaWorld v3 from pixels (suite ``metaworld``), set up as in DrM and MENTOR.

Task names are MetaWorld's without the version: ``reach``, ``pick-place``, ``door-open``,
``stick-pull`` (``pick-place-v3`` is accepted too). Each task is MetaWorld's MT1 benchmark for it:
50 goal and object configurations drawn once from the env's seed, one of them picked at random at
every reset (MetaWorld's own ``Meta-World/MT1`` env does the same). The policy sees one RGB frame
of ``image_size`` (84 in DrM/MENTOR) from camera ``corner2`` moved to where DrM (after Masked World
Models) puts it, ``(0.75, 0.075, 0.7)``: MetaWorld 3.1 ships that view as ``corner4`` too.
Actions in [-1, 1] are MetaWorld's (hand displacement xyz, gripper effort); each is repeated
``action_repeat`` times, summing MetaWorld's (v2) rewards. An episode is 250 agent steps (500
MetaWorld steps at repeat 2, MetaWorld's ``max_path_length``); it is truncated then and never
terminated, because MetaWorld tasks do not end on success.

**Success.** ``info["success"]`` is "success so far": True from the first MetaWorld step in which
the task reported success (including steps inside an action repeat) to the end of the episode. Its
value on the last step is therefore DrM's and MENTOR's episode success (any success in the
episode), which is what ``robotrl.evaluation`` reads.

**Pixels.** MetaWorld's corner cameras are defined upside down: they were made for mujoco-py,
whose ``sim.render`` returned OpenGL's bottom-up rows, so the published frames looked upright.
Rendered correctly (our ``FixedCameraRenderer``, or gymnasium's renderer in MetaWorld 3) they show
the floor at the top. Any camera whose "up" axis points below the horizon is therefore rolled 180°
about its optical axis: the frames are upright and not mirrored. (mujoco-py's frames, and so DrM's,
were upright but mirrored left to right.)

**Fast rendering.** ``fast_render=True`` turns shadows, reflections and the skybox off. The images
then differ from the published setups (mujoco-py rendered the model's own visuals), so use it for
smoke tests and CPU development, not for benchmark numbers. MetaWorld's detailed meshes make CPU
rendering (Mesa llvmpipe) slow either way: tens of ms per 84×84 frame with fast visuals, several
times that with the default ones, whose shadow pass redraws every mesh.

**Installing.** MetaWorld 3.1.1 pins ``mujoco==3.3.0``, so it is installed without its
dependencies (``pip install --no-deps metaworld==3.1.1``; ``scripts/setup_venv.sh`` does it) and
runs on the project's MuJoCo through the shim in ``robotrl_sim._metaworld_compat``, applied when
this adapter first imports MetaWorld.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from robotrl_sim import _metaworld_compat
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

METAWORLD_VERSION = "3.1.1"
INSTALL_HINT = (
    f"pip install --no-deps metaworld=={METAWORLD_VERSION} "
    "(it pins mujoco==3.3.0; robotrl_sim runs it on the project's MuJoCo through a shim, and its "
    "other dependencies, scipy and imageio, come with robotrl's lock file). From a checkout, "
    "scripts/setup_venv.sh installs it."
)
# Where DrM's MetaWorld wrapper (after Masked World Models) moves camera corner2.
DRM_CORNER2_POSITION = (0.75, 0.075, 0.7)
DEFAULT_EPISODE_STEPS = 250  # agent steps: 500 MetaWorld steps at action repeat 2
PROPRIO_SIZE = 8  # hand xyz and gripper opening, now and one MetaWorld step earlier
STATE_SIZE = 39  # MetaWorld's own observation with the goal visible (MT1)
_VERSION_SUFFIX = "-v3"


def load_metaworld() -> ModuleType:
    """Imports MetaWorld with the MuJoCo compatibility shim applied; says how to install it."""
    try:
        module = importlib.import_module("metaworld")
    except ImportError as error:
        raise ImportError(
            f"The metaworld suite needs MetaWorld {METAWORLD_VERSION}, which is not installed. "
            f"Install it with: {INSTALL_HINT}"
        ) from error
    _metaworld_compat.apply()
    return module


def task_names(metaworld: ModuleType) -> list[str]:
    """Every MetaWorld v3 task, named without the version suffix."""
    return sorted(name.removesuffix(_VERSION_SUFFIX) for name in metaworld.ALL_V3_ENVIRONMENTS)


def metaworld_env_name(task: str, metaworld: ModuleType) -> str:
    """``"pick-place"`` (or ``"pick-place-v3"``) → ``"pick-place-v3"``; lists close names."""
    name = task.removesuffix(_VERSION_SUFFIX)
    valid = task_names(metaworld)
    if name in valid:
        return name + _VERSION_SUFFIX
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownTaskError(
        f"unknown metaworld task {task!r}.{hint} Valid tasks: {', '.join(valid)}"
    )


@dataclass(frozen=True)
class MetaWorldOptions:
    """Options of the ``metaworld`` suite, passed to ``make_env`` as keywords."""

    episode_steps: int = DEFAULT_EPISODE_STEPS  # agent steps until the episode is truncated
    camera: str = "corner2"  # a camera of MetaWorld's scene; corner2 is moved as in DrM
    # Shadows, reflections and skybox off: faster on CPU, but the images differ from published
    # setups, so results are not comparable with published curves.
    fast_render: bool = False
    render_size: int = 256  # side of the frames render() returns (eval videos)
    render_mode: str | None = "rgb_array"
    proprio: bool = False  # add "proprio": hand xyz + gripper opening, now and one step earlier
    # Add "state": MetaWorld's 39-number observation (hand, objects, previous frame, goal).
    # Privileged information, for scripted experts and asymmetric critics, not pixel policies.
    state: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.episode_steps, bool) or not isinstance(self.episode_steps, int):
            raise ValueError(f"episode_steps must be an int, got {self.episode_steps!r}")
        if self.episode_steps < 1:
            raise ValueError(f"episode_steps must be >= 1, got {self.episode_steps}")
        if not isinstance(self.camera, str):
            raise ValueError(f"camera must be a camera name, got {self.camera!r}")
        check_render_mode(self.render_mode)


def roll_upright(model: mujoco.MjModel, data: mujoco.MjData, camera_id: int) -> bool:
    """Rolls the camera 180° about its optical axis if its image "up" points below the horizon.

    Returns whether it rolled. ``data`` must hold the camera pose (after ``mj_forward``).
    """
    up_axis = data.cam_xmat[camera_id].reshape(3, 3)[:, 1]
    if up_axis[2] >= 0.0:
        return False
    # A half turn about the camera's own z (optical) axis negates its x (right) and y (up) axes.
    half_turn = np.array([0.0, 0.0, 0.0, 1.0])
    rolled = np.empty(4)
    mujoco.mju_mulQuat(rolled, model.cam_quat[camera_id], half_turn)
    model.cam_quat[camera_id] = rolled
    mujoco.mj_forward(model, data)
    return True


class MetaWorldEnv(gym.Env[Obs, np.ndarray]):
    """A MetaWorld v3 MT1 task as a Gymnasium pixel env; build it with ``make_env``.

    ``metaworld_env`` is the underlying MetaWorld env (for tests and scripted inspection).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012 (gym's API)

    def __init__(
        self,
        task: str,
        *,
        seed: int,
        image_size: int,
        action_repeat: int,
        options: MetaWorldOptions,
    ) -> None:
        metaworld = load_metaworld()
        env_name = metaworld_env_name(task, metaworld)
        self._seed = seed
        self._image_size = image_size
        self._action_repeat = action_repeat
        self._options = options
        self.render_mode = options.render_mode

        benchmark = metaworld.MT1(env_name, seed=seed)
        self._tasks = list(benchmark.train_tasks)
        self.metaworld_env = benchmark.train_classes[env_name]()
        # MetaWorld refuses to step past max_path_length; make it our episode, in its steps.
        self.metaworld_env.max_path_length = options.episode_steps * action_repeat
        # MetaWorld needs a task before it can reset; reset() picks one per episode.
        self.metaworld_env.set_task(self._tasks[0])
        self.metaworld_env.reset()

        model, data = self.metaworld_env.model, self.metaworld_env.data
        self.camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, options.camera)
        if self.camera_id < 0:
            cameras = ", ".join(model.camera(index).name for index in range(model.ncam))
            raise ValueError(f"MetaWorld has no camera {options.camera!r}; cameras: {cameras}")
        if options.camera == "corner2":
            model.cam_pos[self.camera_id] = DRM_CORNER2_POSITION
            mujoco.mj_forward(model, data)
        self.camera_rolled = roll_upright(model, data, self.camera_id)
        self._renderer = FixedCameraRenderer(
            model,
            options.camera,
            max(image_size, options.render_size),
            fast_visuals=options.fast_render,
        )

        self.action_space = action_space(4, seed)
        pixels_and_proprio = observation_space(
            image_size, PROPRIO_SIZE if options.proprio else None
        )
        entries = dict(pixels_and_proprio.spaces)
        if options.state:
            entries["state"] = spaces.Box(-np.inf, np.inf, (STATE_SIZE,), np.float32)
        self.observation_space = spaces.Dict(entries)
        agent_step_seconds = self.metaworld_env.dt * action_repeat
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / agent_step_seconds))}
        self._steps_taken: int | None = None  # None until reset, and again after truncation
        self._success = False
        self._closed = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        seed = reset_seed(seed, self._seed, seeded=self._np_random is not None)
        super().reset(seed=seed)
        # The goal comes from the task; MetaWorld draws nothing else at reset.
        self.metaworld_env.set_task(self._tasks[int(self.np_random.integers(len(self._tasks)))])
        state, _ = self.metaworld_env.reset()
        self._steps_taken = 0
        self._success = False
        return self._observation(state), {"success": False}

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._steps_taken is None:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        unit_action = check_action(action, 4).astype(np.float32)
        reward = 0.0
        for _ in range(self._action_repeat):
            state, step_reward, _, _, info = self.metaworld_env.step(unit_action)
            reward += float(step_reward)
            self._success = self._success or bool(info["success"])
        self._steps_taken += 1
        truncated = self._steps_taken >= self._options.episode_steps
        if truncated:
            self._steps_taken = None
        return self._observation(state), reward, False, truncated, {"success": self._success}

    def _pixels(self) -> np.ndarray:
        """The policy's ``[3, H, W]`` frame of the current state."""
        if self._closed:
            raise RuntimeError("the env is closed")
        frame = self._renderer.render(self.metaworld_env.data, self._image_size)
        return channels_first(frame)

    def _observation(self, state: np.ndarray) -> Obs:
        obs = {"pixels": self._pixels()}
        if self._options.proprio:
            obs["proprio"] = np.concatenate([state[0:4], state[18:22]]).astype(np.float32)
        if self._options.state:
            obs["state"] = state.astype(np.float32)
        return obs

    def render(self) -> np.ndarray | None:
        """The pixel camera's view at ``render_size`` as ``[H, W, 3]`` uint8."""
        if self.render_mode is None:
            return None
        if self._closed:
            raise RuntimeError("the env is closed")
        return self._renderer.render(self.metaworld_env.data, self._options.render_size)

    def close(self) -> None:
        """Frees the renderer's GL context and MetaWorld's env; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._renderer.close()
        self.metaworld_env.close()


def make_env(
    task: str, *, seed: int, image_size: int, action_repeat: int, **options: Any
) -> gym.Env:
    """Builds ``metaworld/<task>``; ``options`` are :class:`MetaWorldOptions` fields.

    Options: ``episode_steps`` (250 agent steps), ``camera`` ("corner2", moved as in DrM),
    ``fast_render`` (False; see the module docs), ``render_size`` (256), ``render_mode``
    ("rgb_array"), ``proprio`` (False) and ``state`` (False).
    """
    parsed = parse_options(MetaWorldOptions, options, where=f"metaworld/{task}")
    check_common_arguments(
        image_size=image_size, action_repeat=action_repeat, render_size=parsed.render_size
    )
    return MetaWorldEnv(
        task, seed=seed, image_size=image_size, action_repeat=action_repeat, options=parsed
    )
