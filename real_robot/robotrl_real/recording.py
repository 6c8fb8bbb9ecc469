"""Episodes recorded as ROS 2 bags (MCAP storage), and converted to the replay's episode files.

A run directory is one rosbag2 bag split into one MCAP file per episode::

    run/
      metadata.yaml            rosbag2 metadata: `ros2 bag info run/` and `ros2 bag play run/`
      episode_000000.mcap      one finished episode each
      episode_000001.mcap
      .episode_000002.mcap.partial   the episode being recorded (never listed anywhere)

Each file has the ``ros2`` MCAP profile, one ``ros2msg`` schema per message type holding the full
definition text (the type's fields, then every nested type after a line of 80 ``=`` and
``MSG: pkg/Name``, the concatenated format rosbag2 writes), ``cdr`` channels carrying exactly the
bytes our :mod:`~robotrl_real.msgs` types serialise (what a ROS 2 node sends), and per channel the
``offered_qos_profiles`` rosbag2 stores. ``metadata.yaml`` is rosbag2 version 5 (Humble's format,
which Iron and Jazzy also read), ``storage_identifier: mcap``, listing every finished episode.

Topics (``<ns>`` is the robot namespace; an observation is recorded once per step, ``T + 1`` per
episode; the step data once per transition, ``T`` per episode):

=====================================================  ===================================  =====
topic                                                  type                                 per
=====================================================  ===================================  =====
``/cameras/<camera>/image_raw/compressed``             ``sensor_msgs/msg/CompressedImage``  obs
``/joint_states``                                      ``sensor_msgs/msg/JointState``       obs
``/<ns>/tcp_pose``                                     ``geometry_msgs/msg/PoseStamped``    obs
``/<ns>/episode/action/twist``                         ``geometry_msgs/msg/TwistStamped``   step
``/<ns>/episode/action/gripper``                       ``std_msgs/msg/Float64``             step
``/<ns>/episode/reward``                               ``std_msgs/msg/Float64``             step
``/<ns>/episode/terminated``                           ``std_msgs/msg/Bool``                step
``/<ns>/episode/truncated``                            ``std_msgs/msg/Bool``                step
``/<ns>/episode/intervention``                         ``std_msgs/msg/Bool``                step
``/<ns>/episode/policy_version``                       ``std_msgs/msg/Int64``               step
=====================================================  ===================================  =====

The action is recorded under ``episode/action/*``, not under the driver's command topics
(``/servo_node/delta_twist_cmds``, ``/<ns>/gripper/command``): ``ros2 bag play`` of a run must
never move an arm by accident; remap the topics on purpose if a replay on hardware is wanted.
Step ``t``'s messages carry the step's stamp; the observation and step messages alternate, so the
``i``-th message of a topic belongs to observation (or transition) ``i``.

Crash safety: an episode is written to a hidden ``.partial`` file as it is recorded (memory stays
flat for long episodes); :meth:`EpisodeRecorder.finish_episode` closes it, fsyncs it, renames it to
its final name (atomic on POSIX) and only then rewrites ``metadata.yaml`` (also via an atomic
rename). A crash loses only the episode in progress; a new recorder on the directory deletes the
stale ``.partial`` file, rebuilds ``metadata.yaml`` from the finished files and continues the
numbering.

:func:`convert_to_replay` turns a run into ``episode_*.npz`` files that
:func:`robotrl.demos.load_demos` and :func:`robotrl.replay.load_episode` read: ``frames``
``[T+1, V, 3, H, W]`` uint8 (cameras in recorded order), ``action [T, 7]`` (twist linear xyz,
angular xyz, gripper), ``reward [T]``, ``terminated`` (the last transition's flag), ``proprio``
``[T+1, P]`` (joint positions, then TCP position xyz and orientation quaternion xyzw) and
``intervention [T+1]``: the replay keeps extras per observation slot, and slot ``t`` holds the
action taken from observation ``t``, so ``intervention[t]`` flags that action; the last slot has no
action and is ``False``.

``std_msgs/msg/Int64`` is defined here (not in :mod:`~robotrl_real.msgs`, which holds the driver's
types) because only the recording needs it.
"""

import io
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, get_origin, get_type_hints

import numpy as np
import yaml
from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as idl
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer
from PIL import Image

from robotrl.replay import EPISODE_FILE, episode_filename
from robotrl_real import __version__, msgs
from robotrl_real.topics import QosProfile, TopicSpec, resolve_name

