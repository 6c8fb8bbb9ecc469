"""Our ROS 2 message structs put the same CDR bytes on the wire as ROS 2 does.

``rosbags`` has its own pure-Python CDR codec and its own copy of the ROS 2 message definitions,
independent of Cyclone DDS: bytes we serialise must decode there to the same values, and bytes it
serialises must decode with our types.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from robotrl_real import msgs

STORE = get_typestore(Stores.ROS2_HUMBLE)


def _rich_samples() -> dict[str, Any]:
    """One message per type with non-default values: non-ASCII text, nesting, empty sequences."""
    header = msgs.Header(stamp=msgs.Time(sec=1_700_000_000, nanosec=123_456_789), frame_id="bäse")
    point = msgs.Point(x=0.1, y=-2.5, z=1e-9)
    quat = msgs.Quaternion(x=0.0, y=0.7071067811865476, z=0.0, w=0.7071067811865476)
    pose = msgs.Pose(position=point, orientation=quat)
    twist = msgs.Twist(linear=msgs.Vector3(0.01, 0.0, -0.02), angular=msgs.Vector3(0.0, 0.3, 0.0))
    roi = msgs.RegionOfInterest(x_offset=3, y_offset=4, height=40, width=60, do_rectify=True)
    kv = msgs.KeyValue(key="température", value="42 °C")
    status = msgs.DiagnosticStatus(
        level=msgs.DiagnosticStatus.WARN,
        name="robotrl: safety",
        message="watchdog — hold",
        hardware_id="arm-7",
        values=[kv, msgs.KeyValue(key="", value="")],
    )
    point_a = msgs.JointTrajectoryPoint(
        positions=[0.0, 1.0, -1.0],
        velocities=[],
        accelerations=[0.5, 0.5, 0.5],
        effort=[],
        time_from_start=msgs.Duration(sec=2, nanosec=500_000_000),
    )
    point_b = msgs.JointTrajectoryPoint(positions=[0.1, 1.1, -0.9])
    return {
        "builtin_interfaces/msg/Time": msgs.Time(sec=-3, nanosec=999_999_999),
        "builtin_interfaces/msg/Duration": msgs.Duration(sec=7, nanosec=1),
        "std_msgs/msg/Header": header,
        "std_msgs/msg/String": msgs.String(data="grüß 日本 🤖"),
        "std_msgs/msg/Bool": msgs.Bool(data=True),
        "std_msgs/msg/Float64": msgs.Float64(data=-0.125),
        "geometry_msgs/msg/Point": point,
        "geometry_msgs/msg/Quaternion": quat,
        "geometry_msgs/msg/Pose": pose,
        "geometry_msgs/msg/PoseStamped": msgs.PoseStamped(header=header, pose=pose),
        "geometry_msgs/msg/Vector3": msgs.Vector3(1.0, 2.0, 3.0),
        "geometry_msgs/msg/Twist": twist,
        "geometry_msgs/msg/TwistStamped": msgs.TwistStamped(header=header, twist=twist),
        "sensor_msgs/msg/JointState": msgs.JointState(
            header=header,
            name=["shoulder", "élbow", ""],
            position=[0.1, -0.2, 3.0],
            velocity=[],
            effort=[1.5, 2.5, 3.5],
        ),
        "sensor_msgs/msg/CompressedImage": msgs.CompressedImage(
            header=header, format="jpeg", data=bytes(range(256)) * 3 + b"\x00\xff\x01"
        ),
        "sensor_msgs/msg/RegionOfInterest": roi,
        "sensor_msgs/msg/CameraInfo": msgs.CameraInfo(
            header=header,
            height=480,
            width=640,
            distortion_model="plumb_bob",
            d=[0.1, -0.05, 0.0, 0.0, 0.01],
            k=[600.0, 0.0, 320.0, 0.0, 600.0, 240.0, 0.0, 0.0, 1.0],
            r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p=[600.0, 0.0, 320.0, 0.0, 0.0, 600.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            binning_x=2,
            binning_y=1,
            roi=roi,
        ),
        "diagnostic_msgs/msg/KeyValue": kv,
        "diagnostic_msgs/msg/DiagnosticStatus": status,
        "diagnostic_msgs/msg/DiagnosticArray": msgs.DiagnosticArray(
            header=header, status=[status, msgs.DiagnosticStatus(name="empty")]
        ),
        "trajectory_msgs/msg/JointTrajectoryPoint": point_a,
        "trajectory_msgs/msg/JointTrajectory": msgs.JointTrajectory(
            header=header, joint_names=["a", "b", "ç"], points=[point_a, point_b]
        ),
    }


SAMPLES = _rich_samples()


def _ours_to_plain(value: Any) -> Any:
    if isinstance(value, msgs.CompressedImage):  # data: bytes when built, list[int] when received
        plain = {f.name: _ours_to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {**plain, "data": value.data_bytes()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _ours_to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_ours_to_plain(v) for v in value]
    return value


def _rosbags_to_plain(value: Any) -> Any:
    if hasattr(value, "__msgtype__"):
        _, fields = STORE.fielddefs[value.__msgtype__]  # fields only, not the constants
        return {name: _rosbags_to_plain(getattr(value, name)) for name, _ in fields}
    if isinstance(value, np.ndarray):
        return bytes(value) if value.dtype == np.uint8 else value.tolist()
    if isinstance(value, list):
        return [_rosbags_to_plain(v) for v in value]
    return value


def _to_rosbags(value: Any, type_name: str) -> Any:
    """Build the rosbags message for ``type_name`` from our message, field by field."""
    cls = STORE.types[type_name]
    _, fields = STORE.fielddefs[type_name]
    kwargs = {}
    for name, (node_type, detail) in fields:
        item = getattr(value, name)
        if node_type == 2:  # a nested message
            kwargs[name] = _to_rosbags(item, detail)
        elif node_type in (3, 4):  # array or sequence
            (inner_type, inner), _ = detail
            if inner_type == 2:
                kwargs[name] = [_to_rosbags(v, inner) for v in item]
            elif inner[0] == "string":
                kwargs[name] = list(item)
            else:
                dtype = np.uint8 if inner[0] in ("uint8", "byte", "octet") else np.float64
                kwargs[name] = np.frombuffer(item, dtype) if dtype == np.uint8 else np.array(item)
        else:
            kwargs[name] = item
    return cls(**kwargs)


def test_samples_cover_every_message_type():
    assert set(SAMPLES) == set(msgs.MESSAGE_TYPES)
    assert len(msgs.MESSAGE_TYPES) == 22


@pytest.mark.parametrize("type_name", sorted(msgs.MESSAGE_TYPES))
def test_fields_and_dds_type_name_match_the_ros2_definition(type_name):
    cls = msgs.MESSAGE_TYPES[type_name]
    package, _, name = type_name.split("/")
    assert cls.__idl_typename__ == f"{package}::msg::dds_::{name}_"
    _, ros_fields = STORE.fielddefs[type_name]
    assert [f.name for f in dataclasses.fields(cls)] == [name for name, _ in ros_fields]
    assert msgs.ros_type_name(cls) == type_name


@pytest.mark.parametrize("type_name", sorted(msgs.MESSAGE_TYPES))
def test_our_bytes_decode_with_rosbags_to_the_same_values(type_name):
    message = SAMPLES[type_name]
    ours = message.serialize()
    decoded = STORE.deserialize_cdr(ours, type_name)
    assert _rosbags_to_plain(decoded) == _ours_to_plain(message)


@pytest.mark.parametrize("type_name", sorted(msgs.MESSAGE_TYPES))
def test_rosbags_bytes_decode_with_our_types_to_the_same_values(type_name):
    message = SAMPLES[type_name]
    theirs = bytes(STORE.serialize_cdr(_to_rosbags(message, type_name), type_name))
    decoded = msgs.MESSAGE_TYPES[type_name].deserialize(theirs)
    assert _ours_to_plain(decoded) == _ours_to_plain(message)
    assert message.serialize() == theirs  # byte for byte, padding included


@pytest.mark.parametrize("type_name", sorted(msgs.MESSAGE_TYPES))
def test_default_messages_round_trip(type_name):
    message = msgs.MESSAGE_TYPES[type_name]()
    decoded = STORE.deserialize_cdr(message.serialize(), type_name)
    assert _rosbags_to_plain(decoded) == _ours_to_plain(message)


def test_random_joint_states_and_trajectories_agree_with_rosbags():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(0, 9)
        state = msgs.JointState(
            header=msgs.Header(
                msgs.Time(rng.randint(-(2**31), 2**31 - 1), rng.randint(0, 10**9 - 1))
            ),
            name=["".join(rng.choice("aé_9Ω") for _ in range(rng.randint(0, 6))) for _ in range(n)],
            position=[rng.uniform(-1e6, 1e6) for _ in range(n)],
            velocity=[rng.uniform(-1, 1) for _ in range(rng.randint(0, n))],
            effort=[],
        )
        theirs = bytes(
            STORE.serialize_cdr(
                _to_rosbags(state, "sensor_msgs/msg/JointState"), "sensor_msgs/msg/JointState"
            )
        )
        assert state.serialize() == theirs
        points = [
            msgs.JointTrajectoryPoint(positions=[rng.random()] * rng.randint(0, 3))
            for _ in range(rng.randint(0, 4))
        ]
        trajectory = msgs.JointTrajectory(joint_names=["x"] * len(points), points=points)
        name = "trajectory_msgs/msg/JointTrajectory"
        assert trajectory.serialize() == bytes(
            STORE.serialize_cdr(_to_rosbags(trajectory, name), name)
        )


def test_string_bytes_match_a_hand_computed_cdr_encoding():
    # CDR: 4-byte encapsulation header (CDR_LE = 00 01, options 00 00), uint32 length counting
    # the UTF-8 bytes plus the terminating NUL, the bytes, the NUL.
    assert msgs.String(data="hé").serialize() == bytes.fromhex("000100000400000068c3a900")
    # Float64 after the header sits at offset 0 of the body (aligned to 8 relative to the body).
    assert msgs.Float64(data=1.0).serialize() == bytes.fromhex("00010000000000000000f03f")


def test_quaternion_defaults_to_identity_as_in_ros2():
    assert msgs.Quaternion() == msgs.Quaternion(0.0, 0.0, 0.0, 1.0)
    assert msgs.Pose().orientation.w == 1.0


def test_time_conversions():
    assert msgs.time_from_seconds(1.5) == msgs.Time(1, 500_000_000)
    assert msgs.time_from_seconds(-1.5) == msgs.Time(-2, 500_000_000)  # nanosec stays >= 0
    assert msgs.time_from_seconds(1.9999999999) == msgs.Time(2, 0)  # rounding carries
    assert msgs.time_from_nanoseconds(1_700_000_000_123_456_789) == msgs.Time(
        1_700_000_000, 123_456_789
    )
    assert msgs.time_to_seconds(msgs.Time(-2, 500_000_000)) == -1.5
    assert msgs.time_to_nanoseconds(msgs.Time(3, 7)) == 3_000_000_007
    assert msgs.duration_from_seconds(0.25) == msgs.Duration(0, 250_000_000)
    stamp = 1_700_000_000.25
    assert msgs.time_to_seconds(msgs.time_from_seconds(stamp)) == pytest.approx(stamp, abs=1e-6)


def test_time_conversion_rejects_nonfinite_and_overflow():
    with pytest.raises(ValueError, match="cannot convert"):
        msgs.time_from_seconds(float("nan"))
    with pytest.raises(ValueError, match="cannot convert"):
        msgs.duration_from_seconds(float("inf"))
    with pytest.raises(OverflowError, match="int32"):
        msgs.time_from_seconds(2.0**31)


def test_stamped_header_uses_the_wall_clock_or_the_given_stamp():
    import time

    before = time.time()
    header = msgs.stamped_header("tool0")
    after = time.time()
    assert header.frame_id == "tool0"
    assert before - 1e-6 <= msgs.time_to_seconds(header.stamp) <= after + 1e-6
    assert msgs.stamped_header("base", stamp=12.5).stamp == msgs.Time(12, 500_000_000)


def test_unknown_type_name_is_a_clear_error():
    class NotAMessage:
        pass

    with pytest.raises(KeyError, match="not a ROS 2 message type"):
        msgs.ros_type_name(NotAMessage)  # type: ignore[arg-type]
