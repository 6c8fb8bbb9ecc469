"""DeepMind Control Suite from pixels (suite ``dmc``), set up as in DrQ-v2.

Task names join domain and task, as in the DrQ-v2 paper and its configs: ``walker_walk``,
``point_mass_easy``, ``cup_catch`` (domain ``ball_in_cup``), ``humanoid_CMU_run``, and
``reach_duplo``, the one task of dm_control's manipulation suite in DrQ-v2's benchmark. An
observation is one RGB frame of ``image_size`` (84 in the published setups) from camera 0, or
camera 2 for quadruped; actions in [-1, 1] are rescaled to each task's actuator bounds; the env
repeats each action ``action_repeat`` times (summing rewards) and renders once per agent step.
Episodes are truncated at dm_control's time limit (1000 control steps: 500 agent steps at
repeat 2) and terminated only when dm_control ends an episode with discount 0.

**reach_duplo** is built as DrQ-v2 builds it (``manipulation.load("reach_duplo_vision")``): the
Jaco arm reaching a Duplo brick, seen from the arena's ``front_close`` camera, 10 s episodes
(250 control steps of 0.04 s: 125 agent steps at repeat 2). We load the ``_features`` variant,
whose scene is the same but which does not render its own camera observation every step, and
render ``front_close`` ourselves like every other task. Its physics is recompiled at every reset
(a composer environment), so the cameras are rebuilt with it.

**Fast rendering.** ``fast_render=True`` switches shadows, reflections and the skybox off, which
renders 84×84 frames several times faster on a CPU. The frames then differ from the ones every
published DMC pixel result was trained and evaluated on (no shadows, no mirrored floor, black
sky), so returns from such runs are not comparable with published curves: use it for smoke tests
and CPU development, and leave it off for benchmark numbers.

**Distracting backgrounds.** ``distractors="moving"`` (or ``"colors"``, or a mapping of
``robotrl_sim.distractors.DistractorOptions``) puts a new procedural background video in the sky
and, partly, the floor every episode, as the Distracting Control Suite does with DAVIS videos; a
segmentation render of the same camera keeps the agent's pixels untouched. Off by default. See
``robotrl_sim.distractors`` for the set-up, the seeds and the departures from the suite.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from dm_control import composer, suite
from dm_control.mujoco.engine import Camera, Physics
from dm_control.rl import control

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
from robotrl_sim._mujoco import fast_render_overrides
from robotrl_sim.distractors import (
    BackgroundDistractor,
    background_masks,
    parse_distractors,
    plane_geoms,
)

# Short domain names used in task names (DrQ-v2's "cup_catch").
DOMAIN_ALIASES = {"cup": "ball_in_cup"}
# lqr's actuators are unbounded (±1e10), so a policy's [-1, 1] cannot be rescaled onto them.
EXCLUDED_DOMAINS = {"lqr"}
# DrQ-v2 zooms in on the quadruped with its camera 2; every other domain uses camera 0.
DEFAULT_CAMERAS = {"quadruped": 2}
# dm_control.manipulation tasks in DrQ-v2's benchmark; camera 0 of their arena is front_close.
MANIPULATION_DOMAIN = "manipulation"
MANIPULATION_TASKS = ("reach_duplo",)


def _task_table() -> dict[str, tuple[str, str]]:
    # Looking names up in a table, rather than splitting at the first underscore, is what makes
    # point_mass_easy, ball_in_cup_catch and humanoid_CMU_run come apart correctly.
    pairs = [(domain, task) for domain, task in suite.ALL_TASKS if domain not in EXCLUDED_DOMAINS]
    table = {f"{domain}_{task}": (domain, task) for domain, task in pairs}
    for alias, domain in DOMAIN_ALIASES.items():
        table.update(
            {f"{alias}_{task}": (domain, task) for known, task in pairs if known == domain}
        )
    table.update({task: (MANIPULATION_DOMAIN, task) for task in MANIPULATION_TASKS})
    return table


TASKS: dict[str, tuple[str, str]] = _task_table()


def split_task_name(name: str) -> tuple[str, str]:
    """``"cup_catch"`` → ``("ball_in_cup", "catch")``; unknown names list the close matches."""
    if name in TASKS:
        return TASKS[name]
    close = difflib.get_close_matches(name, TASKS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownTaskError(
        f"unknown dmc task {name!r}.{hint} Valid tasks: {', '.join(sorted(TASKS))}"
    )


@dataclass(frozen=True)
class DMCOptions:
    """Options of the ``dmc`` suite, passed to ``make_env`` as keywords."""

    # Shadows, reflections and skybox off: several times faster on CPU, but the images differ
    # from the published DMC pixel setups, so results are not comparable with published curves.
    fast_render: bool = False
    camera_id: int | None = None  # None: DrQ-v2's choice (quadruped 2, others 0)
    render_size: int = 256  # side of the frames render() returns (eval videos)
    render_mode: str | None = "rgb_array"
    proprio: bool = False  # add "proprio": dm_control's state observations, flattened (float32)
    # Distracting backgrounds (robotrl_sim.distractors): None (off), "moving", "colors" or a
    # mapping of DistractorOptions fields.
    distractors: Any = None

    def __post_init__(self) -> None:
        parse_distractors(self.distractors)  # raises on a bad value, before anything is built
        if self.camera_id is not None and (
            isinstance(self.camera_id, bool) or not isinstance(self.camera_id, int)
        ):
            raise ValueError(f"camera_id must be an int or None, got {self.camera_id!r}")
        check_render_mode(self.render_mode)


class DMCEnv(gym.Env[Obs, np.ndarray]):
    """A dm_control ``control.Environment`` (or composer ``Environment``) as a Gymnasium pixel env.

    :func:`make_env` builds it for suite tasks and ``reach_duplo``; any dm_control environment
    whose randomness lives in ``task.random`` (suite tasks) or ``random_state`` (composer) can be
    wrapped the same way.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012 (gym's API)

    def __init__(
        self,
        env: control.Environment | composer.Environment,
        *,
        seed: int,
        image_size: int,
        action_repeat: int,
        camera_id: int,
        options: DMCOptions,
        distractor: BackgroundDistractor | None = None,
    ) -> None:
        self._env = env
        self._seed = seed
        self._action_repeat = action_repeat
        self._options = options
        self.camera_id = camera_id
        self.render_mode = options.render_mode
        self._render_flags = fast_render_overrides() if options.fast_render else {}
        distractor_options = parse_distractors(options.distractors)
        if distractor is None and distractor_options is not None:
            # Built without make_env: no domain name, so the suite's default floor alpha.
            distractor = BackgroundDistractor(distractor_options, domain="")
        self._distractor = distractor
        if distractor is not None:
            distractor.reset(seed)  # so render() before the first reset has a background

        self._image_size = image_size
        self._pixels_camera: Camera | None = None
        self._video_camera: Camera | None = None
        self._camera_physics: Physics | None = None
        self._attach_cameras()

        spec = self._env.action_spec()
        self._action_low = np.asarray(spec.minimum, dtype=np.float64)
        self._action_high = np.asarray(spec.maximum, dtype=np.float64)
        self._action_dtype = spec.dtype
        self._action_size = int(spec.shape[0])
        self.action_space = action_space(self._action_size, seed)
        proprio_size = sum(
            int(np.prod(item.shape)) for item in self._env.observation_spec().values()
        )
        self.observation_space = observation_space(
            image_size, proprio_size if options.proprio else None
        )
        agent_step_seconds = self._env.control_timestep() * action_repeat
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / agent_step_seconds))}
        self._episode_running = False
        self._closed = False

    @property
    def physics(self) -> Physics:
        """dm_control's physics of this task (for tests and scripted inspection)."""
        physics: Physics = self._env.physics
        return physics

    def _attach_cameras(self) -> None:
        """(Re)builds the cameras when the physics is new (composer recompiles it at reset)."""
        if self._camera_physics is self.physics:
            return
        self._camera_physics = self.physics
        # The offscreen buffer is sized when the first render creates the GL context.
        largest = max(self._image_size, self._options.render_size)
        visual = self.physics.model.vis.global_
        visual.offwidth = max(visual.offwidth, largest)
        visual.offheight = max(visual.offheight, largest)
        # One reusable camera per size: building a camera per frame (as physics.render does)
        # costs a scene allocation that is a large share of a fast-visuals frame.
        size = self._image_size
        self._pixels_camera = Camera(
            self.physics, height=size, width=size, camera_id=self.camera_id
        )
        self._video_camera = None
        self._floor_geoms = plane_geoms(self.physics.model)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        seed = reset_seed(seed, self._seed, seeded=self._np_random is not None)
        super().reset(seed=seed)
        if seed is not None:
            # Re-seeding the task's own RandomState in place makes reset(seed=s) reproduce the
            # episode that a fresh env built with seed=s would start with.
            random = getattr(self._env.task, "random", None)
            (random if random is not None else self._env.random_state).seed(seed)
        time_step = self._env.reset()
        if self._closed:
            raise RuntimeError("the env is closed")
        self._attach_cameras()
        if self._distractor is not None:
            self._distractor.reset(seed)
        self._episode_running = True
        return self._observation(time_step.observation), {}

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        if not self._episode_running:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        unit_action = check_action(action, self._action_size)
        scaled = self._action_low + (unit_action + 1.0) * 0.5 * (
            self._action_high - self._action_low
        )
        scaled = scaled.astype(self._action_dtype)
        reward = 0.0
        for _ in range(self._action_repeat):
            time_step = self._env.step(scaled)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        # dm_env marks both kinds of episode end LAST; only a zero discount means a true terminal.
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        self._episode_running = not time_step.last()
        return self._observation(time_step.observation), reward, terminated, truncated, {}

    def _observation(self, state: dict[str, Any]) -> Obs:
        if self._pixels_camera is None:
            raise RuntimeError("the env is closed")
        frame = self._render(self._pixels_camera)
        obs = {"pixels": channels_first(frame)}
        if self._options.proprio:
            obs["proprio"] = np.concatenate(
                [np.asarray(value, dtype=np.float32).ravel() for value in state.values()]
            )
        return obs

    def render(self) -> np.ndarray | None:
        """The pixel camera's view at ``render_size`` as ``[H, W, 3]`` uint8."""
        if self.render_mode is None:
            return None
        if self._closed:
            raise RuntimeError("the env is closed")
        if self._video_camera is None:
            size = self._options.render_size
            self._video_camera = Camera(
                self.physics, height=size, width=size, camera_id=self.camera_id
            )
        return np.array(self._render(self._video_camera))

    def _render(self, camera: Camera) -> np.ndarray:
        frame: np.ndarray = camera.render(render_flag_overrides=dict(self._render_flags))
        if self._distractor is None:
            return frame
        # The camera reuses one buffer for every render: copy before the segmentation pass.
        frame = frame.copy()
        sky, floor = background_masks(camera.render(segmentation=True), self._floor_geoms)
        return self._distractor.composite(frame, sky, floor, float(self.physics.data.time))

    def close(self) -> None:
        """Frees the cameras and the GL contexts; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._pixels_camera = self._video_camera = None
        self.physics.free()


def make_env(
    task: str, *, seed: int, image_size: int, action_repeat: int, **options: Any
) -> gym.Env:
    """Builds ``dmc/<task>``; ``options`` are :class:`DMCOptions` fields.

    Options: ``fast_render`` (False; see the module docs: images then differ from published
    setups), ``camera_id`` (None: quadruped 2, others 0), ``render_size`` (256),
    ``render_mode`` ("rgb_array"), ``proprio`` (False), ``distractors`` (None: off; see
    ``robotrl_sim.distractors``).
    """
    domain, task_name = split_task_name(task)
    parsed = parse_options(DMCOptions, options, where=f"dmc/{task}")
    check_common_arguments(
        image_size=image_size, action_repeat=action_repeat, render_size=parsed.render_size
    )
    env: control.Environment | composer.Environment
    if domain == MANIPULATION_DOMAIN:
        from dm_control import manipulation  # its props and arms load only for these tasks

        env = manipulation.load(f"{task_name}_features", seed=seed)
    else:
        # visualize_reward=False keeps reward-dependent colours out of the pixels, as in DrQ-v2.
        env = suite.load(domain, task_name, task_kwargs={"random": seed}, visualize_reward=False)
    camera_id = DEFAULT_CAMERAS.get(domain, 0) if parsed.camera_id is None else parsed.camera_id
    distractor_options = parse_distractors(parsed.distractors)
    distractor = (
        None
        if distractor_options is None
        else BackgroundDistractor(distractor_options, domain=domain)
    )
    return DMCEnv(
        env,
        seed=seed,
        image_size=image_size,
        action_repeat=action_repeat,
        camera_id=camera_id,
        options=parsed,
        distractor=distractor,
    )
