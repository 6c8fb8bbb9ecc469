"""Vector envs: ``num_envs`` copies of one task, stepped together (in worker processes).

Autoreset. Every vector env built here uses Gymnasium's ``SAME_STEP`` autoreset: the step that
ends env ``i``'s episode also resets it, so the returned ``obs`` row ``i`` is already the *next*
episode's first observation. What that step really reached is kept in the info dict:

- ``info["final_obs"][i]``: the episode's true last observation, one unbatched obs dict (an object
  array over envs, set where ``info["_final_obs"][i]``);
- ``info["final_info"]``: the last step's info, batched like any info (e.g.
  ``info["final_info"]["success"][i]``, valid where ``info["final_info"]["_success"][i]``).

Storing ``final_obs`` as the last ``next_obs`` and starting the next episode from ``obs[i]`` means
no transition ever crosses an episode end (:func:`step_observation` picks the right one).

Processes. ``AsyncVectorEnv`` with shared-memory observation buffers, workers started with
``spawn``: forked workers hang in MuJoCo's EGL initialisation (measured with builtin/reach, with
and without a renderer in the parent), while spawning two builtin/reach workers takes ~0.5-0.8 s.
``asynchronous=False`` (or ``num_envs == 1``) steps the copies in this process, for debugging.

Seeding. Copy ``i`` is built with the factory seed ``seed + ENV_SEED_STRIDE * i``
(:func:`env_seeds`): copy 0 is exactly ``make_env(seed=seed)``, and the copies draw distinct
episodes even when later resets carry no seed. Callers that need particular start states pass
per-env reset seeds (the trainer and :func:`robotrl.evaluation.run_episodes_vectorized` do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from robotrl.envs import make_env

Obs = dict[str, np.ndarray]
#: What :func:`vector_env` builds (both take per-env reset seeds and ``set_attr``).
VectorEnvs = AsyncVectorEnv | SyncVectorEnv

#: Factory seeds of a vector env's copies are this far apart (a prime, far above episode counts).
ENV_SEED_STRIDE = 1_000_003
#: Multiprocessing start method of the workers (see the module docstring for why not ``fork``).
START_METHOD = "spawn"


def env_seeds(seed: int, num_envs: int) -> list[int]:
    """Factory seeds of the ``num_envs`` copies: ``seed + ENV_SEED_STRIDE * i`` for copy ``i``."""
    return [seed + ENV_SEED_STRIDE * index for index in range(num_envs)]


def check_num_envs(num_envs: object, name: str = "num_envs") -> int:
    """``num_envs`` as an int, or a ValueError saying what is wrong with it."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise ValueError(f"{name} must be a positive integer, got {num_envs!r}")
    return int(num_envs)


def vector_env(
    env_fns: Sequence[Callable[[], gym.Env]],
    *,
    asynchronous: bool = True,
    context: str = START_METHOD,
) -> VectorEnvs:
    """A ``SAME_STEP`` vector env over ``env_fns`` (one worker process each when asynchronous).

    With ``asynchronous`` and two or more envs: ``AsyncVectorEnv`` with shared memory (the
    ``env_fns`` must then pickle, e.g. ``functools.partial`` of a module-level function);
    otherwise ``SyncVectorEnv``, which steps them one after another in this process. Each env is
    wrapped in :class:`VideoFrames`, so evaluation can record any of them.
    """
    check_num_envs(len(env_fns), "the number of env factories")
    env_fns = [partial(_with_video_frames, env_fn) for env_fn in env_fns]
    if asynchronous and len(env_fns) > 1:
        return AsyncVectorEnv(
            env_fns,
            shared_memory=True,
            context=context,
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
    return SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)


