"""builtin/reach: real MuJoCo physics and EGL rendering, small images and short episodes."""

from __future__ import annotations

import numpy as np
import pytest

from robotrl.envs import make_env as make_core_env
from robotrl_sim import UnknownTaskError
from robotrl_sim.builtin import make_env
from robotrl_sim.builtin.reach import (
    FIXED_TARGET,
    TARGET_RADIUS,
    ReachEnv,
    reach_reward,
    scripted_action,
)
from tests.sim.env_checks import check_env_bare_and_stacked, rollout


def make_reach(image_size: int = 32, action_repeat: int = 2, seed: int = 0, **options) -> ReachEnv:
    env = make_env(
        "reach", seed=seed, image_size=image_size, action_repeat=action_repeat, **options
    )
    assert isinstance(env, ReachEnv)
    return env


def random_actions(env: ReachEnv) -> np.ndarray:
    return env.action_space.sample()


def mean_return(policy, episodes: int, action_repeat: int = 2) -> tuple[float, float]:
    env = make_reach(action_repeat=action_repeat, seed=7)
    env.action_space.seed(7)
    returns, successes = [], []
    for _ in range(episodes):
        env.reset()
        done, total = False, 0.0
        while not done:
            _, reward, terminated, truncated, info = env.step(policy(env))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        successes.append(info["success"])
    env.close()
    return float(np.mean(returns)), float(np.mean(successes))


def test_passes_the_gymnasium_checker_bare_and_frame_stacked():
    env = make_reach(episode_steps=10)
    check_env_bare_and_stacked(env)
    env.close()


def test_spaces_are_single_channels_first_frames_and_unit_actions():
    env = make_reach(image_size=48)
    assert set(env.observation_space.spaces) == {"pixels"}
    pixels = env.observation_space["pixels"]
    assert (pixels.shape, pixels.dtype, pixels.low.min(), pixels.high.max()) == (
        (3, 48, 48),
        np.uint8,
        0,
        255,
    )
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    obs, info = env.reset()
    assert obs["pixels"].shape == (3, 48, 48) and obs["pixels"].dtype == np.uint8
    assert obs["pixels"].flags.c_contiguous
    assert info == {"success": False}
    env.close()


def test_proprio_is_added_only_when_asked_for():
    env = make_reach(proprio=True)
    obs, _ = env.reset()
    assert obs["proprio"].dtype == np.float32 and obs["proprio"].shape == (4,)
    np.testing.assert_allclose(obs["proprio"][:2], env.agent_position, atol=1e-6)
    assert obs in env.observation_space
    env.close()


def test_agent_and_target_are_clearly_visible_at_32_pixels():
    env = make_reach(image_size=32)
    obs, _ = env.reset(seed=3)
    red, green, blue = (channel.astype(int) for channel in obs["pixels"])
    agent_pixels = (red > 180) & (green < 160) & (blue < 90)
    target_pixels = (green > 150) & (red < 120)
    assert agent_pixels.sum() >= 9, "the agent should cover at least a 3x3 patch"
    assert target_pixels.sum() >= 12, "the target should be bigger than the agent"
    # The agent's blob sits where the true position projects (x right, y up in the image).
    rows, cols = np.nonzero(agent_pixels)
    view_width = 0.64  # the orthographic camera's fovy, in metres
    expected_col = (env.agent_position[0] / view_width + 0.5) * 32
    expected_row = (0.5 - env.agent_position[1] / view_width) * 32
    assert (
        abs(cols.mean() + 0.5 - expected_col) < 1.5 and abs(rows.mean() + 0.5 - expected_row) < 1.5
    )
    env.close()


def test_same_seed_gives_same_episode_and_reset_seed_matches_factory_seed():
    actions = [np.array([0.5, -1.0], np.float32)] * 3 + [np.array([-1.0, 0.3], np.float32)] * 3
    env_a, env_b = make_reach(seed=5), make_reach(seed=5)
    first_a, first_b = env_a.reset()[0], env_b.reset()[0]
    np.testing.assert_array_equal(first_a["pixels"], first_b["pixels"])
    pixels_a, rewards_a = rollout(env_a, actions, seed=11)
    pixels_b, rewards_b = rollout(env_b, actions, seed=11)
    assert rewards_a == rewards_b
    for frame_a, frame_b in zip(pixels_a, pixels_b, strict=True):
        np.testing.assert_array_equal(frame_a, frame_b)
    # reset(seed=5) restarts the episode a fresh env built with seed=5 begins with.
    np.testing.assert_array_equal(env_a.reset(seed=5)[0]["pixels"], first_a["pixels"])
    assert not np.array_equal(env_a.reset(seed=6)[0]["pixels"], first_a["pixels"])
    env_a.close()
    env_b.close()


def test_action_repeat_sums_the_rewards_of_the_repeated_steps():
    actions = [np.array([1.0, 0.2], np.float32), np.array([-0.4, 1.0], np.float32)]
    twice = make_reach(action_repeat=2, seed=1)
    once = make_reach(action_repeat=1, seed=1)
    pixels_twice, rewards_twice = rollout(twice, actions, seed=3)
    pixels_once, rewards_once = rollout(once, [a for a in actions for _ in range(2)], seed=3)
    np.testing.assert_allclose(rewards_twice, np.add(rewards_once[0::2], rewards_once[1::2]))
    assert all(0.0 <= reward <= 1.0 for reward in rewards_once)
    np.testing.assert_array_equal(pixels_twice[-1], pixels_once[-1])
    twice.close()
    once.close()


