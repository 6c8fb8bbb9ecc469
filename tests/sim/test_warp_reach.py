"""warp/reach: builtin/reach on batched MuJoCo Warp worlds (Warp's CPU device).

Physics against ``mujoco.mj_step``, the reward and success against builtin/reach's own formula
(``robotrl_sim.builtin.reach.reach_reward``, plain Python floats), the target where the pixels
show it and redrawn per episode and world, per-world seeding, and the one-world Gymnasium
adapter the CLI uses.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from robotrl.builders import build_env
from robotrl.config import EnvConfig, TaskConfig
from robotrl.envs import make_batched_env as make_core_batched_env
from robotrl.envs.batched import SingleWorldEnv, is_batched_suite
from robotrl_sim.builtin.reach import reach_reward as builtin_reach_reward
from robotrl_sim.warp import BatchedMujocoEnv, make_batched_env
from robotrl_sim.warp.reach import (
    AGENT_RADIUS,
    SPAWN_HALF_WIDTH,
    START_CANDIDATES,
    TARGET_RADIUS,
    reach_reward,
    spawn,
)

NUM_WORLDS = 8
SIZE = 32
ARENA = 0.64  # metres across the orthographic top view


def make(num_worlds: int = NUM_WORLDS, seed: int | list[int] = 0, **options) -> BatchedMujocoEnv:
    options.setdefault("action_repeat", 1)
    env = make_batched_env(
        "reach", num_worlds=num_worlds, seed=seed, image_size=SIZE, proprio=True, **options
    )
    assert isinstance(env, BatchedMujocoEnv)
    return env


@pytest.fixture(scope="module")
def env() -> BatchedMujocoEnv:
    env = make()
    yield env
    env.close()


def targets(env: BatchedMujocoEnv) -> np.ndarray:
    return env.sim.mocap_pos[:, 0, :2].numpy().copy()


def green_centroids(pixels: torch.Tensor) -> np.ndarray:
    """(x, y) in metres of the green disc's pixels in each ``[N, 3, H, W]`` top-down image."""
    image = pixels[:, -3:].numpy().astype(int)
    green = (image[:, 1] - image[:, 0] > 80) & (image[:, 1] - image[:, 2] > 80)
    centres = []
    for mask in green:
        rows, cols = np.nonzero(mask)
        assert len(rows) >= 4, "the target is not visible"
        # Pixel centres; the image's top row is +y.
        x = (cols.mean() + 0.5) / SIZE * ARENA - ARENA / 2
        y = ARENA / 2 - (rows.mean() + 0.5) / SIZE * ARENA
        centres.append((x, y))
    return np.array(centres)


# -- physics, reward and success -------------------------------------------------------------


