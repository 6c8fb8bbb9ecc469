"""Franka forward kinematics (Franka's DH table, Craig's convention) and joint-space resets on a
Franka backend.

**The independent computation** is MuJoCo's Panda: robosuite's ``robots/panda/robot.xml``, the
model the sim twin's cell loads (``robotrl_sim.cell.scene.build_model``). Its bodies ``link1`` ..
``link7`` are placed by their own ``pos``/``quat`` (Franka's URDF), not by the DH table, and
``mj_kinematics`` composes them. Fixed frame offsets between the two, stated and checked here:

* Franka's base frame ``O`` is the robot's ``link0``; in the cell ``panda/link0`` sits at the world
  origin with the identity rotation (asserted), and every MuJoCo pose is taken relative to
  ``panda/link0`` anyway.
* DH frames 1..7 are MuJoCo's ``link1`` .. ``link7`` exactly (no offsets).
* robosuite's ``right_hand`` body (where the gripper mounts) is Franka's hand frame: the flange
  rotated by -45° about its z axis, like ``franka_description``'s hand joint. robosuite puts it
  0.1065 m from ``link7`` instead of the DH table's 0.107 and writes its rotation as the rounded
  quaternion ``(0.924, 0, 0, -0.383)`` (45.03°), so the hand differs by 0.5 mm along the flange's
  z axis and by 5e-4 rad: within the 1 mm / 1e-3 rad this file allows there.

No Franka arm and no franky SDK exist on this machine: the driver test below runs the real
:class:`FrankaBackend` against a kinematic mock of franky's ``Robot`` (the mock-SDK style of
``test_vendor_backends.py``), which is exactly where it was last told to be. It checks what the
driver asks of franky, not that an arm moves.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from robotrl_real.backends.franka import FRANKA_JOINTS, FrankaBackend
from robotrl_real.backends.franka_kinematics import (
    FLANGE,
    FLANGE_D,
    FRANKA_HAND_TCP,
    FRANKA_HAND_TCP_OFFSET,
    end_effector_pose,
    flange_pose,
    joint_frames,
    pose_matrix,
    quaternion_from_matrix,
)
from robotrl_real.driver import DriverConfig, DriverNode, joint_trajectory
from robotrl_real.node import free_domain_id, loopback_config
from robotrl_real.safety import SafetyConfig, rotation_angle
from tests.real.test_vendor_backends import FakeAffine, FakeFranky, Recorder

CONFIGURATIONS = 500
READY = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
HAND_ROTATION = pose_matrix((0.0, 0.0, 0.0), FRANKA_HAND_TCP[1])  # Rz(-45°), no offset


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (rad) of the rotation between two 3x3 rotation matrices."""
    cosine = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return float(np.arccos(np.clip(cosine, -1.0, 1.0)))


class MujocoPanda:
    """The cell's compiled MuJoCo model; body poses relative to ``panda/link0``."""

    def __init__(self) -> None:
        mujoco = pytest.importorskip("mujoco")
        scene = pytest.importorskip("robotrl_sim.cell.scene")
        self.mujoco, self.scene = mujoco, scene
        self.model = scene.build_model()
        self.data = mujoco.MjData(self.model)
        self.qpos = [self.model.joint(name).qposadr[0] for name in scene.ARM_JOINTS]
        ranges = np.array([self.model.joint(name).range for name in scene.ARM_JOINTS])
        self.low, self.high = ranges[:, 0], ranges[:, 1]

    def set(self, joints: np.ndarray) -> None:
        self.data.qpos[self.qpos] = joints
        self.mujoco.mj_kinematics(self.model, self.data)

    def world_pose(self, body: str) -> np.ndarray:
        index = self.model.body(body).id
        pose = np.eye(4)
        pose[:3, :3] = self.data.xmat[index].reshape(3, 3)
        pose[:3, 3] = self.data.xpos[index]
        return pose

    def pose(self, body: str) -> np.ndarray:
        return np.linalg.inv(self.world_pose("panda/link0")) @ self.world_pose(body)

    def site_position(self, site: str) -> np.ndarray:
        base = self.world_pose("panda/link0")
        point = np.append(self.data.site_xpos[self.model.site(site).id], 1.0)
        return (np.linalg.inv(base) @ point)[:3]


@pytest.fixture(scope="module")
def panda() -> MujocoPanda:
    return MujocoPanda()


def random_configurations(panda: MujocoPanda, count: int = CONFIGURATIONS) -> np.ndarray:
    """Uniform over the model's joint ranges (Franka's limits), plus the ready pose and zeros
    clipped into range."""
    rng = np.random.default_rng(7)
    samples = rng.uniform(panda.low, panda.high, size=(count, 7))
    extra = np.clip(np.stack([READY, np.zeros(7)]), panda.low, panda.high)
    return np.concatenate([extra, samples])


