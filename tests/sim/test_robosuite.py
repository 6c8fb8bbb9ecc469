"""robosuite adapter: robosuite 1.5.2 on MuJoCo 3.17 through the compatibility shim.

Everything here runs real robosuite physics and real rendering. Rollouts that only need the state
(the scripted expert, OSC directions, episode bookkeeping) use :class:`UnrenderedRobosuiteEnv`,
which skips the pixels but keeps the adapter's own action, repeat, success and truncation code.
Envs are shared through module-scoped fixtures; each test that steps one resets it first.
"""

from __future__ import annotations

import sys

import mujoco
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.builders import to_train_config
from robotrl.config import register_configs
from robotrl.envs import make_env as make_suite_env
from robotrl.replay import EpisodicReplay
from robotrl_sim import UnknownTaskError, _robosuite_compat
from robotrl_sim._common import parse_options
from robotrl_sim.robosuite import (
    DEFAULT_CAMERAS,
    PROPRIO_KEYS,
    TASKS,
    RobosuiteEnv,
    RobosuiteOptions,
    load_robosuite,
    make_env,
    robosuite_env_name,
)
from tests.sim.env_checks import check_env_bare_and_stacked

LIFT_SEEDS = (100, 101, 102, 103, 104)
TABLE_TOP_Z = 0.8  # Lift's table_offset[2]: robosuite counts a lift as the cube 4 cm above it
PRESET_FRAMES = {
    "lift": 1_000_000,
    "door": 1_000_000,
    "stack": 3_000_000,
    "pick_place_can": 3_000_000,
}


class UnrenderedRobosuiteEnv(RobosuiteEnv):
    """The adapter with blank pixels, for state-only rollouts."""

    def _pixels(self) -> np.ndarray:
        return np.zeros(self.observation_space["pixels"].shape, np.uint8)


def unrendered(task: str = "lift", seed: int = 0, action_repeat: int = 2, **options):
    parsed = RobosuiteOptions(cameras="agentview", fast_render=True, **options)
    return UnrenderedRobosuiteEnv(
        task, seed=seed, image_size=8, action_repeat=action_repeat, options=parsed
    )


def make_robosuite(task: str = "lift", image_size: int = 32, seed: int = 0, **options):
    options.setdefault("fast_render", True)
    env = make_env(task, seed=seed, image_size=image_size, action_repeat=2, **options)
    assert isinstance(env, RobosuiteEnv)
    return env


@pytest.fixture(scope="module")
def lift_state_env():
    env = unrendered("lift")
    yield env
    env.close()


@pytest.fixture(scope="module")
def lift_pixel_env():
    """Both default cameras at 48x48, with proprio and state."""
    env = make_robosuite("lift", image_size=48, proprio=True, state=True, render_size=64)
    yield env
    env.close()


# ---------------------------------------------------------------- a scripted expert on privileged
# state: move above the cube, descend, close the gripper, lift. Positions come from robosuite's
# observation (env.robosuite_obs), never from pixels.
GAIN = 10.0  # OSC action per metre of position error (1 = 5 cm per robosuite step)


def lift_expert_action(obs: dict[str, np.ndarray], phase: str) -> np.ndarray:
    cube, eef = obs["cube_pos"], obs["robot0_eef_pos"]
    up = np.array([0.0, 0.0, 1.0])
    targets = {
        "above": (cube + 0.06 * up, -1.0),
        "descend": (cube - 0.005 * up, -1.0),
        "grasp": (cube - 0.005 * up, 1.0),
        "lift": (np.array([eef[0], eef[1], 1.1]), 1.0),
    }
    target, gripper = targets[phase]
    action = np.zeros(7)
    action[:3] = np.clip(GAIN * (target - eef), -1.0, 1.0)
    action[6] = gripper
    return action


def run_lift_expert(env: RobosuiteEnv, seed: int, max_steps: int = 60) -> dict:
    env.reset(seed=seed)
    phase, grasp_steps, info = "above", 0, {"success": False}
    for _ in range(max_steps):
        obs = env.robosuite_obs
        offset = obs["cube_pos"] - obs["robot0_eef_pos"]
        if phase == "above" and np.linalg.norm(offset[:2]) < 0.01:
            phase = "descend"
        elif phase == "descend" and abs(offset[2] + 0.005) < 0.01:
            phase = "grasp"
        elif phase == "grasp":
            grasp_steps += 1
            phase = "lift" if grasp_steps >= 5 else phase
        _, _, _, _, info = env.step(lift_expert_action(obs, phase))
        if info["success"]:
            break
    return info


