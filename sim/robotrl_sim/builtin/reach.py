"""``builtin/reach``: steer a point mass onto a target disc, seen from straight above.

A deliberately easy pixel task for smoke tests and CPU learning tests. The agent is an orange ball
on two damped slide joints, so its velocity follows the action (full action: 0.5 m/s); the target
is a green disc. Both start at random places each episode (or the target sits at a fixed place
with ``target="fixed"``). The reward is dense and in [0, 1] per control step: 1 within
``TARGET_RADIUS`` of the target centre, then a Gaussian decay with distance, as dm_control's
``rewards.tolerance``. The task never terminates; episodes are truncated after ``episode_steps``.
``distractors="moving"`` (or ``"colors"``) puts a new random background behind the arena every
episode (see ``robotrl_sim.distractors``).

Harder variants (for policies cloned on the clean task, e.g. a residual's base): the actuators
execute ``clip(clip(action, -1, 1) + action_bias + noise, -1, 1)`` per agent step, where
``action_bias`` is a constant ``(x, y)`` offset, an uncalibrated actuator or a steady wind, and
``noise`` is Gaussian with standard deviation ``action_noise``, drawn anew each agent step from a
stream seeded by the episode's reset. Both default to off. The scripted expert (a high-gain
proportional controller) still succeeds with a bias of ``(0.7, 0.7)``, settling ~4.9 cm from the
centre, while a policy cloned from its demos, with a softer gain near the target, settles outside
the disc (``tests/sim/test_residual_improves.py``: a residual policy learns the correction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np

from robotrl_sim._common import (
    Obs,
    action_space,
    channels_first,
    check_action,
    check_render_mode,
    observation_space,
    reset_seed,
)
from robotrl_sim._mujoco import FixedCameraRenderer
from robotrl_sim.distractors import (
    BackgroundDistractor,
    SegmentationRenderer,
    background_masks,
    parse_distractors,
    plane_geoms,
)

TARGET_RADIUS = 0.06  # metres; also the radius of the drawn disc, so "on the disc" is success
REWARD_MARGIN = 0.2  # metres beyond TARGET_RADIUS where the reward has decayed to 0.1
FIXED_TARGET = (0.12, 0.12)
# Start positions stay inside the joint ranges (±0.25 m) with room to move.
SPAWN_HALF_WIDTH = 0.22
AGENT_RADIUS = 0.04
_CAMERA = "top"


@dataclass(frozen=True)
class ReachOptions:
    """Options of ``builtin/reach``, passed to ``make_env`` as keywords."""

    episode_steps: int = 50  # agent steps until the episode is truncated
    target: Literal["random", "fixed"] = "random"  # a new target each episode, or FIXED_TARGET
    control_timestep: float = 0.05  # seconds per control step; an agent step is action_repeat
    render_size: int = 256  # side of the frames render() returns (eval videos)
    render_mode: str | None = "rgb_array"
    proprio: bool = False  # add "proprio": agent position and velocity (float32, 4)
    # Distracting backgrounds (robotrl_sim.distractors): None (off), "moving", "colors" or a
    # mapping of DistractorOptions fields.
    distractors: Any = None
    # Harder variants (module docstring): a constant (x, y) offset added to every action before
    # the actuators' [-1, 1] limits, and the standard deviation of Gaussian noise added likewise.
    action_bias: Sequence[float] = (0.0, 0.0)
    action_noise: float = 0.0

    def __post_init__(self) -> None:
        parse_distractors(self.distractors)  # raises on a bad value, before anything is built
        bias = parse_action_bias(self.action_bias)
        object.__setattr__(self, "action_bias", bias)  # a tuple of floats, also from a list
        if isinstance(self.action_noise, bool) or not (
            isinstance(self.action_noise, int | float) and 0.0 <= self.action_noise < math.inf
        ):
            raise ValueError(
                f"action_noise must be a finite number >= 0, got {self.action_noise!r}"
            )
        if self.episode_steps < 1:
            raise ValueError(f"episode_steps must be >= 1, got {self.episode_steps}")
        if self.target not in ("random", "fixed"):
            raise ValueError(f"target must be 'random' or 'fixed', got {self.target!r}")
        if not self.control_timestep > 0:
            raise ValueError(f"control_timestep must be > 0, got {self.control_timestep}")
        check_render_mode(self.render_mode)


def parse_action_bias(value: Any) -> tuple[float, float]:
    """``action_bias`` as a tuple of two finite floats in [-1, 1] (beyond, the actuator limits
    would swamp every action); raises ValueError otherwise."""
    try:
        bias = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"action_bias must be two numbers (x, y), got {value!r}") from None
    if isinstance(value, str) or len(bias) != 2 or not all(-1.0 <= v <= 1.0 for v in bias):
        raise ValueError(f"action_bias must be two numbers (x, y) in [-1, 1], got {value!r}")
    return (bias[0], bias[1])


def scripted_action(env: ReachEnv) -> np.ndarray:
    """Scripted expert from the privileged state: full speed towards the target, slowing down
    within 5 cm of it (returns about 97 of 100, success 1.0). Demonstrations use it."""
    offset = env.target_position - env.agent_position
    return np.clip(offset / 0.05, -1.0, 1.0).astype(np.float32)


def reach_reward(distance: float) -> float:
    """1 within TARGET_RADIUS, then exp(-d²/2σ²) of the distance d beyond it (0.1 at the margin)."""
    beyond = max(distance - TARGET_RADIUS, 0.0)
    scale = math.sqrt(-2.0 * math.log(0.1)) / REWARD_MARGIN
    return math.exp(-0.5 * (beyond * scale) ** 2)


class ReachEnv(gym.Env[Obs, np.ndarray]):
    """The ``reach`` task as a Gymnasium env; build it with ``make_env("reach", ...)``."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012 (gym's API)

    def __init__(
        self, *, seed: int, image_size: int, action_repeat: int, options: ReachOptions
    ) -> None:
        self._seed = seed
        self._image_size = image_size
        self._action_repeat = action_repeat
        self._options = options
        self.render_mode = options.render_mode

        model_file = resources.files(__package__).joinpath("reach.xml")
        with resources.as_file(model_file) as path:
            self._model = mujoco.MjModel.from_xml_path(str(path))
        self._data = mujoco.MjData(self._model)
        substeps = options.control_timestep / self._model.opt.timestep
        if substeps < 1 or not math.isclose(substeps, round(substeps), rel_tol=1e-6):
            raise ValueError(
                f"control_timestep must be a multiple of the physics timestep "
                f"{self._model.opt.timestep}, got {options.control_timestep}"
            )
        self._substeps = round(substeps)
        self._target_mocap = int(self._model.body("target").mocapid[0])
        self._renderer = FixedCameraRenderer(
            self._model, _CAMERA, max(image_size, options.render_size)
        )

        # Distracting backgrounds: a segmentation render per frame says where the floor is.
        self._distractor: BackgroundDistractor | None = None
        self._segmenter: SegmentationRenderer | None = None
        self._floor_geoms = plane_geoms(self._model)
        distractor_options = parse_distractors(options.distractors)
        if distractor_options is not None:
            self._distractor = BackgroundDistractor(distractor_options, domain="builtin_reach")
            self._distractor.reset(seed)  # so render() before the first reset has a background
            self._segmenter = SegmentationRenderer(
                self._model, _CAMERA, max(image_size, options.render_size)
            )

        self.observation_space = observation_space(image_size, 4 if options.proprio else None)
        self.action_space = action_space(self._model.nu, seed)
        agent_step_seconds = options.control_timestep * action_repeat
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / agent_step_seconds))}
        self._steps_taken: int | None = None  # None until reset, and again after truncation
        self._bias = np.asarray(options.action_bias, np.float64)
        self._noise_rng: np.random.Generator | None = None  # action_noise's stream, per reset

    @property
    def agent_position(self) -> np.ndarray:
        """True x, y of the agent (for scripted policies and tests)."""
        return self._data.qpos[:2].copy()

    @property
    def target_position(self) -> np.ndarray:
        """True x, y of the target centre (for scripted policies and tests)."""
        return self._data.mocap_pos[self._target_mocap, :2].copy()

    def _distance(self) -> float:
        return float(np.linalg.norm(self._data.qpos[:2] - self.target_position))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        seed = reset_seed(seed, self._seed, seeded=self._np_random is not None)
        super().reset(seed=seed)
        mujoco.mj_resetData(self._model, self._data)
        if self._options.target == "fixed":
            target = np.array(FIXED_TARGET)
        else:
            target = self.np_random.uniform(-SPAWN_HALF_WIDTH, SPAWN_HALF_WIDTH, size=2)
        # Never start on the target, so every episode has something to do.
        while True:
            start = self.np_random.uniform(-SPAWN_HALF_WIDTH, SPAWN_HALF_WIDTH, size=2)
            if np.linalg.norm(start - target) > TARGET_RADIUS + AGENT_RADIUS:
                break
        self._data.qpos[:2] = start
        self._data.mocap_pos[self._target_mocap, :2] = target
        mujoco.mj_forward(self._model, self._data)
        if self._distractor is not None:
            self._distractor.reset(seed)
        if self._options.action_noise > 0:
            # Its own stream: a jumped copy of the episode's (gymnasium's PCG64), so drawing the
            # noise never shifts the start states of later episodes.
            bit_generator: Any = self.np_random.bit_generator
            self._noise_rng = np.random.Generator(bit_generator.jumped())
        self._steps_taken = 0
        return self._observation(), {"success": self._distance() <= TARGET_RADIUS}

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._steps_taken is None:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        self._data.ctrl[:] = self._actuation(check_action(action, self._model.nu))
        reward = 0.0
        for _ in range(self._action_repeat):
            mujoco.mj_step(self._model, self._data, nstep=self._substeps)
            reward += reach_reward(self._distance())
        # mj_step leaves body poses at the start of its last substep; the camera needs them now.
        mujoco.mj_forward(self._model, self._data)
        self._steps_taken += 1
        truncated = self._steps_taken >= self._options.episode_steps
        if truncated:
            self._steps_taken = None
        info = {"success": self._distance() <= TARGET_RADIUS}
        return self._observation(), reward, False, truncated, info

    def _actuation(self, action: np.ndarray) -> np.ndarray:
        """What the actuators execute for a clipped ``action`` (module docstring)."""
        if self._options.action_noise > 0:
            assert self._noise_rng is not None
            action = action + self._noise_rng.normal(0.0, self._options.action_noise, action.shape)
        return np.clip(action + self._bias, -1.0, 1.0)

    def _observation(self) -> Obs:
        obs = {"pixels": channels_first(self._render(self._image_size))}
        if self._options.proprio:
            obs["proprio"] = np.concatenate([self._data.qpos[:2], self._data.qvel[:2]]).astype(
                np.float32
            )
        return obs

    def render(self) -> np.ndarray | None:
        """The top-down view at ``render_size`` as ``[H, W, 3]`` uint8 (None without a mode)."""
        if self.render_mode is None:
            return None
        return self._render(self._options.render_size)

    def _render(self, size: int) -> np.ndarray:
        frame = self._renderer.render(self._data, size)
        if self._distractor is None or self._segmenter is None:
            return frame
        sky, floor = background_masks(self._segmenter.render(self._data, size), self._floor_geoms)
        return self._distractor.composite(frame, sky, floor, float(self._data.time))

    def close(self) -> None:
        self._renderer.close()
        if self._segmenter is not None:
            self._segmenter.close()
