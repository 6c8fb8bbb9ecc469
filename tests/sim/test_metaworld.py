"""metaworld adapter: MetaWorld 3.1.1 on MuJoCo 3.17 through the compatibility shim.

Rendering MetaWorld's meshes costs tens of milliseconds per frame on a CPU, so rollouts that only
need the state use :class:`UnrenderedMetaWorldEnv`; everything else about them (MT1 tasks, action
checks, action repeat, success, truncation) is the adapter's own code.
"""

from __future__ import annotations

import sys

import mujoco
import numpy as np
import pytest
from hydra import compose, initialize_config_module
from metaworld.policies import ENV_POLICY_MAP

from robotrl.builders import to_train_config
from robotrl.config import register_configs
from robotrl.envs import make_env as make_suite_env
from robotrl.schedules import LinearSchedule
from robotrl_sim import UnknownTaskError
from robotrl_sim._metaworld_compat import METAWORLD_WELD_DATA
from robotrl_sim.metaworld import (
    DRM_CORNER2_POSITION,
    MetaWorldEnv,
    MetaWorldOptions,
    load_metaworld,
    make_env,
    metaworld_env_name,
)
from tests.sim.env_checks import check_env_bare_and_stacked

# MetaWorld's experts are P-controllers whose raw actions may exceed [-1, 1]; clipping is intended.
EXPERT_WARNING = "ignore:Constant.s. may be too high:UserWarning"
# MetaWorld's standard scripted-policy tasks. Its scripted-policy tests list .99, .97, .96 and .94
# for the v2 reach, push, pick-place and door-open experts (.99 for drawer-close v1); its v3 tests
# fail a policy below 0.8 over 30 episodes.
EXPERT_TASKS = ("reach", "push", "pick-place", "door-open", "drawer-close")
EXPERT_EPISODES = 10
EXPERT_FLOOR = 0.8
# The task presets in robotrl/conf/task/metaworld: the five above and DrM's and MENTOR's tasks.
PRESET_TASKS = (
    "assembly",
    "coffee-push",
    "disassemble",
    "door-open",
    "drawer-close",
    "hammer",
    "hand-insert",
    "lever-pull",
    "pick-out-of-hole",
    "pick-place",
    "push",
    "reach",
    "soccer",
    "stick-pull",
    "sweep-into",
)


class UnrenderedMetaWorldEnv(MetaWorldEnv):
    """The adapter with blank pixels, for state-only rollouts (experts, long episodes)."""

    def _pixels(self) -> np.ndarray:
        return np.zeros(self.observation_space["pixels"].shape, np.uint8)


def unrendered(task: str, seed: int = 0, action_repeat: int = 2, **options) -> MetaWorldEnv:
    parsed = MetaWorldOptions(state=True, fast_render=True, **options)
    return UnrenderedMetaWorldEnv(
        task, seed=seed, image_size=8, action_repeat=action_repeat, options=parsed
    )


def make_metaworld(task: str = "reach", image_size: int = 32, seed: int = 0, **options):
    env = make_env(
        task, seed=seed, image_size=image_size, action_repeat=2, fast_render=True, **options
    )
    assert isinstance(env, MetaWorldEnv)
    return env


def test_task_names_with_or_without_version_and_close_matches_for_typos():
    module = load_metaworld()
    assert metaworld_env_name("pick-place", module) == "pick-place-v3"
    assert metaworld_env_name("stick-pull-v3", module) == "stick-pull-v3"
    for task in PRESET_TASKS:
        assert metaworld_env_name(task, module) in module.ALL_V3_ENVIRONMENTS
    with pytest.raises(UnknownTaskError, match=r"'pick-plase'\. Did you mean pick-place.*reach"):
        metaworld_env_name("pick-plase", module)


def test_missing_metaworld_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "metaworld", None)  # makes `import metaworld` fail
    with pytest.raises(ImportError, match=r"pip install --no-deps metaworld==3\.1\.1"):
        make_env("reach", seed=0, image_size=16, action_repeat=2)


