"""warp/cell_reach and warp/cell_pick_cube: the robot cell on batched MuJoCo Warp worlds (CPU).

The batched TCP controller against ``CellEnv``/``CellSim``'s, the physics against
``mujoco.mj_step``, render freshness on the Panda's meshes, determinism, and the scripted experts
of ``robotrl_sim.cell.scripted`` driving every world. Few worlds and small images: one agent step
is 50 physics steps per world (~0.4 s per world on a 2-core CPU).
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from robotrl.builders import build_env
from robotrl.config import EnvConfig, TaskConfig
from robotrl.envs.batched import SingleWorldEnv
from robotrl_sim.cell import make_env as make_cell_env
from robotrl_sim.cell.arm import _Targets
from robotrl_sim.cell.env import CellEnv, reach_reward
from robotrl_sim.cell.scene import ARM_JOINTS
from robotrl_sim.warp import BatchedMujocoEnv, make_batched_env
from robotrl_sim.warp.cell import CellTask, scripted_actions

NUM_WORLDS = 3
SIZE = 24


def make(task: str, num_worlds: int = NUM_WORLDS, **options) -> BatchedMujocoEnv:
    env = make_batched_env(
        task, num_worlds=num_worlds, seed=0, image_size=SIZE, action_repeat=1, **options
    )
    assert isinstance(env, BatchedMujocoEnv)
    return env


@pytest.fixture(scope="module")
def env() -> BatchedMujocoEnv:
    env = make("cell_reach", proprio=True)
    yield env
    env.close()


@pytest.fixture(scope="module")
def cell() -> CellEnv:
    cell = make_cell_env("reach", seed=0, image_size=SIZE, action_repeat=1, cameras="front")
    assert isinstance(cell, CellEnv)
    yield cell
    cell.close()


def task_of(env: BatchedMujocoEnv) -> CellTask:
    assert isinstance(env.task, CellTask)
    return env.task


def arm_qpos(model: mujoco.MjModel) -> list[int]:
    return [int(model.joint(name).qposadr[0]) for name in ARM_JOINTS]


def test_spaces_and_episode_length_match_the_cell(env: BatchedMujocoEnv) -> None:
    assert env.single_action_space.shape == (4,)
    assert env.single_observation_space["pixels"].shape == (2, 3, SIZE, SIZE)
    assert env.single_observation_space["proprio"].shape == (7,)
    assert env.max_episode_steps == 50  # 5 s at 10 Hz, as cell/reach
    assert task_of(env).control_substeps * env.mj_model.opt.timestep == pytest.approx(0.1)


def test_batched_controller_matches_cell_env(env: BatchedMujocoEnv, cell: CellEnv) -> None:
    """From the same state and action, the joint targets equal CellEnv's to 1e-8 rad.

    Both sides run the same float64 maths on the same inputs (the Warp state is float32; the CPU
    side is given exactly those values): FK, Jacobian and 20 DLS iterations agree to ~1e-15
    (measured), so 1e-8 leaves room only for summation order, not for any difference in damping,
    clipping, step limits, lead limiting or the null-space pull. Actions at ±1 drive the target
    into the workspace walls and the lead limit.
    """
    task = task_of(env)
    env.reset(seed=5)
    generator = torch.Generator().manual_seed(0)
    sim = cell.sim
    for step in range(3):
        action = torch.rand(NUM_WORLDS, 4, generator=generator) * 2 - 1
        if step == 1:
            action[:, :3] = torch.tensor([1.0, -1.0, -1.0])
        before = {
            "qpos": env.sim.qpos.double().numpy().copy(),
            "tcp_target": task.tcp_target.numpy().copy(),
            "joints": task.joint_target.numpy().copy(),
            "width": task.gripper_target.numpy().copy(),
        }
        env.step(action)
        for world in range(NUM_WORLDS):
            sim.data.qpos[:] = before["qpos"][world]
            mujoco.mj_forward(sim.model, sim.data)
            sim._targets = _Targets(
                before["tcp_target"][world],
                sim.home_tcp_quat,
                before["joints"][world],
                float(before["width"][world]),
            )
            cell._apply(action[world].numpy())
            expected_pos, _ = sim.tcp_target
            np.testing.assert_allclose(task.tcp_target[world].numpy(), expected_pos, atol=1e-12)
            np.testing.assert_allclose(
                task.joint_target[world].numpy(), sim._targets.joints, atol=1e-8
            )
            assert task.gripper_target[world].item() == pytest.approx(sim.gripper_target)
            np.testing.assert_allclose(env.sim.ctrl[world].numpy(), sim.data.ctrl, atol=1e-6)


def test_physics_matches_mj_step_for_100_steps(env: BatchedMujocoEnv) -> None:
    """Same initial state and controls: arm joints within 1e-3 rad of ``mujoco.mj_step`` after
    100 physics steps (two 10 Hz control steps); the reward matches the CPU state's."""
    env.reset(seed=1)
    model = env.mj_model
    datas = []
    for world in range(NUM_WORLDS):
        data = mujoco.MjData(model)
        data.qpos[:] = env.sim.qpos[world].double().numpy()
        data.qvel[:] = env.sim.qvel[world].double().numpy()
        data.mocap_pos[:] = env.sim.mocap_pos[world].double().numpy()
        datas.append(data)
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        action = torch.rand(NUM_WORLDS, 4, generator=generator) * 2 - 1
        _, reward, *_ = env.step(action)
        for world, data in enumerate(datas):
            data.ctrl[:] = env.sim.ctrl[world].double().numpy()
            mujoco.mj_step(model, data, nstep=50)
    mujoco.mj_forward(model, datas[0])
    arm = arm_qpos(model)
    tcp_site = model.site("tcp").id
    for world, data in enumerate(datas):
        mujoco.mj_forward(model, data)
        warp_arm = env.sim.qpos[world, arm].double().numpy()
        assert np.abs(warp_arm - data.qpos[arm]).max() < 1e-3
        distance = float(np.linalg.norm(data.site_xpos[tcp_site] - data.mocap_pos[0]))
        assert reward[world].item() == pytest.approx(reach_reward(distance), abs=1e-3)


