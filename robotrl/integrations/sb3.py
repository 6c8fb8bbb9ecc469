"""Use robotrl envs from Stable-Baselines3 (SB3).

SB3 speaks the older vectorised API: ``step`` returns ``(obs, reward, done, infos)`` with a single
``done``, the env resets itself when an episode ends, and two ``infos`` keys carry what that
loses: ``TimeLimit.truncated`` (the episode was cut, not finished, so the value of the last
observation must still be bootstrapped) and ``terminal_observation`` (the last observation of the
finished episode, since the returned one already belongs to the next). :class:`RobotrlVecEnv`
translates our Gymnasium 1.x contract into that API without losing either, keeps ``pixels``
bit-exact and channel-first, and copies ``info["success"]`` to SB3's ``is_success``.
:class:`BatchedVecEnv` does the same for a batched env (``robotrl.envs.make_batched_env``: many
worlds stepped together, torch tensors on the sim's device), whose ``SAME_STEP`` autoreset and
full-batch ``final_obs`` map onto SB3's per-env ``terminal_observation``.

Stable-Baselines3 is optional: ``pip install stable-baselines3``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from robotrl.envs import BatchedEnv, make_env
from robotrl.envs.batched import to_numpy

try:
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.preprocessing import (
        is_image_space,
        is_image_space_channels_first,
    )
    from stable_baselines3.common.vec_env import VecEnv
    from stable_baselines3.common.vec_env.base_vec_env import (
        VecEnvIndices,
        VecEnvObs,
        VecEnvStepReturn,
    )
except ImportError as error:
    raise ModuleNotFoundError(
        "robotrl.integrations.sb3 needs Stable-Baselines3, which is not installed: "
        "`pip install stable-baselines3` (tested with stable-baselines3==2.9.2).",
        name="stable_baselines3",
    ) from error

ObservationMode: TypeAlias = Literal["auto", "dict", "pixels"]
EnvFactory: TypeAlias = Callable[[], gym.Env]
Obs: TypeAlias = np.ndarray | dict[str, np.ndarray]


class RobotrlVecEnv(VecEnv):
    """SB3 ``VecEnv`` over robotrl envs, stepped one after another in this process.

    It plays the role of SB3's ``DummyVecEnv`` but is written for our contract rather than
    subclassed from it: ``DummyVecEnv`` would need its constructor, ``reset`` and ``step_wait``
    replaced anyway (to choose the observation view and add ``is_success``), and its ``set_attr``
    sets the attribute on the outermost wrapper only, which under Gymnasium 1.x never reaches the
    env that reads it. What is left to inherit is a few one-line methods.

    Args:
        env_fns: one factory per sub-env; each must build a new env.
        seed: sub-env ``i`` is reset with ``seed + i`` on the first ``reset()`` (SB3's
            ``VecEnv.seed`` convention); later episodes continue each env's own generator.
        observation: ``"dict"`` passes the observation dict (``pixels`` and, with
            ``options={"proprio": True}``, ``proprio``) for SB3's ``MultiInputPolicy``;
            ``"pixels"`` passes the pixel array alone for ``CnnPolicy``; ``"auto"`` picks
            ``"pixels"`` when that is the only entry, else ``"dict"``.

    ``step`` returns ``done = terminated or truncated``; ``infos[i]["TimeLimit.truncated"]`` is
    true only when the episode was truncated and not terminated, and a finished env is reset at
    once, its last observation kept in ``infos[i]["terminal_observation"]``.
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFactory],
        *,
        seed: int | None = None,
        observation: ObservationMode = "auto",
    ) -> None:
        if not env_fns:
            raise ValueError("RobotrlVecEnv needs at least one env factory")
        self.envs = [make() for make in env_fns]
        if len({id(env.unwrapped) for env in self.envs}) != len(self.envs):
            raise ValueError(
                "two env factories returned the same env; each must build a new one "
                "(write `lambda: make_env(...)`, not `lambda: env`)"
            )
        first = self.envs[0]
        for env in self.envs[1:]:
            if env.observation_space != first.observation_space:
                raise ValueError("all sub-envs must share one observation space")
            if env.action_space != first.action_space:
                raise ValueError("all sub-envs must share one action space")
        env_space = first.observation_space
        if not isinstance(env_space, spaces.Dict) or "pixels" not in env_space.spaces:
            raise TypeError(f"robotrl envs observe a Dict with a 'pixels' entry, got {env_space}")
        _check_pixels_reach_sb3_untouched(env_space["pixels"])
        self._pixels_only = _pixels_only(env_space, observation)
        self._keys: list[str] = [] if self._pixels_only else list(env_space.spaces)
        observation_space = env_space["pixels"] if self._pixels_only else env_space
        self._actions: np.ndarray | None = None
        super().__init__(len(self.envs), observation_space, first.action_space)
        # SB3's render modes (it adds "human" through OpenCV) over the env's, render_fps kept.
        self.metadata = {**first.metadata, **self.metadata}
        if seed is not None:
            self.seed(seed)

    def reset(self) -> VecEnvObs:
        observations = []
        for index, env in enumerate(self.envs):
            obs, self.reset_infos[index] = env.reset(
                seed=self._seeds[index], options=self._options[index] or None
            )
            observations.append(self._view(obs))
        # As in SB3, seeds and options set by seed()/set_options() apply to one reset only.
        self._reset_seeds()
        self._reset_options()
        return self._batch(observations)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {len(actions)}")
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("call step_async() before step_wait()")
        actions, self._actions = self._actions, None
        observations: list[Obs] = []
        rewards = np.zeros(self.num_envs, np.float32)
        dones = np.zeros(self.num_envs, bool)
        infos: list[dict[str, Any]] = []
        for index, env in enumerate(self.envs):
            obs, reward, terminated, truncated, env_info = env.step(actions[index])
            info = dict(env_info)
            rewards[index] = float(reward)
            dones[index] = terminated or truncated
            # SB3 bootstraps from the next observation unless done and not TimeLimit.truncated.
            info["TimeLimit.truncated"] = bool(truncated and not terminated)
            if "success" in info:
                info["is_success"] = bool(info["success"])
            if dones[index]:
                info["terminal_observation"] = _copy(self._view(obs))
                obs, self.reset_infos[index] = env.reset()
            observations.append(self._view(obs))
            infos.append(info)
        return self._batch(observations), rewards, dones, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            warnings.warn(
                f"get_images() needs render_mode 'rgb_array', the envs have {self.render_mode!r}",
                stacklevel=2,
            )
            return [None] * self.num_envs
        return [_as_image(env.render()) for env in self.envs]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [env.get_wrapper_attr(attr_name) for env in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        # Sets it on the wrapper or env that defines it (else the outermost), as Gymnasium does.
        for env in self._targets(indices):
            env.set_wrapper_attr(attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        return [
            env.get_wrapper_attr(method_name)(*method_args, **method_kwargs)
            for env in self._targets(indices)
        ]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [_is_wrapped(env, wrapper_class) for env in self._targets(indices)]

    def _targets(self, indices: VecEnvIndices) -> list[gym.Env]:
        return [self.envs[index] for index in self._get_indices(indices)]

    def _view(self, obs: dict[str, np.ndarray]) -> Obs:
        if self._pixels_only:
            return obs["pixels"]
        return {key: obs[key] for key in self._keys}

    def _batch(self, observations: list[Obs]) -> VecEnvObs:
        # np.stack copies and keeps each entry's dtype, so pixels stay the env's uint8 bytes.
        if self._pixels_only:
            return np.stack(observations)  # type: ignore[arg-type]
        return {key: np.stack([obs[key] for obs in observations]) for key in self._keys}


class BatchedVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a batched env: its worlds are SB3's sub-envs.

    Observations are copied from the sim's device to numpy once per step (SB3 stores numpy);
    actions go back as one tensor on the sim's device. ``done``, ``TimeLimit.truncated``,
    ``terminal_observation`` and ``is_success`` are set per world as :class:`RobotrlVecEnv` sets
    them, and each finished world's ``infos[i]["episode"]`` carries its return and length as SB3's
    ``Monitor`` would (so SB3 logs ``rollout/ep_rew_mean``). ``seed`` (or ``VecEnv.seed``) seeds
    world ``i`` with ``seed + i`` at the next reset.
    """

    def __init__(
        self, env: BatchedEnv, *, seed: int | None = None, observation: ObservationMode = "auto"
    ) -> None:
        self.env = env
        env_space = env.single_observation_space
        if not isinstance(env_space, spaces.Dict) or "pixels" not in env_space.spaces:
            raise TypeError(f"robotrl envs observe a Dict with a 'pixels' entry, got {env_space}")
        _check_pixels_reach_sb3_untouched(env_space["pixels"])
        self._pixels_only = _pixels_only(env_space, observation)
        self._keys = [] if self._pixels_only else list(env_space.spaces)
        observation_space = env_space["pixels"] if self._pixels_only else env_space
        self._actions: np.ndarray | None = None
        self._episode_start = time.perf_counter()
        self._last_pixels: np.ndarray | None = None
        super().__init__(env.num_envs, observation_space, env.single_action_space)
        self.metadata = {**env.metadata, **self.metadata}
        if seed is not None:
            self.seed(seed)

    def reset(self) -> VecEnvObs:
        seeds = self._seeds
        world_seeds = None if all(s is None for s in seeds) else [s or 0 for s in seeds]
        tensors, _ = self.env.reset(seed=world_seeds)
        self._reset_seeds()
        self._reset_options()
        obs = to_numpy(tensors)
        self._last_pixels = obs["pixels"]
        return self._view(obs)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions, dtype=np.float32)
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {len(actions)}")
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("call step_async() before step_wait()")
        actions, self._actions = self._actions, None
        tensors, rewards, terminated, truncated, info = self.env.step(
            torch.as_tensor(actions, device=self.env.device)
        )
        obs = to_numpy(tensors)
        self._last_pixels = obs["pixels"]
        terminated, truncated = to_numpy(terminated), to_numpy(truncated)
        dones = terminated | truncated
        success = to_numpy(info["success"]) if "success" in info else None
        infos: list[dict[str, Any]] = [
            {"TimeLimit.truncated": bool(truncated[i] and not terminated[i])}
            for i in range(self.num_envs)
        ]
        if success is not None:
            for i, world_info in enumerate(infos):
                world_info["success"] = world_info["is_success"] = bool(success[i])
        if dones.any():
            final = self._view(to_numpy(info["final_obs"]))
            returns, lengths = to_numpy(info["episode_return"]), to_numpy(info["episode_length"])
            elapsed = time.perf_counter() - self._episode_start
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = _copy(_row(final, i))
                infos[i]["episode"] = {"r": float(returns[i]), "l": int(lengths[i]), "t": elapsed}
        return self._view(obs), to_numpy(rewards).astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Each world's newest pixel frame (``[H, W, 3]``): batched envs have no ``render()``."""
        if self._last_pixels is None:
            return [None] * self.num_envs
        pixels = self._last_pixels  # [N, C*stack, H, W], or [N, V, C*stack, H, W]: first camera
        newest = pixels[:, 0, -3:] if pixels.ndim == 5 else pixels[:, -3:]
        return [np.ascontiguousarray(frame.transpose(1, 2, 0)) for frame in newest]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"the worlds of a batched env share {attr_name!r}; set it on .env")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        raise AttributeError(f"a batched env has no per-world method {method_name!r}")

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))

    def _view(self, obs: dict[str, np.ndarray]) -> VecEnvObs:
        if self._pixels_only:
            return obs["pixels"]
        return {key: obs[key] for key in self._keys}


