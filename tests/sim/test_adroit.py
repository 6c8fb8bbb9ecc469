"""adroit adapter: Gymnasium-Robotics' Adroit hand on MuJoCo 3, set up as DrM/MENTOR/VRL3 do.

Real physics and rendering throughout; small images and fast visuals keep it quick on a CPU.
"""

from __future__ import annotations

import sys

import mujoco
import numpy as np
import pytest
from hydra import compose, initialize_config_module

from robotrl.builders import agent_config, build_agent, to_train_config
from robotrl.config import register_configs
from robotrl.envs import make_env as make_suite_env
from robotrl.replay import EpisodicReplay
from robotrl.schedules import LinearSchedule
from robotrl_sim import UnknownTaskError
from robotrl_sim.adroit import (
    PROPRIO_SIZE,
    TASKS,
    AdroitEnv,
    GoalCounter,
    make_env,
    mj_envs_reward,
)
from tests.sim.env_checks import check_env_bare_and_stacked

TASK_NAMES = ("door", "hammer", "pen", "relocate")
# VRL3's rrl_multicam.get_obs sensor slices of mj_envs' qpos (the hand's 24 joints).
DRM_PROPRIO_SLICES = {
    "door": slice(4, -2),
    "hammer": slice(2, -7),
    "pen": slice(None, -6),
    "relocate": slice(6, -6),
}


def make_adroit(task: str = "door", image_size: int = 32, seed: int = 0, **options) -> AdroitEnv:
    options.setdefault("fast_render", True)
    env = make_env(task, seed=seed, image_size=image_size, action_repeat=2, **options)
    assert isinstance(env, AdroitEnv)
    return env


@pytest.fixture(scope="module")
def envs():
    built = {task: make_adroit(task) for task in TASK_NAMES}
    yield built
    for env in built.values():
        env.close()


def test_passes_the_gymnasium_checker_bare_and_frame_stacked():
    env = make_adroit("door", image_size=16)
    check_env_bare_and_stacked(env)
    env.close()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_pixels_and_proprio_per_task(envs, task):
    env = envs[task]
    assert set(env.observation_space.spaces) == {"pixels", "proprio"}
    obs, info = env.reset(seed=3)
    assert obs in env.observation_space
    assert info == {"success": False, "goal_achieved_steps": 0}
    pixels = obs["pixels"]
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 32, 32)
    assert pixels.std() > 20  # a scene, not a blank frame
    proprio = obs["proprio"]
    assert proprio.dtype == np.float32 and proprio.shape == (PROPRIO_SIZE,)
    qpos = env.adroit_env.data.qpos
    np.testing.assert_array_equal(proprio, qpos[DRM_PROPRIO_SLICES[task]].astype(np.float32))
    action = np.full(env.action_space.shape, 0.3, np.float32)
    moved = env.step(action)[0]
    assert not np.array_equal(moved["proprio"], proprio)  # the hand moved
    # The same seed gives the same layout and frames.
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(again["pixels"], pixels)
    np.testing.assert_array_equal(env.step(action)[0]["pixels"], moved["pixels"])


def test_seed_of_the_factory_starts_like_reset_seed_and_layouts_vary():
    first = make_adroit("relocate", image_size=16, seed=5)
    second = make_adroit("relocate", image_size=16, seed=5)
    np.testing.assert_array_equal(first.reset()[0]["pixels"], second.reset(seed=5)[0]["pixels"])
    target = first.adroit_env.model.site("target").id
    goals = {tuple(first.adroit_env.model.site_pos[target]) for _ in range(4) if first.reset()}
    assert len(goals) == 4  # each episode draws a new target
    first.close()
    second.close()


def test_top_view_is_upright_with_the_hand_entering_from_the_bottom():
    env = make_adroit("door", image_size=84)
    frame = env.reset(seed=0)[0]["pixels"].transpose(1, 2, 0).astype(int)
    red, green, blue = frame[..., 0], frame[..., 1], frame[..., 2]
    skin_rows = np.nonzero((red > 200) & (green > 150) & (blue < green - 30))[0]
    door_rows = np.nonzero((red > 100) & (green < 20) & (blue < 20))[0]  # the red door posts
    assert skin_rows.mean() > 0.5 * frame.shape[0]
    assert door_rows.mean() < 0.3 * frame.shape[0]
    camera = env.adroit_env.model.camera("fixed").id
    np.testing.assert_allclose(env.adroit_env.data.cam_xmat[camera], np.eye(3).ravel())
    env.close()


def test_vil_camera_is_upright(envs):
    frame = envs["pen"].reset(seed=0)[0]["pixels"].astype(int)
    rows = frame.mean(axis=(0, 2))
    assert rows[:4].mean() < 10  # the black sky at the top
    assert rows[-4:].mean() > rows[:4].mean() + 20  # the floor at the bottom


