"""Shared parts of the vendor adapters: no cameras (camera nodes are separate on a real cell),
rotation conversions, and the gripper opening clamp."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from robotrl_real.safety import quaternion_multiply

FloatArray = NDArray[np.float64]


class NoCameras:
    """Mixin for arms whose cameras are separate ROS 2 camera nodes, not part of the driver."""

    cameras: tuple[str, ...] = ()

    def camera_frame(self, camera: str, height: int, width: int) -> NDArray[np.uint8]:
        raise ValueError(f"this backend renders no cameras (asked for {camera!r})")

    def camera_intrinsics(self, camera: str, height: int, width: int) -> tuple[float, ...]:
        raise ValueError(f"this backend has no camera {camera!r}")

    def close_cameras(self) -> None:
        return None

    def advance(self, elapsed: float) -> None:
        return None  # a real arm runs on its own clock


def quaternion_from_rpy(roll: float, pitch: float, yaw: float) -> FloatArray:
    """Quaternion (x, y, z, w) of fixed-axis roll-pitch-yaw: ``R = Rz(yaw) Ry(pitch) Rx(roll)``."""

    def axis(index: int, angle: float) -> FloatArray:
        q = np.zeros(4)
        q[index] = math.sin(angle / 2)
        q[3] = math.cos(angle / 2)
        return q

    return quaternion_multiply(quaternion_multiply(axis(2, yaw), axis(1, pitch)), axis(0, roll))


def rpy_from_quaternion(quat: ArrayLike) -> tuple[float, float, float]:
    """Inverse of :func:`quaternion_from_rpy` (pitch in [-π/2, π/2])."""
    x, y, z, w = np.asarray(quat, dtype=float) / np.linalg.norm(quat)
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def clamp_opening(opening: float) -> float:
    """A gripper opening clamped to [0, 1] (the safety layer already clamps; belt and braces)."""
    return min(max(float(opening), 0.0), 1.0)
