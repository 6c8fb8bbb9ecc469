"""Frame stacking for batched torch envs, kept on the env's device.

The batched counterpart of the core's ``robotrl.envs.wrappers.FrameStack`` (same layout: the last
``k`` frames along the channel axis, oldest first; at an episode start the first frame fills the
stack), aware of SAME_STEP autoreset: ``info["final_obs"]["pixels"]`` is the finished episode's
stack ending in its final frame, while ``obs["pixels"]`` of a reset world is its new first frame
repeated, so no stack mixes two episodes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

TensorObs = dict[str, torch.Tensor]


class BatchedFrameStack(gym.vector.VectorWrapper):
    """``pixels`` ``[N, C, H, W]`` -> ``[N, C*k, H, W]`` (``[N, V, C*k, H, W]`` for V cameras)."""

    def __init__(self, env: gym.vector.VectorEnv, num_frames: int) -> None:
        super().__init__(env)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        self.num_frames = num_frames
        observation_space = env.single_observation_space
        if (
            not isinstance(observation_space, spaces.Dict)
            or "pixels" not in observation_space.spaces
        ):
            raise TypeError("BatchedFrameStack needs a Dict observation space with 'pixels'")
        pixels = observation_space["pixels"]
        if not isinstance(pixels, spaces.Box) or len(pixels.shape) not in (3, 4):
            raise TypeError(f"'pixels' must be [C, H, W] or [V, C, H, W] boxes, got {pixels}")
        *views, channels, height, width = pixels.shape
        self._channels = channels
        stacked = spaces.Box(0, 255, (*views, channels * num_frames, height, width), np.uint8)
        self.single_observation_space = spaces.Dict({**observation_space.spaces, "pixels": stacked})
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)
        self._stack: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        """The device of every tensor the wrapped env returns."""
        device: torch.device = self.env.device  # type: ignore[attr-defined]
        return device

    def _repeat(self, frame: torch.Tensor) -> torch.Tensor:
        # Axis -3 is the channel axis of both layouts.
        return torch.cat([frame] * self.num_frames, dim=-3)

    def _push(self, stack: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        return torch.cat((stack[..., self._channels :, :, :], frame), dim=-3)

    def reset(
        self, *, seed: Any = None, options: dict[str, Any] | None = None
    ) -> tuple[TensorObs, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        first = self._repeat(obs["pixels"])
        mask = (options or {}).get("reset_mask")
        if mask is None or self._stack is None:
            self._stack = first
        else:
            rows = torch.as_tensor(mask, device=first.device)
            rows = rows.view(-1, *([1] * (first.dim() - 1)))
            self._stack = torch.where(rows, first, self._stack)
        return {**obs, "pixels": self._stack}, info

    def step(
        self, actions: Any
    ) -> tuple[TensorObs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        if self._stack is None:
            raise RuntimeError("step() called before reset()")
        obs, reward, terminated, truncated, info = self.env.step(actions)
        done = info["_final_obs"]
        final_obs = info["final_obs"]
        final_stack = self._push(self._stack, final_obs["pixels"])
        rows = done.view(-1, *([1] * (final_stack.dim() - 1)))
        self._stack = torch.where(rows, self._repeat(obs["pixels"]), final_stack)
        info = {**info, "final_obs": {**final_obs, "pixels": final_stack}}
        return {**obs, "pixels": self._stack}, reward, terminated, truncated, info
