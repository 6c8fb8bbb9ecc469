"""UFACTORY xArm / Lite through the xArm-Python-SDK (``pip install 'robotrl-real[xarm]'``).

Mapping, from the SDK's ``XArmAPI``: servo mode ``set_mode(1)`` + ``set_state(0)`` after
``motion_enable(True)``; TCP targets by ``set_servo_cartesian([x, y, z, roll, pitch, yaw],
is_radian=True)`` with **millimetres** and fixed-axis roll-pitch-yaw in radians; state from
``get_position(is_radian=True)`` and ``get_servo_angle(is_radian=True)`` (each ``(code, values)``,
code 0 = ok); forward kinematics by ``get_forward_kinematics(angles, input_is_radian=True,
return_is_radian=True)``; hold by servoing to the measured pose; errors by ``has_err_warn`` and
``clean_error()``/``clean_warn()`` then re-enabling servo mode; the xArm gripper by
``set_gripper_position(pos, wait=False)`` with ``pos`` in the gripper's 0 (closed) .. 850 (open)
units. Joint velocities are not read (reported as zeros).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robotrl_real.arm import ArmState
from robotrl_real.backends._vendor import (
    FloatArray,
    NoCameras,
    clamp_opening,
    quaternion_from_rpy,
    rpy_from_quaternion,
)
from robotrl_real.backends.sdk import require

XARM_GRIPPER_OPEN = 850.0  # SDK units of a fully open xArm gripper
MM_PER_M = 1000.0


def _ok(result: Any, call: str) -> Any:
    code, values = result
    if code != 0:
        raise RuntimeError(f"xArm SDK {call} returned error code {code}")
    return values


class XArmBackend(NoCameras):
    """An xArm in servo mode; ``arm`` (an ``XArmAPI``) may be injected."""

    name = "xarm"

    def __init__(
        self,
        host: str = "",
        *,
        dof: int = 7,
        control_hz: float = 100.0,
        arm: Any = None,
    ) -> None:
        if arm is None:
            if not host:
                raise ValueError("XArmBackend needs host= (the controller's IP address)")
            wrapper = require("xarm.wrapper", "xarm", "xArm")
            arm = wrapper.XArmAPI(host, is_radian=True)
        self.arm = arm
        self.joint_names = tuple(f"joint{index}" for index in range(1, dof + 1))
        self.control_period = 1.0 / control_hz
        self._enable_servo()
        self._opening = 1.0

    def _enable_servo(self) -> None:
        self.arm.motion_enable(enable=True)
        self.arm.set_mode(1)
        self.arm.set_state(0)

    def _pose(self) -> tuple[FloatArray, FloatArray]:
        values = _ok(self.arm.get_position(is_radian=True), "get_position")
        position = np.asarray(values[:3], dtype=float) / MM_PER_M
        return position, quaternion_from_rpy(*map(float, values[3:6]))

    def read_state(self) -> ArmState:
        position, orientation = self._pose()
        joints = np.asarray(
            _ok(self.arm.get_servo_angle(is_radian=True), "get_servo_angle"), dtype=float
        )[: len(self.joint_names)]
        return ArmState(
            joint_positions=joints,
            joint_velocities=np.zeros_like(joints),
            tcp_position=position,
            tcp_orientation=orientation,
            gripper_opening=self._opening,
            gripper_width=float("nan"),
        )

    def _servo(self, position: FloatArray, orientation: FloatArray) -> None:
        pose = [*(float(v) * MM_PER_M for v in position), *rpy_from_quaternion(orientation)]
        code = self.arm.set_servo_cartesian(pose, is_radian=True)
        if code != 0:
            raise RuntimeError(f"xArm SDK set_servo_cartesian returned error code {code}")

    def command_tcp(self, position: FloatArray, orientation: FloatArray) -> None:
        self._servo(position, orientation)

    def command_gripper(self, opening: float) -> None:
        self._opening = clamp_opening(opening)
        self.arm.set_gripper_position(self._opening * XARM_GRIPPER_OPEN, wait=False)

    def hold(self) -> None:
        self._servo(*self._pose())

    def forward_kinematics(self, joints: FloatArray) -> tuple[FloatArray, FloatArray]:
        values = _ok(
            self.arm.get_forward_kinematics(
                [float(q) for q in joints], input_is_radian=True, return_is_radian=True
            ),
            "get_forward_kinematics",
        )
        return (
            np.asarray(values[:3], dtype=float) / MM_PER_M,
            quaternion_from_rpy(*map(float, values[3:6])),
        )

    def has_error(self) -> bool:
        return bool(self.arm.has_err_warn)

    def recover(self) -> bool:
        self.arm.clean_error()
        self.arm.clean_warn()
        self._enable_servo()
        return not bool(self.arm.has_err_warn)

    def close(self) -> None:
        self.arm.disconnect()