logger = logging.getLogger(__name__)


@dataclass
class Int64(IdlStruct, typename="std_msgs::msg::dds_::Int64_"):
    """``std_msgs/msg/Int64``."""

    data: idl.int64 = 0


_LOCAL_TYPES: dict[str, type[IdlStruct]] = {"std_msgs/msg/Int64": Int64}
_ALL_TYPES: dict[str, type[IdlStruct]] = {**msgs.MESSAGE_TYPES, **_LOCAL_TYPES}

BAG_FILE = re.compile(r"^episode_(\d{6})\.mcap$")
PARTIAL_SUFFIX = ".partial"
METADATA_FILE = "metadata.yaml"
ROSBAG2_METADATA_VERSION = 5
_SEPARATOR = "=" * 80


# ---------------------------------------------------------------------------------------------
# ROS 2 message definitions, generated from our IDL structs


def ros_type_name(message_type: type[IdlStruct]) -> str:
    """``pkg/msg/Name`` of one of our message classes (including :class:`Int64`)."""
    for name, cls in _ALL_TYPES.items():
        if cls is message_type:
            return name
    raise KeyError(f"{message_type.__name__} is not a ROS 2 message type known to the recorder")


def _short_name(message_type: type[IdlStruct]) -> str:
    package, _, name = ros_type_name(message_type).split("/")
    return f"{package}/{name}"


def _field_type(annotation: Any, nested: list[type[IdlStruct]]) -> str:
    """The ``.msg`` spelling of one field annotation; nested struct types are appended."""
    if isinstance(annotation, type) and issubclass(annotation, IdlStruct):
        nested.append(annotation)
        return _short_name(annotation)
    if annotation is str:
        return "string"
    if annotation is bool:
        return "bool"
    if get_origin(annotation) is not None and hasattr(annotation, "__metadata__"):
        meta = annotation.__metadata__[0]
        if isinstance(meta, str):  # a primitive: Annotated[int, 'uint32']
            return meta
        if isinstance(meta, idl.sequence):
            bound = "" if meta.max_length is None else f"<={meta.max_length}"
            return f"{_field_type(meta.subtype, nested)}[{bound}]"
        if isinstance(meta, idl.array):
            return f"{_field_type(meta.subtype, nested)}[{meta.length}]"
    raise TypeError(f"no ROS 2 .msg spelling for the IDL annotation {annotation!r}")


def _fields_text(message_type: type[IdlStruct]) -> tuple[str, list[type[IdlStruct]]]:
    nested: list[type[IdlStruct]] = []
    lines = [
        f"{_field_type(annotation, nested)} {name}"
        for name, annotation in get_type_hints(message_type, include_extras=True).items()
    ]
    return "\n".join(lines) + "\n", nested


def message_definition(message_type: type[IdlStruct]) -> str:
    """The full ``ros2msg`` definition of ``message_type``, as rosbag2 stores it in MCAP schemas.

    The type's own fields, then each nested type once (depth first, in field order) after a
    separator line of 80 ``=`` and ``MSG: pkg/Name``. Generated from the IDL struct, so it can
    never disagree with the bytes we write; comments and constants of the upstream ``.msg``
    files are not reproduced (none of the recorded types has constants; decoders need neither).
    """
    text, pending = _fields_text(message_type)
    parts = [text]
    seen = {message_type}
    stack = list(reversed(pending))
    while stack:
        dependency = stack.pop()
        if dependency in seen:
            continue
        seen.add(dependency)
        body, children = _fields_text(dependency)
        parts.append(f"{_SEPARATOR}\nMSG: {_short_name(dependency)}\n{body}")
        stack.extend(reversed(children))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# topics and QoS

_HISTORY_KEEP_LAST = 1
_RELIABLE, _BEST_EFFORT = 1, 2
_TRANSIENT_LOCAL, _VOLATILE = 1, 2
_LIVELINESS_AUTOMATIC = 1
_DEPTH = {QosProfile.COMMAND: 10, QosProfile.STREAM: 10, QosProfile.IMAGE: 1, QosProfile.LATCHED: 1}


