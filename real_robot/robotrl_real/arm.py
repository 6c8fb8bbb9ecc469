"""The arm as the driver sees it: one reading (:class:`ArmState`) and the backend protocol
(:class:`ArmBackend`) that the sim twin and the vendor adapters implement.

The bottom of ``robotrl_real``: it imports nothing of the package, and the driver, the cameras
and the backends import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ArmState:
    """One reading of the arm: joints (rad, rad/s), TCP pose in the base frame (m, quaternion
    x, y, z, w), and the gripper opening (0 closed .. 1 open) and width (m)."""

    joint_positions: FloatArray
    joint_velocities: FloatArray
    tcp_position: FloatArray
    tcp_orientation: FloatArray
    gripper_opening: float
    gripper_width: float


@runtime_checkable
class ArmBackend(Protocol):
    """What the driver needs from an arm. Poses are in the robot base frame, metres, and unit
    quaternions (x, y, z, w) as in ROS; the gripper is an opening from 0 (closed) to 1 (open)."""

    name: str
    joint_names: tuple[str, ...]
    cameras: tuple[str, ...]  # camera names this backend can render; () if cameras are separate
    control_period: float  # s

    def read_state(self) -> ArmState:
        """The arm's current state."""
        ...

    def command_tcp(self, position: FloatArray, orientation: FloatArray) -> None:
        """Servo the TCP towards this pose (already checked by the safety layer)."""
        ...

    def command_gripper(self, opening: float) -> None:
        """Move the gripper to ``opening`` in [0, 1] (already clamped)."""
        ...

    def hold(self) -> None:
        """Stop where the arm is (the safety layer decided to hold)."""
        ...

    def advance(self, elapsed: float) -> None:
        """Called once per tick after the command with the wall time since the last call; the
        sim twin steps its physics, a real arm does nothing."""
        ...

    def forward_kinematics(self, joints: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The TCP pose (position, quaternion x, y, z, w) at joint angles ``joints``."""
        ...

    def camera_frame(self, camera: str, height: int, width: int) -> NDArray[np.uint8]:
        """An RGB ``[height, width, 3]`` uint8 frame; thread-safe (cameras run in their own
        thread)."""
        ...

    def camera_intrinsics(self, camera: str, height: int, width: int) -> tuple[float, ...]:
        """``(fx, fy, cx, cy)`` in pixels for a frame of that size."""
        ...

    def close_cameras(self) -> None:
        """Free camera resources of the calling thread (the camera thread calls it on exit)."""
        ...

    def recover(self) -> bool:
        """Try to clear an arm error (protective stop, reflex); whether it worked."""
        ...

    def has_error(self) -> bool:
        """Whether the arm reports an error that needs :meth:`recover`."""
        ...

    def close(self) -> None:
        """Release the arm and any resources."""
        ...