def test_success_counts_goal_steps_inside_the_repeat_and_needs_more_than_25():
    counter = GoalCounter(25)
    sequence = [True] * 25 + [False] * 10
    assert not any(counter.observe(goal) for goal in sequence)
    assert counter.observe(True) and counter.count == 26
    counter.observe(False)
    assert counter.success  # success so far: stays once reached
    counter.reset()
    assert not counter.success
    assert TASKS["pen"].success_steps == 20
    assert [TASKS[t].success_steps for t in ("door", "hammer", "relocate")] == [25, 25, 25]

    env = make_adroit("door", image_size=8)
    env.reset(seed=1)
    model, data = env.adroit_env.model, env.adroit_env.data
    hinge = model.jnt_qposadr[model.joint("door_hinge").id]
    data.qpos[hinge] = 1.5  # held open: goal_achieved on every simulator step from here
    mujoco.mj_forward(model, data)
    successes = []
    for _ in range(14):
        *_, info = env.step(np.zeros(env.action_space.shape, np.float32))
        successes.append(info["success"])
    assert data.qpos[hinge] > 1.4
    # Two simulator steps per agent step: 26 > 25 after the 13th.
    assert successes == [False] * 12 + [True] * 2
    assert info["goal_achieved_steps"] == 28
    env.close()


def test_goal_rules_are_rrls(envs):
    door = envs["door"].adroit_env
    hinge = door.model.jnt_qposadr[door.model.joint("door_hinge").id]
    for angle, achieved in ((1.38, False), (1.42, True)):  # RRL: > 1.4 (Gymnasium: >= 1.35)
        door.data.qpos[hinge] = angle
        mujoco.mj_forward(door.model, door.data)
        assert mj_envs_reward("door", door.model, door.data)[1] is achieved
    # Pen: orientation within ~18 degrees of the goal, wherever the pen is (RRL's rule).
    pen_env = envs["pen"]
    pen_env.reset(seed=0)
    pen = pen_env.adroit_env
    target = pen.model.body("target").id
    pen.model.body_quat[target] = pen.data.xquat[pen.model.body("Object").id]
    pen.data.qpos[-6:-3] += (0.2, 0.0, 0.0)  # 20 cm away from the goal position
    mujoco.mj_forward(pen.model, pen.data)
    reward, achieved = mj_envs_reward("pen", pen.model, pen.data)
    assert achieved and reward < 10  # no position bonus


def test_door_reward_is_mj_envs_and_scaled_as_drm(envs):
    env = envs["door"]
    env.reset(seed=2)
    model, data = env.adroit_env.model, env.adroit_env.data
    palm, handle = (
        data.site_xpos[model.site("S_grasp").id],
        data.site_xpos[model.site("S_handle").id],
    )
    hinge = data.qpos[model.jnt_qposadr[model.joint("door_hinge").id]]
    expected = -0.1 * np.linalg.norm(palm - handle) - 0.1 * (hinge - 1.57) ** 2
    expected -= 1e-5 * np.sum(data.qvel**2)
    assert mj_envs_reward("door", model, data)[0] == pytest.approx(expected)
    assert expected < 0  # far from the handle costs (Gymnasium-Robotics 1.4.2 rewards it)
    assert env.reward_scale == pytest.approx(1 / 20)


def test_episodes_truncate_at_mj_envs_horizon_and_never_terminate():
    pen = make_adroit("pen", image_size=8)
    assert pen.episode_steps == 50  # 100 simulator steps at repeat 2
    pen.reset(seed=0)
    action = np.zeros(pen.action_space.shape, np.float32)
    flags = [pen.step(action)[2:4] for _ in range(50)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])
    with pytest.raises(RuntimeError, match="reset"):
        pen.step(action)
    pen.close()
    short = make_adroit("hammer", image_size=8, episode_steps=2)
    assert make_adroit("door", image_size=8).episode_steps == 100
    short.reset()
    assert [short.step(np.zeros(26, np.float32))[3] for _ in range(2)] == [False, True]
    short.close()


def test_pen_drop_terminates_only_when_asked():
    for terminates in (False, True):
        env = make_adroit("pen", image_size=8, pen_drop_terminates=terminates)
        env.reset(seed=0)
        model, data = env.adroit_env.model, env.adroit_env.data
        slides = [model.joint(name).id for name in ("OBJTx", "OBJTy", "OBJTz")]
        vertical = max(slides, key=lambda joint: abs(data.xaxis[joint][2]))
        # Drop the pen 20 cm below the hand, onto the floor under the table (z < 0.075).
        data.qpos[model.jnt_qposadr[vertical]] -= 0.2 * np.sign(data.xaxis[vertical][2])
        mujoco.mj_forward(model, data)
        assert data.xpos[model.body("Object").id][2] < 0.075
        _, reward, terminated, truncated, _ = env.step(np.zeros(24, np.float32))
        assert terminated is terminates and not truncated
        assert reward < -4 / 50  # -5 for the drop, +1 at most from the orientation; DrM-scaled
        env.close()