def offered_qos_yaml(profile: QosProfile) -> str:
    """rosbag2's ``offered_qos_profiles`` string (metadata version <= 8) for one of our profiles.

    Numbers are the ``rmw`` enum values; durations ``0`` mean "unspecified" (the rmw default,
    infinite), which every ROS 2 distro reads the same way.
    """

    def zero() -> dict[str, int]:  # a fresh dict each, so the YAML has no anchors
        return {"sec": 0, "nsec": 0}

    qos = {
        "history": _HISTORY_KEEP_LAST,
        "depth": _DEPTH[profile],
        "reliability": _BEST_EFFORT if profile is QosProfile.IMAGE else _RELIABLE,
        "durability": _TRANSIENT_LOCAL if profile is QosProfile.LATCHED else _VOLATILE,
        "deadline": zero(),
        "lifespan": zero(),
        "liveliness": _LIVELINESS_AUTOMATIC,
        "liveliness_lease_duration": zero(),
        "avoid_ros_namespace_conventions": False,
    }
    return yaml.safe_dump([qos], default_flow_style=False, sort_keys=False).strip()


@dataclass(frozen=True)
class RecordingTopics:
    """The recorded topic names for a robot namespace and its cameras (module docstring table)."""

    namespace: str = "robot"
    cameras: tuple[str, ...] = ("wrist", "front")

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("record at least one camera")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"camera names repeat: {self.cameras}")
        for camera in self.cameras:
            resolve_name(f"/cameras/{camera}")  # validates the name

    def camera(self, name: str) -> str:
        return resolve_name(f"/cameras/{name}/image_raw/compressed")

    def episode(self, name: str) -> str:
        return resolve_name(f"episode/{name}", self.namespace)

    @property
    def joint_states(self) -> str:
        return "/joint_states"

    @property
    def tcp_pose(self) -> str:
        return resolve_name("tcp_pose", self.namespace)

    def specs(self) -> list[TopicSpec]:
        """Every recorded topic with its type and QoS profile, in recording order."""
        specs = [
            TopicSpec(self.camera(c), msgs.CompressedImage, QosProfile.IMAGE, True)
            for c in self.cameras
        ]
        specs += [
            TopicSpec(self.joint_states, msgs.JointState, QosProfile.STREAM, True),
            TopicSpec(self.tcp_pose, msgs.PoseStamped, QosProfile.STREAM, True),
            TopicSpec(self.episode("action/twist"), msgs.TwistStamped, QosProfile.STREAM, False),
            TopicSpec(self.episode("action/gripper"), msgs.Float64, QosProfile.STREAM, False),
            TopicSpec(self.episode("reward"), msgs.Float64, QosProfile.STREAM, False),
            TopicSpec(self.episode("terminated"), msgs.Bool, QosProfile.STREAM, False),
            TopicSpec(self.episode("truncated"), msgs.Bool, QosProfile.STREAM, False),
            TopicSpec(self.episode("intervention"), msgs.Bool, QosProfile.STREAM, False),
            TopicSpec(self.episode("policy_version"), Int64, QosProfile.STREAM, False),
        ]
        return specs


# ---------------------------------------------------------------------------------------------
# recording


@dataclass
class RecorderConfig:
    """How episodes are recorded.

    Args:
        namespace: the robot namespace (``/<ns>/tcp_pose``, ``/<ns>/episode/...``).
        cameras: camera names; every observation must have an image for each.
        image_format: ``"png"`` (lossless) or ``"jpeg"`` for images given as arrays; images
            given as ``CompressedImage`` messages are recorded byte for byte as received.
        jpeg_quality: 1..95, for ``image_format="jpeg"``.
        chunk_compression: MCAP chunk compression, ``"zstd"``, ``"lz4"`` or ``"none"``.
    """

    namespace: str = "robot"
    cameras: tuple[str, ...] = ("wrist", "front")
    image_format: str = "png"
    jpeg_quality: int = 90
    chunk_compression: str = "zstd"

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        if self.image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', got {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        if self.chunk_compression not in _COMPRESSION:
            raise ValueError(
                f"chunk_compression must be one of {sorted(_COMPRESSION)}, "
                f"got {self.chunk_compression!r}"
            )
        RecordingTopics(self.namespace, self.cameras)  # validates names


_COMPRESSION = {
    "zstd": CompressionType.ZSTD,
    "lz4": CompressionType.LZ4,
    "none": CompressionType.NONE,
}


