"""Tiny pixel envs for fast trainer tests (no simulator needed), and a random replay batch.

A bright column on a 24x24 image marks a 1-D position x in [-1, 1]; the action moves it and the
reward is 1 - |x|. It is a real Gymnasium env, only without physics, so the trainer's loop,
checkpointing and resume can be tested in seconds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robotrl.envs.wrappers import FrameStack

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


class ClockEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Every frame says whose episode it is and how far in, for tests of vectorised collection.

    Pixel channel 0 = step ``t`` within the episode, channel 1 = ``env_id``, channel 2 = the
    episode's number within this env (resets so far, from 0). An episode lasts
    ``3 + (seed + 2 * k) % 5`` steps, ``seed`` being the last reset seed and ``k`` the resets
    since it, so an episode depends on its reset seed alone and differently seeded envs end
    episodes at different steps; odd-length episodes terminate, the others are truncated. The
    reward is ``t`` plus the action; ``info["success"]`` is true on the steps where ``t`` is even.
    With ``tag=False`` channels 1 and 2 hold ``seed % 256`` and ``k`` instead, so what an agent
    sees depends on the reset seed alone, not on which env plays the episode.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, env_id: int = 0, render_mode: str | None = None, tag: bool = True) -> None:
        self.env_id, self.tag = env_id, tag
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(
            {"pixels": spaces.Box(0, 255, (3, SIZE, SIZE), np.uint8)}
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.episode, self.t, self.length = -1, 0, 0
        self.seed, self.since_seed = 0, 0

    def _pixels(self) -> np.ndarray:
        image = np.empty((3, SIZE, SIZE), np.uint8)
        if self.tag:
            image[0], image[1], image[2] = self.t, self.env_id, self.episode % 256
        else:
            image[0], image[1], image[2] = self.t, self.seed % 256, self.since_seed
        return image

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.seed, self.since_seed = seed, 0
        else:
            self.since_seed += 1
        self.episode += 1
        self.t = 0
        self.length = 3 + (self.seed + 2 * self.since_seed) % 5
        return {"pixels": self._pixels()}, {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self.t += 1
        reward = float(self.t) + float(action[0])
        done = self.t >= self.length
        terminated, truncated = done and self.length % 2 == 1, done and self.length % 2 == 0
        return (
            {"pixels": self._pixels()},
            reward,
            terminated,
            truncated,
            {"success": self.t % 2 == 0},
        )

    def render(self) -> np.ndarray:
        return np.full((SIZE, SIZE, 3), 8 * self.t + self.seed % 7, np.uint8)


def stacked_dot_env(episode_steps: int = 10, render_mode: str | None = None) -> gym.Env:
    """``FrameStack(DotEnv(...), 3)``, module-level so it pickles for worker processes."""
    return FrameStack(DotEnv(episode_steps=episode_steps, render_mode=render_mode), 3)


def stacked_clock_env(env_id: int = 0, render_mode: str | None = None, tag: bool = True) -> gym.Env:
    """``FrameStack(ClockEnv(...), 3)``, picklable for worker processes."""
    return FrameStack(ClockEnv(env_id, render_mode=render_mode, tag=tag), 3)


def pixel_batch(seed: int = 0, size: int = 16) -> dict[str, np.ndarray]:
    """A random replay batch of 9x32x32 frame stacks and 2-D actions (DrQ-v2 family updates)."""
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.integers(0, 256, (size, 9, 32, 32), dtype=np.uint8),
        "next_obs": rng.integers(0, 256, (size, 9, 32, 32), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (size, 2)).astype(np.float32),
        "reward": rng.uniform(0, 1, (size, 1)).astype(np.float32),
        "discount": np.full((size, 1), 0.97, np.float32),
    }