def test_the_mujoco_base_is_frankas_base_frame(panda):
    panda.set(READY)
    np.testing.assert_allclose(panda.world_pose("panda/link0"), np.eye(4), atol=1e-12)


def test_dh_frames_1_to_7_match_mujocos_links(panda):
    worst_position = worst_angle = 0.0
    for joints in random_configurations(panda):
        panda.set(joints)
        for index, frame in enumerate(joint_frames(joints), start=1):
            reference = panda.pose(f"panda/link{index}")
            worst_position = max(
                worst_position, float(np.abs(frame[:3, 3] - reference[:3, 3]).max())
            )
            worst_angle = max(worst_angle, angle_between(frame, reference))
    # robosuite's quaternions are written to 6 digits (0.707107): ~1e-7 rad
    assert worst_position < 1e-9 and worst_angle < 1e-6, (worst_position, worst_angle)


def test_flange_matches_robosuites_hand_within_its_stated_offsets(panda):
    worst_position = worst_angle = 0.0
    for joints in random_configurations(panda):
        panda.set(joints)
        flange = flange_pose(joints)
        hand = panda.pose("panda/right_hand")
        # within 1 mm / 1e-3 rad with the -45° hand rotation accounted for
        error = float(np.linalg.norm(flange[:3, 3] - hand[:3, 3]))
        worst_position = max(worst_position, error)
        worst_angle = max(worst_angle, angle_between(flange @ HAND_ROTATION, hand))
        # and the position difference is exactly robosuite's 0.1065 vs the DH table's 0.107 m
        expected = flange[:3, 3] - (FLANGE_D - 0.1065) * flange[:3, 2]
        np.testing.assert_allclose(hand[:3, 3], expected, atol=1e-9)
    assert worst_position < 1e-3 and worst_angle < 1e-3, (worst_position, worst_angle)
    assert worst_position == pytest.approx(0.0005, abs=1e-9)


def test_end_effector_is_the_franka_hand_tcp_on_the_sims_approach_axis(panda):
    for joints in random_configurations(panda, 100):
        panda.set(joints)
        position, quaternion = end_effector_pose(joints)
        pose = pose_matrix(position, quaternion)
        hand = panda.pose("panda/right_hand")
        # the TCP: 0.1034 m along the hand's (= the flange's) z axis, hand orientation
        expected = hand[:3, 3] + (FRANKA_HAND_TCP_OFFSET + FLANGE_D - 0.1065) * hand[:3, 2]
        assert np.linalg.norm(position - expected) < 1e-3
        assert angle_between(pose, hand) < 1e-3
        # the sim twin's own TCP site (between its finger pads) lies on the same approach axis
        site = panda.site_position(panda.scene.TCP_SITE)
        off_axis = np.cross(site - position, pose[:3, 2])
        assert np.linalg.norm(off_axis) < 1e-3


