"""Topic names, the topic table's QoS, and pub/sub over real DDS on loopback.

Every test runs in a random DDS domain with a loopback-only config, so parallel workers and any
robot on the network stay apart. Discovery on loopback takes well under a second; waits are short.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from cyclonedds.qos import Policy

from robotrl_real import msgs
from robotrl_real.node import (
    Node,
    default_domain_id,
    free_domain_id,
    loopback_config,
    loopback_environment,
)
from robotrl_real.topics import (
    QosProfile,
    TopicSpec,
    TopicTable,
    dds_topic_name,
    driver_topics,
    qos_for,
    resolve_name,
)

WAIT = 3.0  # seconds; discovery on loopback normally takes ~0.05 s


@pytest.fixture
def make_node():
    """Nodes in one fresh loopback domain; all closed after the test."""
    domain_id = free_domain_id()
    config = loopback_config()
    nodes: list[Node] = []

    def make(name: str, namespace: str = "arm") -> Node:
        node = Node(name, namespace=namespace, domain_id=domain_id, config=config)
        nodes.append(node)
        return node

    make.domain_id = domain_id  # type: ignore[attr-defined]
    yield make
    for node in nodes:
        node.close()


# ---------------------------------------------------------------------------------------------
# names and the table


def test_ros_names_map_to_rt_prefixed_dds_topics():
    assert dds_topic_name("/joint_states") == "rt/joint_states"
    assert resolve_name("tcp_pose", "arm") == "/arm/tcp_pose"
    assert resolve_name("tcp_pose", "/lab/arm/") == "/lab/arm/tcp_pose"
    assert resolve_name("/diagnostics", "arm") == "/diagnostics"
    assert resolve_name("tcp_pose") == "/tcp_pose"
    assert dds_topic_name(resolve_name("gripper/command", "arm")) == "rt/arm/gripper/command"


@pytest.mark.parametrize(
    "bad", ["", "/", "/a//b", "/a/", "/1abc", "/a-b", "~/x", "/a/{node}", "/a b"]
)
def test_invalid_ros_names_are_rejected(bad):
    with pytest.raises(ValueError, match="ROS 2"):
        resolve_name(bad)


def test_relative_name_has_no_dds_topic():
    with pytest.raises(ValueError, match="absolute"):
        dds_topic_name("joint_states")


def test_driver_topic_table_has_every_topic_of_the_design_with_its_type():
    table = driver_topics("arm")
    expected = {
        "/joint_states": (msgs.JointState, True),
        "/arm/tcp_pose": (msgs.PoseStamped, True),
        "/cameras/wrist/image_raw/compressed": (msgs.CompressedImage, True),
        "/cameras/front/image_raw/compressed": (msgs.CompressedImage, True),
        "/cameras/wrist/camera_info": (msgs.CameraInfo, True),
        "/cameras/front/camera_info": (msgs.CameraInfo, True),
        "/diagnostics": (msgs.DiagnosticArray, True),
        "/arm/control_mode": (msgs.String, True),
        "/arm/commanded_twist": (msgs.TwistStamped, True),
        "/arm/gripper/commanded": (msgs.Float64, True),
        "/servo_node/delta_twist_cmds": (msgs.TwistStamped, False),
        "/joint_trajectory_controller/joint_trajectory": (msgs.JointTrajectory, False),
        "/arm/gripper/command": (msgs.Float64, False),
        "/arm/estop": (msgs.Bool, False),
        "/arm/enable": (msgs.Bool, False),
        "/arm/teleop/intervention": (msgs.Bool, False),
        "/arm/teleop/twist": (msgs.TwistStamped, False),
    }
    assert {s.name: (s.message_type, s.driver_publishes) for s in table} == expected
    latched = {s.name for s in table if s.latched}
    assert latched == {
        "/arm/control_mode",
        "/arm/gripper/commanded",
        "/cameras/wrist/camera_info",
        "/cameras/front/camera_info",
        "/arm/estop",
    }
    assert {s.name for s in table if s.profile is QosProfile.IMAGE} == {
        "/cameras/wrist/image_raw/compressed",
        "/cameras/front/image_raw/compressed",
    }
    assert table["tcp_pose"] is table["/arm/tcp_pose"]
    assert "tcp_pose" in table and "/tcp_pose" not in table
    with pytest.raises(KeyError, match="no topic '/arm/nope'"):
        table["nope"]


def test_qos_profiles():
    def policies(profile):
        return {p.__scope__: p for p in qos_for(profile)}

    command = policies(QosProfile.COMMAND)
    assert isinstance(command["Reliability"], Policy.Reliability.Reliable)
    assert command["Durability"] == Policy.Durability.Volatile
    assert command["History"] == Policy.History.KeepLast(10)
    image = policies(QosProfile.IMAGE)
    assert image["Reliability"] == Policy.Reliability.BestEffort
    assert image["History"] == Policy.History.KeepLast(1)
    latched = policies(QosProfile.LATCHED)
    assert isinstance(latched["Reliability"], Policy.Reliability.Reliable)
    assert latched["Durability"] == Policy.Durability.TransientLocal
    assert latched["History"] == Policy.History.KeepLast(1)
    for profile in QosProfile:  # ROS 2 nodes send XCDR1
        assert policies(profile)["DataRepresentation"] == Policy.DataRepresentation(
            use_cdrv0_representation=True
        )


def test_duplicate_topics_in_a_table_are_rejected():
    spec = TopicSpec("/x", msgs.Bool, QosProfile.COMMAND, False)
    with pytest.raises(ValueError, match="listed twice"):
        TopicTable([spec, spec])


def test_domain_id_from_environment(monkeypatch):
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    assert default_domain_id() == 0
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    assert default_domain_id() == 42
    monkeypatch.setenv("ROS_DOMAIN_ID", "lots")
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID"):
        default_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", "900")
    with pytest.raises(ValueError, match=r"0\.\.232"):
        default_domain_id()


def test_loopback_environment_sets_and_restores(monkeypatch):
    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)
    monkeypatch.setenv("ROS_DOMAIN_ID", "5")
    with loopback_environment(domain_id=150) as domain_id:
        assert domain_id == 150
        assert os.environ["ROS_DOMAIN_ID"] == "150"
        assert '<NetworkInterface address="127.0.0.1"/>' in os.environ["CYCLONEDDS_URI"]
    assert os.environ["ROS_DOMAIN_ID"] == "5"
    assert "CYCLONEDDS_URI" not in os.environ


# ---------------------------------------------------------------------------------------------
# pub/sub


def test_joint_state_round_trips_between_two_participants(make_node):
    driver, learner = make_node("driver"), make_node("learner")
    publisher = driver.publisher("/joint_states")
    subscription = learner.subscription("/joint_states")
    assert publisher.wait_for_subscribers(1, WAIT)
    sent = msgs.JointState(
        header=msgs.stamped_header("base", stamp=10.25),
        name=["j1", "j2"],
        position=[0.5, -1.25],
        velocity=[0.0, 0.1],
        effort=[],
    )
    publisher.publish(sent)
    received = subscription.wait_for_message(WAIT)
    assert received == sent


def test_compressed_image_round_trips(make_node):
    camera, learner = make_node("camera"), make_node("learner")
    publisher = camera.publisher("/cameras/wrist/image_raw/compressed")
    subscription = learner.subscription("/cameras/wrist/image_raw/compressed")
    assert publisher.wait_for_subscribers(1, WAIT)
    payload = os.urandom(50_000)  # a typical 84-240 px JPEG, fragmented over several packets
    sent = msgs.CompressedImage(header=msgs.stamped_header("wrist"), format="jpeg", data=payload)
    publisher.publish(sent)
    received = subscription.wait_for_message(WAIT)
    assert received is not None
    assert received.data_bytes() == payload and received.format == "jpeg"
    assert received.header == sent.header


def test_joint_state_from_another_process(make_node):
    """A separate process (its own DDS stack) on the same loopback domain reaches us."""
    learner = make_node("learner")
    subscription = learner.subscription("/joint_states")
    script = textwrap.dedent(
        f"""
        import time
        from robotrl_real import msgs
        from robotrl_real.node import Node, loopback_config
        with Node("driver", domain_id={make_node.domain_id}, config=loopback_config()) as node:
            publisher = node.publisher("/joint_states")
            assert publisher.wait_for_subscribers(1, 10.0), "no subscriber matched"
            for i in range(3):
                publisher.publish(msgs.JointState(name=["j"], position=[float(i)]))
            time.sleep(0.3)  # let reliable delivery finish before the participant goes
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    received = []
    deadline = time.monotonic() + 15.0
    while len(received) < 3 and time.monotonic() < deadline:
        message = subscription.wait_for_message(0.5)
        if message is not None:
            received.append(message.position)
    _, stderr = process.communicate(timeout=15.0)
    assert process.returncode == 0, stderr
    assert received == [[0.0], [1.0], [2.0]]


