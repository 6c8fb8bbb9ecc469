"""SB3 on batched MuJoCo Warp worlds (warp/reach on Warp's CPU device) through BatchedVecEnv.

Every check compares the adapter with a second batched env built and stepped identically, so
the reference is the batched env's own output, not a copy of the adapter's logic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import SAC  # pinned in requirements/lock.txt

from robotrl.envs import make_batched_env
from robotrl.envs.batched import to_numpy
from robotrl.integrations.sb3 import BatchedVecEnv

WORLDS, STEPS_PER_EPISODE = 3, 50  # warp/reach: 5 s at 0.05 s x action repeat 2


def batched(image_size: int = 32, proprio: bool = False):
    return make_batched_env(
        "warp",
        "reach",
        num_worlds=WORLDS,
        seed=0,
        image_size=image_size,
        action_repeat=2,
        frame_stack=3,
        device="cpu",
        options={"proprio": proprio, "copy": True},
    )


def test_observations_dones_and_terminal_observations_match_the_batched_env():
    adapter, direct = BatchedVecEnv(batched(proprio=True), seed=5), batched(proprio=True)
    obs = adapter.reset()
    tensors, _ = direct.reset(seed=[5, 6, 7])  # SB3's convention: world i gets seed + i
    np.testing.assert_array_equal(obs["pixels"], to_numpy(tensors)["pixels"])
    assert obs["pixels"].dtype == np.uint8 and obs["pixels"].shape == (WORLDS, 9, 32, 32)
    rng = np.random.default_rng(0)
    returns = np.zeros(WORLDS)
    for step in range(1, STEPS_PER_EPISODE + 1):
        actions = rng.uniform(-1, 1, (WORLDS, 2)).astype(np.float32)
        obs, rewards, dones, infos = adapter.step(actions)
        tensors, expected_rewards, _, truncated, info = direct.step(torch.as_tensor(actions))
        returns += rewards
        np.testing.assert_array_equal(rewards, to_numpy(expected_rewards))
        np.testing.assert_array_equal(obs["pixels"], to_numpy(tensors)["pixels"])
        np.testing.assert_array_equal(obs["proprio"], to_numpy(tensors)["proprio"])
        assert [i["is_success"] for i in infos] == to_numpy(info["success"]).tolist()
        assert dones.tolist() == [step == STEPS_PER_EPISODE] * WORLDS
    # The time limit truncates: SB3 must bootstrap, and keeps each world's true last observation.
    final = to_numpy(info["final_obs"])
    for world, world_info in enumerate(infos):
        assert world_info["TimeLimit.truncated"] and to_numpy(truncated)[world]
        terminal = world_info["terminal_observation"]
        np.testing.assert_array_equal(terminal["pixels"], final["pixels"][world])
        assert not np.array_equal(terminal["pixels"], obs["pixels"][world])  # next episode's
        assert world_info["episode"]["l"] == STEPS_PER_EPISODE
        assert world_info["episode"]["r"] == pytest.approx(returns[world], rel=1e-5)
    frames = adapter.get_images()
    assert len(frames) == WORLDS and frames[0].shape == (32, 32, 3)
    np.testing.assert_array_equal(frames[1], obs["pixels"][1, -3:].transpose(1, 2, 0))
    adapter.close()
    direct.close()


def test_bad_inputs_are_clear_errors():
    adapter = BatchedVecEnv(batched())
    adapter.reset()
    with pytest.raises(ValueError, match=f"expected {WORLDS} actions, got 2"):
        adapter.step_async(np.zeros((2, 2), np.float32))
    with pytest.raises(RuntimeError, match="call step_async"):
        adapter.step_wait()
    with pytest.raises(AttributeError, match="share 'render_mode'"):
        adapter.set_attr("render_mode", None)
    adapter.close()


def test_sb3_sac_trains_on_batched_worlds():
    # NatureCNN (SB3's CnnPolicy) needs images of at least 36x36.
    env = BatchedVecEnv(batched(image_size=40), seed=0)
    model = SAC("CnnPolicy", env, buffer_size=500, learning_starts=60, batch_size=8, seed=0)
    model.learn(total_timesteps=WORLDS * 60)  # a smoke run across one episode end per world
    assert model.num_timesteps == WORLDS * 60 and model.replay_buffer.size() == 60
    assert len(model.ep_info_buffer) == WORLDS  # each world's episode reached SB3's logging
    env.close()