def test_worlds_in_different_states_render_differently(env: BatchedMujocoEnv) -> None:
    obs, _ = env.reset(seed=2)
    pixels = obs["pixels"]  # [N, 2, 3, H, W]: front, wrist
    for first in range(NUM_WORLDS):
        for second in range(first + 1, NUM_WORLDS):
            assert not torch.equal(pixels[first, 0], pixels[second, 0])


def test_moving_the_cube_or_the_arm_moves_pixels_at_once(env: BatchedMujocoEnv) -> None:
    obs, _ = env.reset(seed=3)
    model = env.mj_model
    qpos = env.sim.qpos.clone()
    cube = int(model.joint("cube").qposadr[0])
    qpos[0, cube : cube + 2] = torch.tensor([0.45, 0.1])  # world 0: cube to the middle
    qpos[1, arm_qpos(model)[0]] += 0.4  # world 1: the base joint turns
    env.set_state(qpos, env.sim.qvel.clone())
    moved = env.observe()["pixels"]
    assert not torch.equal(moved[0, 0], obs["pixels"][0, 0])  # front sees the cube move
    assert not torch.equal(moved[1, 0], obs["pixels"][1, 0])  # front sees the arm turn
    assert not torch.equal(moved[1, 1], obs["pixels"][1, 1])  # the wrist camera turns with it
    assert torch.equal(moved[2], obs["pixels"][2])  # world 2 untouched

    # A step's observation shows the state that step reached.
    before = env.observe()["pixels"]
    stepped, *_ = env.step(torch.tensor([[0.0, 0.0, -1.0, 1.0]]).repeat(NUM_WORLDS, 1))
    assert torch.equal(stepped["pixels"], env.observe()["pixels"])
    for world in range(NUM_WORLDS):
        assert not torch.equal(stepped["pixels"][world, 1], before[world, 1])


def test_same_seed_and_actions_give_identical_frames(env: BatchedMujocoEnv) -> None:
    actions = torch.tensor([[0.5, -0.3, -1.0, -1.0], [1.0, 1.0, 0.0, 1.0], [-1.0, 0.2, 0.4, 0.0]])
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=7)
        frames = [obs["pixels"]]
        for _ in range(2):
            obs, *_ = env.step(actions)
            frames.append(obs["pixels"])
        runs.append(torch.stack(frames))
    assert torch.equal(runs[0], runs[1])


def test_scripted_expert_solves_reach_in_most_worlds(env: BatchedMujocoEnv) -> None:
    """cell/scripted's reach expert on batched state (measured: 3/3 worlds within 9 steps)."""
    env.reset(seed=0)
    for _ in range(20):
        _, _, _, _, info = env.step(scripted_actions(env))
        if bool(info["success"].all()):
            break
    assert int(info["success"].sum()) >= 2


def test_scripted_expert_picks_the_cube() -> None:
    """cell/scripted's pick expert on 4 batched worlds: grasp, then lift 5 cm.

    Grasp contacts in MuJoCo Warp are the finger-pad/cube mesh contacts CPU MuJoCo finds (checked
    on one grasp: the same geom pairs). Measured (seed 0, Warp CPU): the pads close on the cube in
    all 4 worlds by step 15 and all 4 succeed at step 18 (CellEnv's expert: 10/10 episodes);
    15-30 s on 2 shared cores.
    """
    env = make("cell_pick_cube", num_worlds=4, cameras=["front"])
    env.reset(seed=0)
    grasped = torch.zeros(4, dtype=torch.bool)
    for _ in range(40):
        _, _, _, _, info = env.step(scripted_actions(env))
        grasped |= task_of(env).cube_grasped(env.sim)
        if bool(info["success"].all()):
            break
    env.close()
    assert bool(grasped.all())
    assert int(info["success"].sum()) >= 3


def test_the_core_builds_it_as_a_gymnasium_env() -> None:
    """The one-world adapter the CLI builds for agent construction and evaluation."""
    env = build_env(
        TaskConfig("warp", "cell_reach", options={"proprio": True}),
        EnvConfig(image_size=16, action_repeat=1, frame_stack=2),
        seed=0,
    )
    assert isinstance(env, SingleWorldEnv)
    assert env.action_space.shape == (4,)
    check_env(env, skip_render_check=True)
    env.close()