def test_physics_reward_and_success_match_mj_step_and_builtins_formula(env):
    env.reset(seed=0)
    generator = torch.Generator().manual_seed(0)
    qpos = (torch.rand(NUM_WORLDS, 2, generator=generator) - 0.5) * 0.4
    qvel = torch.randn(NUM_WORLDS, 2, generator=generator) * 0.3
    target = torch.zeros(NUM_WORLDS, 1, 3)
    target[:, 0, :2] = (torch.rand(NUM_WORLDS, 2, generator=generator) - 0.5) * 0.4
    target[:, 0, 2] = 0.002
    # World 0 starts on its target, world 1 runs into a joint limit.
    qpos[0] = target[0, 0, :2]
    qpos[1] = torch.tensor([0.2, -0.2])
    env.set_state(qpos, qvel, mocap_pos=target)
    reference = []
    for world in range(NUM_WORLDS):
        data = mujoco.MjData(env.mj_model)
        data.qpos[:], data.qvel[:] = qpos[world].numpy(), qvel[world].numpy()
        data.mocap_pos[0] = target[world, 0].numpy()
        mujoco.mj_forward(env.mj_model, data)
        reference.append(data)

    worst = 0.0
    successes, rewards = [], []
    for step in range(99):  # the episode's 100th step would reset the worlds
        action = torch.rand(NUM_WORLDS, 2, generator=generator) * 2 - 1
        action[1] = torch.tensor([1.0, -1.0])
        _, reward, _, _, info = env.step(action)
        expected_reward, expected_success = [], []
        for world, data in enumerate(reference):
            data.ctrl[:] = action[world].numpy()
            mujoco.mj_step(env.mj_model, data)
            distance = math.dist(data.qpos[:2], data.mocap_pos[0, :2])
            expected_reward.append(builtin_reach_reward(distance))
            expected_success.append(distance <= TARGET_RADIUS)
        expected = np.stack([data.qpos for data in reference])
        worst = max(worst, float(np.abs(env.sim.qpos.numpy() - expected).max()))
        np.testing.assert_allclose(reward.numpy(), expected_reward, atol=1e-5)
        assert info["success"].tolist() == expected_success, step
        successes.append(expected_success)
        rewards.append(expected_reward)
    assert worst < 1e-4, worst
    # The worlds were in different states; rewards spanned the range; success was seen and not.
    assert np.unique(env.sim.qpos.numpy().round(3), axis=0).shape[0] == NUM_WORLDS
    assert min(map(min, rewards)) < 0.2 and max(map(max, rewards)) == 1.0
    assert any(map(any, successes)) and not all(map(all, successes))
    assert abs(env.sim.qpos[1]).max() > 0.235  # the limit is soft, but holds
    assert abs(env.sim.qpos[1]).max() < 0.27
    # The target is a mocap body: stepping never moves it.
    assert torch.equal(env.sim.mocap_pos, target)


def test_reward_formula_by_hand():
    distances = torch.tensor([0.0, 0.06, 0.16, 0.26, 1.0])
    # 1 on the disc; 0.1 at REWARD_MARGIN beyond it; exp(-ln 10 / 4) at half the margin.
    expected = [
        1.0,
        1.0,
        10 ** (-0.25),
        0.1,
        math.exp(-0.5 * (0.94 * math.sqrt(2 * math.log(10)) / 0.2) ** 2),
    ]
    np.testing.assert_allclose(reach_reward(distances).numpy(), expected, rtol=1e-3)
    for distance in (0.0, 0.05, 0.07, 0.13, 0.31, 0.5):
        ours = float(reach_reward(torch.tensor(distance)))
        assert ours == pytest.approx(builtin_reach_reward(distance), rel=1e-6)


def test_an_agent_step_sums_its_physics_steps_rewards():
    repeated = make(num_worlds=2, action_repeat=2)
    single = make(num_worlds=2, action_repeat=1)
    repeated.reset(seed=4)
    single.reset(seed=4)
    action = torch.tensor([[0.7, -0.2], [-1.0, 0.4]])
    _, reward2, *_ = repeated.step(action)
    _, first, *_ = single.step(action)
    _, second, *_ = single.step(action)
    torch.testing.assert_close(reward2, first + second)
    assert repeated.max_episode_steps == 50 and single.max_episode_steps == 100


# -- the target: seen, and redrawn each episode -----------------------------------------------


def test_the_target_is_where_the_pixels_show_it_and_moves_between_episodes():
    short = make(time_limit=0.25)  # 5 agent steps
    obs, _ = short.reset(seed=2)
    first = targets(short)
    np.testing.assert_allclose(green_centroids(obs["pixels"]), first, atol=0.015)
    assert np.all(np.abs(first) <= SPAWN_HALF_WIDTH)
    still = torch.zeros(NUM_WORLDS, 2)
    for step in range(5):
        obs, _, terminated, truncated, info = short.step(still)
        assert not terminated.any()
        assert truncated.all() == (step == 4)
    second = targets(short)
    # Every world drew a new target at its reset, and its new image shows it...
    assert np.all(np.linalg.norm(second - first, axis=1) > 1e-3)
    np.testing.assert_allclose(green_centroids(obs["pixels"]), second, atol=0.015)
    # ... while final_obs still shows the episode's own target.
    np.testing.assert_allclose(green_centroids(info["final_obs"]["pixels"]), first, atol=0.015)
    # Start positions are never on the target.
    start = short.sim.qpos.numpy()
    assert np.all(np.linalg.norm(start - second, axis=1) > TARGET_RADIUS + AGENT_RADIUS)
    short.close()