def encode_image(image: np.ndarray, image_format: str = "png", jpeg_quality: int = 90) -> bytes:
    """An ``[H, W, 3]`` uint8 RGB image as PNG or JPEG bytes."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an [H, W, 3] uint8 RGB image, got {image.dtype} {tuple(image.shape)}"
        )
    buffer = io.BytesIO()
    if image_format == "jpeg":
        Image.fromarray(image).save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes as an ``[H, W, 3]`` uint8 RGB array."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def bag_filename(index: int) -> str:
    """The file name of finished episode ``index`` in a run directory."""
    return f"episode_{index:06d}.mcap"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _EpisodeWriter:
    """One open ``.partial`` MCAP file with a channel per recorded topic."""

    def __init__(self, path: Path, topics: RecordingTopics, compression: CompressionType) -> None:
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 - open for the whole episode
        self._writer = Writer(self._file, compression=compression)
        self._writer.start(profile="ros2", library=f"robotrl-real {__version__}")
        schema_ids: dict[type[IdlStruct], int] = {}
        self._channels: dict[str, int] = {}
        for spec in topics.specs():
            if spec.message_type not in schema_ids:
                schema_ids[spec.message_type] = self._writer.register_schema(
                    name=ros_type_name(spec.message_type),
                    encoding="ros2msg",
                    data=message_definition(spec.message_type).encode(),
                )
            self._channels[spec.name] = self._writer.register_channel(
                topic=spec.name,
                message_encoding="cdr",
                schema_id=schema_ids[spec.message_type],
                metadata={"offered_qos_profiles": offered_qos_yaml(spec.profile)},
            )
        self._sequence = 0

    def write(self, topic: str, message: IdlStruct, stamp_ns: int) -> None:
        self._sequence += 1
        self._writer.add_message(
            channel_id=self._channels[topic],
            log_time=stamp_ns,
            publish_time=stamp_ns,
            data=message.serialize(),
            sequence=self._sequence,
        )

    def close(self) -> None:
        self._writer.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


@dataclass
class _FileInfo:
    """What ``metadata.yaml`` says about one finished episode file."""

    path: Path
    start_ns: int
    end_ns: int
    topic_counts: dict[str, int]
    topic_types: dict[str, str]
    topic_qos: dict[str, str]

    @property
    def message_count(self) -> int:
        return sum(self.topic_counts.values())


def _file_info(path: Path) -> _FileInfo:
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    if summary is None or summary.statistics is None:
        raise ValueError(f"{path} has no MCAP summary; it is not a finished episode bag")
    stats = summary.statistics
    counts, types, qos = {}, {}, {}
    for channel_id, channel in summary.channels.items():
        counts[channel.topic] = stats.channel_message_counts.get(channel_id, 0)
        types[channel.topic] = summary.schemas[channel.schema_id].name
        qos[channel.topic] = channel.metadata.get("offered_qos_profiles", "")
    return _FileInfo(path, stats.message_start_time, stats.message_end_time, counts, types, qos)


def write_metadata(directory: Path, files: Sequence[_FileInfo]) -> None:
    """Write the rosbag2 ``metadata.yaml`` of ``files`` atomically (tmp file, then rename)."""
    topics: dict[str, dict[str, Any]] = {}
    for info in files:
        for topic, count in info.topic_counts.items():
            entry = topics.setdefault(
                topic,
                {
                    "topic_metadata": {
                        "name": topic,
                        "type": info.topic_types[topic],
                        "serialization_format": "cdr",
                        "offered_qos_profiles": info.topic_qos[topic],
                    },
                    "message_count": 0,
                },
            )
            if entry["topic_metadata"]["type"] != info.topic_types[topic]:
                raise ValueError(
                    f"topic {topic} is {entry['topic_metadata']['type']} in one episode and "
                    f"{info.topic_types[topic]} in {info.path.name}"
                )
            entry["message_count"] += count
    start = min((f.start_ns for f in files), default=0)
    end = max((f.end_ns for f in files), default=0)
    metadata = {
        "rosbag2_bagfile_information": {
            "version": ROSBAG2_METADATA_VERSION,
            "storage_identifier": "mcap",
            "relative_file_paths": [f.path.name for f in files],
            "duration": {"nanoseconds": end - start},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(f.message_count for f in files),
            "topics_with_message_count": list(topics.values()),
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": f.path.name,
                    "starting_time": {"nanoseconds_since_epoch": f.start_ns},
                    "duration": {"nanoseconds": f.end_ns - f.start_ns},
                    "message_count": f.message_count,
                }
                for f in files
            ],
        }
    }
    tmp = directory / f".{METADATA_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        yaml.safe_dump(metadata, out, default_flow_style=False, sort_keys=False)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, directory / METADATA_FILE)
    _fsync_directory(directory)


def _episode_index(path: Path) -> int:
    match = BAG_FILE.match(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not an episode bag name (episode_NNNNNN.mcap)")
    return int(match.group(1))


def finished_episodes(directory: Path) -> list[Path]:
    """The finished episode bags of a run directory, in episode order."""
    return sorted(p for p in Path(directory).glob("episode_*.mcap") if BAG_FILE.match(p.name))


ImageInput: TypeAlias = np.ndarray | msgs.CompressedImage


class EpisodeRecorder:
    """Records episodes into a run directory, one MCAP file per episode (module docstring).

    Per episode: :meth:`start_episode`, :meth:`record_observation` (the reset observation),
    then per transition :meth:`record_step` followed by :meth:`record_observation`, and
    :meth:`finish_episode` (or :meth:`abort_episode`). Opening a directory that already holds
    episodes resumes it: finished episodes are kept and numbering continues after the last.
    """

    def __init__(self, directory: Path, config: RecorderConfig | None = None) -> None:
        self.directory = Path(directory)
        self.config = RecorderConfig() if config is None else config
        self.topics = RecordingTopics(self.config.namespace, self.config.cameras)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f".episode_*.mcap{PARTIAL_SUFFIX}"):
            logger.warning("removing %s, an episode a crashed recorder never finished", stale)
            stale.unlink()
        self._files = [_file_info(path) for path in finished_episodes(self.directory)]
        if self._files:
            write_metadata(self.directory, self._files)  # a crash may have left it stale
        self.next_index = _episode_index(self._files[-1].path) + 1 if self._files else 0
        self._writer: _EpisodeWriter | None = None
        self._observations = 0
        self._steps = 0

    @property
    def episodes(self) -> list[Path]:
        """The finished episode files, oldest first."""
        return [info.path for info in self._files]

    @property
    def recording(self) -> bool:
        """Whether an episode is in progress."""
        return self._writer is not None

    def start_episode(self) -> int:
        """Open the next episode's ``.partial`` file; returns the episode index."""
        if self._writer is not None:
            raise RuntimeError("an episode is already being recorded; finish or abort it first")
        path = self.directory / f".{bag_filename(self.next_index)}{PARTIAL_SUFFIX}"
        self._writer = _EpisodeWriter(
            path, self.topics, _COMPRESSION[self.config.chunk_compression]
        )
        self._observations = self._steps = 0
        return self.next_index

    def _active(self) -> _EpisodeWriter:
        if self._writer is None:
            raise RuntimeError("no episode in progress; call start_episode() first")
        return self._writer

    def _image_message(self, camera: str, image: ImageInput, stamp_ns: int) -> msgs.CompressedImage:
        if isinstance(image, msgs.CompressedImage):
            return image
        data = encode_image(image, self.config.image_format, self.config.jpeg_quality)
        header = msgs.Header(stamp=msgs.time_from_nanoseconds(stamp_ns), frame_id=camera)
        return msgs.CompressedImage(header=header, format=self.config.image_format, data=data)

    def record_observation(
        self,
        images: Mapping[str, ImageInput],
        joint_state: msgs.JointState | None = None,
        tcp_pose: msgs.PoseStamped | None = None,
        *,
        stamp_ns: int | None = None,
    ) -> None:
        """Record observation ``t``: one image per camera (``[H, W, 3]`` uint8 RGB arrays or
        ``CompressedImage`` messages), and the arm state when available."""
        writer = self._active()
        if self._observations != self._steps:
            raise RuntimeError(
                f"observation {self._observations} recorded twice; record_step() comes between"
            )
        if set(images) != set(self.config.cameras):
            raise ValueError(
                f"expected images for cameras {sorted(self.config.cameras)}, got {sorted(images)}"
            )
        stamp = time_ns() if stamp_ns is None else int(stamp_ns)
        for camera in self.config.cameras:
            message = self._image_message(camera, images[camera], stamp)
            writer.write(self.topics.camera(camera), message, stamp)
        if joint_state is not None:
            writer.write(self.topics.joint_states, joint_state, stamp)
        if tcp_pose is not None:
            writer.write(self.topics.tcp_pose, tcp_pose, stamp)
        self._observations += 1

    def record_step(
        self,
        twist: Sequence[float] | np.ndarray,
        gripper: float,
        reward: float,
        *,
        terminated: bool = False,
        truncated: bool = False,
        intervention: bool = False,
        policy_version: int = 0,
        frame_id: str = "base_link",
        stamp_ns: int | None = None,
    ) -> None:
        """Record transition ``t``: the action taken from observation ``t`` (twist: linear xyz,
        angular xyz; gripper command) and what followed it."""
        writer = self._active()
        if self._observations != self._steps + 1:
            raise RuntimeError("record_step() needs the observation it acts on recorded first")
        values = np.asarray(twist, dtype=np.float64)
        if values.shape != (6,) or not np.all(np.isfinite(values)) or not np.isfinite(gripper):
            raise ValueError(
                f"twist must be 6 finite numbers and gripper finite, got {values!r}, {gripper!r}"
            )
        stamp = time_ns() if stamp_ns is None else int(stamp_ns)
        header = msgs.Header(stamp=msgs.time_from_nanoseconds(stamp), frame_id=frame_id)
        vx, vy, vz, wx, wy, wz = (float(v) for v in values)
        twist_msg = msgs.TwistStamped(
            header=header,
            twist=msgs.Twist(linear=msgs.Vector3(vx, vy, vz), angular=msgs.Vector3(wx, wy, wz)),
        )
        topic = self.topics.episode
        writer.write(topic("action/twist"), twist_msg, stamp)
        writer.write(topic("action/gripper"), msgs.Float64(float(gripper)), stamp)
        writer.write(topic("reward"), msgs.Float64(float(reward)), stamp)
        writer.write(topic("terminated"), msgs.Bool(bool(terminated)), stamp)
        writer.write(topic("truncated"), msgs.Bool(bool(truncated)), stamp)
        writer.write(topic("intervention"), msgs.Bool(bool(intervention)), stamp)
        writer.write(topic("policy_version"), Int64(int(policy_version)), stamp)
        self._steps += 1

    def finish_episode(self) -> Path:
        """Close the episode, move it to its final name atomically, update ``metadata.yaml``."""
        writer = self._active()
        if self._steps < 1 or self._observations != self._steps + 1:
            raise RuntimeError(
                f"an episode needs >= 1 step and one more observation than steps; got "
                f"{self._observations} observations and {self._steps} steps"
            )
        writer.close()
        final = self.directory / bag_filename(self.next_index)
        os.replace(writer.path, final)
        _fsync_directory(self.directory)
        self._writer = None
        self._files.append(_file_info(final))
        write_metadata(self.directory, self._files)
        self.next_index += 1
        return final

    def abort_episode(self) -> None:
        """Drop the episode in progress (its index is reused by the next episode)."""
        self._active().discard()
        self._writer = None