def test_action_errors(envs):
    env = envs["hammer"]
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(26,\)"):
        env.step(np.zeros(24, np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full(26, np.nan, np.float32))


@pytest.mark.parametrize(
    ("task", "options", "error", "match"),
    [
        ("drawer", {}, UnknownTaskError, "unknown adroit task 'drawer'; valid tasks: door"),
        ("door", {"fast_rendering": True}, TypeError, "'fast_rendering'.*valid options"),
        ("door", {"camera": "nope"}, ValueError, "no camera 'nope'; cameras: top, fixed, vil"),
        ("pen", {"camera": "top"}, ValueError, "no 'top' camera"),
        ("door", {"episode_steps": 0}, ValueError, "episode_steps must be >= 1"),
        ("door", {"render_size": 0}, ValueError, "render_size must be a positive integer"),
    ],
)
def test_bad_tasks_and_options_raise_clear_errors(task, options, error, match):
    with pytest.raises(error, match=match):
        make_env(task, seed=0, image_size=8, action_repeat=2, **options)


def test_missing_gymnasium_robotics_says_what_to_install(monkeypatch):
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "gymnasium_robotics.envs.adroit_hand", None)
    with pytest.raises(ImportError, match=r"pip install gymnasium-robotics==1\.4\.2"):
        make_env("door", seed=0, image_size=8, action_repeat=2)


def test_render_gives_eval_frames_and_close_is_idempotent():
    env = make_adroit("relocate", image_size=8, render_size=48)
    env.reset()
    frame = env.render()
    assert frame is not None and frame.shape == (48, 48, 3) and frame.dtype == np.uint8
    env.close()
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.render()


@pytest.fixture(scope="module")
def hydra_conf():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        yield


@pytest.mark.parametrize("task", TASK_NAMES)
def test_presets_compose_with_drms_and_mentors_adroit_settings(hydra_conf, task):
    for agent in ("drqv2", "drm", "mentor"):
        cfg = to_train_config(compose("train", overrides=[f"agent={agent}", f"task=adroit/{task}"]))
        assert (cfg.task.suite, cfg.task.name, cfg.task.options) == (
            "adroit",
            task,
            {"fast_render": False},
        )
        assert (cfg.env.image_size, cfg.env.action_repeat, cfg.env.frame_stack) == (84, 2, 1)
        assert cfg.frames == 6_100_000
        assert cfg.agent.stddev_schedule == LinearSchedule(1.0, 0.1, 500_000)
        if agent != "drqv2":
            assert cfg.agent.expectile == (0.6 if task == "door" else 0.7)
            assert cfg.agent.exploitation == "dormant" and cfg.agent.target_lambda == 0.6
            assert cfg.agent.perturb_every_steps == 100_000 and cfg.agent.max_perturb == 0.9


def test_agent_acts_and_learns_from_real_adroit_transitions_with_proprio():
    env = make_suite_env(
        "adroit",
        "relocate",
        seed=0,
        image_size=32,
        action_repeat=2,
        frame_stack=1,
        options={"fast_render": True, "episode_steps": 6},
    )
    cfg = agent_config({"name": "drm", "hidden_dim": 32, "feature_dim": 16, "num_expl_steps": 0})
    agent = build_agent(cfg, env, "cpu")
    assert agent.proprio_dim == PROPRIO_SIZE
    replay = EpisodicReplay(capacity=100, frame_stack=1, nstep=3, discount=0.99, seed=0)
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        replay.start_episode(obs)
        done = False
        while not done:
            action = agent.act(obs, step=10_000, eval_mode=False)
            assert action.shape == (30,) and np.all(np.abs(action) <= 1)
            obs, reward, terminated, truncated, _ = env.step(action)
            replay.add(action, float(reward), obs, terminated, truncated)
            done = terminated or truncated
    batch = replay.sample(8)
    np.testing.assert_array_equal(batch["proprio"].shape, (8, PROPRIO_SIZE))
    before = agent.critic.proprio.state[0].weight.detach().clone()
    metrics = agent.update(batch, step=10_000)
    assert all(np.isfinite(value) for value in metrics.values())
    assert not torch_equal(before, agent.critic.proprio.state[0].weight)
    env.close()


def torch_equal(first, second) -> bool:
    return bool((first == second).all())