def test_shim_is_idempotent_and_writes_metaworlds_weld_as_mujoco_3_3_kept_it():
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    from robotrl_sim import _metaworld_compat

    _metaworld_compat.apply()
    patched = SawyerMocapBase.reset_mocap_welds
    _metaworld_compat.apply()
    assert SawyerMocapBase.reset_mocap_welds is patched
    assert mujoco.mjNEQDATA == METAWORLD_WELD_DATA.size + 1  # why the shim exists
    env = unrendered("reach")
    model = env.metaworld_env.model
    welds = np.flatnonzero(model.eq_type == mujoco.mjtEq.mjEQ_WELD)
    assert welds.size == 1  # the mocap body holding the hand
    weld = model.eq_data[welds[0]].copy()
    np.testing.assert_array_equal(weld, [*METAWORLD_WELD_DATA, 0.0])  # relpose flag cleared
    # As on MuJoCo 3.3, recomputing the model's constants keeps MetaWorld's explicit weld pose.
    mujoco.mj_setConst(model, mujoco.MjData(model))
    np.testing.assert_array_equal(model.eq_data[welds[0]], weld)
    env.close()


def test_passes_the_gymnasium_checker_bare_and_frame_stacked():
    env = make_metaworld("reach", image_size=16)
    check_env_bare_and_stacked(env)
    env.close()


def test_spaces_proprio_and_state():
    env = make_metaworld("pick-place", image_size=40, proprio=True, state=True)
    assert set(env.observation_space.spaces) == {"pixels", "proprio", "state"}
    assert env.observation_space["pixels"].shape == (3, 40, 40)
    assert (env.action_space.shape, env.action_space.dtype) == ((4,), np.float32)
    obs, info = env.reset()
    assert obs in env.observation_space and info == {"success": False}
    assert obs["pixels"].dtype == np.uint8 and obs["pixels"].shape == (3, 40, 40)
    state = obs["state"]
    # MetaWorld's observation: hand xyz and gripper, objects, the previous step's copy, the goal.
    np.testing.assert_allclose(state[:3], env.metaworld_env.get_endeff_pos(), atol=1e-6)
    np.testing.assert_allclose(state[-3:], env.metaworld_env._target_pos, atol=1e-6)
    np.testing.assert_array_equal(obs["proprio"], np.concatenate([state[0:4], state[18:22]]))
    env.close()
    plain = make_metaworld("reach", image_size=16)
    assert set(plain.observation_space.spaces) == {"pixels"}
    plain.close()


def test_pixels_are_upright_from_drms_corner2_position():
    env = make_metaworld("pick-place", image_size=84)
    model, data = env.metaworld_env.model, env.metaworld_env.data
    camera = env.camera_id
    assert model.camera(camera).name == "corner2"
    np.testing.assert_array_equal(model.cam_pos[camera], DRM_CORNER2_POSITION)
    # MetaWorld's corner2 is upside down (made for mujoco-py's bottom-up frames): the adapter
    # rolls it half a turn about its optical axis, which keeps MetaWorld's corner4 view (the same
    # pose as DrM's corner2) otherwise unchanged.
    assert env.camera_rolled
    corner4 = model.camera("corner4").id
    original = data.cam_xmat[corner4].reshape(3, 3)
    rolled = data.cam_xmat[camera].reshape(3, 3)
    np.testing.assert_allclose(data.cam_xpos[camera], data.cam_xpos[corner4])
    np.testing.assert_allclose(rolled, original @ np.diag([-1.0, -1.0, 1.0]), atol=1e-9)
    assert rolled[2, 1] > 0.5  # the image's up axis points up in the world
    frame = env.reset(seed=0)[0]["pixels"].transpose(1, 2, 0).astype(int)
    red, green, blue = frame[..., 0], frame[..., 1], frame[..., 2]
    # The wooden table top fills the lower part of an upright frame.
    wood_rows = np.nonzero((red > green + 15) & (green > blue + 10) & (red > 60))[0]
    assert wood_rows.mean() > 0.6 * frame.shape[0]
    # The Sawyer (red) stands at the left: its base is at world y≈0 and the table at y>0, and the
    # camera's right axis points to +y. A mirrored frame (mujoco-py's) would put it at the right.
    assert rolled[1, 0] > 0.5
    sawyer_columns = np.nonzero((red > 120) & (green < 60) & (blue < 60))[1]
    assert sawyer_columns.mean() < 0.4 * frame.shape[1]
    env.close()