def test_late_subscriber_gets_the_latched_value(make_node):
    driver = make_node("driver")
    mode = driver.publisher("control_mode")
    mode.publish(msgs.String(data="policy"))
    mode.publish(msgs.String(data="teleop"))  # depth 1: only the newest is kept
    pose = driver.publisher("tcp_pose")  # volatile: a late subscriber gets nothing old
    pose.publish(msgs.PoseStamped(header=msgs.stamped_header("base")))

    late = make_node("dashboard")
    mode_subscription = late.subscription("control_mode")
    pose_subscription = late.subscription("tcp_pose")
    assert mode_subscription.wait_for_message(WAIT) == msgs.String(data="teleop")
    assert pose_subscription.wait_for_publishers(1, WAIT)
    assert mode_subscription.wait_for_message(0.2) is None  # "policy" was not kept
    assert pose_subscription.wait_for_message(0.2) is None


def test_best_effort_image_topic_keeps_only_the_newest_frame(make_node):
    camera, learner = make_node("camera"), make_node("learner")
    publisher = camera.publisher("/cameras/front/image_raw/compressed")
    subscription = learner.subscription("/cameras/front/image_raw/compressed")
    assert publisher.wait_for_subscribers(1, WAIT)
    for index in range(20):
        publisher.publish(msgs.CompressedImage(format="png", data=bytes([index]) * 1000))
    time.sleep(0.3)  # all frames have arrived; the reader's depth-1 history kept the last
    frames = subscription.take()
    assert [frame.data_bytes()[0] for frame in frames] == [19]

    # the same burst on a depth-10 command topic keeps the last ten
    teleop = camera.publisher("teleop/intervention")
    commands = learner.subscription("teleop/intervention")
    assert teleop.wait_for_subscribers(1, WAIT)
    for index in range(20):
        teleop.publish(msgs.Bool(data=index % 2 == 1))
    time.sleep(0.3)
    assert len(commands.take()) == 10


