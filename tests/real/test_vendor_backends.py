"""Vendor adapters: import guards, and command mapping against MOCK SDK objects.

No UR, Franka or xArm arm (or SDK) exists on this machine, so the SDK objects below are
recording fakes written for these tests; they check that each adapter calls the documented SDK
method with the documented units, not that a real arm moves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from robotrl_real.arm import ArmBackend
from robotrl_real.backends import MissingDependencyError, make_backend
from robotrl_real.backends._vendor import quaternion_from_rpy, rpy_from_quaternion
from robotrl_real.backends.franka import FrankaBackend
from robotrl_real.backends.ur import URBackend
from robotrl_real.backends.xarm import XArmBackend
from robotrl_real.safety import quaternion_from_rotvec


class Recorder:
    """A mock SDK object: records every method call, returns canned values."""

    def __init__(self, **returns: object) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self._returns = returns

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            value = self._returns.get(name)
            return value(*args, **kwargs) if callable(value) else value

        return method

    def called(self, name: str) -> list[tuple[tuple, dict]]:
        return [(a, k) for n, a, k in self.calls if n == name]


@pytest.mark.parametrize(
    ("backend", "extra", "module"),
    [("ur", "ur", "rtde_control"), ("franka", "franka", "franky"), ("xarm", "xarm", "xarm")],
)
def test_missing_sdk_names_the_extra(backend, extra, module):
    with pytest.raises(MissingDependencyError, match=rf"robotrl-real\[{extra}\]") as error:
        make_backend(backend, host="10.0.0.2")
    assert module in str(error.value)


def test_unknown_backend_and_missing_host_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backend 'kuka'"):
        make_backend("kuka")
    with pytest.raises(ValueError, match="host="):
        URBackend()


def test_ur_maps_to_servol_in_metres_and_rotation_vectors():
    rotvec = np.array([0.0, math.pi / 2, 0.0])
    receive = Recorder(
        getActualTCPPose=[0.4, -0.1, 0.3, *rotvec],
        getActualQ=[0.1] * 6,
        getActualQd=[0.0] * 6,
        isProtectiveStopped=True,
    )
    control = Recorder(reuploadScript=True, getForwardKinematics=[0.5, 0.0, 0.2, 0.0, 0.0, 0.0])
    dashboard, gripper = Recorder(), Recorder()
    ur = URBackend(
        control=control, receive=receive, dashboard=dashboard, gripper=gripper, control_hz=125
    )
    assert isinstance(ur, ArmBackend)
    state = ur.read_state()
    np.testing.assert_allclose(state.tcp_position, [0.4, -0.1, 0.3])
    # quaternion of a 90° turn about y: (0, sin 45°, 0, cos 45°)
    np.testing.assert_allclose(state.tcp_orientation, [0, math.sqrt(0.5), 0, math.sqrt(0.5)])
    ur.command_tcp(np.array([0.5, 0.0, 0.2]), state.tcp_orientation)
    ((args, _),) = control.called("servoL")
    np.testing.assert_allclose(args[0], [0.5, 0.0, 0.2, *rotvec], atol=1e-12)
    assert args[1:] == (0.25, 0.5, 1 / 125, 0.1, 300.0)  # speed, accel, time = period, ...
    ur.command_gripper(1.7)
    assert gripper.called("move") == [((1.0,), {})]  # clamped opening
    ur.hold()
    assert control.called("servoStop")
    assert ur.has_error() and ur.recover()
    assert dashboard.called("unlockProtectiveStop") and control.called("reuploadScript")
    position, _ = ur.forward_kinematics(np.zeros(6))
    np.testing.assert_allclose(position, [0.5, 0.0, 0.2])


class FakeAffine:
    def __init__(self, translation, quaternion=(0.0, 0.0, 0.0, 1.0)) -> None:
        self.translation, self.quaternion = list(translation), list(quaternion)


class FakeFranky:
    """Mock of the franky module's names used by the adapter."""

    Affine = FakeAffine

    class ReferenceType:
        Absolute = "absolute"

    class CartesianMotion:
        def __init__(self, target, reference) -> None:
            self.target, self.reference = target, reference

    class CartesianPoseStopMotion:
        pass


