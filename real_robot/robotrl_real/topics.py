"""The driver's ROS 2 topics: names, DDS names, message types and QoS, in one table.

ROS 2 maps a topic ``/joint_states`` to the DDS topic ``rt/joint_states`` (the ``rt`` prefix marks
ROS topics; services and actions use other prefixes we do not speak). Names relative to the
robot (``tcp_pose``) resolve into the robot's namespace: ``/<ns>/tcp_pose``.

QoS profiles, picked per topic in :func:`driver_topics` so nobody chooses QoS by hand:

===========  ===========  ===============  =========  ============================================
profile      reliability  durability       history    used for
===========  ===========  ===============  =========  ============================================
``COMMAND``  reliable     volatile         last 10    commands to the driver (twist, trajectory,
                                                      gripper, enable, teleop); ROS 2's default
``STREAM``   reliable     volatile         last 10    driver state streams (joint_states,
                                                      tcp_pose, commanded_twist, diagnostics);
                                                      ROS 2's default
``IMAGE``    best effort  volatile         last 1     compressed camera frames: a late frame is
                                                      worthless, a queue of them is latency
``LATCHED``  reliable     transient local  last 1     values a late joiner must see at once
===========  ===========  ===============  =========  ============================================

Latched topics (what ROS 1 called latching, ROS 2 "transient local"):

- ``/<ns>/control_mode``: a dashboard or learner that starts later must know the current mode.
- ``/<ns>/gripper/commanded``: the gripper opening the driver last commanded (after safety).
- ``/cameras/*/camera_info``: calibration is static; published once, seen by every late joiner.
- ``/<ns>/estop``: a driver that (re)starts after the stop button was pressed still sees the
  stop. The button publishes ``True`` when pressed and ``False`` when released; ``False`` never
  clears the driver's latch (only ``enable`` does), it only keeps a restarted driver from
  stopping on an old press.
- ``/<ns>/enable`` is deliberately *not* latched: re-enabling must be a fresh, deliberate act, and
  a remembered ``enable`` must never clear a stop for a driver that joins later.

ROS 2 compatibility: a stock ROS 2 node that requests the ROS default (reliable, volatile) does not
match the best-effort ``IMAGE`` topics; subscribe to images with the sensor-data profile
(``rclpy.qos.qos_profile_sensor_data``), as image viewers and ``ros2 topic echo`` do. Every other
pairing is compatible with ROS 2's defaults (a transient-local writer serves volatile readers).
There is no ROS graph here (no nodes in ``ros2 node list``, no parameters, services or actions):
only topics.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cyclonedds.idl import IdlStruct
from cyclonedds.qos import Policy, Qos
from cyclonedds.util import duration

from robotrl_real import msgs

#: DDS topic-name prefix of ROS 2 topics.
ROS_TOPIC_PREFIX = "rt"

_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class QosProfile(enum.Enum):
    """The four QoS profiles of the driver's topics (see the module docstring)."""

    COMMAND = "command"
    STREAM = "stream"
    IMAGE = "image"
    LATCHED = "latched"


_DEPTH = {
    QosProfile.COMMAND: 10,
    QosProfile.STREAM: 10,
    QosProfile.IMAGE: 1,
    QosProfile.LATCHED: 1,
}


def qos_for(profile: QosProfile) -> Qos:
    """The Cyclone DDS ``Qos`` of ``profile``; XCDR1 data, as ROS 2 nodes send."""
    reliability = (
        Policy.Reliability.BestEffort
        if profile is QosProfile.IMAGE
        else Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
    )
    durability = (
        Policy.Durability.TransientLocal
        if profile is QosProfile.LATCHED
        else Policy.Durability.Volatile
    )
    return Qos(
        reliability,
        durability,
        Policy.History.KeepLast(_DEPTH[profile]),
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )


def _check_tokens(name: str, tokens: list[str]) -> None:
    for token in tokens:
        if not _NAME_TOKEN.fullmatch(token):
            raise ValueError(
                f"invalid ROS 2 name {name!r}: each part between '/' must be letters, digits or "
                f"'_' and not start with a digit (bad part: {token!r})"
            )


def resolve_name(name: str, namespace: str = "") -> str:
    """The absolute ROS 2 name of ``name``; relative names go under ``namespace``.

    >>> resolve_name("tcp_pose", "arm")
    '/arm/tcp_pose'
    >>> resolve_name("/joint_states", "arm")
    '/joint_states'
    """
    if not name or name.endswith("/"):
        raise ValueError(f"invalid ROS 2 name {name!r}: empty or ending in '/'")
    if "~" in name or "{" in name:
        raise ValueError(
            f"ROS 2 private (~) and substitution ({{}}) names are not supported: {name!r}"
        )
    namespace = namespace.strip("/")
    if namespace:
        _check_tokens(namespace, namespace.split("/"))
    prefix = f"/{namespace}/" if namespace else "/"
    absolute = name if name.startswith("/") else prefix + name
    _check_tokens(name, absolute[1:].split("/"))
    return absolute