def test_callback_subscription_receives_each_message(make_node):
    import threading

    driver, monitor = make_node("driver"), make_node("monitor")
    received: list[msgs.DiagnosticArray] = []
    done = threading.Event()

    def on_message(message: msgs.DiagnosticArray) -> None:
        received.append(message)
        if len(received) == 3:
            done.set()

    monitor.subscription("/diagnostics", callback=on_message)
    publisher = driver.publisher("/diagnostics")
    assert publisher.wait_for_subscribers(1, WAIT)
    for level in range(3):
        publisher.publish(msgs.DiagnosticArray(status=[msgs.DiagnosticStatus(level=level)]))
    assert done.wait(WAIT)
    assert [m.status[0].level for m in received] == [0, 1, 2]


def test_publishing_the_wrong_type_is_a_clear_error(make_node):
    node = make_node("driver")
    publisher = node.publisher("/joint_states")
    with pytest.raises(TypeError, match="carries JointState, got String"):
        publisher.publish(msgs.String(data="x"))
    with pytest.raises(KeyError, match="no topic"):
        node.subscription("/not/a/topic")


def test_closed_node_refuses_new_endpoints(make_node):
    node = make_node("driver")
    node.close()
    with pytest.raises(RuntimeError, match="closed"):
        node.publisher("/joint_states")


def test_one_domain_cannot_have_two_configs(make_node):
    make_node("first")
    with pytest.raises(ValueError, match="another config"):
        Node("second", domain_id=make_node.domain_id, config=loopback_config(max_participants=8))