def test_franka_maps_to_an_absolute_cartesian_motion_and_gripper_metres():
    robot = Recorder(has_errors=False)
    robot.current_cartesian_state = type(
        "S", (), {"pose": type("P", (), {"end_effector_pose": FakeAffine([0.3, 0, 0.5])})()}
    )()
    robot.current_joint_state = type("J", (), {"position": [0.0] * 7, "velocity": [0.0] * 7})()
    robot.has_errors = False
    gripper = Recorder()
    gripper.width = 0.04
    franka = FrankaBackend(franky_module=FakeFranky, robot=robot, gripper=gripper)
    assert robot.relative_dynamics_factor == 0.1
    state = franka.read_state()
    assert state.gripper_opening == pytest.approx(0.5)
    quat = quaternion_from_rotvec(np.array([math.pi, 0.0, 0.0]))
    franka.command_tcp(np.array([0.4, 0.1, 0.3]), quat)
    ((args, kwargs),) = robot.called("move")
    motion = args[0]
    assert kwargs == {"asynchronous": True} and motion.reference == "absolute"
    np.testing.assert_allclose(motion.target.translation, [0.4, 0.1, 0.3])
    np.testing.assert_allclose(motion.target.quaternion, quat)  # x, y, z, w
    franka.command_gripper(0.25)
    assert gripper.called("move_async") == [((0.02, 0.05), {})]  # 0.25 × 0.08 m, speed m/s
    franka.hold()
    assert isinstance(robot.called("move")[-1][0][0], FakeFranky.CartesianPoseStopMotion)
    # forward kinematics comes from Franka's DH table (tests/real/test_franka_fk.py checks it
    # against MuJoCo's Panda); at the ready pose the Franka Hand points straight down
    ready = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
    position, orientation = franka.forward_kinematics(ready)
    assert position.shape == (3,) and abs(position[1]) < 1e-12
    assert abs(abs(float(orientation[0])) - 1.0) < 1e-12  # x, y, z, w: 180° about x


def test_xarm_maps_to_servo_cartesian_in_millimetres_and_rpy():
    roll, pitch, yaw = math.pi, 0.2, -0.4
    arm = Recorder(
        get_position=(0, [300.0, -50.0, 200.0, roll, pitch, yaw]),
        get_servo_angle=(0, [0.0] * 7),
        set_servo_cartesian=0,
        has_err_warn=False,
    )
    xarm = XArmBackend(arm=arm)
    assert [c[0] for c in arm.calls[:3]] == ["motion_enable", "set_mode", "set_state"]
    assert arm.called("set_mode") == [((1,), {})]  # servo mode
    state = xarm.read_state()
    np.testing.assert_allclose(state.tcp_position, [0.3, -0.05, 0.2])
    xarm.command_tcp(np.array([0.35, 0.0, 0.25]), state.tcp_orientation)
    ((args, kwargs),) = arm.called("set_servo_cartesian")
    np.testing.assert_allclose(args[0][:3], [350.0, 0.0, 250.0])
    recovered = quaternion_from_rpy(*args[0][3:])
    assert abs(abs(float(np.dot(recovered, state.tcp_orientation))) - 1) < 1e-12
    assert kwargs == {"is_radian": True}
    xarm.command_gripper(0.5)
    assert arm.called("set_gripper_position") == [((425.0,), {"wait": False})]


def test_rpy_quaternion_conversions_match_rotation_matrices():
    roll, pitch, yaw = 0.3, -0.7, 2.0

    def rotation(axis: int, angle: float) -> np.ndarray:
        c, s = math.cos(angle), math.sin(angle)
        i, j = [(1, 2), (0, 2), (0, 1)][axis]
        matrix = np.eye(3)
        matrix[i, i], matrix[j, j] = c, c
        matrix[i, j], matrix[j, i] = (-s, s) if axis != 1 else (s, -s)
        return matrix

    expected = rotation(2, yaw) @ rotation(1, pitch) @ rotation(0, roll)
    x, y, z, w = quaternion_from_rpy(roll, pitch, yaw)
    from_quat = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    np.testing.assert_allclose(from_quat, expected, atol=1e-12)
    np.testing.assert_allclose(rpy_from_quaternion([x, y, z, w]), (roll, pitch, yaw), atol=1e-12)