def dds_topic_name(ros_name: str) -> str:
    """The DDS topic a ROS 2 node uses for the absolute topic ``ros_name``.

    >>> dds_topic_name("/joint_states")
    'rt/joint_states'
    """
    if not ros_name.startswith("/"):
        raise ValueError(f"expected an absolute ROS 2 name (starting with '/'), got {ros_name!r}")
    return ROS_TOPIC_PREFIX + resolve_name(ros_name)


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its absolute ROS 2 name, message type, QoS profile, and the driver's direction."""

    name: str
    message_type: type[IdlStruct]
    profile: QosProfile
    driver_publishes: bool

    @property
    def dds_name(self) -> str:
        """The DDS topic name (``rt/...``)."""
        return dds_topic_name(self.name)

    @property
    def latched(self) -> bool:
        """Whether a late subscriber gets the last value (transient-local durability)."""
        return self.profile is QosProfile.LATCHED

    @property
    def qos(self) -> Qos:
        """The topic's Cyclone DDS QoS."""
        return qos_for(self.profile)


class TopicTable:
    """:class:`TopicSpec` s looked up by ROS 2 name (absolute, or relative to the namespace)."""

    def __init__(self, specs: Iterable[TopicSpec], namespace: str = "") -> None:
        self.namespace = namespace.strip("/")
        self._specs: dict[str, TopicSpec] = {}
        for spec in specs:
            absolute = resolve_name(spec.name)
            if absolute in self._specs:
                raise ValueError(f"topic {absolute!r} is listed twice")
            self._specs[absolute] = spec

    def __getitem__(self, name: str) -> TopicSpec:
        absolute = resolve_name(name, self.namespace)
        try:
            return self._specs[absolute]
        except KeyError:
            raise KeyError(
                f"no topic {absolute!r} in the table; known topics: {', '.join(self._specs)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and resolve_name(name, self.namespace) in self._specs

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        """Every absolute topic name, in table order."""
        return list(self._specs)


def driver_topics(
    namespace: str = "robot", cameras: Iterable[str] = ("wrist", "front")
) -> TopicTable:
    """Every topic of docs/design.md §2.6 for a robot in ``namespace`` with the given cameras."""
    ns = resolve_name("x", namespace)[: -len("/x")]  # validates the namespace
    specs = [
        TopicSpec("/joint_states", msgs.JointState, QosProfile.STREAM, True),
        TopicSpec(f"{ns}/tcp_pose", msgs.PoseStamped, QosProfile.STREAM, True),
        TopicSpec("/diagnostics", msgs.DiagnosticArray, QosProfile.STREAM, True),
        TopicSpec(f"{ns}/control_mode", msgs.String, QosProfile.LATCHED, True),
        TopicSpec(f"{ns}/commanded_twist", msgs.TwistStamped, QosProfile.STREAM, True),
        TopicSpec(f"{ns}/gripper/commanded", msgs.Float64, QosProfile.LATCHED, True),
    ]
    for camera in cameras:
        base = resolve_name(f"/cameras/{camera}")
        specs.append(
            TopicSpec(f"{base}/image_raw/compressed", msgs.CompressedImage, QosProfile.IMAGE, True)
        )
        specs.append(TopicSpec(f"{base}/camera_info", msgs.CameraInfo, QosProfile.LATCHED, True))
    specs += [
        TopicSpec("/servo_node/delta_twist_cmds", msgs.TwistStamped, QosProfile.COMMAND, False),
        TopicSpec(
            "/joint_trajectory_controller/joint_trajectory",
            msgs.JointTrajectory,
            QosProfile.COMMAND,
            False,
        ),
        TopicSpec(f"{ns}/gripper/command", msgs.Float64, QosProfile.COMMAND, False),
        TopicSpec(f"{ns}/estop", msgs.Bool, QosProfile.LATCHED, False),
        TopicSpec(f"{ns}/enable", msgs.Bool, QosProfile.COMMAND, False),
        TopicSpec(f"{ns}/teleop/intervention", msgs.Bool, QosProfile.COMMAND, False),
        TopicSpec(f"{ns}/teleop/twist", msgs.TwistStamped, QosProfile.COMMAND, False),
    ]
    return TopicTable(specs, namespace)