def make_sb3_env(
    suite: str,
    task: str,
    n_envs: int = 1,
    *,
    seed: int = 0,
    image_size: int = 84,
    action_repeat: int = 2,
    frame_stack: int = 3,
    options: dict[str, Any] | None = None,
    observation: ObservationMode = "auto",
    monitor: bool = True,
) -> RobotrlVecEnv:
    """``n_envs`` copies of ``suite/task`` (built by ``robotrl.envs.make_env``) as an SB3 VecEnv.

    Sub-env ``i`` is built and first reset with ``seed + i``. With ``monitor`` each sub-env is
    wrapped in SB3's ``Monitor``, which SB3 needs to log episode returns (``rollout/ep_rew_mean``)
    and which ``evaluate_policy`` asks for.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")

    def factory(index: int) -> EnvFactory:
        def build() -> gym.Env:
            env = make_env(
                suite,
                task,
                seed=seed + index,
                image_size=image_size,
                action_repeat=action_repeat,
                frame_stack=frame_stack,
                options=options,
            )
            return Monitor(env) if monitor else env

        return build

    return RobotrlVecEnv(
        [factory(index) for index in range(n_envs)], seed=seed, observation=observation
    )


def _pixels_only(space: spaces.Dict, observation: ObservationMode) -> bool:
    others = sorted(key for key in space.spaces if key != "pixels")
    if observation == "dict":
        return False
    if observation == "pixels":
        if others:
            raise ValueError(
                f"observation='pixels' would drop {others}; use observation='dict' "
                "(MultiInputPolicy) or build the env without them"
            )
        return True
    if observation == "auto":
        return not others
    raise ValueError(f"observation must be 'auto', 'dict' or 'pixels', got {observation!r}")


def _check_pixels_reach_sb3_untouched(pixels: spaces.Space) -> None:
    """SB3 transposes image spaces it takes for channel-last; ours are channel-first already.

    SB3 guesses the channel axis as the smallest one, so stacked channels must be no more than
    the image's height and width, or SB3 would wrap the env in ``VecTransposeImage``.
    """
    if not is_image_space(pixels):
        raise TypeError(f"'pixels' must be a uint8 [C, H, W] Box in [0, 255], got {pixels}")
    assert isinstance(pixels, spaces.Box)
    channels, height, width = pixels.shape
    with warnings.catch_warnings():
        # It warns when the middle axis is smallest; the error below says more.
        warnings.simplefilter("ignore")
        channel_first = is_image_space_channels_first(pixels)
    if not channel_first:
        raise ValueError(
            f"SB3 would read pixels of shape {pixels.shape} as channel-last (it takes the "
            f"smallest axis for channels) and transpose them: keep channels x frame_stack "
            f"({channels}) no larger than the image's height and width ({height}x{width})"
        )


def _is_wrapped(env: gym.Env, wrapper_class: type[gym.Wrapper]) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_class):
            return True
        env = env.env
    return False


def _row(batch: VecEnvObs, index: int) -> Obs:
    if isinstance(batch, dict):
        return {key: np.asarray(value[index]) for key, value in batch.items()}
    assert isinstance(batch, np.ndarray)
    return batch[index]


def _copy(obs: Obs) -> Obs:
    if isinstance(obs, dict):
        return {key: value.copy() for key, value in obs.items()}
    return obs.copy()


def _as_image(frame: Any) -> np.ndarray | None:
    return None if frame is None else np.asarray(frame)
