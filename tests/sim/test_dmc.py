"""dmc adapter: real dm_control physics and EGL rendering, few steps and small images."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from dm_control import manipulation, suite
from dm_control import mujoco as dm_mujoco
from dm_control.rl import control
from dm_control.suite import base

from robotrl_sim import UnknownTaskError
from robotrl_sim.dmc import TASKS, DMCEnv, DMCOptions, make_env, split_task_name
from tests.sim.env_checks import check_env_bare_and_stacked, rollout

# The suite tasks of the DrQ-v2 paper, named as in its configs and our reference curves.
DRQV2_TASKS = {
    "acrobot_swingup": ("acrobot", "swingup"),
    "cartpole_balance": ("cartpole", "balance"),
    "cartpole_balance_sparse": ("cartpole", "balance_sparse"),
    "cartpole_swingup": ("cartpole", "swingup"),
    "cartpole_swingup_sparse": ("cartpole", "swingup_sparse"),
    "cheetah_run": ("cheetah", "run"),
    "cup_catch": ("ball_in_cup", "catch"),
    "finger_spin": ("finger", "spin"),
    "finger_turn_easy": ("finger", "turn_easy"),
    "finger_turn_hard": ("finger", "turn_hard"),
    "hopper_hop": ("hopper", "hop"),
    "hopper_stand": ("hopper", "stand"),
    "humanoid_run": ("humanoid", "run"),
    "humanoid_stand": ("humanoid", "stand"),
    "humanoid_walk": ("humanoid", "walk"),
    "pendulum_swingup": ("pendulum", "swingup"),
    "point_mass_easy": ("point_mass", "easy"),
    "quadruped_run": ("quadruped", "run"),
    "quadruped_walk": ("quadruped", "walk"),
    "reacher_easy": ("reacher", "easy"),
    "reacher_hard": ("reacher", "hard"),
    "walker_run": ("walker", "run"),
    "walker_stand": ("walker", "stand"),
    "walker_walk": ("walker", "walk"),
    # dm_control's manipulation suite (composer), the 12th task of DrQ-v2's medium set.
    "reach_duplo": ("manipulation", "reach_duplo"),
}
SLOW_FLAGS_OFF = {"shadow": False, "reflection": False, "skybox": False}


def make_dmc(task: str, image_size: int = 32, action_repeat: int = 2, seed: int = 0, **options):
    env = make_env(task, seed=seed, image_size=image_size, action_repeat=action_repeat, **options)
    assert isinstance(env, DMCEnv)
    return env


def channels_last(pixels: np.ndarray) -> np.ndarray:
    return pixels.transpose(1, 2, 0)


@pytest.mark.parametrize(("name", "expected"), sorted(DRQV2_TASKS.items()))
def test_drqv2_task_names_split_into_suite_domain_and_task(name, expected):
    assert split_task_name(name) == expected
    assert expected in suite.ALL_TASKS or f"{expected[1]}_vision" in manipulation.ALL


def test_full_names_and_underscored_domains_are_accepted_too():
    assert split_task_name("ball_in_cup_catch") == ("ball_in_cup", "catch")
    assert split_task_name("humanoid_CMU_run") == ("humanoid_CMU", "run")
    assert "lqr_lqr_2_1" not in TASKS  # unbounded actuators: no [-1, 1] rescaling


def test_unknown_task_suggests_close_names_and_lists_the_valid_ones():
    with pytest.raises(UnknownTaskError, match=r"'cup_cath'\. Did you mean cup_catch.*walker_walk"):
        make_dmc("cup_cath")


def test_passes_the_gymnasium_checker_bare_and_frame_stacked():
    env = make_dmc("cartpole_swingup")
    check_env_bare_and_stacked(env)
    env.close()


def test_spaces_dtypes_and_proprio_option():
    env = make_dmc("walker_walk", image_size=40)
    assert set(env.observation_space.spaces) == {"pixels"}
    assert env.observation_space["pixels"].shape == (3, 40, 40)
    assert env.observation_space["pixels"].dtype == np.uint8
    assert (env.action_space.shape, env.action_space.dtype) == ((6,), np.float32)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    obs, info = env.reset()
    assert obs["pixels"].dtype == np.uint8 and obs["pixels"].shape == (3, 40, 40)
    assert info == {}
    env.close()
    # walker: orientations (14) + height (1) + velocity (9).
    with_state = make_dmc("walker_walk", proprio=True)
    obs, _ = with_state.reset()
    assert obs["proprio"].dtype == np.float32 and obs["proprio"].shape == (24,)
    assert obs in with_state.observation_space
    with_state.close()


def test_default_pixels_are_the_reference_setup_rendered_by_dm_control():
    # DrQ-v2: suite.load with task_kwargs random=seed, no reward colours, physics.render(84, 84,
    # camera 0), each action applied action_repeat times.
    env = make_dmc("cartpole_swingup", image_size=84, seed=3)
    reference = suite.load("cartpole", "swingup", task_kwargs={"random": 3}, visualize_reward=False)
    obs, _ = env.reset()
    reference.reset()
    np.testing.assert_array_equal(
        channels_last(obs["pixels"]), reference.physics.render(84, 84, camera_id=0)
    )
    obs, reward, *_ = env.step(np.array([0.7], np.float32))
    reference_reward = sum(reference.step(np.array([0.7])).reward for _ in range(2))
    assert reward == pytest.approx(reference_reward)
    np.testing.assert_array_equal(
        channels_last(obs["pixels"]), reference.physics.render(84, 84, camera_id=0)
    )
    env.close()


def test_reach_duplo_is_drqv2s_manipulation_setup():
    # DrQ-v2: manipulation.load("reach_duplo_vision", seed) and its 84x84 "front_close" pixels.
    env = make_dmc("reach_duplo", image_size=84, seed=4)
    reference = manipulation.load("reach_duplo_vision", seed=4)
    obs, _ = env.reset()
    step = reference.reset()
    front_close = step.observation["front_close"][0]  # [H, W, 3]
    np.testing.assert_array_equal(channels_last(obs["pixels"]), front_close)
    action = np.linspace(-0.9, 0.9, 9).astype(np.float32)
    spec = reference.action_spec()
    scaled = spec.minimum + (action + 1.0) * 0.5 * (spec.maximum - spec.minimum)
    obs, reward, terminated, truncated, _ = env.step(action)
    reference_reward = 0.0
    for _ in range(2):
        step = reference.step(scaled)
        reference_reward += step.reward
    assert reward == pytest.approx(reference_reward)
    np.testing.assert_array_equal(channels_last(obs["pixels"]), step.observation["front_close"][0])
    steps = 1
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
    assert (steps, terminated, truncated) == (125, False, True)  # 10 s at 0.04 s x repeat 2
    # A composer env recompiles its physics at reset: the cameras follow it.
    again, _ = env.reset(seed=9)
    same, _ = env.reset(seed=9)
    np.testing.assert_array_equal(again["pixels"], same["pixels"])
    env.close()


def test_fast_render_switches_shadows_reflections_and_skybox_off():
    default = make_dmc("walker_walk", image_size=64, seed=1)
    fast = make_dmc("walker_walk", image_size=64, seed=1, fast_render=True)
    default_pixels, fast_pixels = default.reset()[0]["pixels"], fast.reset()[0]["pixels"]
    assert not np.array_equal(default_pixels, fast_pixels)
    expected = fast.physics.render(64, 64, camera_id=0, render_flag_overrides=SLOW_FLAGS_OFF)
    np.testing.assert_array_equal(channels_last(fast_pixels), expected)
    # Only the visuals change: the physics state is the same.
    np.testing.assert_array_equal(default.physics.data.qpos, fast.physics.data.qpos)
    default.close()
    fast.close()


def test_quadruped_uses_camera_2_unless_told_otherwise():
    env = make_dmc("quadruped_run", image_size=32)
    assert env.camera_id == 2
    obs, _ = env.reset()
    from_camera_2 = env.physics.render(32, 32, camera_id=2)
    np.testing.assert_array_equal(channels_last(obs["pixels"]), from_camera_2)
    assert not np.array_equal(from_camera_2, env.physics.render(32, 32, camera_id=0))
    env.close()
    overridden = make_dmc("quadruped_run", image_size=32, camera_id=0)
    assert overridden.camera_id == 0
    overridden.close()
    assert make_dmc("walker_walk").camera_id == 0


def test_actions_are_rescaled_to_the_asymmetric_quadruped_bounds():
    env = make_dmc("quadruped_run", image_size=16, fast_render=True)
    spec = env.physics.model.actuator_ctrlrange
    low, high = spec[:, 0], spec[:, 1]
    assert not np.allclose(low, -high), "quadruped has asymmetric actuator ranges"
    env.reset()
    action = np.linspace(-1.0, 1.0, 12, dtype=np.float32)
    env.step(action)
    unit = action.astype(np.float64)
    np.testing.assert_allclose(env.physics.data.ctrl, low + (unit + 1.0) / 2.0 * (high - low))
    env.close()


def test_same_seed_same_episode_and_reset_seed_matches_factory_seed():
    actions = [np.array([0.8, -0.5], np.float32), np.array([-1.0, 1.0], np.float32)] * 2
    env_a, env_b = make_dmc("reacher_easy", seed=4), make_dmc("reacher_easy", seed=4)
    first = env_a.reset()[0]["pixels"]
    np.testing.assert_array_equal(first, env_b.reset()[0]["pixels"])
    pixels_a, rewards_a = rollout(env_a, actions, seed=9)
    pixels_b, rewards_b = rollout(env_b, actions, seed=9)
    assert rewards_a == rewards_b
    for frame_a, frame_b in zip(pixels_a, pixels_b, strict=True):
        np.testing.assert_array_equal(frame_a, frame_b)
    np.testing.assert_array_equal(env_a.reset(seed=4)[0]["pixels"], first)
    assert not np.array_equal(env_a.reset(seed=5)[0]["pixels"], first)
    env_a.close()
    env_b.close()


def test_action_repeat_sums_the_rewards_of_the_repeated_steps():
    actions = [np.array([1.0, -0.3], np.float32), np.array([-0.6, 0.9], np.float32)] * 2
    twice, once = (
        make_dmc("reacher_easy", action_repeat=2),
        make_dmc("reacher_easy", action_repeat=1),
    )
    pixels_twice, rewards_twice = rollout(twice, actions, seed=2)
    pixels_once, rewards_once = rollout(once, [a for a in actions for _ in range(2)], seed=2)
    np.testing.assert_allclose(rewards_twice, np.add(rewards_once[0::2], rewards_once[1::2]))
    np.testing.assert_array_equal(pixels_twice[-1], pixels_once[-1])
    twice.close()
    once.close()


def test_time_limit_truncates_after_500_agent_steps_at_repeat_2():
    env = make_dmc("cartpole_swingup", image_size=8, fast_render=True)
    env.reset()
    action = np.zeros(1, np.float32)
    for _ in range(499):
        _, _, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)
    _, _, terminated, truncated, _ = env.step(action)
    assert truncated and not terminated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)
    env.close()


# A real dm_control environment whose episode can end before its time limit, to check that a
# zero discount becomes `terminated` and that action repeat stops at the episode's end.
SLIDER_XML = """
<mujoco>
  <worldbody>
    <light pos="0 0 1"/>
    <camera name="front" pos="0 -1 0.1" xyaxes="1 0 0 0 0 1"/>
    <body>
      <joint name="slider" type="slide" axis="1 0 0"/>
      <geom type="box" size=".05 .05 .05"/>
    </body>
  </worldbody>
  <actuator><motor joint="slider" ctrlrange="-2 2" ctrllimited="true"/></actuator>