def time_ns() -> int:
    """The wall clock in nanoseconds, as ROS 2's system clock stamps messages."""
    return msgs.time_to_nanoseconds(msgs.now())


# ---------------------------------------------------------------------------------------------
# reading and conversion


@dataclass
class RecordedEpisode:
    """One episode bag read back: per topic, the ``(log_time_ns, message)`` pairs in order."""

    path: Path
    messages: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)

    def values(self, topic: str) -> list[Any]:
        """The messages of ``topic`` (empty if it was not recorded)."""
        return [message for _, message in self.messages.get(topic, [])]


def read_episode(path: Path) -> RecordedEpisode:
    """Read one episode bag with the ``mcap`` reader, decoding CDR with our message types."""
    episode = RecordedEpisode(Path(path))
    with open(path, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        if header.profile != "ros2":
            raise ValueError(f"{path} has MCAP profile {header.profile!r}, expected 'ros2'")
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            if channel.message_encoding != "cdr" or schema is None:
                raise ValueError(f"{path}: topic {channel.topic} is not CDR with a ROS 2 schema")
            message_type = _ALL_TYPES.get(schema.name)
            if message_type is None:
                raise ValueError(f"{path}: topic {channel.topic} has unknown type {schema.name}")
            decoded = message_type.deserialize(message.data)
            episode.messages.setdefault(channel.topic, []).append((message.log_time, decoded))
    return episode


def _vector3(v: msgs.Vector3) -> list[float]:
    return [v.x, v.y, v.z]


def _pose_vector(pose: msgs.PoseStamped) -> list[float]:
    p, q = pose.pose.position, pose.pose.orientation
    return [p.x, p.y, p.z, q.x, q.y, q.z, q.w]


def episode_to_replay(recorded: RecordedEpisode, topics: RecordingTopics) -> dict[str, np.ndarray]:
    """The replay episode dict (module docstring) of one recorded episode."""
    name = recorded.path.name
    rewards = recorded.values(topics.episode("reward"))
    steps = len(rewards)
    if steps < 1:
        raise ValueError(f"{name}: no transitions recorded on {topics.episode('reward')}")

    def expect(topic: str, count: int) -> list[Any]:
        values = recorded.values(topic)
        if len(values) != count:
            raise ValueError(f"{name}: {topic} has {len(values)} messages, expected {count}")
        return values

    views = []
    for camera in topics.cameras:
        images = expect(topics.camera(camera), steps + 1)
        decoded = [decode_image(image.data_bytes()) for image in images]
        shapes = {frame.shape for frame in decoded}
        if len(shapes) != 1:
            raise ValueError(f"{name}: camera {camera} changes image size: {sorted(shapes)}")
        views.append(np.stack(decoded).transpose(0, 3, 1, 2))  # [T+1, 3, H, W]
    sizes = {view.shape[2:] for view in views}
    if len(sizes) != 1:
        raise ValueError(f"{name}: cameras have different image sizes {sorted(sizes)}")
    twists = expect(topics.episode("action/twist"), steps)
    grippers = expect(topics.episode("action/gripper"), steps)
    action = np.array(
        [
            [*_vector3(t.twist.linear), *_vector3(t.twist.angular), g.data]
            for t, g in zip(twists, grippers, strict=True)
        ],
        dtype=np.float32,
    )
    terminated = expect(topics.episode("terminated"), steps)
    intervention = [m.data for m in expect(topics.episode("intervention"), steps)]
    episode = {
        "frames": np.stack(views, axis=1),
        "action": action,
        "reward": np.array([m.data for m in rewards], dtype=np.float32),
        "terminated": np.array(bool(terminated[-1].data)),
        "intervention": np.array([*intervention, False], dtype=bool),
    }
    proprio_parts = []
    if topics.joint_states in recorded.messages:
        joints = expect(topics.joint_states, steps + 1)
        proprio_parts.append(np.array([list(m.position) for m in joints], dtype=np.float32))
    if topics.tcp_pose in recorded.messages:
        poses = expect(topics.tcp_pose, steps + 1)
        proprio_parts.append(np.array([_pose_vector(m) for m in poses], dtype=np.float32))
    if proprio_parts:
        episode["proprio"] = np.concatenate(proprio_parts, axis=1)
    return episode


def _save_npz(path: Path, episode: Mapping[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **episode)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def convert_to_replay(
    bag_dir: Path,
    out_dir: Path,
    *,
    namespace: str = "robot",
    cameras: Sequence[str] | None = None,
) -> list[Path]:
    """Convert every finished episode of a run directory to replay ``episode_*.npz`` files.

    ``cameras`` picks the views and their order (default: every camera in the bag, in recorded
    order). ``out_dir`` must hold no episode files yet. Returns the written files in order.
    """
    bag_dir, out_dir = Path(bag_dir), Path(out_dir)
    bags = finished_episodes(bag_dir)
    if not bags:
        raise FileNotFoundError(f"no finished episode bags (episode_*.mcap) in {bag_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [p for p in out_dir.glob("episode_*.npz") if EPISODE_FILE.match(p.name)]
    if existing:
        raise FileExistsError(f"{out_dir} already holds replay episodes ({existing[0].name})")
    written = []
    for index, bag in enumerate(bags):
        recorded = read_episode(bag)
        found = tuple(_cameras_in(recorded.messages))
        chosen = found if cameras is None else tuple(cameras)
        missing = sorted(set(chosen) - set(found))
        if missing or not chosen:
            raise ValueError(f"{bag.name}: cameras {missing or chosen} not recorded; has {found}")
        episode = episode_to_replay(recorded, RecordingTopics(namespace, chosen))
        path = out_dir / episode_filename(index, len(episode["reward"]))
        _save_npz(path, episode)
        written.append(path)
    return written


_CAMERA_TOPIC = re.compile(r"^/cameras/([A-Za-z_][A-Za-z0-9_]*)/image_raw/compressed$")


def _cameras_in(messages: Mapping[str, Any]) -> Iterator[str]:
    for topic in messages:
        match = _CAMERA_TOPIC.match(topic)
        if match:
            yield match.group(1)