def test_episodes_are_truncated_after_episode_steps_and_never_terminated():
    env = make_reach(episode_steps=4)
    env.reset()
    ends = [env.step(env.action_space.sample())[2:4] for _ in range(4)]
    assert ends == [(False, False)] * 3 + [(False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())
    env.reset()
    env.step(env.action_space.sample())
    env.close()


def test_fixed_target_stays_put_and_random_target_moves():
    fixed, moving = make_reach(target="fixed"), make_reach(target="random")
    targets_fixed, targets_moving = [], []
    for _ in range(3):
        fixed.reset()
        moving.reset()
        targets_fixed.append(fixed.target_position)
        targets_moving.append(moving.target_position)
    np.testing.assert_allclose(targets_fixed, [FIXED_TARGET] * 3)
    assert len({tuple(target) for target in targets_moving}) == 3
    fixed.close()
    moving.close()


def test_reward_is_one_on_the_target_and_decays_with_distance():
    assert reach_reward(0.0) == reach_reward(TARGET_RADIUS) == 1.0
    assert reach_reward(0.2) < reach_reward(0.1) < 1.0
    assert reach_reward(TARGET_RADIUS + 0.2) == pytest.approx(0.1)


def test_scripted_policy_beats_random_by_a_clear_margin():
    # Both see the same 20 start and target positions: the env's seed alone decides them.
    scripted_return, scripted_success = mean_return(scripted_action, episodes=20)
    random_return, random_success = mean_return(random_actions, episodes=20)
    # 50 agent steps x 2 control steps, each rewarded in [0, 1]: the best return is 100.
    # Measured over 100 episodes: scripted 96.6 (success 1.0), random 30.4 (success 0.06).
    assert scripted_success == 1.0 and random_success <= 0.25
    assert scripted_return > 90.0
    assert random_return < 0.5 * scripted_return


def test_render_returns_frames_at_render_size_and_close_is_idempotent():
    env = make_reach(render_size=96)
    env.reset()
    frame = env.render()
    assert frame is not None and frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    assert frame.std() > 10, "the frame should show the arena, not a blank buffer"
    # Big eval frames share the renderer with observations without disturbing them.
    assert env.step(env.action_space.sample())[0]["pixels"].shape == (3, 32, 32)
    env.close()
    env.close()
    assert make_reach(render_mode=None).render() is None


def test_envs_in_one_process_keep_their_own_gl_state():
    # mujoco.Renderer.close() frees GL objects in whichever context is current, which breaks the
    # renderer that drew last; closing an eval env must not break the train env next to it.
    eval_env, train_env = make_reach(seed=5), make_reach(seed=4)
    eval_env.reset()
    before = train_env.reset(seed=4)[0]["pixels"]  # the train env's context is now current
    eval_env.close()
    np.testing.assert_array_equal(train_env.reset(seed=4)[0]["pixels"], before)
    train_env.close()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"episode_step": 10}, TypeError, "'episode_step'.*valid options are episode_steps"),
        ({"target": "moving"}, ValueError, "target must be"),
        ({"episode_steps": 0}, ValueError, "episode_steps"),
        ({"render_mode": "human"}, ValueError, "render_mode"),
        ({"control_timestep": 0.015}, ValueError, "multiple of the physics timestep"),
    ],
)
def test_bad_options_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        make_reach(**options)


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(UnknownTaskError, match=r"unknown builtin task 'push'.*valid tasks: reach"):
        make_env("push", seed=0, image_size=32, action_repeat=1)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.array([np.nan, 0.0], np.float32), "finite"),
        (np.array([0.0, np.inf], np.float32), "finite"),
        (np.zeros(3, np.float32), r"shape \(2,\)"),
        (np.zeros((1, 2), np.float32), r"shape \(2,\)"),
    ],
)
def test_bad_actions_are_rejected(action, match):
    env = make_reach()
    env.reset()
    with pytest.raises(ValueError, match=match):
        env.step(action)
    env.close()


def test_out_of_range_actions_are_clipped_like_the_bounds():
    clipped, bounded = make_reach(seed=2), make_reach(seed=2)
    _, rewards_clipped = rollout(clipped, [np.array([5.0, -3.0], np.float32)] * 3, seed=0)
    _, rewards_bounded = rollout(bounded, [np.array([1.0, -1.0], np.float32)] * 3, seed=0)
    assert rewards_clipped == rewards_bounded
    clipped.close()
    bounded.close()


def test_core_builds_reach_through_the_entry_point_with_frame_stacking():
    env = make_core_env(
        "builtin",
        "reach",
        seed=0,
        image_size=32,
        action_repeat=2,
        frame_stack=3,
        options={"episode_steps": 5},
    )
    obs, _ = env.reset()
    assert obs["pixels"].shape == (9, 32, 32)
    env.close()
