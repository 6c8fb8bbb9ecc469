"""FrameStack on multi-camera pixels: ``[V, C, H, W]`` frames stack to ``[V, C*stack, H, W]``.

A fake two-camera env writes (camera, step) into every pixel, so each position of a stack says
which camera and which step it came from. The replay buffer rebuilds stacks from single frames;
its stacks must equal the wrapper's, since agents train on one and act on the other.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from robotrl.envs.wrappers import FrameStack
from robotrl.replay import EpisodicReplay

VIEWS, CHANNELS, SIZE, STACK, EPISODE_STEPS = 2, 3, 8, 3, 6


class TwoCameraEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Pixel ``[c, k, y, x] = 100 * c + 10 * k + t`` at step ``t`` (camera c, channel k)."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict(
            {"pixels": spaces.Box(0, 255, (VIEWS, CHANNELS, SIZE, SIZE), np.uint8)}
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        codes = 100 * np.arange(VIEWS)[:, None] + 10 * np.arange(CHANNELS)[None, :] + self._t
        pixels = np.broadcast_to(codes[:, :, None, None], (VIEWS, CHANNELS, SIZE, SIZE))
        return {"pixels": pixels.astype(np.uint8)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self._t += 1
        return self._obs(), float(self._t), False, self._t >= EPISODE_STEPS, {}


def codes(pixels: np.ndarray) -> np.ndarray:
    """The per-channel code of a constant-per-channel image stack (drops H and W)."""
    return pixels[..., 0, 0].astype(int)


def expected_stack(step: int) -> np.ndarray:
    """``[V, C*STACK]`` codes of the stack ending at ``step``: per camera, oldest frame first."""
    steps = [max(step - age, 0) for age in range(STACK - 1, -1, -1)]  # reset frame repeated
    return np.array(
        [
            [100 * view + 10 * channel + t for t in steps for channel in range(CHANNELS)]
            for view in range(VIEWS)
        ]
    )


def test_multi_camera_frames_stack_along_each_cameras_channels():
    env = FrameStack(TwoCameraEnv(), STACK)
    assert env.observation_space["pixels"].shape == (VIEWS, CHANNELS * STACK, SIZE, SIZE)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (VIEWS, CHANNELS * STACK, SIZE, SIZE)
    np.testing.assert_array_equal(codes(obs["pixels"]), expected_stack(0))
    for step in range(1, 5):
        obs, *_ = env.step(np.zeros(1, np.float32))
        assert obs in env.observation_space
        np.testing.assert_array_equal(codes(obs["pixels"]), expected_stack(step))
    # The newest frame is each camera's last C channels, as the replay buffer reads it.
    np.testing.assert_array_equal(obs["pixels"][:, -CHANNELS:], env.unwrapped._obs()["pixels"])


def test_single_camera_layout_is_unchanged():
    class OneCameraEnv(TwoCameraEnv):
        def __init__(self) -> None:
            super().__init__()
            self.observation_space = spaces.Dict(
                {"pixels": spaces.Box(0, 255, (CHANNELS, SIZE, SIZE), np.uint8)}
            )

        def _obs(self) -> dict[str, np.ndarray]:
            return {"pixels": super()._obs()["pixels"][0]}

    env = FrameStack(OneCameraEnv(), STACK)
    assert env.observation_space["pixels"].shape == (CHANNELS * STACK, SIZE, SIZE)
    env.reset()
    obs, *_ = env.step(np.zeros(1, np.float32))
    np.testing.assert_array_equal(codes(obs["pixels"]), expected_stack(1)[0])


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_multi_camera_frame_stack_passes_the_gymnasium_env_checker():
    check_env(FrameStack(TwoCameraEnv(), STACK), skip_render_check=True)


def test_pixels_that_are_not_images_are_rejected():
    env = TwoCameraEnv()
    env.observation_space = spaces.Dict({"pixels": spaces.Box(0, 255, (SIZE, SIZE), np.uint8)})
    with pytest.raises(TypeError, match=r"\[C, H, W\] or \[V, C, H, W\]"):
        FrameStack(env, STACK)


def test_replay_rebuilds_the_wrappers_multi_camera_stacks():
    env = FrameStack(TwoCameraEnv(), STACK)
    replay = EpisodicReplay(capacity=100, frame_stack=STACK, nstep=1, discount=0.99, seed=0)
    obs, _ = env.reset()
    seen = {0: obs["pixels"]}
    replay.start_episode(obs)
    truncated = False
    while not truncated:
        obs, reward, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        seen[len(seen)] = obs["pixels"]
        replay.add(np.zeros(1, np.float32), float(reward), obs, terminated, truncated)
    batch = replay.sample(32)
    assert batch["obs"].shape == (32, VIEWS, CHANNELS * STACK, SIZE, SIZE)
    for obs_stack, next_stack in zip(batch["obs"], batch["next_obs"], strict=True):
        step = int(codes(obs_stack)[0, -CHANNELS])  # camera 0, newest frame, channel 0: t
        np.testing.assert_array_equal(obs_stack, seen[step])
        np.testing.assert_array_equal(next_stack, seen[step + 1])
