"""Scripted teleop: a proportional controller toward a target pose (see robotrl_real.teleop)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from robotrl_real.teleop.base import (
    TeleopCommand,
)


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions in ``(x, y, z, w)`` order (ROS's)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def rotation_vector(q: np.ndarray) -> np.ndarray:
    """The rotation vector (axis x angle, angle in [0, pi]) of a quaternion ``(x, y, z, w)``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q)
    if q[3] < 0:  # the same rotation; pick the short way round
        q = -q
    sin_half = np.linalg.norm(q[:3])
    angle = 2.0 * math.atan2(sin_half, q[3])
    if sin_half < 1e-12:
        return 2.0 * q[:3]  # small-angle limit
    return q[:3] / sin_half * angle


@dataclass
class ScriptedTeleopConfig:
    """Gains (1/s) and speed caps of :class:`ScriptedTeleop`; tolerances for :attr:`reached`."""

    linear_gain: float = 2.0
    angular_gain: float = 2.0
    max_linear_speed: float = 0.1
    max_angular_speed: float = 0.5
    position_tolerance: float = 1e-3
    angle_tolerance: float = 1e-2

    def __post_init__(self) -> None:
        values = (
            self.linear_gain,
            self.angular_gain,
            self.max_linear_speed,
            self.max_angular_speed,
            self.position_tolerance,
            self.angle_tolerance,
        )
        if not all(v > 0 for v in values):
            raise ValueError(f"every ScriptedTeleopConfig value must be positive, got {values}")


#: ``state() -> (position [3], orientation quaternion (x, y, z, w))`` of the TCP in the base frame.
PoseCallback = Callable[[], tuple[Sequence[float], Sequence[float]]]


class ScriptedTeleop:
    """Drives the TCP toward a target pose: ``v = k_p e_p``, ``w = k_r rotvec(q_t q^-1)``.

    Both are capped by norm (so the direction is kept), and the twist is zero once within
    tolerance (:attr:`reached`). ``intervene`` is what the device reports (True: a scripted
    takeover, as a human at the device would).
    """

    def __init__(
        self,
        state: PoseCallback,
        target_position: Sequence[float],
        target_orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
        *,
        gripper: float = 0.0,
        intervene: bool = True,
        config: ScriptedTeleopConfig | None = None,
    ) -> None:
        self.state = state
        self.config = ScriptedTeleopConfig() if config is None else config
        self.gripper = gripper
        self.intervene = intervene
        self.reached = False
        self.set_target(target_position, target_orientation)

    def set_target(
        self, position: Sequence[float], orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0)
    ) -> None:
        target_position = np.asarray(position, dtype=np.float64)
        target_orientation = np.asarray(orientation, dtype=np.float64)
        if target_position.shape != (3,) or target_orientation.shape != (4,):
            raise ValueError("target position must have 3 values, orientation 4 (x, y, z, w)")
        norm = np.linalg.norm(target_orientation)
        if not (np.all(np.isfinite(target_position)) and np.isfinite(norm) and norm > 0):
            raise ValueError("target must be finite with a non-zero quaternion")
        self.target_position = target_position
        self.target_orientation = target_orientation / norm
        self.reached = False

    def errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Position error (m) and rotation-vector error (rad), target minus current, base frame."""
        position, orientation = self.state()
        q = np.asarray(orientation, dtype=np.float64)
        q_inverse = np.array([-q[0], -q[1], -q[2], q[3]]) / np.dot(q, q)
        rotation_error = rotation_vector(quaternion_multiply(self.target_orientation, q_inverse))
        return self.target_position - np.asarray(position, dtype=np.float64), rotation_error

    def poll(self) -> TeleopCommand:
        config = self.config
        position_error, rotation_error = self.errors()
        self.reached = bool(
            np.linalg.norm(position_error) <= config.position_tolerance
            and np.linalg.norm(rotation_error) <= config.angle_tolerance
        )
        if self.reached:
            return TeleopCommand(np.zeros(6), self.gripper, self.intervene)
        linear = _cap_norm(config.linear_gain * position_error, config.max_linear_speed)
        angular = _cap_norm(config.angular_gain * rotation_error, config.max_angular_speed)
        return TeleopCommand(np.concatenate([linear, angular]), self.gripper, self.intervene)

    def close(self) -> None:
        pass


def _cap_norm(vector: np.ndarray, limit: float) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector * (limit / norm) if norm > limit else vector
