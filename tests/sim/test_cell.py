"""cell/reach and cell/pick_cube: the Panda sim twin, its TCP control, pixels, scripted experts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robotrl.envs import make_env as make_core_env
from robotrl_sim import UnknownTaskError
from robotrl_sim.cell import CellEnv, CellSim, make_env, scripted_action
from robotrl_sim.cell.arm import TARGET_HIGH, TARGET_LOW, WorkspaceBox
from robotrl_sim.cell.env import SUCCESS_DISTANCE, pick_reward, reach_reward
from robotrl_sim.cell.scene import CUBE_HALF_SIZE
from tests.sim.env_checks import check_env_bare_and_stacked

IMAGE = 32


def make_cell(task: str, seed: int = 0, image_size: int = IMAGE, **options) -> CellEnv:
    env = make_env(task, seed=seed, image_size=image_size, action_repeat=1, **options)
    assert isinstance(env, CellEnv)
    return env


def run_expert(env: CellEnv, seed: int) -> tuple[bool, CellEnv]:
    env.reset(seed=seed)
    info: dict = {}
    truncated = False
    while not truncated:
        _, _, terminated, truncated, info = env.step(scripted_action(env))
        assert not terminated
    return bool(info["success"]), env


@pytest.mark.parametrize("task", ["reach", "pick_cube"])
def test_passes_the_gymnasium_checker_bare_and_frame_stacked(task):
    env = make_cell(task, episode_steps=5)
    check_env_bare_and_stacked(env)
    env.close()


def test_core_make_env_finds_the_suite_and_stacks_each_camera():
    env = make_core_env("cell", "reach", seed=0, image_size=IMAGE, action_repeat=1, frame_stack=3)
    obs, _ = env.reset()
    assert obs["pixels"].shape == (2, 9, IMAGE, IMAGE)
    assert obs["proprio"].shape == (7,) and obs["proprio"].dtype == np.float32
    env.close()


def test_each_delta_moves_the_tcp_that_way_by_about_the_commanded_amount():
    env = make_cell("reach", joint_noise=0.0, randomize=False)
    steps, max_step = 3, 0.02
    for axis in range(3):
        for sign in (1.0, -1.0):
            env.reset(seed=0)
            start, start_quat = env.sim.tcp_pose()
            action = np.zeros(4, dtype=np.float32)
            action[axis] = sign
            for _ in range(steps):
                env.step(action)
            env.step(np.zeros(4, dtype=np.float32))  # let the servos settle
            moved = env.sim.tcp_pose()[0] - start
            commanded = np.zeros(3)
            commanded[axis] = sign * steps * max_step
            cosine = moved @ commanded / (np.linalg.norm(moved) * np.linalg.norm(commanded))
            assert cosine > 0.95, (axis, sign, moved)
            assert 0.8 < np.linalg.norm(moved) / np.linalg.norm(commanded) < 1.2, (axis, moved)
            # The 4-D action holds the gripper top-down: the orientation barely changes.
            quat = env.sim.tcp_pose()[1]
            assert abs(abs(quat @ start_quat) - 1.0) < 1e-3
    env.close()


def test_tcp_target_is_clipped_to_the_workspace_box():
    env = make_cell("reach", joint_noise=0.0, randomize=False)
    box = WorkspaceBox()
    env.reset(seed=0)
    for _ in range(15):
        env.step(np.array([-1.0, 1.0, 1.0, -1.0], dtype=np.float32))
    target, _ = env.sim.tcp_target
    np.testing.assert_allclose(target, [box.low[0], box.high[1], box.high[2]], atol=1e-9)
    # The arm follows the clipped target and does not leave the box.
    np.testing.assert_allclose(env.sim.tcp_pose()[0], target, atol=0.01)
    for _ in range(25):
        env.step(np.array([1.0, -1.0, -1.0, -1.0], dtype=np.float32))
    target, _ = env.sim.tcp_target
    assert target[2] == box.low[2] and target[1] > box.low[1]
    assert env.sim.tcp_pose()[0][2] > box.low[2] - 0.01
    env.close()


def test_cell_sim_clips_tcp_commands_and_reaches_poses_by_ik():
    sim = CellSim()
    sim.reset()
    clipped = sim.command_tcp([5.0, -5.0, 0.2], None, 0.08)
    np.testing.assert_allclose(clipped, [0.75, -0.3, 0.2])
    goal = np.array([0.55, 0.1, 0.15])
    sim.command_tcp(goal, sim.home_tcp_quat, 0.0)
    for _ in range(15):
        sim.step()
    position, quat = sim.tcp_pose()
    assert np.linalg.norm(position - goal) < 0.005
    assert abs(abs(quat @ sim.home_tcp_quat) - 1.0) < 1e-3
    assert sim.gripper_width() < 0.002  # closed on nothing
    with pytest.raises(ValueError, match="finite"):
        sim.command_tcp([np.nan, 0.0, 0.2])
    with pytest.raises(ValueError, match="shape"):
        sim.command_tcp([0.5, 0.0])
    sim.close()


def test_rotation_actions_turn_the_gripper_about_the_commanded_axis():
    env = make_cell("reach", rotation=True, joint_noise=0.0, randomize=False)
    obs, _ = env.reset(seed=0)
    assert env.action_space.shape == (7,) and obs["proprio"].shape == (13,)
    _, start = env.sim.tcp_pose()
    for _ in range(3):
        env.step(np.array([0, 0, 0, 0, 0, 1.0, -1.0], dtype=np.float32))
    env.step(np.zeros(7, dtype=np.float32))
    _, quat = env.sim.tcp_pose()
    # Relative rotation from start to now, as an angle about world z (q_now = q_rel * q_start).
    start_conj = start * np.array([1, -1, -1, -1])
    w, x, y, z = (
        quat[0] * start_conj[0] - quat[1:] @ start_conj[1:],
        *(quat[0] * start_conj[1:] + start_conj[0] * quat[1:] + np.cross(quat[1:], start_conj[1:])),
    )
    angle = 2 * math.atan2(math.hypot(x, y, z), abs(w))
    axis = np.array([x, y, z]) / math.hypot(x, y, z) * np.sign(w)
    assert abs(angle - 0.3) < 0.05, angle
    assert axis[2] > 0.99, axis
    env.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scripted_expert_reaches_the_target(seed):
    env = make_cell("reach")
    success, env = run_expert(env, seed)
    distance = np.linalg.norm(env.sim.tcp_pose()[0] - env.sim.target_position())
    assert success and distance <= SUCCESS_DISTANCE
    env.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scripted_expert_picks_up_the_cube(seed):
    env = make_cell("pick_cube", cameras="front")
    success, env = run_expert(env, seed)
    cube, _ = env.sim.cube_pose()
    assert success
    # Independently of the env's bookkeeping: the cube's bottom is 5 cm above the table, held.
    assert cube[2] - CUBE_HALF_SIZE >= 0.05
    assert env.sim.cube_grasped()
    env.close()


def test_doing_nothing_neither_reaches_nor_lifts():
    for task in ("reach", "pick_cube"):
        env = make_cell(task, cameras="front", episode_steps=10)
        env.reset(seed=4)
        for _ in range(10):
            _, _, _, _, info = env.step(np.array([0, 0, 0, -1.0], dtype=np.float32))
        assert not info["success"], task
        env.close()


def test_rewards_follow_the_documented_formulas():
    assert reach_reward(0.0) == 1.0
    assert reach_reward(0.1) == pytest.approx(1 - math.tanh(1.0))
    assert pick_reward(0.0, True, 0.1) == pytest.approx(2.5)
    assert pick_reward(0.05, False, 0.1) == pytest.approx(1 - math.tanh(0.5))
    assert pick_reward(0.0, True, 0.025) == pytest.approx(2.0)

    env = make_cell("reach")
    env.reset(seed=5)
    _, reward, *_ = env.step(np.array([0.3, -0.2, 0.1, -1.0], dtype=np.float32))
    distance = np.linalg.norm(env.sim.tcp_pose()[0] - env.sim.target_position())
    assert reward == pytest.approx(1 - math.tanh(10 * distance))
    env.close()

    env = make_cell("pick_cube", cameras="front")
    env.reset(seed=1)
    rewards = []
    truncated = False
    while not truncated:
        _, reward, _, truncated, _ = env.step(scripted_action(env))
        rewards.append(float(reward))
    cube, _ = env.sim.cube_pose()
    reach = 1 - math.tanh(10 * np.linalg.norm(env.sim.tcp_pose()[0] - cube))
    # Held at the top: reach term + grasp bonus + full lift progress.
    assert rewards[-1] == pytest.approx(reach + 0.5 + 1.0)
    assert rewards[0] < 1.0  # the first step is far from the cube and not grasping
    env.close()


def test_pixels_have_the_documented_shapes_for_one_and_two_cameras():
    env = make_cell("reach", image_size=40)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (2, 3, 40, 40) and obs["pixels"].dtype == np.uint8
    assert env.observation_space["pixels"].shape == (2, 3, 40, 40)
    frame = env.render()
    assert frame is not None and frame.shape == (256, 512, 3)
    env.close()
    env = make_cell("reach", image_size=40, cameras=["wrist"], proprio=False, state=True)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"pixels", "state"}
    assert obs["pixels"].shape == (3, 40, 40) and obs["pixels"].dtype == np.uint8
    np.testing.assert_allclose(obs["state"][7:], env.sim.target_position(), atol=1e-6)
    env.close()


def test_wrist_view_moves_with_the_hand_while_the_table_in_front_stays_put():
    env = make_cell("reach", image_size=64, joint_noise=0.0, randomize=False)
    obs, _ = env.reset(seed=0)
    for view in obs["pixels"]:
        colours = np.unique(view.reshape(3, -1), axis=1).shape[1]
        assert view.std() > 10 and colours > 20  # not blank
    hold = np.array([0, 0, 0, -1.0], dtype=np.float32)
    obs, *_ = env.step(hold)  # settle first, so "still" below is a fair control
    before = obs["pixels"].astype(np.int32)
    obs, *_ = env.step(hold)
    still = np.abs(obs["pixels"].astype(np.int32) - before).mean(axis=(1, 2, 3))
    for _ in range(3):
        obs, *_ = env.step(np.array([0, 1.0, 0, -1.0], dtype=np.float32))
    after = obs["pixels"].astype(np.int32)
    moved = np.abs(after - before).mean(axis=(1, 2, 3))
    front, wrist = 0, 1
    assert moved[wrist] > 2.0 and moved[wrist] > 10 * still[wrist], (moved, still)
    assert moved[front] > 1.0  # the arm moved in the front view too
    # The near table edge in the bottom corners of the front view: nothing there moves.
    for columns in (slice(0, 12), slice(52, 64)):
        np.testing.assert_array_equal(after[front, :, 52:, columns], before[front, :, 52:, columns])
    env.close()


def test_bad_actions_raise_clear_errors():
    env = make_cell("pick_cube", cameras="front")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0, 0, 0], dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        env.step(np.zeros(7, dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([0, np.inf, 0, 0], dtype=np.float32))
    env.close()


def test_unknown_task_option_or_camera_is_named():
    with pytest.raises(UnknownTaskError, match="pick_cube"):
        make_env("stack", seed=0, image_size=IMAGE, action_repeat=1)
    with pytest.raises(TypeError, match="camera_names"):
        make_env("reach", seed=0, image_size=IMAGE, action_repeat=1, camera_names=["front"])
    with pytest.raises(ValueError, match="unknown camera"):
        make_env("reach", seed=0, image_size=IMAGE, action_repeat=1, cameras=["side"])
    with pytest.raises(ValueError, match="image_size"):
        make_env("reach", seed=0, image_size=0, action_repeat=1)


def test_same_seed_same_start_and_different_seeds_different_cube_and_target():
    first = make_cell("reach", seed=11)
    second = make_cell("reach", seed=11)
    obs_a, _ = first.reset()
    obs_b, _ = second.reset()
    np.testing.assert_array_equal(obs_a["pixels"], obs_b["pixels"])
    np.testing.assert_array_equal(obs_a["proprio"], obs_b["proprio"])
    targets = []
    for seed in (1, 2, 3):
        first.reset(seed=seed)
        target = first.sim.target_position()
        assert np.all(target >= TARGET_LOW) and np.all(target <= TARGET_HIGH)
        targets.append(target)
    assert (
        min(np.linalg.norm(a - b) for a, b in [(targets[0], targets[1]), (targets[1], targets[2])])
        > 1e-3
    )
    first.close()
    second.close()

    env = make_cell("pick_cube", cameras="front")
    cubes = []
    for seed in (1, 2, 1):
        env.reset(seed=seed)
        cubes.append(env.sim.cube_pose()[0])
    assert np.linalg.norm(cubes[0][:2] - cubes[1][:2]) > 1e-3
    np.testing.assert_array_equal(cubes[0], cubes[2])
    env.close()
