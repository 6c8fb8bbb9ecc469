"""The driver node against the sim-twin backend over real DDS on loopback.

Each test runs its own driver in a fresh random DDS domain (loopback only). Timing-based checks
use the driver's own record (monotonic times of what it sent to the arm) and the ``tcp_pose``
stamps received over DDS; bounds leave room for a loaded 2-core CI machine.
"""

from __future__ import annotations

import itertools
import math
import os
import time

import numpy as np
import pytest

from robotrl_real import msgs
from robotrl_real.arm import ArmState
from robotrl_real.driver import DriverConfig, DriverNode, joint_trajectory
from robotrl_real.env import RobotEnvConfig, twist_from_action
from robotrl_real.node import Node, free_domain_id, loopback_config
from robotrl_real.safety import SafetyConfig, rotation_angle

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

BOX_LOW = (0.3, -0.3, 0.05)
BOX_HIGH = (0.7, 0.3, 0.45)
SAFETY = SafetyConfig(workspace_min=BOX_LOW, workspace_max=BOX_HIGH)


def sim_driver(namespace: str = "arm", **config: object) -> tuple[DriverNode, int, str]:
    from robotrl_real.backends.sim import SimBackend

    domain_id, dds = free_domain_id(), loopback_config()
    driver = DriverNode(
        SimBackend(control_hz=50.0),
        DriverConfig(namespace=namespace, safety=SAFETY, **config),  # type: ignore[arg-type]
        domain_id=domain_id,
        dds_config=dds,
    )
    return driver, domain_id, dds


@pytest.fixture
def running():
    """A started sim driver and a client node in its domain."""
    driver, domain_id, dds = sim_driver()
    driver.start()
    client = Node("client", namespace="arm", domain_id=domain_id, config=dds)
    yield driver, client
    driver.close()
    client.close()


def twist(vx: float = 0.0, vy: float = 0.0, vz: float = 0.0) -> msgs.TwistStamped:
    message = msgs.TwistStamped(header=msgs.stamped_header("base"))
    message.twist.linear = msgs.Vector3(vx, vy, vz)
    return message


# ---------------------------------------------------------------------------------------------
# the twist mapping, tick by tick with a fake clock and a kinematic fake arm


class KinematicArm:
    """An arm that is exactly where it was last told to be (for exact mapping checks)."""

    name = "fake"
    joint_names = ("j1",)
    cameras: tuple[str, ...] = ()
    control_period = 0.02

    def __init__(self) -> None:
        self.position = np.array([0.5, 0.0, 0.3])
        self.orientation = np.array([1.0, 0.0, 0.0, 0.0])
        self.holds = 0

    def read_state(self) -> ArmState:
        return ArmState(
            np.zeros(1), np.zeros(1), self.position.copy(), self.orientation.copy(), 1.0, 0.08
        )

    def command_tcp(self, position, orientation) -> None:
        self.position, self.orientation = np.array(position), np.array(orientation)

    def command_gripper(self, opening: float) -> None: ...

    def hold(self) -> None:
        self.holds += 1

    def advance(self, elapsed: float) -> None: ...

    def forward_kinematics(self, joints):
        return np.array([0.5, 0.1, 0.2]), np.array([1.0, 0.0, 0.0, 0.0])

    def camera_frame(self, camera, height, width):
        raise ValueError

    def camera_intrinsics(self, camera, height, width):
        raise ValueError

    def close_cameras(self) -> None: ...

    def recover(self) -> bool:
        return True

    def has_error(self) -> bool:
        return False

    def close(self) -> None: ...