def test_spawn_distribution():
    noise = torch.randn(
        20_000, 2 + 2 * START_CANDIDATES, generator=torch.Generator().manual_seed(0)
    )
    target, start = spawn(noise)
    for positions in (target, start):
        assert positions.abs().max() <= SPAWN_HALF_WIDTH
        assert positions.abs().max() > 0.97 * SPAWN_HALF_WIDTH  # uniform: reaches the edges
        assert positions.mean(0).abs().max() < 0.005
    # Uniform on the square: variance (2a)²/12 per axis.
    np.testing.assert_allclose(target.var(0).numpy(), (2 * SPAWN_HALF_WIDTH) ** 2 / 12, rtol=0.03)
    assert (torch.linalg.vector_norm(start - target, dim=1) > TARGET_RADIUS + AGENT_RADIUS).all()


def test_worlds_are_seeded_independently():
    eight = make(seed=11)
    eight.reset(seed=11)
    a_targets, a_starts = targets(eight), eight.sim.qpos.numpy().copy()
    assert np.unique(a_targets.round(4), axis=0).shape[0] == NUM_WORLDS  # worlds differ
    two = make(num_worlds=2, seed=11)
    two.reset(seed=11)
    # A world's episodes depend on (seed, world index), not on how many worlds there are.
    np.testing.assert_array_equal(targets(two), a_targets[:2])
    np.testing.assert_array_equal(two.sim.qpos.numpy(), a_starts[:2])
    eight.reset(seed=12)
    assert not np.allclose(targets(eight), a_targets)
    # One seed per world: equal seeds give equal worlds; reseeding replays them.
    eight.reset(seed=[5, 6, 5, 6, 5, 6, 5, 6])
    per_world = targets(eight)
    assert np.array_equal(per_world[0::2], np.repeat(per_world[:1], 4, axis=0))
    assert not np.array_equal(per_world[0], per_world[1])
    eight.reset(seed=[5, 6, 5, 6, 5, 6, 5, 6])
    np.testing.assert_array_equal(targets(eight), per_world)
    eight.close()
    two.close()


# -- as the core builds it ----------------------------------------------------------------------


def test_the_core_builds_it_and_a_scripted_policy_succeeds():
    assert is_batched_suite("warp") and not is_batched_suite("builtin")
    env = make_core_batched_env(
        "warp", "reach", num_worlds=4, seed=3, image_size=SIZE, action_repeat=2, frame_stack=3,
        options={"proprio": True},
    )  # fmt: skip
    obs, _ = env.reset(seed=3)
    assert obs["pixels"].shape == (4, 9, SIZE, SIZE) and obs["proprio"].shape == (4, 4)
    task = env.unwrapped.task  # type: ignore[attr-defined]
    sim = env.unwrapped.sim  # type: ignore[attr-defined]
    scripted, random_ = torch.zeros(4), torch.zeros(4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        towards = (task.target_position(sim) - obs["proprio"][:, :2]) * 20
        obs, reward, _, truncated, info = env.step(towards.clamp(-1, 1))
        scripted += reward
    assert truncated.all() and info["success"].all()  # ended on the target
    torch.testing.assert_close(info["episode_return"], scripted)
    for _ in range(50):
        _, reward, *_ = env.step(torch.rand(4, 2, generator=generator) * 2 - 1)
        random_ += reward
    # Per agent step the reward is in [0, action_repeat]: scripted > 90 of 100, random less.
    assert scripted.min() > 90 and random_.mean() < scripted.mean()
    env.close()


def test_one_world_gymnasium_adapter_passes_check_env():
    env = build_env(TaskConfig("warp", "reach"), EnvConfig(image_size=SIZE), seed=0)
    assert isinstance(env, SingleWorldEnv)
    assert env.observation_space["pixels"].shape == (9, SIZE, SIZE)  # type: ignore[index]
    check_env(env, skip_render_check=True)
    env.reset(seed=1)
    total, steps, done = 0.0, 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
        assert isinstance(info["success"], bool)
    assert steps == 50 and 0 <= total <= 100
    env.close()
