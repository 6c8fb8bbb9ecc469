"""Checks shared by the simulator tests."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from robotrl.envs.wrappers import FrameStack

# check_env warns about these for every env that is not registered with gymnasium.make, or that is
# wrapped; anything else it warns about is a real finding.
EXPECTED_CHECKER_WARNINGS = (
    "Not able to test alternative render modes",
    "is different from the unwrapped version",
)


def check_env_bare_and_stacked(env: gym.Env) -> None:
    """Gymnasium's checker on ``env`` and on ``FrameStack(env, 3)``, failing on any surprise."""
    for candidate in (env, FrameStack(env, 3)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(candidate)
        surprises = [
            str(warning.message)
            for warning in caught
            if not any(expected in str(warning.message) for expected in EXPECTED_CHECKER_WARNINGS)
        ]
        assert not surprises, surprises


def rollout(
    env: gym.Env, actions: list[np.ndarray], seed: int
) -> tuple[list[np.ndarray], list[float]]:
    """Pixels after reset and after each action, and the rewards, for one seeded episode."""
    obs, _ = env.reset(seed=seed)
    pixels, rewards = [obs["pixels"]], []
    for action in actions:
        obs, reward, *_ = env.step(action)
        pixels.append(obs["pixels"])
        rewards.append(float(reward))
    return pixels, rewards