def make_vector_env(
    suite: str,
    task: str,
    *,
    num_envs: int,
    seed: int,
    image_size: int,
    action_repeat: int,
    frame_stack: int,
    options: dict[str, Any] | None = None,
    asynchronous: bool = True,
    context: str = START_METHOD,
) -> VectorEnvs:
    """``num_envs`` copies of ``make_env(suite, task, ...)`` (frame-stacked, like ``make_env``),
    seeded by :func:`env_seeds`, in a :func:`vector_env`."""
    num_envs = check_num_envs(num_envs)
    env_fns = [
        partial(
            make_env,
            suite,
            task,
            seed=env_seed,
            image_size=image_size,
            action_repeat=action_repeat,
            frame_stack=frame_stack,
            options=dict(options or {}),
        )
        for env_seed in env_seeds(seed, num_envs)
    ]
    return vector_env(env_fns, asynchronous=asynchronous, context=context)


def build_vector_env(
    task: Any,
    env_cfg: Any,
    *,
    seed: int,
    num_envs: int,
    render_mode: str | None = None,
    asynchronous: bool = True,
) -> VectorEnvs:
    """The vector counterpart of ``robotrl.builders.build_env`` (a TaskConfig and an EnvConfig)."""
    options = dict(task.options)
    if render_mode is not None:
        options["render_mode"] = render_mode
    return make_vector_env(
        task.suite,
        task.name,
        num_envs=num_envs,
        seed=seed,
        image_size=int(env_cfg.image_size),
        action_repeat=int(env_cfg.action_repeat),
        frame_stack=int(env_cfg.frame_stack),
        options=options,
        asynchronous=asynchronous,
    )


def _with_video_frames(env_fn: Callable[[], gym.Env]) -> gym.Env:
    return VideoFrames(env_fn())


# ------------------------------------------------------------------------ reading a batch


def unbatch(obs: Obs, index: int) -> Obs:
    """Env ``index``'s observation out of a batched obs dict."""
    return {key: value[index] for key, value in obs.items()}


def step_observation(obs: Obs, info: dict[str, Any], done: bool, index: int) -> Obs:
    """The observation env ``index``'s step reached: ``final_obs`` when that step ended it."""
    if done:
        if not info.get("_final_obs", np.zeros(index + 1, bool))[index]:
            raise KeyError(
                f"env {index} ended an episode but info has no final_obs; build the vector env "
                "with autoreset_mode=SAME_STEP (robotrl.envs.vector.vector_env does)"
            )
        final: Obs = info["final_obs"][index]
        return final
    return unbatch(obs, index)


def info_value(info: dict[str, Any], key: str, index: int) -> Any | None:
    """``info[key][index]`` where env ``index`` set ``key``, else None."""
    mask = info.get(f"_{key}")
    if key in info and mask is not None and mask[index]:
        return info[key][index]
    return None


def final_info_value(info: dict[str, Any], key: str, index: int) -> Any | None:
    """The value of ``key`` in the info of the step that ended env ``index``'s episode."""
    final = info.get("final_info")
    return None if final is None else info_value(final, key, index)


# ------------------------------------------------------------------------ video frames


def newest_frame(obs: Obs) -> np.ndarray:
    """The newest RGB frame of an observation's pixel stack, as ``[H, W, 3]``."""
    return np.asarray(obs["pixels"][-3:]).transpose(1, 2, 0)


def render_frame(env: gym.Env, obs: Obs) -> np.ndarray:
    """A video frame: the env's ``render()`` if it has one, else the newest pixels."""
    if env.render_mode == "rgb_array":
        frame = env.render()
        if isinstance(frame, np.ndarray):
            return frame
    return newest_frame(obs)


class VideoFrames(gym.Wrapper[Obs, np.ndarray, Obs, np.ndarray]):
    """Puts the video frame of each reset and step in ``info["video_frame"]`` while recording.

    A vector env's worker resets an env as soon as its episode ends, so the parent process can no
    longer ``render()`` the last state; rendered here, that frame arrives in ``final_info``.
    Switch it per env with ``envs.set_attr("record_frames", [...])``; off, it costs nothing.
    """

    def __init__(self, env: gym.Env[Obs, np.ndarray]) -> None:
        super().__init__(env)
        self.record_frames = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if self.record_frames:
            info = {**info, "video_frame": render_frame(self.env, obs)}
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.record_frames:
            info = {**info, "video_frame": render_frame(self.env, obs)}
        return obs, reward, terminated, truncated, info
