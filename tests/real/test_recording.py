"""Episode bags: readable by independent readers (rosbags, mcap, mcap_ros2), crash-safe, and
converted to replay episodes that round-trip exactly (PNG) or within JPEG tolerance.

``rosbags`` has its own MCAP reader, its own CDR codec and its own copy of the ROS 2 message
definitions; ``mcap_ros2`` parses our schema text itself. Nothing here is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from robotrl.demos import load_demos
from robotrl.replay import load_episode
from robotrl_real import msgs
from robotrl_real.recording import (
    EpisodeRecorder,
    Int64,
    RecorderConfig,
    convert_to_replay,
    finished_episodes,
    message_definition,
)

STORE = get_typestore(Stores.ROS2_HUMBLE)
CAMERAS = ("wrist", "front")
H, W = 16, 32  # flat 16x16 blocks line up with JPEG's macroblocks
T0 = 1_700_000_000_000_000_000


def _record(recorder: EpisodeRecorder, steps: int, seed: int, *, jpeg_ok: bool = False) -> dict:
    """Record one episode of smooth random images and known values; return what went in."""
    rng = np.random.default_rng(seed)
    truth: dict = {"images": {c: [] for c in CAMERAS}, "joints": [], "poses": []}
    truth.update(twist=[], gripper=[], reward=[], terminated=[], truncated=[], intervention=[])
    truth["policy_version"] = []

    def observe(t: int) -> None:
        images = {}
        for c in CAMERAS:
            # smooth images so JPEG errors stay small and the tolerance test is meaningful
            base = rng.integers(0, 256, (H // 16, W // 16, 3))
            image = np.kron(base, np.ones((16, 16, 1), int)).astype(np.uint8)
            images[c] = image
            truth["images"][c].append(image)
        joints = rng.normal(size=6).tolist()
        pose = msgs.PoseStamped(
            header=msgs.Header(stamp=msgs.time_from_nanoseconds(T0 + t), frame_id="base"),
            pose=msgs.Pose(msgs.Point(*rng.normal(size=3)), msgs.Quaternion(0.0, 0.0, 0.6, 0.8)),
        )
        truth["joints"].append(joints)
        truth["poses"].append(pose)
        recorder.record_observation(
            images,
            msgs.JointState(name=[f"j{i}" for i in range(6)], position=joints),
            pose,
            stamp_ns=T0 + 1000 * seed + 10 * t,
        )

    recorder.start_episode()
    observe(0)
    for t in range(steps):
        twist = rng.uniform(-0.1, 0.1, size=6)
        last = t == steps - 1
        values = dict(
            gripper=float(rng.uniform()),
            reward=float(rng.normal()),
            terminated=last and seed % 2 == 0,
            truncated=last and seed % 2 == 1,
            intervention=bool(rng.integers(2)),
            policy_version=int(rng.integers(0, 2**40)),
        )
        recorder.record_step(twist, stamp_ns=T0 + 1000 * seed + 10 * t + 5, **values)
        truth["twist"].append(twist)
        for key, value in values.items():
            truth[key].append(value)
        observe(t + 1)
    truth["path"] = recorder.finish_episode()
    return truth


@pytest.fixture
def recorded_run(tmp_path):
    recorder = EpisodeRecorder(tmp_path / "run", RecorderConfig(cameras=CAMERAS))
    truths = [_record(recorder, steps, seed) for seed, steps in enumerate((3, 5))]
    return tmp_path / "run", truths


def test_schema_text_matches_rosbags_definitions():
    for name in (
        "sensor_msgs/msg/CompressedImage",
        "sensor_msgs/msg/JointState",
        "geometry_msgs/msg/PoseStamped",
        "geometry_msgs/msg/TwistStamped",
        "std_msgs/msg/Float64",
        "std_msgs/msg/Bool",
    ):
        assert (
            message_definition(msgs.MESSAGE_TYPES[name])
            == STORE.generate_msgdef(name, ros_version=2)[0]
        )
    assert (
        message_definition(Int64) == STORE.generate_msgdef("std_msgs/msg/Int64", ros_version=2)[0]
    )


def test_rosbags_reader_sees_every_recorded_value(recorded_run):
    run, truths = recorded_run
    with Reader(run) as reader:
        assert reader.message_count == sum(11 * len(t["reward"]) + 4 for t in truths)
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {
            "/cameras/wrist/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
            "/cameras/front/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
            "/joint_states": "sensor_msgs/msg/JointState",
            "/robot/tcp_pose": "geometry_msgs/msg/PoseStamped",
            "/robot/episode/action/twist": "geometry_msgs/msg/TwistStamped",
            "/robot/episode/action/gripper": "std_msgs/msg/Float64",
            "/robot/episode/reward": "std_msgs/msg/Float64",
            "/robot/episode/terminated": "std_msgs/msg/Bool",
            "/robot/episode/truncated": "std_msgs/msg/Bool",
            "/robot/episode/intervention": "std_msgs/msg/Bool",
            "/robot/episode/policy_version": "std_msgs/msg/Int64",
        }
        counts = {c.topic: c.msgcount for c in reader.connections}
        steps = sum(len(t["reward"]) for t in truths)
        assert counts["/robot/episode/reward"] == steps
        assert counts["/joint_states"] == steps + len(truths)
        decoded: dict[str, list] = {}
        for connection, _, raw in reader.messages():
            decoded.setdefault(connection.topic, []).append(
                STORE.deserialize_cdr(raw, connection.msgtype)
            )

    def expected(key):
        return [v for t in truths for v in t[key]]

    assert [m.data for m in decoded["/robot/episode/reward"]] == expected("reward")
    assert [m.data for m in decoded["/robot/episode/policy_version"]] == expected("policy_version")
    assert [m.data for m in decoded["/robot/episode/intervention"]] == expected("intervention")
    assert [m.data for m in decoded["/robot/episode/terminated"]] == expected("terminated")
    assert [m.data for m in decoded["/robot/episode/truncated"]] == expected("truncated")
    twists = decoded["/robot/episode/action/twist"]
    got = [[m.twist.linear.x, m.twist.linear.y, m.twist.linear.z, m.twist.angular.x,
            m.twist.angular.y, m.twist.angular.z] for m in twists]  # fmt: skip
    np.testing.assert_array_equal(got, expected("twist"))
    np.testing.assert_array_equal(
        [m.position for m in decoded["/joint_states"]], expected("joints")
    )
    pose = decoded["/robot/tcp_pose"][-1]
    assert pose.pose.orientation.z == 0.6 and pose.header.frame_id == "base"
    image = decoded["/cameras/front/image_raw/compressed"][0]
    assert image.format == "png" and bytes(image.data[1:4]) == b"PNG"


def test_mcap_reader_sees_ros2_profile_and_schemas(recorded_run):
    _, truths = recorded_run
    path = truths[0]["path"]
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        assert summary is not None
        schemas = {s.name: s for s in summary.schemas.values()}
        assert set(schemas) == {
            "sensor_msgs/msg/CompressedImage",
            "sensor_msgs/msg/JointState",
            "geometry_msgs/msg/PoseStamped",
            "geometry_msgs/msg/TwistStamped",
            "std_msgs/msg/Float64",
            "std_msgs/msg/Bool",
            "std_msgs/msg/Int64",
        }
        assert all(s.encoding == "ros2msg" for s in schemas.values())
        assert b"MSG: builtin_interfaces/Time" in schemas["geometry_msgs/msg/TwistStamped"].data
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
        for channel in summary.channels.values():
            qos = yaml.safe_load(channel.metadata["offered_qos_profiles"])
            best_effort = channel.topic.startswith("/cameras/")
            assert qos[0]["reliability"] == (2 if best_effort else 1)
        # mcap_ros2 parses our schema text on its own and decodes the CDR with it
        gripper = [
            decoded.data
            for _, channel, _, decoded in reader.iter_decoded_messages(
                topics=["/robot/episode/action/gripper"]
            )
        ]
        assert gripper == truths[0]["gripper"]


def test_metadata_yaml_matches_the_bags(recorded_run):
    run, truths = recorded_run
    info = yaml.safe_load((run / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == "mcap"
    assert info["version"] == 5
    assert info["relative_file_paths"] == ["episode_000000.mcap", "episode_000001.mcap"]
    steps = [len(t["reward"]) for t in truths]
    assert [f["message_count"] for f in info["files"]] == [11 * s + 4 for s in steps]
    assert info["message_count"] == sum(11 * s + 4 for s in steps)
    counts = {
        t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]
    }
    assert counts["/robot/episode/intervention"] == sum(steps)
    assert counts["/cameras/wrist/image_raw/compressed"] == sum(steps) + 2
    assert info["starting_time"]["nanoseconds_since_epoch"] == T0
    last_stamp = T0 + 1000 * 1 + 10 * steps[1]
    assert info["duration"]["nanoseconds"] == last_stamp - T0


def test_abandoned_episode_leaves_no_file_and_numbering_resumes(tmp_path):
    run = tmp_path / "run"
    recorder = EpisodeRecorder(run, RecorderConfig(cameras=CAMERAS))
    _record(recorder, 2, 0)
    recorder.start_episode()  # abandoned: never finished, recorder dropped
    recorder.record_observation({c: np.zeros((H, W, 3), np.uint8) for c in CAMERAS})
    assert [p.name for p in finished_episodes(run)] == ["episode_000000.mcap"]
    resumed = EpisodeRecorder(run, RecorderConfig(cameras=CAMERAS))
    assert resumed.next_index == 1
    assert not list(run.glob(".*partial"))
    truth = _record(resumed, 3, 1)
    assert truth["path"].name == "episode_000001.mcap"
    with Reader(run) as reader:
        assert reader.message_count == (11 * 2 + 4) + (11 * 3 + 4)


_CRASHING_RECORDER = textwrap.dedent(
    """
    import sys, numpy as np
    from robotrl_real.recording import EpisodeRecorder, RecorderConfig
    recorder = EpisodeRecorder(sys.argv[1], RecorderConfig(cameras=("wrist",)))
    image = {"wrist": np.full((8, 8, 3), 7, np.uint8)}
    for episode in range(2):
        recorder.start_episode()
        recorder.record_observation(image)
        for _ in range(3):
            recorder.record_step(np.zeros(6), 0.0, 1.0)
            recorder.record_observation(image)
        recorder.finish_episode()
    recorder.start_episode()
    recorder.record_observation(image)
    recorder.record_step(np.zeros(6), 0.0, 1.0)
    print("mid-episode", flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


def test_sigkill_mid_episode_keeps_finished_episodes(tmp_path):
    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_RECORDER, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "mid-episode"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert [p.name for p in finished_episodes(run)] == [
        "episode_000000.mcap",
        "episode_000001.mcap",
    ]
    with Reader(run) as reader:  # every listed file opens and is complete
        assert reader.message_count == 2 * (7 * 3 + 3 + 1)
    recorder = EpisodeRecorder(run, RecorderConfig(cameras=("wrist",)))
    assert recorder.next_index == 2
    assert sorted(p.name for p in run.iterdir()) == [
        "episode_000000.mcap",
        "episode_000001.mcap",
        "metadata.yaml",
    ]


def test_convert_to_replay_round_trips_png_exactly(recorded_run, tmp_path):
    run, truths = recorded_run
    files = convert_to_replay(run, tmp_path / "replay")
    assert [f.name for f in files] == ["episode_000000_len3.npz", "episode_000001_len5.npz"]
    for path, truth in zip(files, truths, strict=True):
        episode = load_episode(path)
        expected_frames = np.stack(
            [np.stack(truth["images"][c]).transpose(0, 3, 1, 2) for c in CAMERAS], axis=1
        )
        assert episode["frames"].shape == (len(truth["reward"]) + 1, 2, 3, H, W)
        np.testing.assert_array_equal(episode["frames"], expected_frames)
        expected_action = np.column_stack([np.array(truth["twist"]), truth["gripper"]])
        np.testing.assert_array_equal(episode["action"], expected_action.astype(np.float32))
        np.testing.assert_array_equal(episode["reward"], np.float32(truth["reward"]))
        assert bool(episode["terminated"]) == truth["terminated"][-1]
        np.testing.assert_array_equal(episode["intervention"], [*truth["intervention"], False])
        poses = [
            [p.pose.position.x, p.pose.position.y, p.pose.position.z, 0.0, 0.0, 0.6, 0.8]
            for p in truth["poses"]
        ]
        proprio = np.column_stack([np.array(truth["joints"]), np.array(poses)])
        np.testing.assert_array_equal(episode["proprio"], proprio.astype(np.float32))
    replay = load_demos(tmp_path / "replay", frame_stack=2)
    assert len(replay) == 3 + 5
    batch = replay.sample(4)
    assert batch["obs"].shape == (4, 2, 6, H, W)
    assert batch["intervention"].dtype == bool and batch["proprio"].shape == (4, 6 + 7)


def test_convert_to_replay_jpeg_within_tolerance_and_camera_choice(tmp_path):
    run = tmp_path / "run"
    recorder = EpisodeRecorder(run, RecorderConfig(cameras=CAMERAS, image_format="jpeg"))
    truth = _record(recorder, 4, 3)
    (path,) = convert_to_replay(run, tmp_path / "replay", cameras=["front"])
    frames = load_episode(path)["frames"]
    expected = np.stack(truth["images"]["front"]).transpose(0, 3, 1, 2)[:, None]
    assert frames.shape == expected.shape
    error = np.abs(frames.astype(int) - expected.astype(int))
    assert error.mean() < 8 and not np.array_equal(frames, expected)  # lossy, but close


def test_bad_input_is_refused_with_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="image_format"):
        RecorderConfig(image_format="bmp")
    recorder = EpisodeRecorder(tmp_path / "run", RecorderConfig(cameras=("wrist",)))
    with pytest.raises(RuntimeError, match="start_episode"):
        recorder.record_step(np.zeros(6), 0.0, 0.0)
    recorder.start_episode()
    with pytest.raises(ValueError, match="cameras"):
        recorder.record_observation({"front": np.zeros((4, 4, 3), np.uint8)})
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        recorder.record_observation({"wrist": np.zeros((4, 4), np.float32)})
    with pytest.raises(RuntimeError, match="observation"):
        recorder.record_step(np.zeros(6), 0.0, 0.0)
    recorder.record_observation({"wrist": np.zeros((4, 4, 3), np.uint8)})
    with pytest.raises(ValueError, match="6 finite"):
        recorder.record_step([0.0, np.nan, 0, 0, 0, 0], 0.0, 0.0)
    with pytest.raises(RuntimeError, match=">= 1 step"):
        recorder.finish_episode()
    recorder.abort_episode()
    with pytest.raises(FileNotFoundError, match="no finished episode"):
        convert_to_replay(tmp_path / "run", tmp_path / "out")
    _record_single(recorder)
    convert_to_replay(tmp_path / "run", tmp_path / "out")
    with pytest.raises(FileExistsError, match="already holds"):
        convert_to_replay(tmp_path / "run", tmp_path / "out")
    with pytest.raises(ValueError, match="not recorded"):
        convert_to_replay(tmp_path / "run", tmp_path / "out2", cameras=["front"])


def _record_single(recorder: EpisodeRecorder) -> Path:
    recorder.start_episode()
    recorder.record_observation({"wrist": np.zeros((4, 4, 3), np.uint8)})
    recorder.record_step(np.zeros(6), 0.0, 0.0)
    recorder.record_observation({"wrist": np.zeros((4, 4, 3), np.uint8)})
    return recorder.finish_episode()
