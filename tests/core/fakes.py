"""A tiny pixel env for fast trainer tests (no simulator needed).

A bright column on a 24x24 image marks a 1-D position x in [-1, 1]; the action moves it and the
reward is 1 - |x|. It is a real Gymnasium env, only without physics, so the trainer's loop,
checkpointing and resume can be tested in seconds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SIZE = 24


class DotEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(
        self, episode_steps: int = 10, render_mode: str | None = None, nan_reward: bool = False
    ) -> None:
        self.episode_steps = episode_steps
        self.nan_reward = nan_reward  # a broken reward function, for divergence tests
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(
            {"pixels": spaces.Box(0, 255, (3, SIZE, SIZE), np.uint8)}
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._x = 0.0
        self._t = 0

    def _pixels(self) -> np.ndarray:
        image = np.zeros((3, SIZE, SIZE), np.uint8)
        column = round((self._x + 1.0) / 2.0 * (SIZE - 1))
        image[:, :, column] = 255
        return image

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._x = float(self.np_random.uniform(-1.0, 1.0))
        self._t = 0
        return {"pixels": self._pixels()}, {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self._x = float(np.clip(self._x + 0.25 * float(action[0]), -1.0, 1.0))
        self._t += 1
        reward = float("nan") if self.nan_reward else 1.0 - abs(self._x)
        truncated = self._t >= self.episode_steps
        return {"pixels": self._pixels()}, reward, False, truncated, {"success": abs(self._x) < 0.2}

    def render(self) -> np.ndarray:
        return self._pixels().transpose(1, 2, 0)