</mujoco>
"""


class EndsAfterControlSteps(base.Task):
    """Reward 1 per control step; the episode terminates at control step `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__(random=0)
        self.limit = limit
        self.steps = 0

    def initialize_episode(self, physics) -> None:
        self.steps = 0
        super().initialize_episode(physics)

    def before_step(self, action, physics) -> None:
        self.steps += 1
        super().before_step(action, physics)

    def get_observation(self, physics):
        return collections.OrderedDict(position=physics.data.qpos.copy())

    def get_reward(self, physics) -> float:
        return 1.0

    def get_termination(self, physics):
        return 0.0 if self.steps >= self.limit else None


def make_slider(limit: int, time_limit: float) -> DMCEnv:
    physics = dm_mujoco.Physics.from_xml_string(SLIDER_XML)
    environment = control.Environment(physics, EndsAfterControlSteps(limit), time_limit=time_limit)
    return DMCEnv(
        environment, seed=0, image_size=16, action_repeat=2, camera_id=0, options=DMCOptions()
    )


def test_zero_discount_terminates_and_repeat_stops_at_the_end():
    env = make_slider(limit=3, time_limit=1.0)
    env.reset()
    assert env.step(np.ones(1, np.float32))[1:4] == (2.0, False, False)
    # Control step 3 ends the episode: only one of the two repeats runs.
    assert env.step(np.ones(1, np.float32))[1:4] == (1.0, True, False)
    # [-1, 1] maps onto the [-2, 2] control range.
    assert env.physics.data.ctrl[0] == pytest.approx(2.0)
    env.close()


def test_time_limit_mid_repeat_truncates_with_the_partial_reward():
    env = make_slider(limit=100, time_limit=5 * 0.002)  # 5 control steps of 2 ms
    env.reset()
    results = [env.step(np.zeros(1, np.float32))[1:4] for _ in range(3)]
    assert results == [(2.0, False, False), (2.0, False, False), (1.0, False, True)]
    env.close()


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.array([np.nan, 0.0], np.float32), "finite"),
        (np.array([0.0, -np.inf], np.float32), "finite"),
        (np.zeros(3, np.float32), r"shape \(2,\)"),
    ],
)
def test_bad_actions_are_rejected(action, match):
    env = make_dmc("reacher_easy", image_size=16)
    env.reset()
    with pytest.raises(ValueError, match=match):
        env.step(action)
    env.close()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"fast_rendering": True}, TypeError, "'fast_rendering'.*valid options are fast_render"),
        ({"camera_id": "top"}, ValueError, "camera_id must be an int"),
        ({"camera_id": 7}, ValueError, "camera_id=7 is invalid"),
        ({"render_size": 0}, ValueError, "render_size must be a positive integer"),
    ],
)
def test_bad_options_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        make_dmc("reacher_easy", **options)


def test_render_gives_eval_frames_and_close_is_idempotent():
    env = make_dmc("reacher_easy", render_size=64)
    env.reset()
    frame = env.render()
    assert frame is not None and frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, env.physics.render(64, 64, camera_id=0))
    env.close()
    env.close()