def test_twist_is_integrated_over_each_tick_and_expires_after_the_watchdog_timeout():
    arm = KinematicArm()
    driver = DriverNode(
        arm,
        DriverConfig(namespace="arm", safety=SAFETY),
        domain_id=free_domain_id(),
        dds_config=loopback_config(),
    )
    try:
        t0 = 1000.0
        driver.tick(t0)  # first tick: the layer learns the pose, nothing to do
        start = arm.position.copy()
        # set-point 0.1 m/s in x arrives at t0+0.005, replaced by 0.2 m/s in y at t0+0.015
        driver._events.put(("twist", twist(vx=0.1), t0 + 0.005))
        driver._events.put(("twist", twist(vy=0.2), t0 + 0.015))
        driver.tick(t0 + 0.02)
        # expected: 0.1 * (0.015 - 0.005) in x, 0.2 * (0.02 - 0.015) in y
        np.testing.assert_allclose(arm.position - start, [0.001, 0.001, 0.0], atol=1e-12)
        driver.tick(t0 + 0.04)  # the y set-point stays in force for the whole tick
        np.testing.assert_allclose(arm.position - start, [0.001, 0.005, 0.0], atol=1e-12)
        driver.tick(t0 + 0.12)  # in force until arrival + 0.1 s = t0 + 0.115, then expired
        record = driver.records()[-1]
        assert record.held and record.reason == "stale_command"
        assert driver.safety.summary().counts["stale_command"] == 1
    finally:
        driver.node.close()


def test_teleop_stream_acts_only_with_control_and_a_repeated_flag_keeps_its_set_point():
    """A teleop device streams twists and repeats its intervention flag every tick: twists
    without control must neither move the arm nor cancel a reset, and a repeated flag must
    not drop the set-point that arrived just before it."""
    arm = KinematicArm()
    driver = DriverNode(
        arm,
        DriverConfig(namespace="arm", safety=SAFETY),
        domain_id=free_domain_id(),
        dds_config=loopback_config(),
    )
    try:
        t0 = 1000.0
        driver.tick(t0)
        start = arm.position.copy()
        driver._events.put(("teleop_twist", twist(vx=0.1), t0 + 0.005))
        driver.tick(t0 + 0.02)
        np.testing.assert_allclose(arm.position, start)  # no control: ignored
        assert driver.counts["ignored.teleop_without_intervention"] == 1
        trajectory = msgs.JointTrajectory(
            joint_names=["j1"], points=[msgs.JointTrajectoryPoint(positions=[0.0])]
        )
        driver._events.put(("trajectory", trajectory, t0 + 0.025))
        driver._events.put(("teleop_twist", twist(vx=0.1), t0 + 0.03))
        driver.tick(t0 + 0.04)
        assert driver.mode == "reset"  # the stray teleop twist did not cancel the reset
        for k in range(1, 60):  # finish the reset at reset_speed
            driver.tick(t0 + 0.04 + 0.02 * k)
        reached = np.linalg.norm(arm.position - [0.5, 0.1, 0.2])
        assert reached < driver.config.reset_tolerance and driver.mode != "reset"
        t1, before = t0 + 2.0, arm.position.copy()
        flag = msgs.Bool(True)
        driver._events.put(("intervention", flag, t1))
        driver._events.put(("teleop_twist", twist(vy=0.1), t1 + 0.001))
        driver._events.put(("intervention", flag, t1 + 0.002))  # repeated: keeps the twist
        driver.tick(t1 + 0.02)
        assert driver.mode == "teleop"
        np.testing.assert_allclose(arm.position - before, [0.0, 0.1 * 0.019, 0.0], atol=1e-9)
    finally:
        driver.node.close()


