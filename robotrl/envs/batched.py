"""Batched suites in the core: many worlds in one env, returning torch tensors (``BatchedEnv``).

A task trains on a batched env when its suite is registered only under
``robotrl.batched_envs`` (:func:`is_batched_suite`, e.g. ``task=warp/reach``): the trainer then
builds ``num_envs`` worlds with :func:`build_batched_env` and collects with
:func:`robotrl.collection.collect_batched`. Code written for one Gymnasium env (the CLI's
``build_env``, ``build_agent`` and ``robotrl-eval``) gets one world through
:class:`SingleWorldEnv`.

Host copies. Agents act on numpy arrays today, so :func:`to_numpy` copies each step's
observations from the sim's device to the host (on Warp's CPU device torch shares the memory,
so the copy is a view). A zero-copy GPU path would hand the tensors to an agent method taking
torch observations and keep replay on the device; see the ``robotrl.collection`` docstring.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch

from robotrl.envs import (
    BATCHED_ENTRY_POINT_GROUP,
    ENTRY_POINT_GROUP,
    BatchedEnv,
    make_batched_env,
)

Obs = dict[str, np.ndarray]


def is_batched_suite(suite: str) -> bool:
    """True if ``suite`` is registered as a batched suite and not as a one-env suite."""
    batched = {ep.name for ep in entry_points(group=BATCHED_ENTRY_POINT_GROUP)}
    single = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return suite in batched and suite not in single


def resolve_sim_device(device: str) -> str:
    """``auto`` -> ``cuda`` when PyTorch sees a GPU, else ``cpu``; other names pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def build_batched_env(
    task: Any, env_cfg: Any, *, seed: int, num_worlds: int, device: str = "cpu"
) -> BatchedEnv:
    """``num_worlds`` worlds of ``task`` (a TaskConfig; ``env_cfg`` an EnvConfig) on ``device``."""
    return make_batched_env(
        task.suite,
        task.name,
        num_worlds=num_worlds,
        seed=seed,
        image_size=int(env_cfg.image_size),
        action_repeat=int(env_cfg.action_repeat),
        frame_stack=int(env_cfg.frame_stack),
        device=resolve_sim_device(device),
        options=dict(task.options),
    )


def to_numpy(value: Any) -> Any:
    """Tensors (in dicts) as numpy arrays on the host; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {key: to_numpy(item) for key, item in value.items()}
    return value


class SingleWorldEnv(gym.Env[Obs, np.ndarray]):
    """One world of a batched env as a plain Gymnasium env with numpy observations.

    The batched env resets a world in the step that ends its episode; this adapter returns that
    step's ``final_obs`` instead, and ``reset()`` starts the next episode (``reset(seed=s)``
    seeds the world's stream with ``s``). ``render()`` is the newest frame of the last
    observation, at the observation's size.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012 (gym's API)

    def __init__(self, batched: BatchedEnv, *, render_mode: str | None = None) -> None:
        if batched.num_envs != 1:
            raise ValueError(f"SingleWorldEnv needs 1 world, got {batched.num_envs}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.batched = batched
        self.render_mode = render_mode
        self.observation_space = batched.single_observation_space  # type: ignore[assignment]
        self.action_space = batched.single_action_space
        self._last_obs: Obs | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
        obs, _ = self.batched.reset(seed=seed, options=options)
        self._last_obs = _row(obs)
        return self._last_obs, {}

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        actions = torch.as_tensor(np.asarray(action, np.float32)[None], device=self.batched.device)
        obs, reward, terminated, truncated, info = self.batched.step(actions)
        done = bool(terminated[0]) or bool(truncated[0])
        self._last_obs = _row(info["final_obs"] if done else obs)
        step_info = {}
        if "success" in info:
            step_info["success"] = bool(info["success"][0])
        return (
            self._last_obs,
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            step_info,
        )

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._last_obs is None:
            return None
        pixels = self._last_obs["pixels"]
        return np.ascontiguousarray(np.moveaxis(pixels[..., -3:, :, :], -3, -1))

    def close(self) -> None:
        self.batched.close()


def _row(obs: dict[str, torch.Tensor]) -> Obs:
    return {key: to_numpy(value[0]).copy() for key, value in obs.items()}