# ---------------------------------------------------------------- names, options, installs
def test_task_names_ours_and_robosuites_with_close_matches_for_typos():
    assert robosuite_env_name("pick_place_can") == "PickPlaceCan"
    assert robosuite_env_name("PickPlaceCan") == "PickPlaceCan"
    assert [robosuite_env_name(task) for task in TASKS] == ["Lift", "Door", "Stack", "PickPlaceCan"]
    with pytest.raises(UnknownTaskError, match=r"'pick_place_cna'\. Did you mean pick_place_can"):
        robosuite_env_name("pick_place_cna")
    with pytest.raises(UnknownTaskError, match="Valid tasks: door, lift, pick_place_can, stack"):
        make_env("wipe", seed=0, image_size=16, action_repeat=2)


def test_missing_robosuite_says_what_to_install(monkeypatch):
    # Simulated: a None entry in sys.modules makes `import robosuite` raise ImportError.
    monkeypatch.setitem(sys.modules, "robosuite", None)
    with pytest.raises(
        ImportError, match=r"needs robosuite 1\.5\.2.*pip install robosuite==1\.5\.2"
    ):
        make_env("lift", seed=0, image_size=16, action_repeat=2)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"camera": "agentview"}, TypeError, "'camera'.*valid options are episode_steps, cameras"),
        ({"episode_steps": 0}, ValueError, "episode_steps must be >= 1"),
        ({"render_size": 0}, ValueError, "render_size must be a positive integer"),
        ({"cameras": []}, ValueError, "cameras must be a camera name or a list"),
        ({"cameras": ["agentview", "agentview"]}, ValueError, "cameras must not repeat"),
        ({"render_mode": "human"}, ValueError, "render_mode must be 'rgb_array' or None"),
    ],
)
def test_bad_options_raise_clear_errors_before_robosuite_is_built(options, error, match):
    with pytest.raises(error, match=match):
        make_env("lift", seed=0, image_size=16, action_repeat=2, **options)


def test_unknown_camera_lists_the_scenes_cameras():
    with pytest.raises(ValueError, match=r"no camera 'top'; cameras: frontview, birdview, agentv"):
        make_env("lift", seed=0, image_size=16, action_repeat=2, cameras=["agentview", "top"])


def test_action_checks_name_the_problem(lift_state_env):
    lift_state_env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(7,\), got shape \(6,\)"):
        lift_state_env.step(np.zeros(6, np.float32))
    bad = np.zeros(7, np.float32)
    bad[2] = np.nan
    with pytest.raises(ValueError, match="action must be finite"):
        lift_state_env.step(bad)


# ---------------------------------------------------------------- the shim
def test_shim_is_applied_once_and_only_where_mujoco_changed():
    from robosuite.controllers.parts.controller import Controller
    from robosuite.utils.binding_utils import MjModel

    load_robosuite()
    assert _robosuite_compat.is_applied()
    patched = (MjModel.get_joint_qpos_addr, Controller.update)
    _robosuite_compat.apply()
    assert (MjModel.get_joint_qpos_addr, Controller.update) == patched
    # Why the shim exists: MuJoCo 3.17's enums do not equal numpy integers from their side (what
    # robosuite's `type in (HINGE, SLIDE)` relies on), and MjData lost qM.
    hinge = np.int32(mujoco.mjtJoint.mjJNT_HINGE)
    assert hinge == mujoco.mjtJoint.mjJNT_HINGE
    assert hinge not in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
    assert not hasattr(mujoco.MjData, "qM")