def test_teleop_lease_holds_and_only_intervention_false_hands_back():
    """Tick by tick: a teleop that goes quiet holds the arm after the 200 ms lease; policy
    twists, resets and gripper commands are then ignored; intervention=False hands back, and a
    device that returns with intervention=True retakes control."""
    arm = KinematicArm()
    driver = DriverNode(
        arm,
        DriverConfig(namespace="arm", safety=SAFETY),
        domain_id=free_domain_id(),
        dds_config=loopback_config(),
    )
    try:
        t = 1000.0
        driver.tick(t)
        driver._events.put(("intervention", msgs.Bool(True), t + 0.001))
        driver._events.put(("teleop_twist", twist(vy=0.1), t + 0.002))
        driver.tick(t + 0.02)
        assert driver.mode == "teleop"
        last_message = t + 0.002
        tick = t + 0.02
        while tick - last_message <= 0.2:  # no more teleop messages: within the lease
            assert driver.mode != "teleop_lost"
            tick += 0.02
            driver.tick(tick)
        assert driver.mode == "teleop_lost" and driver.records()[-1].reason == "teleop_lost"
        assert tick - last_message <= 0.2 + driver.period
        held = arm.position.copy()
        trajectory = msgs.JointTrajectory(
            joint_names=["j1"], points=[msgs.JointTrajectoryPoint(positions=[0.0])]
        )
        for event in (
            ("twist", twist(vx=0.1)),
            ("trajectory", trajectory),
            ("gripper", msgs.Float64(0.0)),
            ("teleop_twist", twist(vx=0.1)),
        ):
            driver._events.put((*event, tick + 0.001))
            tick += 0.02
            driver.tick(tick)
            assert driver.mode == "teleop_lost" and driver.records()[-1].held
        np.testing.assert_array_equal(arm.position, held)
        assert driver.counts["ignored.policy_during_teleop_lost"] == 1
        assert driver.counts["ignored.trajectory_during_teleop_lost"] == 1
        assert driver.counts["ignored.gripper_while_holding"] == 1
        summary = driver.safety.summary()
        assert summary.state == "holding" and summary.last_reason == "teleop_lost"
        # hand-back: intervention=False, then the policy moves the arm again
        driver._events.put(("intervention", msgs.Bool(False), tick + 0.001))
        driver._events.put(("twist", twist(vx=0.1), tick + 0.002))
        tick += 0.02
        driver.tick(tick)
        assert driver.mode == "policy" and arm.position[0] > held[0]
        # a device that comes back takes control again, with a fresh lease
        driver._events.put(("intervention", msgs.Bool(True), tick + 0.001))
        driver._events.put(("teleop_twist", twist(vy=-0.1), tick + 0.002))
        tick += 0.02
        driver.tick(tick)
        assert driver.mode == "teleop"
        assert driver.counts["teleop_lease_expired"] == 1
    finally:
        driver.node.close()


def test_a_camera_of_another_node_is_watched_too():
    """A camera published by a separate node (``watched_cameras``): no frames yet -> hold; frames
    -> the arm may move; frames stop -> hold with the stream named."""
    from robotrl_real.camera import encode_image

    domain_id, dds = free_domain_id(), loopback_config()
    arm = KinematicArm()
    driver = DriverNode(
        arm,
        DriverConfig(namespace="arm", safety=SAFETY, watched_cameras=("side",), camera_hz=20.0),
        domain_id=domain_id,
        dds_config=dds,
    )
    from robotrl_real.topics import driver_topics

    camera = Node(
        "side_camera", topics=driver_topics("arm", ("side",)), domain_id=domain_id, config=dds
    )
    try:
        frames = camera.publisher("/cameras/side/image_raw/compressed")
        assert frames.wait_for_subscribers()
        driver.tick(time.monotonic())
        assert driver.mode == "stale_sensor" and driver._stale == ["camera/side"]
        image = encode_image(np.zeros((8, 8, 3), np.uint8), "jpeg")
        for _ in range(5):
            frames.publish(msgs.CompressedImage(format="jpeg", data=image))
            time.sleep(0.02)
            driver._events.put(("twist", twist(vx=0.1), time.monotonic()))
            driver.tick(time.monotonic())
        assert driver.mode == "policy" and not driver.records()[-1].held
        last = time.monotonic()
        threshold = driver.config.camera_stale_after  # max(0.15, 3 / 20 Hz) = 0.15 s
        time.sleep(threshold + 0.02)
        driver._events.put(("twist", twist(vx=0.1), time.monotonic()))
        driver.tick(time.monotonic())
        record = driver.records()[-1]
        assert record.held and record.reason == "stale_sensor" and time.monotonic() > last
        assert driver.mode == "stale_sensor"
        assert driver.safety.summary(time.monotonic()).stale_sensors == ["camera/side"]
    finally:
        camera.close()
        driver.node.close()


