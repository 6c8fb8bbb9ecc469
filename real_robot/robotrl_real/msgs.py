"""ROS 2 message types as Cyclone DDS IDL structs, so we speak ROS 2 topics without a ROS install.

Each class mirrors one ROS 2 ``.msg`` definition (Humble through Jazzy; these messages have not
changed): same field names, same field order, same CDR types, and the DDS type name that
``rosidl`` generates (``sensor_msgs::msg::dds_::JointState_``). Serialised with XCDR1, little
endian, and the 4-byte encapsulation header, which is exactly what a ROS 2 node's
``rmw_cyclonedds``/``rmw_fastrtps`` puts on the wire, so the bytes interoperate both ways. The
tests check that against ``rosbags``' independent CDR codec for every type here.

Python types of the fields: ``float64[]`` is a ``list[float]``, fixed arrays (``CameraInfo.k``)
are lists of the fixed length, ``uint8[]`` image payloads are lists of ints (``bytes`` are
accepted when sending; serialising goes element by element, ~10 ms per 100 KB, fine for the
small JPEGs a pixel policy reads, not for raw megapixel streams), ``byte`` fields
(``DiagnosticStatus.level``) are ``int``.

What is ROS 2-compatible: the types and their bytes. What is not here: constants are plain class
attributes (ROS 2 generates them as separate IDL constants, which never go on the wire), and
there is no type-hash user data (Jazzy's ``typehash=`` QoS user data is informational; ROS 2
matches publishers and subscriptions by type name).
"""

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as idl

# Cyclone DDS reads the IDL type from each annotation at run time (``idl.sequence[...]`` is an
# object, not a type); mypy sees the Python type the field actually holds.
if TYPE_CHECKING:
    Float64Sequence = list[float]
    StringSequence = list[str]
    OctetSequence = list[int] | bytes
    Float64Array9 = list[float]
    Float64Array12 = list[float]
else:
    Float64Sequence = idl.sequence[idl.float64]
    StringSequence = idl.sequence[str]
    OctetSequence = idl.sequence[idl.uint8]
    Float64Array9 = idl.array[idl.float64, 9]
    Float64Array12 = idl.array[idl.float64, 12]

# ---------------------------------------------------------------------------------------------
# builtin_interfaces


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    """``builtin_interfaces/msg/Time``: seconds and nanoseconds (``0 <= nanosec < 1e9``)."""

    sec: idl.int32 = 0
    nanosec: idl.uint32 = 0


@dataclass
class Duration(IdlStruct, typename="builtin_interfaces::msg::dds_::Duration_"):
    """``builtin_interfaces/msg/Duration``: same layout as ``Time``."""

    sec: idl.int32 = 0
    nanosec: idl.uint32 = 0


# ---------------------------------------------------------------------------------------------
# std_msgs


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    """``std_msgs/msg/Header``: a stamp and the coordinate frame of the data."""

    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    """``std_msgs/msg/String``."""

    data: str = ""


@dataclass
class Bool(IdlStruct, typename="std_msgs::msg::dds_::Bool_"):
    """``std_msgs/msg/Bool``."""

    data: bool = False


@dataclass
class Float64(IdlStruct, typename="std_msgs::msg::dds_::Float64_"):
    """``std_msgs/msg/Float64``."""

    data: idl.float64 = 0.0


# ---------------------------------------------------------------------------------------------
# geometry_msgs


@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    """``geometry_msgs/msg/Point``."""

    x: idl.float64 = 0.0
    y: idl.float64 = 0.0
    z: idl.float64 = 0.0


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    """``geometry_msgs/msg/Quaternion`` (x, y, z, w); the default is the identity, as in ROS 2."""

    x: idl.float64 = 0.0
    y: idl.float64 = 0.0
    z: idl.float64 = 0.0
    w: idl.float64 = 1.0


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    """``geometry_msgs/msg/Pose``."""

    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@dataclass
class PoseStamped(IdlStruct, typename="geometry_msgs::msg::dds_::PoseStamped_"):
    """``geometry_msgs/msg/PoseStamped``."""

    header: Header = field(default_factory=Header)
    pose: Pose = field(default_factory=Pose)


@dataclass
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    """``geometry_msgs/msg/Vector3``."""

    x: idl.float64 = 0.0
    y: idl.float64 = 0.0
    z: idl.float64 = 0.0


@dataclass
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    """``geometry_msgs/msg/Twist``: linear (m/s) and angular (rad/s) velocity."""

    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


