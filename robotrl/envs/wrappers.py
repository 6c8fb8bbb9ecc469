"""Wrappers shared by every suite."""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

Obs = dict[str, np.ndarray]


class FrameStack(gym.Wrapper[Obs, np.ndarray, Obs, np.ndarray]):
    """Stacks the last ``num_frames`` pixel frames along the channel axis.

    ``pixels`` goes from ``[C, H, W]`` to ``[C * num_frames, H, W]`` (oldest first), and a
    multi-camera ``[V, C, H, W]`` to ``[V, C * num_frames, H, W]``: each camera keeps its own
    stack, the layout the replay buffer rebuilds and the agents fold into channels. At reset the
    first frame fills the whole stack, as in DrQ-v2, so the replay buffer can rebuild any stack
    from single frames by clamping indices at the episode start.
    """

    def __init__(self, env: gym.Env[Obs, np.ndarray], num_frames: int) -> None:
        super().__init__(env)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or "pixels" not in space.spaces:
            raise TypeError("FrameStack needs a Dict observation space with a 'pixels' entry")
        pixels = space.spaces["pixels"]
        if not isinstance(pixels, spaces.Box) or len(pixels.shape) not in (3, 4):
            raise TypeError(
                f"FrameStack needs 'pixels' of shape [C, H, W] or [V, C, H, W], got {pixels}"
            )
        *views, channels, height, width = pixels.shape
        stacked = spaces.Box(
            low=0, high=255, shape=(*views, channels * num_frames, height, width), dtype=np.uint8
        )
        self.observation_space = spaces.Dict({**space.spaces, "pixels": stacked})
        self._frames: deque[np.ndarray] = deque(maxlen=num_frames)

    def _observation(self, obs: Obs) -> Obs:
        # Axis -3 is the channel axis of both layouts.
        return {**obs, "pixels": np.concatenate(list(self._frames), axis=-3)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        for _ in range(self.num_frames):
            self._frames.append(obs["pixels"])
        return self._observation(obs), info

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(obs["pixels"])
        return self._observation(obs), reward, terminated, truncated, info