def test_fast_render_changes_only_the_visuals():
    default = make_env("reach", seed=1, image_size=32, action_repeat=2, state=True)
    fast = make_metaworld("reach", seed=1, state=True)
    default_obs, fast_obs = default.reset()[0], fast.reset()[0]
    assert not np.array_equal(default_obs["pixels"], fast_obs["pixels"])
    np.testing.assert_array_equal(default_obs["state"], fast_obs["state"])
    default.close()
    fast.close()


@pytest.mark.filterwarnings(EXPERT_WARNING)
def test_success_is_success_so_far_and_resets_with_the_episode():
    env = unrendered("reach", action_repeat=1)
    expert = ENV_POLICY_MAP["reach-v3"]()
    obs, info = env.reset(seed=3)
    assert info["success"] is False
    for _ in range(100):
        obs, _, _, _, info = env.step(expert.get_action(obs["state"]))
        if info["success"]:
            break
    assert info["success"] is True
    # Move the hand away from the goal: MetaWorld no longer reports success, the episode does.
    away = np.sign(obs["state"][:3] - obs["state"][-3:])
    for _ in range(20):
        obs, _, _, _, info = env.step(np.append(away, 0.0).astype(np.float32))
    _, metaworld_info = env.metaworld_env.evaluate_state(obs["state"].astype(np.float64), away)
    assert not metaworld_info["success"]
    assert info["success"] is True
    assert env.reset(seed=4)[1]["success"] is False
    env.close()


def test_episode_is_250_agent_steps_of_two_metaworld_steps_then_truncated():
    env = unrendered("drawer-close")
    env.reset()
    action = np.zeros(4, np.float32)
    for _ in range(249):
        _, _, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)
    _, _, terminated, truncated, _ = env.step(action)
    assert truncated and not terminated
    assert env.metaworld_env.curr_path_length == 500  # MetaWorld's own max_path_length
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)
    short = unrendered("drawer-close", episode_steps=3)
    short.reset()
    assert [short.step(action)[3] for _ in range(3)] == [False, False, True]
    env.close()
    short.close()


def test_action_repeat_sums_rewards_and_applies_the_action_each_time():
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, 4).astype(np.float32) for _ in range(6)]
    twice, once = unrendered("push", action_repeat=2), unrendered("push", action_repeat=1)
    twice.reset(seed=5)
    once.reset(seed=5)
    for action in actions:
        obs_twice, reward_twice, *_ = twice.step(action)
        first = once.step(action)
        obs_once, reward_once, *_ = once.step(action)
        assert reward_twice == pytest.approx(float(first[1]) + float(reward_once))
        np.testing.assert_array_equal(obs_twice["state"], obs_once["state"])
    assert twice.metaworld_env.curr_path_length == 12
    twice.close()
    once.close()


def test_seeds_reproduce_episodes_and_goals_vary_with_seed_and_episode():
    def goal(env: MetaWorldEnv, seed: int | None = None) -> np.ndarray:
        return env.reset(seed=seed)[0]["state"][-3:]

    env_a, env_b = unrendered("reach", seed=7), unrendered("reach", seed=7)
    first = goal(env_a)
    np.testing.assert_array_equal(first, goal(env_b))
    np.testing.assert_array_equal(goal(env_a, seed=7), first)  # reset(seed) = a fresh env's start
    goals = {tuple(goal(env_a)) for _ in range(10)}
    assert len(goals) >= 5  # successive episodes draw from MT1's 50 goals
    other = unrendered("reach", seed=8)
    assert not np.array_equal(goal(other), first)
    action = np.array([0.5, -0.3, 0.2, 1.0], np.float32)
    env_a.reset(seed=11)
    env_b.reset(seed=11)
    trajectories = [[env.step(action)[0]["state"] for _ in range(5)] for env in (env_a, env_b)]
    np.testing.assert_array_equal(trajectories[0], trajectories[1])
    for env in (env_a, env_b, other):
        env.close()
    # Rendered pixels are reproducible too.
    pixels = [make_metaworld("reach", image_size=16, seed=2) for _ in range(2)]
    np.testing.assert_array_equal(*(env.reset()[0]["pixels"] for env in pixels))
    for env in pixels:
        env.close()