def test_shim_joint_addresses_agree_with_mujocos_own_for_every_joint_type():
    from robosuite.utils.binding_utils import MjModel

    load_robosuite()
    xml = """
    <mujoco><worldbody>
      <body name="free_body"><freejoint name="free"/><geom size="0.1"/></body>
      <body name="arm" pos="1 0 0">
        <joint name="hinge" type="hinge"/><joint name="slide" type="slide"/>
        <geom size="0.1"/>
        <body name="wrist" pos="0 0 0.5"><joint name="ball" type="ball"/><geom size="0.1"/></body>
      </body>
    </worldbody></mujoco>
    """
    raw = mujoco.MjModel.from_xml_string(xml)
    model = MjModel(raw)
    widths = {"free": (7, 6), "ball": (4, 3), "hinge": (1, 1), "slide": (1, 1)}
    for name, (qpos_width, qvel_width) in widths.items():
        joint = raw.joint(name)
        qpos_start, qvel_start = int(joint.qposadr[0]), int(joint.dofadr[0])
        expected_qpos = qpos_start if qpos_width == 1 else (qpos_start, qpos_start + qpos_width)
        expected_qvel = qvel_start if qvel_width == 1 else (qvel_start, qvel_start + qvel_width)
        assert model.get_joint_qpos_addr(name) == expected_qpos, name
        assert model.get_joint_qvel_addr(name) == expected_qvel, name
    # The slices tile qpos and qvel exactly, as MuJoCo lays them out.
    assert raw.nq == 7 + 1 + 1 + 4 and raw.nv == 6 + 1 + 1 + 3


def test_shim_mass_matrix_is_mujocos_inertia_of_the_arm(lift_state_env):
    env = lift_state_env
    env.reset(seed=1)
    for _ in range(3):  # move away from the initial pose so the inertia is not a special case
        env.step(np.array([0.5, -0.3, 0.2, 0.1, 0.0, -0.1, 1.0]))
    arm = env.robosuite_env.robots[0].composite_controller.part_controllers["right"]
    assert type(arm).__name__ == "OperationalSpaceController"
    arm.update(force=True)  # the shim's method: forward, then the dense inertia via mj_fullM
    model, data = env.robosuite_env.sim.model._model, env.robosuite_env.sim.data._data
    # The same matrix from a different MuJoCo routine: M @ e_i, column by column.
    dense = np.zeros((model.nv, model.nv))
    column = np.zeros(model.nv)
    for index, unit in enumerate(np.eye(model.nv)):
        mujoco.mj_mulM(model, data, column, unit)
        dense[:, index] = column
    dofs = np.asarray(arm.qvel_index)
    assert dofs.tolist() == list(range(7))  # the Panda's seven arm joints come first
    np.testing.assert_allclose(arm.mass_matrix, dense[np.ix_(dofs, dofs)], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(arm.mass_matrix, arm.mass_matrix.T)
    assert np.all(np.linalg.eigvalsh(arm.mass_matrix) > 0)


def test_osc_moves_the_end_effector_in_the_commanded_direction(lift_state_env):
    env = lift_state_env
    env.reset(seed=2)
    for axis in range(3):
        for sign in (1.0, -1.0):
            before = env.robosuite_obs["robot0_eef_pos"].copy()
            action = np.zeros(7)
            action[axis] = 0.5 * sign
            for _ in range(4):
                env.step(action)
            moved = env.robosuite_obs["robot0_eef_pos"] - before
            direction = np.zeros(3)
            direction[axis] = sign
            assert np.linalg.norm(moved) > 0.03, (axis, sign, moved)
            assert moved @ direction > 0.95 * np.linalg.norm(moved), (axis, sign, moved)


def test_scripted_expert_lifts_the_cube_with_osc_on_every_seed(lift_state_env):
    """The shim's behavioural proof: reach, grasp and lift with OSC from privileged state."""
    successes = []
    for seed in LIFT_SEEDS:
        info = run_lift_expert(lift_state_env, seed)
        cube_z = lift_state_env.robosuite_obs["cube_pos"][2]
        successes.append(info["success"])
        print(f"seed {seed}: success {info['success']}, cube {cube_z - TABLE_TOP_Z:.3f} m up")
        if info["success"]:
            assert cube_z > TABLE_TOP_Z + 0.04
    assert all(successes), successes


# ---------------------------------------------------------------- episodes, success, repeats
def test_success_is_success_so_far_and_resets_with_the_episode(lift_state_env):
    env = lift_state_env
    info = run_lift_expert(env, seed=105)
    assert info["success"] is True
    # Open the gripper: the cube falls back, robosuite no longer reports success, the episode does.
    for _ in range(15):
        _, _, terminated, _, info = env.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
    assert not env.robosuite_env._check_success()
    assert env.robosuite_obs["cube_pos"][2] < TABLE_TOP_Z + 0.04
    assert info["success"] is True and terminated is False
    assert env.reset(seed=106)[1] == {"success": False}


def test_terminate_on_success_ends_the_episode(monkeypatch):
    env = unrendered("lift", terminate_on_success=True)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros(7))
    assert (terminated, truncated, info["success"]) == (False, False, False)
    monkeypatch.setattr(env.robosuite_env, "_check_success", lambda: True)
    _, _, terminated, truncated, info = env.step(np.zeros(7))
    assert (terminated, truncated, info["success"]) == (True, False, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(7))
    env.close()