def test_ready_pose_points_the_hand_straight_down():
    position, quaternion = end_effector_pose(READY)
    rotation = pose_matrix(position, quaternion)[:3, :3]
    # Franka's "ready" pose: hand x forward, y to the right, z down; the arm in the x-z plane
    np.testing.assert_allclose(rotation, np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    assert abs(position[1]) < 1e-12 and position[0] > 0.2 and 0.3 < position[2] < 0.6


def test_quaternions_round_trip_and_bad_joint_vectors_are_refused():
    rng = np.random.default_rng(3)
    for _ in range(200):
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        back = quaternion_from_matrix(pose_matrix((0, 0, 0), quat))
        assert abs(abs(float(back @ quat)) - 1.0) < 1e-12
    np.testing.assert_allclose(end_effector_pose(READY, FLANGE)[0], flange_pose(READY)[:3, 3])
    with pytest.raises(ValueError, match="7 joint angles"):
        end_effector_pose(np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        end_effector_pose([0.0, 0, 0, math.nan, 0, 0, 0])


# ---------------------------------------------------------------------------------------------
# joint-space resets through the driver on the Franka backend (mock franky, no arm here)


class KinematicFrankyRobot(Recorder):
    """Mock of franky's ``Robot``: an absolute ``CartesianMotion`` puts the end effector at its
    target at once; the stop motion leaves it where it is. Every call is recorded."""

    def __init__(self, joints: np.ndarray) -> None:
        super().__init__()
        self.has_errors = False
        position, quaternion = end_effector_pose(joints)
        self.pose = FakeAffine(position, quaternion)
        self.current_joint_state = type("J", (), {"position": joints, "velocity": np.zeros(7)})()

    @property
    def current_cartesian_state(self) -> object:
        pose = type("P", (), {"end_effector_pose": self.pose})()
        return type("S", (), {"pose": pose})()

    def move(self, motion: object, asynchronous: bool = False) -> None:
        self.calls.append(("move", (motion,), {"asynchronous": asynchronous}))
        if isinstance(motion, FakeFranky.CartesianMotion):
            assert motion.reference == FakeFranky.ReferenceType.Absolute
            self.pose = motion.target


def franka_driver(start: np.ndarray) -> tuple[DriverNode, KinematicFrankyRobot]:
    robot = KinematicFrankyRobot(start)
    gripper = Recorder()
    gripper.width = 0.08
    backend = FrankaBackend(franky_module=FakeFranky, robot=robot, gripper=gripper)
    safety = SafetyConfig(workspace_min=(0.1, -0.5, 0.05), workspace_max=(0.8, 0.5, 0.8))
    driver = DriverNode(
        backend,
        DriverConfig(namespace="fr3", safety=safety),
        domain_id=free_domain_id(),
        dds_config=loopback_config(),
    )
    return driver, robot


def run_reset(driver: DriverNode, goal: np.ndarray, t0: float = 1000.0) -> float:
    """Tick the driver (fake clock) through a reset to ``goal``; returns the end time."""
    driver.tick(t0)
    driver._events.put(("trajectory", joint_trajectory(FRANKA_JOINTS, goal), t0 + 0.001))
    now = t0 + driver.period
    driver.tick(now)
    assert driver.mode == "reset"
    for _ in range(2000):
        if driver.mode != "reset":
            break
        now += driver.period
        driver.tick(now)
    return now


@pytest.mark.parametrize(
    "goal",
    [
        READY + np.array([0.3, 0.2, -0.1, 0.25, 0.2, -0.3, 0.5]),  # a move across the cell
        READY + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8]),  # the wrist alone: a pure turn
    ],
    ids=["arm", "wrist_only"],
)
def test_driver_resets_a_franka_arm_to_the_pose_of_joint_angles(goal):
    driver, robot = franka_driver(READY)
    try:
        expected_position, expected_quaternion = end_effector_pose(goal)
        run_reset(driver, goal)
        assert driver.mode == "hold"
        assert driver.counts["rejected.trajectory_unsupported"] == 0
        assert driver.counts["rejected.trajectory_wrong_shape"] == 0
        reached = np.asarray(robot.pose.translation)
        tolerance = driver.config.reset_tolerance
        assert np.linalg.norm(reached - expected_position) < tolerance
        assert rotation_angle(np.asarray(robot.pose.quaternion), expected_quaternion) < tolerance
        # franky got absolute Cartesian motions, each step within the reset speeds
        records = [r for r in driver.records() if r.mode == "reset" and not r.held]
        assert len(records) > 10
        positions = np.array([r.position for r in records])
        steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
        assert steps.max() <= driver.config.reset_speed * driver.period + 1e-9
        turns = [
            rotation_angle(a.orientation, b.orientation) for a, b in itertools.pairwise(records)
        ]
        assert max(turns) <= driver.config.reset_rotation_speed * driver.period + 1e-9
        moves = [args[0] for args, _ in robot.called("move")]
        assert any(isinstance(m, FakeFranky.CartesianMotion) for m in moves)
    finally:
        driver.node.close()


def test_driver_reorders_named_joints_and_refuses_other_arms_names():
    driver, robot = franka_driver(READY)
    try:
        goal = READY + np.array([0.2, 0.1, 0.0, 0.2, 0.0, -0.2, 0.3])
        order = [6, 0, 5, 1, 4, 2, 3]
        t0 = 1000.0
        driver.tick(t0)
        shuffled = joint_trajectory([FRANKA_JOINTS[i] for i in order], goal[order])
        driver._events.put(("trajectory", shuffled, t0 + 0.001))
        now = t0
        for _ in range(2000):
            now += driver.period
            driver.tick(now)
            if driver.mode != "reset":
                break
        expected, _ = end_effector_pose(goal)
        assert np.linalg.norm(np.asarray(robot.pose.translation) - expected) < 1e-3
        # a Panda's names from a ROS description (``panda_joint1``..) are not this arm's joints
        other = joint_trajectory([f"panda_joint{i}" for i in range(1, 8)], READY)
        driver._events.put(("trajectory", other, now + 0.001))
        driver.tick(now + driver.period)
        assert driver.counts["rejected.trajectory_wrong_shape"] == 1
    finally:
        driver.node.close()