def test_a_reset_to_where_the_arm_already_is_is_seen_and_finishes(running):
    """The env waits for the driver's mode to go through ``reset``; a goal reached on the first
    tick must still show that mode."""
    driver, client = running
    modes: list[str] = []
    client.subscription("control_mode", callback=lambda message: modes.append(message.data))
    publisher = client.publisher("/joint_trajectory_controller/joint_trajectory")
    assert publisher.wait_for_subscribers()
    home = driver.backend.read_state().joint_positions
    names = list(driver.backend.joint_names)
    point = msgs.JointTrajectoryPoint(positions=[float(v) for v in home])
    for _ in range(2):  # the second goal is where the first left the arm
        modes.clear()
        publisher.publish(msgs.JointTrajectory(joint_names=names, points=[point]))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not ("reset" in modes and modes[-1] != "reset"):
            time.sleep(0.01)
        assert "reset" in modes and modes[-1] != "reset", modes


# ---------------------------------------------------------------------------------------------
# watchdog


def test_watchdog_holds_and_the_arm_stops_within_100ms(running):
    driver, client = running
    received: list[msgs.PoseStamped] = []
    poses = client.subscription("tcp_pose", callback=received.append)
    publisher = client.publisher("/servo_node/delta_twist_cmds")
    assert publisher.wait_for_subscribers() and poses.wait_for_publishers()
    for _ in range(8):  # 0.8 s at 0.15 m/s in +y
        publisher.publish(twist(vy=0.15))
        time.sleep(0.1)
    last_sent = time.monotonic()
    time.sleep(0.6)
    received = list(received)
    stamps = np.array([msgs.time_to_seconds(p.header.stamp) for p in received])
    positions = np.array(
        [[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in received]
    )
    speeds = np.linalg.norm(np.diff(positions, axis=0), axis=1) / np.diff(stamps)

    records = driver.records()
    arrival = driver.arrivals["twist"]
    assert arrival <= last_sent
    first_hold = next(r for r in records if r.time > arrival and r.held)
    hold_delay = first_hold.time - arrival
    # held within the timeout, at the first tick after it (one period late at most, plus load)
    assert hold_delay <= SAFETY.watchdog_timeout + 2 * driver.period + 0.02, hold_delay
    assert all(r.held or r.position is None or r.time <= first_hold.time for r in records[-10:])

    # speed from the DDS stream: moving before, < 5 mm/s from 100 ms after the hold onwards
    wall_hold = first_hold.time + (time.time() - time.monotonic())  # monotonic -> wall clock
    before = speeds[(stamps[1:] < wall_hold - 0.15) & (stamps[1:] > wall_hold - 0.5)]
    after = speeds[stamps[1:] > wall_hold + 0.1]
    assert before.mean() > 0.1, before
    assert after.size > 5 and after.max() < 0.005, after
    print(
        f"\nwatchdog: hold {hold_delay * 1000:.0f} ms after the last twist arrived; "
        f"max speed from 100 ms after the hold: {after.max() * 1000:.2f} mm/s"
    )


# ---------------------------------------------------------------------------------------------
# 11,000 actions through the whole stack


def test_random_and_adversarial_actions_never_leave_the_box_or_exceed_the_step():
    # cameras at 2 Hz: rendering competes with DDS reception for the 2 CI cores
    driver, domain_id, dds = sim_driver(camera_hz=2.0)
    driver.start()
    client = Node("client", namespace="arm", domain_id=domain_id, config=dds)
    try:
        _fuzz(driver, client)
    finally:
        client.close()
        driver.close()


def _fuzz(driver: DriverNode, client: Node) -> None:
    rng = np.random.default_rng(0)
    env_config = RobotEnvConfig(namespace="arm")
    twists = client.publisher("/servo_node/delta_twist_cmds")
    gripper = client.publisher("gripper/command")
    trajectory = client.publisher("/joint_trajectory_controller/joint_trajectory")
    diagnostics = client.subscription("/diagnostics")
    for publisher in (twists, gripper, trajectory):
        assert publisher.wait_for_subscribers()

    expected = {"nonfinite": 0, "wrong_shape": 0}
    sent = {"twist": 0, "gripper": 0, "trajectory": 0}
    actions = 0

    def pause(count: int) -> None:
        # Bursts of 8 messages, then wait until the driver has them all: a reliable writer keeps
        # only the last 10 unacknowledged samples (COMMAND QoS), so an unpaced flood would lose
        # messages on a loaded machine, and the test must account for every one of them.
        if count % 8 == 7:
            total = sum(sent.values())
            deadline = time.monotonic() + 5.0
            while sum(driver.counts[f"received.{k}"] for k in sent) < total:
                assert time.monotonic() < deadline, "the driver stopped receiving commands"
                time.sleep(0.0005)

    # 10,000 random actions, some far beyond [-1, 1] so the box and step limits are exercised
    for index in range(10_000):
        action = rng.uniform(-1, 1, 4) * (1.0 if index % 4 else 20.0)
        twists.publish(twist_from_action(action, env_config))
        sent["twist"] += 1
        if index % 10 == 0:  # the gripper part of every 10th action (keeps the test short)
            gripper.publish(msgs.Float64(float((action[3] + 1) / 2)))
            sent["gripper"] += 1
        actions += 1
        pause(index)
    # 1,000 adversarial actions
    # (the last half drives at two corners without malformed commands in between, whose holds
    # would keep resetting the target to the lagging arm and the walls would never be reached)
    for index in range(1_000):
        kind = (0, 1, 4, 5, 6, 7)[index % 6] if index < 500 else 2
        if kind == 0:  # NaN in one component
            message = twist(0.1, 0.1, 0.1)
            setattr(message.twist.linear, "xyz"[index % 3], math.nan)
            twists.publish(message)
            expected["nonfinite"] += 1
            sent["twist"] += 1
        elif kind == 1:  # ±Inf, angular too
            message = twist()
            message.twist.angular.z = math.inf if index % 2 else -math.inf
            twists.publish(message)
            expected["nonfinite"] += 1
            sent["twist"] += 1
        elif kind == 2:  # huge finite velocities at a corner, then at the opposite one
            direction = np.array((1.0, 1.0, 1.0) if index < 750 else (-1.0, -1.0, -1.0))
            twists.publish(twist(*(direction * 1e6)))
            sent["twist"] += 1
            # one set-point per control tick, so the target walks to the wall however fast the
            # messages arrive (a burst received within one tick moves the arm for one tick only)
            time.sleep(driver.period)
        elif kind == 4:  # gripper NaN / Inf
            gripper.publish(msgs.Float64(math.nan if index % 2 else -math.inf))
            expected["nonfinite"] += 1
            sent["gripper"] += 1
        elif kind == 5:  # wrong-length joint trajectory (6 or 8 joints for a 7-joint arm)
            n = 6 if index % 2 else 8
            trajectory.publish(joint_trajectory([f"joint{i}" for i in range(1, n + 1)], [0.0] * n))
            expected["wrong_shape"] += 1
            sent["trajectory"] += 1
        elif kind == 6:  # trajectory with NaN positions
            positions = [0.0, 0.0, 0.0, -2.2, 0.0, math.nan, 0.8]
            trajectory.publish(joint_trajectory([f"joint{i}" for i in range(1, 8)], positions))
            expected["nonfinite"] += 1
            sent["trajectory"] += 1
        else:  # huge rotation velocity
            message = twist()
            message.twist.angular = msgs.Vector3(1e3, -1e3, 1e3)
            twists.publish(message)
            sent["twist"] += 1
        actions += 1
        pause(index)
    assert actions == 11_000

    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        counts = driver.counts
        if all(counts[f"received.{k}"] == v for k, v in sent.items()):
            break
        time.sleep(0.05)
    assert {k: driver.counts[f"received.{k}"] for k in sent} == sent
    time.sleep(0.3)

    # what reached the arm: every target in the box, every commanded step within the limit
    records = [r for r in driver.records() if r.position is not None]
    positions = np.array([r.position for r in records])
    low, high = np.array(BOX_LOW), np.array(BOX_HIGH)
    outside = np.maximum(low - positions, 0) + np.maximum(positions - high, 0)
    assert int((outside.max(axis=1) > 1e-3).sum()) == 0
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    commanded = np.array([not r.held for r in records[1:]])
    assert commanded.sum() > 100
    assert int((steps[commanded] > SAFETY.max_translation_step + 1e-9).sum()) == 0
    rotations = [
        rotation_angle(a.orientation, b.orientation)
        for a, b in itertools.pairwise(records)
        if not b.held
    ]
    assert max(rotations) <= SAFETY.max_rotation_step + 1e-9
    # the box and step limits were actually hit (the test can fail)
    assert (
        np.isclose(positions, high, atol=1e-9).any() or np.isclose(positions, low, atol=1e-9).any()
    )
    assert steps[commanded].max() > 0.9 * SAFETY.max_translation_step

    # every malformed command rejected and counted, as /diagnostics reports it
    driver.publish_diagnostics(time.monotonic())
    message = diagnostics.wait_for_message(3.0)
    while message is not None and len(message.status) < 1:
        message = diagnostics.wait_for_message(1.0)
    latest = diagnostics.take()
    message = latest[-1] if latest else message
    assert message is not None
    values = {kv.key: kv.value for kv in message.status[0].values}
    assert int(values["count.nonfinite"]) == expected["nonfinite"]
    assert int(values["count.wrong_shape"]) == expected["wrong_shape"]
    print(
        f"\nfuzz: {actions} actions ({sent}), {len(records)} arm targets, "
        f"rejected nonfinite={values['count.nonfinite']} "
        f"wrong_shape={values['count.wrong_shape']}, "
        f"clipped={driver.safety.summary().clipped}"
    )


# ---------------------------------------------------------------------------------------------
# e-stop


def test_estop_holds_within_one_period_and_only_enable_clears_it():
    from robotrl_real.env import RobotEnv

    driver, domain_id, dds = sim_driver()
    driver.start()
    client = Node("client", namespace="arm", domain_id=domain_id, config=dds)
    env = RobotEnv(
        RobotEnvConfig(namespace="arm", reset_timeout=5.0), domain_id=domain_id, dds_config=dds
    )
    try:
        twists = client.publisher("/servo_node/delta_twist_cmds")
        estop = client.publisher("estop")
        enable = client.publisher("enable")
        for publisher in (twists, estop, enable):
            assert publisher.wait_for_subscribers()
        for _ in range(10):
            twists.publish(twist(vx=0.1))
            time.sleep(0.02)
        estop.publish(msgs.Bool(True))
        for _ in range(10):
            twists.publish(twist(vx=0.1))
            time.sleep(0.02)
        arrival = driver.arrivals["estop"]
        records = driver.records()
        after = [r for r in records if r.time >= arrival]
        assert after and after[0].held and after[0].reason == "estop"  # the very next tick
        assert all(r.held for r in after)
        assert after[0].time - arrival <= driver.period + 0.03
        held_at = driver.backend.read_state().tcp_position

        # reset and new commands do not clear it
        _obs, info = env.reset(seed=1)
        assert info["estop"] is True
        for _ in range(5):
            env.step(np.array([1.0, 1.0, 0.0, 0.0]))
        assert driver.safety.latched == "estop"
        moved = np.linalg.norm(driver.backend.read_state().tcp_position - held_at)
        assert moved < 0.003, moved
        assert all(r.held for r in driver.records() if r.time >= arrival)
        assert driver.mode == "estop"

        enable.publish(msgs.Bool(True))
        time.sleep(0.1)
        assert driver.safety.latched is None
        for _ in range(5):
            twists.publish(twist(vx=0.1))
            time.sleep(0.05)
        assert np.linalg.norm(driver.backend.read_state().tcp_position - held_at) > 0.005
        print(f"\ne-stop: held {1000 * (after[0].time - arrival):.1f} ms after arrival")
    finally:
        env.close()
        client.close()
        driver.close()


# ---------------------------------------------------------------------------------------------
# reset and teleop


def test_joint_trajectory_reset_reaches_the_forward_kinematics_pose(running):
    from robotrl_sim.cell.arm import CellSim

    driver, client = running
    trajectory = client.publisher("/joint_trajectory_controller/joint_trajectory")
    assert trajectory.wait_for_subscribers()
    joints = np.array([0.1, 0.1, -0.1, -2.0, 0.05, 2.1, 0.7])
    trajectory.publish(joint_trajectory([f"joint{i}" for i in range(1, 8)], joints))
    # The message takes a few ticks to arrive and switch the mode; longer on a loaded machine.
    deadline = time.monotonic() + 2.0
    while driver.mode != "reset" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert driver.mode == "reset"
    deadline = time.monotonic() + 8.0
    while driver.mode == "reset" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    # independent forward kinematics: CellSim's own, through its joint-command path
    reference = CellSim()
    reference.command_joints(joints)
    expected, _ = reference.tcp_target
    reached = driver.backend.read_state().tcp_position
    assert np.linalg.norm(reached - expected) < 0.005, (reached, expected)
    records = [r for r in driver.records() if r.mode == "reset" and not r.held]
    steps = np.linalg.norm(np.diff([r.position for r in records], axis=0), axis=1)
    assert steps.max() <= driver.config.reset_speed * driver.period + 1e-9


def test_teleop_takes_over_within_one_tick(running):
    driver, client = running
    twists = client.publisher("/servo_node/delta_twist_cmds")
    intervention = client.publisher("teleop/intervention")
    teleop = client.publisher("teleop/twist")
    for publisher in (twists, intervention, teleop):
        assert publisher.wait_for_subscribers()
    for _ in range(5):
        twists.publish(twist(vx=0.1))
        time.sleep(0.02)
    intervention.publish(msgs.Bool(True))
    for _ in range(10):
        teleop.publish(twist(vy=-0.1))
        twists.publish(twist(vx=0.1))  # ignored while the teleop has control
        time.sleep(0.02)
    arrival = driver.arrivals["intervention"]
    after = [r for r in driver.records() if r.time >= arrival]
    assert after[0].mode == "teleop"
    moving = [r for r in after if not r.held]
    dy = moving[-1].position[1] - moving[0].position[1]
    dx = moving[-1].position[0] - moving[0].position[0]
    assert dy < -0.01 and abs(dx) < 1e-9, (dx, dy)
    assert driver.counts["ignored.policy_during_teleop"] >= 9


def test_control_mode_is_latched_and_bad_config_is_rejected(running):
    _driver, client = running
    late = Node("late", namespace="arm", domain_id=client.domain_id, config=loopback_config())
    try:
        mode = late.subscription("control_mode").wait_for_message(3.0)
        assert mode is not None and mode.data in ("hold", "policy")
    finally:
        late.close()
    with pytest.raises(ValueError, match="camera_size"):
        DriverConfig(camera_size=4)
    with pytest.raises(ValueError, match="image_format"):
        DriverConfig(image_format="bmp")


# ---------------------------------------------------------------------------------------------
# the command


def test_cli_runs_the_sim_driver_until_sigint_and_exits_cleanly():
    import signal
    import subprocess
    import sys

    from robotrl_real.node import loopback_environment

    with loopback_environment() as domain_id:
        process = subprocess.Popen(
            [sys.executable, "-m", "robotrl_real.cli", "--backend", "sim", "--namespace", "cli",
             "--domain-id", str(domain_id), "--loopback", "--control-hz", "50"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        node = Node("probe", namespace="cli", domain_id=domain_id, config=loopback_config())
        try:
            pose = node.subscription("tcp_pose").wait_for_message(20.0)
            assert pose is not None and 0.3 < pose.pose.position.x < 0.7
        finally:
            node.close()
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "driver stopped" in output