def test_episode_is_truncated_after_episode_steps_of_action_repeat_robosuite_steps():
    env = unrendered("door", episode_steps=3)
    env.reset(seed=0)
    results = [env.step(np.zeros(7))[2:4] for _ in range(3)]
    assert results == [(False, False), (False, False), (False, True)]
    assert env.robosuite_env.timestep == 6  # robosuite steps: 3 agent steps at repeat 2
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(7))
    assert RobosuiteOptions().episode_steps == 250  # robosuite's 500-step horizon at repeat 2
    env.close()


def test_action_repeat_sums_rewards_and_seeds_reproduce_episodes(lift_state_env):
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, 7) for _ in range(4)]
    once = unrendered("lift", action_repeat=1)
    lift_state_env.reset(seed=7)
    once.reset(seed=7)
    np.testing.assert_array_equal(
        lift_state_env.robosuite_obs["cube_pos"], once.robosuite_obs["cube_pos"]
    )
    for action in actions:
        _, reward_twice, *_ = lift_state_env.step(action)
        first = once.step(action)[1]
        second = once.step(action)[1]
        assert reward_twice == pytest.approx(float(first) + float(second), rel=1e-9)
        np.testing.assert_array_equal(
            lift_state_env.robosuite_obs["robot0_eef_pos"], once.robosuite_obs["robot0_eef_pos"]
        )
    assert lift_state_env.robosuite_env.timestep == once.robosuite_env.timestep == 8
    # reset(seed) places the cube as a fresh env of that seed does; other seeds place it elsewhere.
    # (Its height differs: Lift draws the cube's size when the model is built, see hard_reset.)
    fresh = unrendered("lift", seed=7)
    fresh.reset()
    lift_state_env.reset(seed=7)
    np.testing.assert_array_equal(
        fresh.robosuite_obs["cube_pos"][:2], lift_state_env.robosuite_obs["cube_pos"][:2]
    )
    lift_state_env.reset(seed=8)
    assert not np.allclose(
        fresh.robosuite_obs["cube_pos"], lift_state_env.robosuite_obs["cube_pos"]
    )
    once.close()
    fresh.close()


def test_hard_reset_redraws_lifts_cube_and_rebuilds_the_renderer():
    def cube_half_size(env: RobosuiteEnv) -> float:
        model = env.robosuite_env.sim.model._model
        return float(model.geom_size[model.geom("cube_g0").id][0])

    env = make_robosuite("lift", image_size=16, seed=7, cameras="agentview", hard_reset=True)
    fresh = make_robosuite("lift", image_size=16, seed=7, cameras="agentview", hard_reset=True)
    sizes, frames = [], []
    for seed in (1, 2, 3, 7):
        frames.append(env.reset(seed=seed)[0]["pixels"])
        sizes.append(cube_half_size(env))
    assert len(set(sizes)) == 4 and all(0.020 <= size <= 0.022 for size in sizes)
    assert all(frame.std() > 15 for frame in frames)  # the rebuilt renderer draws the new model
    # With the model rebuilt from the reseeded generator, reset(seed) is a fresh env's start.
    fresh_frame = fresh.reset()[0]["pixels"]
    assert cube_half_size(fresh) == sizes[-1]
    np.testing.assert_array_equal(fresh.robosuite_obs["cube_pos"], env.robosuite_obs["cube_pos"])
    np.testing.assert_array_equal(fresh_frame, frames[-1])
    env.close()
    fresh.close()


