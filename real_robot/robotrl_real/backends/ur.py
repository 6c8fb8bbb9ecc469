"""Universal Robots (e-Series, CB3) through ``ur_rtde`` (``pip install 'robotrl-real[ur]'``).

Mapping, from the ur_rtde API: state from ``RTDEReceiveInterface`` (``getActualQ``,
``getActualQd``, ``getActualTCPPose`` = ``[x, y, z, rx, ry, rz]``, metres and a rotation vector in
the base frame); TCP targets by ``RTDEControlInterface.servoL(pose, speed, acceleration, time,
lookahead_time, gain)`` with ``time`` = the driver's control period; hold by ``servoStop()``;
forward kinematics by ``getForwardKinematics(q)``; recovery from a protective stop by
``DashboardClient.unlockProtectiveStop()`` then ``reuploadScript()``. ur_rtde has no gripper
API: pass ``gripper`` (any object with ``move(opening)``, e.g. a Robotiq wrapper), or gripper
commands are dropped (counted in :attr:`URBackend.dropped_gripper_commands`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robotrl_real.arm import ArmState
from robotrl_real.backends._vendor import FloatArray, NoCameras, clamp_opening
from robotrl_real.backends.sdk import require
from robotrl_real.safety import quaternion_from_rotvec, rotvec_from_quaternion

UR_JOINTS = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)


class URBackend(NoCameras):
    """A UR arm over RTDE. ``control``/``receive``/``dashboard`` may be given (tests inject fakes);
    otherwise they are made from ``host`` with ur_rtde."""

    name = "ur"
    joint_names = UR_JOINTS

    def __init__(
        self,
        host: str = "",
        *,
        control_hz: float = 125.0,
        servo_speed: float = 0.25,  # m/s, ur_rtde's servoL speed argument
        servo_acceleration: float = 0.5,  # m/s²
        lookahead_time: float = 0.1,  # s, in [0.03, 0.2]
        gain: float = 300.0,  # in [100, 2000]
        control: Any = None,
        receive: Any = None,
        dashboard: Any = None,
        gripper: Any = None,
    ) -> None:
        if control is None or receive is None:
            if not host:
                raise ValueError("URBackend needs host= (the robot's IP address)")
            rtde_control = require("rtde_control", "ur", "UR")
            rtde_receive = require("rtde_receive", "ur", "UR")
            dashboard_client = require("dashboard_client", "ur", "UR")
            control = rtde_control.RTDEControlInterface(host)
            receive = rtde_receive.RTDEReceiveInterface(host)
            dashboard = dashboard_client.DashboardClient(host)
            dashboard.connect()
        self.control, self.receive, self.dashboard, self.gripper = (
            control,
            receive,
            dashboard,
            gripper,
        )
        self.control_period = 1.0 / control_hz
        self.servo = (servo_speed, servo_acceleration, lookahead_time, gain)
        self.dropped_gripper_commands = 0
        self._opening = 1.0

    def read_state(self) -> ArmState:
        pose = np.asarray(self.receive.getActualTCPPose(), dtype=float)
        return ArmState(
            joint_positions=np.asarray(self.receive.getActualQ(), dtype=float),
            joint_velocities=np.asarray(self.receive.getActualQd(), dtype=float),
            tcp_position=pose[:3],
            tcp_orientation=quaternion_from_rotvec(pose[3:]),
            gripper_opening=self._opening,
            gripper_width=float("nan"),
        )

    def command_tcp(self, position: FloatArray, orientation: FloatArray) -> None:
        pose = [*map(float, position), *map(float, rotvec_from_quaternion(orientation))]
        speed, acceleration, lookahead, gain = self.servo
        self.control.servoL(pose, speed, acceleration, self.control_period, lookahead, gain)

    def command_gripper(self, opening: float) -> None:
        self._opening = clamp_opening(opening)
        if self.gripper is None:
            self.dropped_gripper_commands += 1
            return
        self.gripper.move(self._opening)

    def hold(self) -> None:
        self.control.servoStop()

    def forward_kinematics(self, joints: FloatArray) -> tuple[FloatArray, FloatArray]:
        pose = np.asarray(self.control.getForwardKinematics([float(q) for q in joints]), float)
        return pose[:3], quaternion_from_rotvec(pose[3:])

    def has_error(self) -> bool:
        return bool(self.receive.isProtectiveStopped())

    def recover(self) -> bool:
        if self.dashboard is None:
            return False
        self.dashboard.unlockProtectiveStop()
        return bool(self.control.reuploadScript())

    def close(self) -> None:
        self.control.servoStop()
        self.control.stopScript()
