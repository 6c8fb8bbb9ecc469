"""Forward kinematics of the Franka arm (Panda and FR3) from Franka's published DH parameters.

**Source.** Franka Robotics, FCI documentation, "Robot and interface specifications", section
"Denavit–Hartenberg parameters" (https://frankaemika.github.io/docs/control_parameters.html; its
source is ``source/control_parameters.rst`` in github.com/frankarobotics/docs, read at commit
a76efff7). That page gives the table for the Franka Research 3 and states that it follows
**Craig's convention** (modified DH); earlier versions of the same page (github.com/frankaemika/
docs, then titled "Control parameters specifications") give the identical table for the Panda.
Its rows, in metres and radians:

=========  ========  =====  ======  ========
row        a         d      alpha   theta
=========  ========  =====  ======  ========
Joint 1    0         0.333  0       theta_1
Joint 2    0         0      -pi/2   theta_2
Joint 3    0         0.316  pi/2    theta_3
Joint 4    0.0825    0      pi/2    theta_4
Joint 5    -0.0825   0.384  -pi/2   theta_5
Joint 6    0         0      pi/2    theta_6
Joint 7    0.088     0      pi/2    theta_7
Flange     0         0.107  0       0
=========  ========  =====  ======  ========

In Craig's convention row ``i`` gives ``{i-1}T{i} = RotX(alpha) · TransX(a) · RotZ(theta) ·
TransZ(d)`` (``a`` and ``alpha`` of a row are Craig's ``a_{i-1}``, ``alpha_{i-1}``), and
``theta_i`` is joint ``i``'s angle as the robot reports it (no offsets). Frame 0 is Franka's base
frame ``O`` (the robot's mounting base, ``link0``); the last row gives the flange frame ``F``.

**The end effector.** The robot reports ``O_T_EE``, the flange pose times ``F_T_EE``, the end
effector frame set in Desk. For the Franka Hand that frame is the hand's TCP: rotated by -pi/4
about the flange's z axis and moved 0.1034 m along it (between the fingertips). Source:
``franka_description`` in github.com/frankaemika/franka_ros, ``robots/common/franka_robot.xacro``
(the hand joint on ``link8`` = the flange with ``rpy="0 0 ${-pi/4}"``) and
``robots/common/franka_hand.xacro`` (``hand_tcp_joint`` with ``tcp_xyz="0 0 0.1034"``).
:data:`FRANKA_HAND_TCP` holds that transform; :data:`FLANGE` is the identity (no tool).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

#: ``(a, d, alpha)`` of the rows "Joint 1" .. "Joint 7" (m, m, rad), Craig's convention.
PANDA_DH: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -math.pi / 2),
    (0.0, 0.316, math.pi / 2),
    (0.0825, 0.0, math.pi / 2),
    (-0.0825, 0.384, -math.pi / 2),
    (0.0, 0.0, math.pi / 2),
    (0.088, 0.0, math.pi / 2),
)
#: The row "Flange": ``d`` (m) along joint 7's axis from frame 7 to the flange frame.
FLANGE_D = 0.107
#: Franka Hand TCP in the flange frame: m along the flange's z axis, and the rotation about it.
FRANKA_HAND_TCP_OFFSET = 0.1034
FRANKA_HAND_ROTATION = -math.pi / 4

#: ``(translation, quaternion x, y, z, w)`` of the end effector in the flange frame.
FRANKA_HAND_TCP: tuple[tuple[float, float, float], tuple[float, float, float, float]] = (
    (0.0, 0.0, FRANKA_HAND_TCP_OFFSET),
    (0.0, 0.0, math.sin(FRANKA_HAND_ROTATION / 2), math.cos(FRANKA_HAND_ROTATION / 2)),
)
FLANGE: tuple[tuple[float, float, float], tuple[float, float, float, float]] = (
    (0.0, 0.0, 0.0),
    (0.0, 0.0, 0.0, 1.0),
)


def craig_transform(a: float, d: float, alpha: float, theta: float) -> FloatArray:
    """``RotX(alpha) · TransX(a) · RotZ(theta) · TransZ(d)`` as a 4x4 homogeneous matrix."""
    ca, sa = math.cos(alpha), math.sin(alpha)
    ct, st = math.cos(theta), math.sin(theta)
    return np.array(
        [
            [ct, -st, 0.0, a],
            [st * ca, ct * ca, -sa, -d * sa],
            [st * sa, ct * sa, ca, d * ca],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def _joints(joints: ArrayLike) -> FloatArray:
    q = np.asarray(joints, dtype=float)
    if q.shape != (len(PANDA_DH),):
        raise ValueError(f"expected {len(PANDA_DH)} joint angles, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"joint angles must be finite, got {q}")
    return q


def joint_frames(joints: ArrayLike) -> list[FloatArray]:
    """The DH frames 1..7 in the base frame ``O`` (4x4 each) at joint angles ``joints`` (rad)."""
    q = _joints(joints)
    pose = np.eye(4)
    frames = []
    for (a, d, alpha), theta in zip(PANDA_DH, q, strict=True):
        pose = pose @ craig_transform(a, d, alpha, float(theta))
        frames.append(pose)
    return frames


def flange_pose(joints: ArrayLike) -> FloatArray:
    """``O_T_F``: the flange frame in the base frame (4x4)."""
    return joint_frames(joints)[-1] @ craig_transform(0.0, FLANGE_D, 0.0, 0.0)


def pose_matrix(translation: ArrayLike, quaternion: ArrayLike) -> FloatArray:
    """A 4x4 pose from a translation and a unit quaternion ``(x, y, z, w)``."""
    x, y, z, w = np.asarray(quaternion, dtype=float) / np.linalg.norm(quaternion)
    pose = np.eye(4)
    pose[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    pose[:3, 3] = np.asarray(translation, dtype=float)
    return pose


def quaternion_from_matrix(rotation: ArrayLike) -> FloatArray:
    """The unit quaternion ``(x, y, z, w)``, ``w >= 0``, of a 3x3 rotation matrix."""
    m = np.asarray(rotation, dtype=float)[:3, :3]
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        quat = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        quat = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] >= m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        quat = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        quat = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    result = np.asarray(quat) / np.linalg.norm(quat)
    return -result if result[3] < 0 else result


def end_effector_pose(
    joints: ArrayLike,
    flange_to_ee: tuple[ArrayLike, ArrayLike] = FRANKA_HAND_TCP,
) -> tuple[FloatArray, FloatArray]:
    """``O_T_EE`` at ``joints`` as ``(position, quaternion x, y, z, w)``: the flange pose times
    ``flange_to_ee`` (``(translation, quaternion)``; default the Franka Hand's TCP)."""
    pose = flange_pose(joints) @ pose_matrix(*flange_to_ee)
    return pose[:3, 3].copy(), quaternion_from_matrix(pose[:3, :3])