@pytest.mark.filterwarnings(EXPERT_WARNING)
@pytest.mark.parametrize("task", EXPERT_TASKS)
def test_metaworld_scripted_experts_succeed_through_the_adapter(task):
    """The shim's proof: MetaWorld's own experts, through our action path at action repeat 2."""
    env = unrendered(task)
    expert = ENV_POLICY_MAP[f"{task}-v3"]()
    successes = 0
    for episode in range(EXPERT_EPISODES):
        obs, info = env.reset(seed=100 + episode)
        truncated = False
        while not (info["success"] or truncated):
            obs, _, _, truncated, info = env.step(expert.get_action(obs["state"]))
        successes += info["success"]
    env.close()
    rate = successes / EXPERT_EPISODES
    print(f"{task}: expert success {successes}/{EXPERT_EPISODES}")
    assert rate >= EXPERT_FLOOR, f"{task}: expert success rate {rate:.2f} < {EXPERT_FLOOR}"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"fast_rendering": True}, TypeError, "'fast_rendering'.*valid options are episode_steps"),
        ({"camera": "nope"}, ValueError, "no camera 'nope'; cameras: topview, corner, corner2"),
        ({"episode_steps": 0}, ValueError, "episode_steps must be >= 1"),
        ({"render_size": 0}, ValueError, "render_size must be a positive integer"),
    ],
)
def test_bad_options_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        make_env("reach", seed=0, image_size=16, action_repeat=2, **options)


def test_render_gives_eval_frames_and_close_is_idempotent():
    env = make_metaworld("reach", image_size=16, render_size=48)
    env.reset()
    frame = env.render()
    assert frame is not None and frame.shape == (48, 48, 3) and frame.dtype == np.uint8
    env.close()
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.render()


def test_suite_is_found_through_its_entry_point_and_frame_stacked():
    env = make_suite_env(
        "metaworld",
        "reach",
        seed=0,
        image_size=16,
        action_repeat=2,
        frame_stack=3,
        options={"fast_render": True},
    )
    obs, _ = env.reset()
    assert obs["pixels"].shape == (9, 16, 16)
    env.close()


@pytest.fixture(scope="module")
def hydra_conf():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        yield


@pytest.mark.parametrize("task", PRESET_TASKS)
def test_task_presets_compose_with_drm_and_mentor_metaworld_settings(hydra_conf, task):
    for agent in ("drm", "mentor"):
        cfg = to_train_config(
            compose("train", overrides=[f"agent={agent}", f"task=metaworld/{task}"])
        )
        assert (cfg.task.suite, cfg.task.name, cfg.task.options) == (
            "metaworld",
            task,
            {"fast_render": False},
        )
        assert (cfg.env.image_size, cfg.env.action_repeat, cfg.env.frame_stack) == (84, 2, 3)
        assert cfg.frames == 2_100_000
        assert cfg.agent.stddev_schedule == LinearSchedule(1.0, 0.1, 500_000)
        assert cfg.agent.exploitation == "constant"
        expected = {"coffee-push": (0.6, 0.6), "soccer": (0.6, 0.6), "stick-pull": (0.6, 0.9)}
        expected["sweep-into"] = (0.6, 0.9)
        assert (cfg.agent.target_lambda, cfg.agent.max_perturb) == expected.get(task, (0.5, 0.95))
        assert cfg.agent.perturb_every_steps == 100_000
