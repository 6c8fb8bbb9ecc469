"""Franka (FR3 / Panda) through ``franky`` (``pip install 'robotrl-real[franka]'``).

Mapping, from franky's API: state from ``Robot.current_cartesian_state.pose.end_effector_pose``
(an ``Affine``: ``translation`` in metres, ``quaternion`` as x, y, z, w) and
``Robot.current_joint_state`` (``position``, ``velocity``); TCP targets by
``Robot.move(CartesianMotion(Affine(translation, quaternion), ReferenceType.Absolute),
asynchronous=True)`` (franky's motion generator limits velocity, acceleration and jerk and
replaces the previous asynchronous motion); hold by moving to ``CartesianPoseStopMotion()``;
errors by ``Robot.has_errors`` and ``Robot.recover_from_errors()``; the gripper by
``Gripper.move_async(width, speed)`` in metres (opening × ``max_width``).

**Forward kinematics** (joint-space resets) is computed here, without the robot, from Franka's
published DH parameters (:mod:`robotrl_real.backends.franka_kinematics`): the flange pose times
``flange_to_tcp``, by default the Franka Hand's TCP (0.1034 m along the flange's z axis, rotated
-45° about it), the end effector frame Desk sets for the hand, so that a reset goal is in the same
frame as ``end_effector_pose`` in :meth:`FrankaBackend.read_state`. With another tool, pass its
``F_T_EE`` as ``flange_to_tcp`` (``franka_kinematics.FLANGE`` for none). The driver approaches
the goal as a TCP target, so the arm reaches the pose of the requested joints; its elbow (the
redundant seventh degree of freedom) is left to franky's Cartesian motion and may differ from the
requested angles. Joint names on the reset trajectory must be :data:`FRANKA_JOINTS`
(``RobotEnvConfig.joint_names``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robotrl_real.arm import ArmState
from robotrl_real.backends._vendor import FloatArray, NoCameras, clamp_opening
from robotrl_real.backends.franka_kinematics import FRANKA_HAND_TCP, end_effector_pose
from robotrl_real.backends.sdk import require

FRANKA_JOINTS = tuple(f"fr3_joint{index}" for index in range(1, 8))


class FrankaBackend(NoCameras):
    """A Franka arm through franky; ``franky_module``/``robot``/``gripper`` may be injected.
    ``flange_to_tcp`` is the end effector in the flange frame (``F_T_EE`` as set in Desk):
    ``(translation m, quaternion x, y, z, w)``, default the Franka Hand's TCP."""

    name = "franka"
    joint_names = FRANKA_JOINTS

    def __init__(
        self,
        host: str = "",
        *,
        control_hz: float = 100.0,
        dynamics_factor: float = 0.1,
        gripper_speed: float = 0.05,  # m/s
        max_width: float = 0.08,  # m
        flange_to_tcp: tuple[Sequence[float], Sequence[float]] = FRANKA_HAND_TCP,
        franky_module: Any = None,
        robot: Any = None,
        gripper: Any = None,
    ) -> None:
        translation, quaternion = flange_to_tcp  # (x, y, z) m, (x, y, z, w)
        if len(translation) != 3 or len(quaternion) != 4:
            raise ValueError("flange_to_tcp is ((x, y, z), (qx, qy, qz, qw))")
        self.flange_to_tcp = (tuple(map(float, translation)), tuple(map(float, quaternion)))
        if franky_module is None:
            franky_module = require("franky", "franka", "Franka")
        if robot is None:
            if not host:
                raise ValueError("FrankaBackend needs host= (the FCI IP address)")
            robot = franky_module.Robot(host)
            gripper = franky_module.Gripper(host)
        robot.relative_dynamics_factor = dynamics_factor
        self.franky, self.robot, self.gripper = franky_module, robot, gripper
        self.control_period = 1.0 / control_hz
        self.gripper_speed, self.max_width = gripper_speed, max_width

    def read_state(self) -> ArmState:
        pose = self.robot.current_cartesian_state.pose.end_effector_pose
        joints = self.robot.current_joint_state
        width = float(self.gripper.width) if self.gripper is not None else float("nan")
        return ArmState(
            joint_positions=np.asarray(joints.position, dtype=float),
            joint_velocities=np.asarray(joints.velocity, dtype=float),
            tcp_position=np.asarray(pose.translation, dtype=float),
            tcp_orientation=np.asarray(pose.quaternion, dtype=float),
            gripper_opening=clamp_opening(width / self.max_width) if width == width else 0.0,
            gripper_width=width,
        )

    def command_tcp(self, position: FloatArray, orientation: FloatArray) -> None:
        franky = self.franky
        target = franky.Affine([float(v) for v in position], [float(v) for v in orientation])
        motion = franky.CartesianMotion(target, franky.ReferenceType.Absolute)
        self.robot.move(motion, asynchronous=True)

    def command_gripper(self, opening: float) -> None:
        if self.gripper is not None:
            self.gripper.move_async(clamp_opening(opening) * self.max_width, self.gripper_speed)

    def hold(self) -> None:
        self.robot.move(self.franky.CartesianPoseStopMotion(), asynchronous=True)

    def forward_kinematics(self, joints: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The TCP pose (``O_T_EE``: position, quaternion x, y, z, w) at ``joints`` (7 angles,
        rad), from the DH parameters; needs no connection to the robot."""
        return end_effector_pose(joints, self.flange_to_tcp)

    def has_error(self) -> bool:
        return bool(self.robot.has_errors)

    def recover(self) -> bool:
        self.robot.recover_from_errors()
        return not bool(self.robot.has_errors)

    def close(self) -> None:
        self.hold()