# ---------------------------------------------------------------- pixels
def test_spaces_proprio_and_state(lift_pixel_env):
    env = lift_pixel_env
    assert env.cameras == DEFAULT_CAMERAS == ("agentview", "robot0_eye_in_hand")
    assert set(env.observation_space.spaces) == {"pixels", "proprio", "state"}
    assert env.observation_space["pixels"].shape == (2, 3, 48, 48)
    assert (env.action_space.shape, env.action_space.dtype) == ((7,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info == {"success": False}
    assert obs["pixels"].dtype == np.uint8 and obs["proprio"].dtype == np.float32
    expected = np.concatenate([env.robosuite_obs[key] for key in PROPRIO_KEYS])
    np.testing.assert_allclose(obs["proprio"], expected, rtol=1e-6)
    assert obs["proprio"].shape == (9,)
    # robosuite's 50-number robot state, then Lift's object state (cube pose, gripper-to-cube).
    assert obs["state"].shape == (50 + 10,)


def _camera_pixel(model: mujoco.MjModel, data: mujoco.MjData, camera: int, point, size: int):
    """Where ``point`` appears in an upright ``size``x``size`` image (row, column)."""
    axes = data.cam_xmat[camera].reshape(3, 3)  # columns: image right, image up, backwards
    right, up, back = axes.T @ (np.asarray(point) - data.cam_xpos[camera])
    focal = 0.5 * size / np.tan(np.deg2rad(model.cam_fovy[camera]) / 2)
    depth = -back
    return 0.5 * size - focal * up / depth, 0.5 * size + focal * right / depth


def test_pixels_are_upright_and_not_mirrored(lift_pixel_env):
    env = lift_pixel_env
    obs, _ = env.reset(seed=0)
    agentview, wrist = (view.transpose(1, 2, 0).astype(int) for view in obs["pixels"])
    size = agentview.shape[0]
    red, green, blue = agentview[..., 0], agentview[..., 1], agentview[..., 2]
    # Lift's white table top fills the bottom of an upright agentview frame; the robot's dark base
    # and the wooden floor fill its top.
    white = (red > 180) & (green > 180) & (blue > 180)
    quarter = size // 4
    assert white[-quarter:].mean() > 0.8 and white[:quarter].mean() < 0.3
    # The red cube sits where MuJoCo's camera geometry projects it. Moved off-centre first, so a
    # flipped or a mirrored frame would put it far from there.
    sim = env.robosuite_env.sim
    start, _ = sim.model.get_joint_qpos_addr(env.robosuite_env.cube.joints[0])
    sim.data.qpos[start : start + 3] = [0.1, 0.2, TABLE_TOP_Z + 0.03]
    sim.forward()
    view = env._pixels()[0].transpose(1, 2, 0).astype(int)
    red, green, blue = view[..., 0], view[..., 1], view[..., 2]
    cube_rows, cube_columns = np.nonzero((red > 100) & (green < 60) & (blue < 60))
    assert cube_rows.size > 0
    model, data = sim.model._model, sim.data._data
    cube = data.xpos[env.robosuite_env.cube_body_id]
    row, column = _camera_pixel(model, data, model.camera("agentview").id, cube, size)
    assert abs(cube_rows.mean() - row) < 2.0 and abs(cube_columns.mean() - column) < 2.0
    assert abs((size - 1 - row) - row) > 8 and abs((size - 1 - column) - column) > 8
    # The wrist camera looks down past the gripper: its dark fingers are at the bottom.
    dark_rows = np.nonzero(wrist.max(axis=-1) < 60)[0]
    assert dark_rows.size > 0 and dark_rows.mean() > 0.75 * size


@pytest.mark.parametrize("task", list(TASKS))
def test_pixel_smoke_per_task(task):
    env = make_robosuite(task, image_size=32, seed=3)
    first, _ = env.reset(seed=3)
    pixels = first["pixels"]
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == np.uint8
    for view in pixels:
        assert view.std() > 15, f"{task}: a blank or flat camera image"
    assert not np.array_equal(pixels[0], pixels[1])
    actions = [np.array([0.3, -0.2, 0.4, 0.0, 0.0, 0.1, 1.0])] * 3
    rollouts = []
    for _ in range(2):
        frames = [env.reset(seed=3)[0]["pixels"]]
        frames += [env.step(action)[0]["pixels"] for action in actions]
        rollouts.append(np.stack(frames))
    np.testing.assert_array_equal(rollouts[0], rollouts[1])  # same seed, same actions, same pixels
    np.testing.assert_array_equal(rollouts[0][0], pixels)
    assert not np.array_equal(rollouts[0][0], rollouts[0][-1])  # the arm moved in view
    env.close()


def test_one_camera_gives_three_channels_and_fast_render_changes_only_visuals():
    fast = make_robosuite("lift", seed=1, cameras="agentview", state=True)
    default = make_robosuite("lift", seed=1, cameras=["agentview"], state=True, fast_render=False)
    assert fast.observation_space["pixels"].shape == (3, 32, 32)
    fast_obs, default_obs = fast.reset()[0], default.reset()[0]
    assert fast_obs["pixels"].shape == (3, 32, 32)
    assert not np.array_equal(fast_obs["pixels"], default_obs["pixels"])
    np.testing.assert_array_equal(fast_obs["state"], default_obs["state"])
    fast.close()
    default.close()


def test_passes_the_gymnasium_checker_bare_and_frame_stacked():
    env = make_robosuite("lift", image_size=16, episode_steps=20)
    check_env_bare_and_stacked(env)
    env.close()


def test_render_shows_every_camera_side_by_side_and_close_is_idempotent():
    env = make_robosuite("stack", image_size=16, render_size=40)
    env.reset(seed=0)
    frame = env.render()
    assert frame is not None and frame.shape == (40, 80, 3) and frame.dtype == np.uint8
    assert not np.array_equal(frame[:, :40], frame[:, 40:])
    env.close()
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.render()


# ---------------------------------------------------------------- with the core
def test_two_camera_env_feeds_drqv2_act_and_update():
    env = make_suite_env(
        "robosuite",
        "lift",
        seed=0,
        image_size=32,
        action_repeat=2,
        frame_stack=3,
        options={"fast_render": True, "episode_steps": 6, "cameras": list(DEFAULT_CAMERAS)},
    )
    obs_shape = env.observation_space["pixels"].shape
    assert obs_shape == (2, 9, 32, 32)
    torch.manual_seed(0)
    agent = DrQV2Agent(
        DrQV2Config(hidden_dim=32, feature_dim=16, channels_last=False),
        obs_shape=obs_shape,
        action_dim=7,
        device="cpu",
    )
    replay = EpisodicReplay(capacity=100, frame_stack=3, nstep=1, discount=0.99, seed=0)
    obs, _ = env.reset(seed=0)
    replay.start_episode(obs)
    truncated = False
    while not truncated:
        action = agent.act(obs, step=10_000, eval_mode=False)
        assert action.shape == (7,) and np.all(np.abs(action) <= 1.0)
        obs, reward, terminated, truncated, _ = env.step(action)
        replay.add(action, float(reward), obs, terminated, truncated)
    batch = replay.sample(4)
    assert batch["obs"].shape == (4, 2, 9, 32, 32)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    metrics = agent.update(batch, step=10_000)
    assert metrics and all(np.isfinite(value) for value in metrics.values())
    assert any(
        not torch.equal(b, p) for b, p in zip(before, agent.critic.parameters(), strict=True)
    )
    env.close()


@pytest.fixture(scope="module")
def hydra_conf():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        yield


@pytest.mark.parametrize("task", list(TASKS))
def test_task_presets_compose(hydra_conf, task):
    cfg = to_train_config(compose("train", overrides=[f"task=robosuite/{task}"]))
    assert (cfg.task.suite, cfg.task.name) == ("robosuite", task)
    assert cfg.frames == PRESET_FRAMES[task]
    assert (cfg.env.image_size, cfg.env.action_repeat, cfg.env.frame_stack) == (84, 2, 3)
    options = parse_options(RobosuiteOptions, cfg.task.options, where=f"robosuite/{task}")
    assert options.cameras == DEFAULT_CAMERAS
    assert (options.fast_render, options.reward_shaping, options.episode_steps) == (
        False,
        True,
        250,
    )