@dataclass
class TwistStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TwistStamped_"):
    """``geometry_msgs/msg/TwistStamped`` (what MoveIt Servo reads as ``delta_twist_cmds``)."""

    header: Header = field(default_factory=Header)
    twist: Twist = field(default_factory=Twist)


# ---------------------------------------------------------------------------------------------
# sensor_msgs


@dataclass
class JointState(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    """``sensor_msgs/msg/JointState``; any of the value lists may be empty."""

    header: Header = field(default_factory=Header)
    name: StringSequence = field(default_factory=list)
    position: Float64Sequence = field(default_factory=list)
    velocity: Float64Sequence = field(default_factory=list)
    effort: Float64Sequence = field(default_factory=list)


@dataclass
class CompressedImage(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    """``sensor_msgs/msg/CompressedImage``: ``format`` is e.g. ``"jpeg"`` or ``"png"``.

    ``data`` may be given as ``bytes``; received messages hold a list of ints (Cyclone DDS's
    Python binding cannot describe a ``bytes`` field to XTypes), see :meth:`data_bytes`.
    """

    header: Header = field(default_factory=Header)
    format: str = ""
    data: OctetSequence = field(default_factory=list)

    def data_bytes(self) -> bytes:
        """The encoded image as ``bytes``, whichever way ``data`` is held."""
        return bytes(self.data)


@dataclass
class RegionOfInterest(IdlStruct, typename="sensor_msgs::msg::dds_::RegionOfInterest_"):
    """``sensor_msgs/msg/RegionOfInterest``."""

    x_offset: idl.uint32 = 0
    y_offset: idl.uint32 = 0
    height: idl.uint32 = 0
    width: idl.uint32 = 0
    do_rectify: bool = False


def _zeros(n: int) -> list[float]:
    return [0.0] * n


@dataclass
class CameraInfo(IdlStruct, typename="sensor_msgs::msg::dds_::CameraInfo_"):
    """``sensor_msgs/msg/CameraInfo``: ``k``/``r`` are row-major 3×3, ``p`` is 3×4."""

    header: Header = field(default_factory=Header)
    height: idl.uint32 = 0
    width: idl.uint32 = 0
    distortion_model: str = ""
    d: Float64Sequence = field(default_factory=list)
    k: Float64Array9 = field(default_factory=lambda: _zeros(9))
    r: Float64Array9 = field(default_factory=lambda: _zeros(9))
    p: Float64Array12 = field(default_factory=lambda: _zeros(12))
    binning_x: idl.uint32 = 0
    binning_y: idl.uint32 = 0
    roi: RegionOfInterest = field(default_factory=RegionOfInterest)


# ---------------------------------------------------------------------------------------------
# diagnostic_msgs


@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    """``diagnostic_msgs/msg/KeyValue``."""

    key: str = ""
    value: str = ""


if TYPE_CHECKING:
    KeyValueSequence = list[KeyValue]
else:
    KeyValueSequence = idl.sequence[KeyValue]


@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    """``diagnostic_msgs/msg/DiagnosticStatus``; ``level`` is one of OK/WARN/ERROR/STALE."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3

    level: idl.byte = 0
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: KeyValueSequence = field(default_factory=list)


if TYPE_CHECKING:
    DiagnosticStatusSequence = list[DiagnosticStatus]
else:
    DiagnosticStatusSequence = idl.sequence[DiagnosticStatus]


@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    """``diagnostic_msgs/msg/DiagnosticArray``."""

    header: Header = field(default_factory=Header)
    status: DiagnosticStatusSequence = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# trajectory_msgs


@dataclass
class JointTrajectoryPoint(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectoryPoint_"):
    """``trajectory_msgs/msg/JointTrajectoryPoint``."""

    positions: Float64Sequence = field(default_factory=list)
    velocities: Float64Sequence = field(default_factory=list)
    accelerations: Float64Sequence = field(default_factory=list)
    effort: Float64Sequence = field(default_factory=list)
    time_from_start: Duration = field(default_factory=Duration)


if TYPE_CHECKING:
    JointTrajectoryPointSequence = list[JointTrajectoryPoint]
else:
    JointTrajectoryPointSequence = idl.sequence[JointTrajectoryPoint]


@dataclass
class JointTrajectory(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectory_"):
    """``trajectory_msgs/msg/JointTrajectory``."""

    header: Header = field(default_factory=Header)
    joint_names: StringSequence = field(default_factory=list)
    points: JointTrajectoryPointSequence = field(default_factory=list)


#: ROS 2 type name (``pkg/msg/Name``) -> our class, for every type in this module.
MESSAGE_TYPES: dict[str, type[IdlStruct]] = {
    "builtin_interfaces/msg/Time": Time,
    "builtin_interfaces/msg/Duration": Duration,
    "std_msgs/msg/Header": Header,
    "std_msgs/msg/String": String,
    "std_msgs/msg/Bool": Bool,
    "std_msgs/msg/Float64": Float64,
    "geometry_msgs/msg/Point": Point,
    "geometry_msgs/msg/Quaternion": Quaternion,
    "geometry_msgs/msg/Pose": Pose,
    "geometry_msgs/msg/PoseStamped": PoseStamped,
    "geometry_msgs/msg/Vector3": Vector3,
    "geometry_msgs/msg/Twist": Twist,
    "geometry_msgs/msg/TwistStamped": TwistStamped,
    "sensor_msgs/msg/JointState": JointState,
    "sensor_msgs/msg/CompressedImage": CompressedImage,
    "sensor_msgs/msg/RegionOfInterest": RegionOfInterest,
    "sensor_msgs/msg/CameraInfo": CameraInfo,
    "diagnostic_msgs/msg/KeyValue": KeyValue,
    "diagnostic_msgs/msg/DiagnosticStatus": DiagnosticStatus,
    "diagnostic_msgs/msg/DiagnosticArray": DiagnosticArray,
    "trajectory_msgs/msg/JointTrajectoryPoint": JointTrajectoryPoint,
    "trajectory_msgs/msg/JointTrajectory": JointTrajectory,
}


def ros_type_name(message_type: type[IdlStruct]) -> str:
    """The ROS 2 name (``sensor_msgs/msg/JointState``) of one of our message classes."""
    for name, cls in MESSAGE_TYPES.items():
        if cls is message_type:
            return name
    raise KeyError(f"{message_type.__name__} is not a ROS 2 message type of robotrl_real.msgs")


# ---------------------------------------------------------------------------------------------
# time helpers

_NANOS_PER_SECOND = 1_000_000_000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _split_nanoseconds(total_ns: int) -> tuple[int, int]:
    sec, nanosec = divmod(total_ns, _NANOS_PER_SECOND)  # floor: nanosec stays in [0, 1e9)
    if not _INT32_MIN <= sec <= _INT32_MAX:
        raise OverflowError(f"{total_ns} ns does not fit a ROS 2 int32 seconds field")
    return sec, nanosec


def _nanoseconds_from_seconds(seconds: float) -> int:
    if not math.isfinite(seconds):
        raise ValueError(f"cannot convert {seconds} seconds to a ROS 2 time")
    return round(seconds * _NANOS_PER_SECOND)


def time_from_seconds(seconds: float) -> Time:
    """``seconds`` (e.g. ``time.time()``) as a ``Time``, rounded to the nearest nanosecond."""
    return Time(*_split_nanoseconds(_nanoseconds_from_seconds(seconds)))


def time_from_nanoseconds(nanoseconds: int) -> Time:
    """``nanoseconds`` (e.g. ``time.time_ns()``) as an exact ``Time``."""
    return Time(*_split_nanoseconds(int(nanoseconds)))


def time_to_seconds(stamp: Time | Duration) -> float:
    """A ``Time`` or ``Duration`` as float seconds."""
    return stamp.sec + stamp.nanosec / _NANOS_PER_SECOND


def time_to_nanoseconds(stamp: Time | Duration) -> int:
    """A ``Time`` or ``Duration`` as exact integer nanoseconds."""
    return stamp.sec * _NANOS_PER_SECOND + stamp.nanosec


def duration_from_seconds(seconds: float) -> Duration:
    """``seconds`` as a ``Duration`` (negative durations keep ``0 <= nanosec < 1e9``)."""
    return Duration(*_split_nanoseconds(_nanoseconds_from_seconds(seconds)))


def now() -> Time:
    """The wall-clock time (``time.time_ns()``) as a ``Time``, as ROS 2's system clock stamps."""
    return time_from_nanoseconds(time.time_ns())


def stamped_header(frame_id: str = "", stamp: float | None = None) -> Header:
    """A ``Header`` for ``frame_id`` stamped at ``stamp`` seconds (default: now)."""
    return Header(stamp=now() if stamp is None else time_from_seconds(stamp), frame_id=frame_id)
