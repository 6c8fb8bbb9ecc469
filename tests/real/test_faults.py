"""Faults against the sim-twin driver over real DDS on loopback.

A command storm of huge rotations, a teleop process killed mid-takeover (SIGKILL, a real separate
process), a camera stopped, and an arm started outside the workspace box. The only stand-in is
the sim twin for the arm; every message goes over Cyclone DDS. Times are the driver's own record
(monotonic, the same clock as this process) and the stamps of messages received here. Where a
bound is a duration it allows ``SLACK`` (50 ms) for a tick that runs late on a loaded 2-core
machine; the tick-exact checks (which tick held, no tick missing) allow nothing. Each test
prints what it measured.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from robotrl_real import msgs
from robotrl_real.driver import DriverConfig, DriverNode
from robotrl_real.env import RobotEnv, RobotEnvConfig
from robotrl_real.node import Node, free_domain_id, loopback_config
from robotrl_real.safety import SafetyConfig

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

SAFETY = SafetyConfig(workspace_min=(0.3, -0.3, 0.05), workspace_max=(0.7, 0.3, 0.45))
SLACK = 0.05  # s: how late a driver tick or an env step may run on a loaded machine


def start_driver(safety: SafetyConfig = SAFETY, **config: object) -> tuple[DriverNode, int, str]:
    from robotrl_real.backends.sim import SimBackend

    domain_id, dds = free_domain_id(), loopback_config()
    driver = DriverNode(
        SimBackend(control_hz=50.0),
        DriverConfig(namespace="arm", safety=safety, **config),  # type: ignore[arg-type]
        domain_id=domain_id,
        dds_config=dds,
    )
    return driver.start(), domain_id, dds


def twist(linear=(0.0, 0.0, 0.0), angular=(0.0, 0.0, 0.0)) -> msgs.TwistStamped:
    message = msgs.TwistStamped(header=msgs.stamped_header("base"))
    message.twist.linear = msgs.Vector3(*map(float, linear))
    message.twist.angular = msgs.Vector3(*map(float, angular))
    return message


def box_distance(position: np.ndarray) -> float:
    low, high = np.asarray(SAFETY.workspace_min), np.asarray(SAFETY.workspace_max)
    return float(np.linalg.norm(np.maximum(low - position, 0) + np.maximum(position - high, 0)))


def safety_values(message: msgs.DiagnosticArray) -> tuple[dict[str, str], str]:
    """The safety status's key/values and the driver status's message."""
    by_name = {status.name: status for status in message.status}
    values = {kv.key: kv.value for kv in by_name["robotrl: safety"].values}
    return values, by_name["robotrl: driver"].message


# ---------------------------------------------------------------------------------------------


def test_a_burst_of_huge_rotations_is_rejected_without_a_tick_error_or_a_state_gap():
    """0.2 s of 1e300 rad/s twists (the norm of which overflows) every 5 ms, between good ones."""
    driver, domain_id, dds = start_driver(camera_hz=5.0)
    client = Node("client", namespace="arm", domain_id=domain_id, config=dds)
    try:
        publisher = client.publisher("/servo_node/delta_twist_cmds")
        received: list[msgs.PoseStamped] = []
        joint_messages: list[msgs.JointState] = []
        poses = client.subscription("tcp_pose", callback=received.append)
        joints = client.subscription("/joint_states", callback=joint_messages.append)
        assert publisher.wait_for_subscribers() and poses.wait_for_publishers()
        assert joints.wait_for_publishers()
        for _ in range(10):
            publisher.publish(twist(linear=(0.05, 0, 0)))
            time.sleep(0.02)
        received.clear()
        joint_messages.clear()
        burst_start = time.monotonic()
        sent = 0
        while time.monotonic() - burst_start < 0.2:
            publisher.publish(twist(angular=(1e300, -1e300, 1e300)))
            sent += 1
            time.sleep(0.005)
        burst_end = time.monotonic()
        for _ in range(10):
            publisher.publish(twist(linear=(0.05, 0, 0)))
            time.sleep(0.02)
        received, joint_messages = list(received), list(joint_messages)
        deadline = time.monotonic() + 2.0
        while driver.safety.summary().counts["out_of_range"] < sent:
            assert time.monotonic() < deadline, driver.safety.summary().counts
            time.sleep(0.01)
        assert driver.counts["tick_errors"] == 0
        assert driver.safety.summary().counts["out_of_range"] == sent
        period = driver.period
        for name, messages in (("tcp_pose", received), ("joint_states", joint_messages)):
            stamps = np.array([msgs.time_to_seconds(m.header.stamp) for m in messages])
            gaps = np.diff(stamps)
            span = stamps[-1] - stamps[0]
            assert span > (burst_end - burst_start) + 0.15
            # every tick published: no tick missing by count, no gap beyond a late tick
            assert len(stamps) >= round(span / period), (name, len(stamps), span)
            assert gaps.max() <= period + SLACK, (name, gaps.max())
            print(f"\n{name}: largest gap {gaps.max() * 1000:.1f} ms over {len(stamps)} messages")
        # the burst held the arm: no target was sent from its arrival to the next good twist
        records = [r for r in driver.records() if burst_start + 0.03 <= r.time <= burst_end]
        assert records and all(r.held for r in records)
        assert {r.reason for r in records} <= {"out_of_range", "watchdog", "stale_command"}
        print(f"burst: {sent} twists at 1e300 rad/s, all counted out_of_range, 0 tick errors")
    finally:
        client.close()
        driver.close()


# ---------------------------------------------------------------------------------------------

TELEOP_PROCESS = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from robotrl_real.node import Node
    from robotrl_real.teleop.base import TeleopCommand
    from robotrl_real.teleop.publisher import TeleopPublisher

    class Constant:
        def poll(self):
            return TeleopCommand(twist=np.array([0.0, -0.1, 0.0, 0.0, 0.0, 0.0]), intervene=True)

        def close(self):
            return None  # a constant device holds nothing to release

    node = Node("teleop_device", namespace="arm", domain_id=int(sys.argv[1]), config=sys.argv[2])
    TeleopPublisher(node, Constant(), rate_hz=50.0).start()
    print("publishing", flush=True)
    time.sleep(120)
    """
)


def _ground_truth(records, start: float, end: float) -> tuple[str, float]:
    """The source that moved the arm for most ticks of ``[start, end]`` and its share."""
    sources = [
        r.mode if (not r.held and r.mode in ("policy", "teleop")) else "hold"
        for r in records
        if start <= r.time <= end
    ]
    best = max(("hold", "teleop", "policy"), key=sources.count)
    return best, sources.count(best) / max(1, len(sources))


def test_a_teleop_killed_mid_takeover_holds_within_the_lease_and_no_step_is_mislabelled():
    driver, domain_id, dds = start_driver()
    env = RobotEnv(
        RobotEnvConfig(namespace="arm", reset_timeout=8.0), domain_id=domain_id, dds_config=dds
    )
    client = Node("operator", namespace="arm", domain_id=domain_id, config=dds)
    messages: list[msgs.DiagnosticArray] = []
    client.subscription("/diagnostics", callback=messages.append)
    intervention = client.publisher("teleop/intervention")
    teleop = subprocess.Popen(
        [sys.executable, "-c", TELEOP_PROCESS, str(domain_id), dds],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        env.reset(seed=0)
        policy_action = np.array([0.5, 0.0, 0.0, 1.0])
        steps = [env.step(policy_action)[4] for _ in range(2)]
        assert teleop.stdout is not None and teleop.stdout.readline().strip() == "publishing"
        deadline = time.monotonic() + 5.0
        while driver.mode != "teleop":
            assert time.monotonic() < deadline, "the teleop process never took over"
            steps.append(env.step(policy_action)[4])
        steps += [env.step(policy_action)[4] for _ in range(4)]
        teleop.send_signal(signal.SIGKILL)
        teleop.wait(5)
        killed = time.monotonic()
        steps += [env.step(policy_action)[4] for _ in range(6)]
        held_at = driver.backend.read_state().tcp_position

        records = driver.records()
        last_teleop = max(driver.arrivals["teleop_twist"], driver.arrivals["intervention"])
        assert last_teleop <= killed
        index = next(
            i for i, r in enumerate(records) if r.time > last_teleop and r.reason == "teleop_lost"
        )
        first_hold, tick_before = records[index], records[index - 1]
        delay = first_hold.time - last_teleop
        lease = driver.config.teleop_lease
        # at the first tick after the lease ran out, which is at most a tick (+ load) later
        assert tick_before.time - last_teleop <= lease < delay, (tick_before.time, delay)
        assert delay <= lease + driver.period + SLACK, delay
        # nothing but holds from then on, whatever the policy sent
        after = [r for r in records if r.time >= first_hold.time]
        assert all(r.held and r.reason == "teleop_lost" for r in after)
        assert driver.counts["ignored.policy_during_teleop_lost"] >= 3
        assert driver.mode == "teleop_lost"
        # every step labelled by what the driver did; the held ones are zero motions
        teleop_steps = [i for i in steps if i["source"] == "teleop"]
        assert len(teleop_steps) >= 4
        truths = [_ground_truth(records, *info["step_window"]) for info in steps]
        for info, (truth, share) in zip(steps, truths, strict=True):
            if share >= 0.6:
                assert info["source"] == truth, (info["source"], truth, share)
            if info["step_window"][0] >= first_hold.time:
                assert info["source"] == "hold" and not info["intervention"]
                np.testing.assert_array_equal(info["executed_action"][:3], 0.0)
            if info["source"] == "teleop":
                assert info["step_window"][0] < first_hold.time
                # the mean command over the step's ticks: the teleop's, or a blend with the
                # policy's (takeover) or a hold's (the lease ran out inside the step)
                x, y, z = info["executed_action"][:3]
                assert 0.0 <= x <= 0.5 + 1e-6 and -0.5 - 1e-6 <= y <= 0.0 and z == 0.0, (x, y, z)
        steady = [
            i
            for i in teleop_steps
            if np.allclose(i["executed_action"][:3], [0, -0.5, 0], atol=1e-6)
        ]
        assert len(steady) >= len(teleop_steps) - 2  # all but the takeover and the last one
        assert sum(info["source"] == "hold" for info in steps[-4:]) == 4
        # /diagnostics said so
        said = [safety_values(m) for m in list(messages)]
        assert any(text.startswith("teleop_lost") for _, text in said), said[-3:]

        # a new episode does not hand back: the reset is ignored and says why, at once
        asked = time.monotonic()
        _, reset_info = env.reset(seed=1)
        assert reset_info["holding"] == "teleop_lost" and time.monotonic() - asked < 1.0
        deadline = time.monotonic() + 1.0
        while not driver.counts["ignored.trajectory_during_teleop_lost"]:
            assert time.monotonic() < deadline, "the reset trajectory never arrived"
            time.sleep(0.01)
        # hand-back only by intervention=False: then the policy moves the arm again
        assert np.linalg.norm(driver.backend.read_state().tcp_position - held_at) < 1e-3
        intervention.publish(msgs.Bool(False))
        time.sleep(0.1)
        after_hand_back = [env.step(policy_action)[4] for _ in range(3)]
        assert after_hand_back[-1]["source"] == "policy"
        assert driver.backend.read_state().tcp_position[0] - held_at[0] > 0.01
        print(
            f"\nteleop killed: hold {delay * 1000:.0f} ms after its last message "
            f"(lease {lease * 1000:.0f} ms, tick {driver.period * 1000:.0f} ms); "
            f"{len(steps)} steps, labels {''.join(i['source'][0] for i in steps)}, "
            f"majority share of the driver's ticks {[round(share, 2) for _, share in truths]}"
        )
    finally:
        if teleop.poll() is None:
            teleop.kill()
            teleop.wait(5)
        driver.close()
        client.close()
        env.close()


# ---------------------------------------------------------------------------------------------


def test_a_stopped_camera_holds_within_its_threshold_and_the_env_truncates_within_a_period():
    driver, domain_id, dds = start_driver()
    env = RobotEnv(
        RobotEnvConfig(namespace="arm", reset_timeout=8.0), domain_id=domain_id, dds_config=dds
    )
    client = Node("observer", namespace="arm", domain_id=domain_id, config=dds)
    messages: list[msgs.DiagnosticArray] = []
    client.subscription("/diagnostics", callback=messages.append)
    try:
        env.reset(seed=0)
        for _ in range(3):
            assert not env.step(np.array([0.3, 0.0, 0.0, 1.0]))[3]
        driver.kill_camera("front")
        killed = time.monotonic()
        truncated_info = None
        for _ in range(10):
            _, _, _, truncated, info = env.step(np.array([0.3, 0.0, 0.0, 1.0]))
            if truncated:
                truncated_info = info
                break
        assert truncated_info is not None
        last_frame = driver._camera_arrivals["camera/front"]
        assert last_frame <= killed
        records = driver.records()
        index = next(
            i for i, r in enumerate(records) if r.time > last_frame and r.reason == "stale_sensor"
        )
        first_hold, tick_before = records[index], records[index - 1]
        threshold = driver.config.camera_stale_after
        delay = first_hold.time - last_frame
        # at the first tick after the threshold ran out, which is at most a tick (+ load) later
        assert tick_before.time - last_frame <= threshold < delay, (tick_before.time, delay)
        assert delay <= threshold + driver.period + SLACK, delay
        assert all(r.held for r in records if r.time >= first_hold.time)
        # the env truncates at the end of the step during which the driver began to hold
        truncated_after = truncated_info["step_window"][1] - first_hold.time
        assert 0 <= truncated_after <= env.config.period + SLACK, truncated_after
        assert truncated_info["stale"] == ["camera/front"]
        # /diagnostics names the stream
        named = [
            (values, text)
            for values, text in map(safety_values, list(messages))
            if values["stale_sensors"] == "camera/front"
        ]
        assert named and named[0][1] == "stale_sensor: camera/front"
        assert driver.mode == "stale_sensor"
        print(
            f"\ncamera stopped: hold {delay * 1000:.0f} ms after its last frame (threshold "
            f"{threshold * 1000:.0f} ms); env truncated {truncated_after * 1000:.0f} ms later"
        )
    finally:
        driver.close()
        client.close()
        env.close()


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [(0.0, 0.0, 0.0), (0.0, 0.0, 0.2)], ids=["still", "away"])
def test_an_arm_started_outside_the_box_comes_back_at_the_step_limit(command):
    from robotrl_real.backends.sim import SimBackend

    home = SimBackend(control_hz=50.0).read_state().tcp_position
    low = np.array(SAFETY.workspace_min)
    high = np.array([*SAFETY.workspace_max[:2], home[2] - 0.05])  # the arm is 5 cm above it
    safety = SafetyConfig(workspace_min=tuple(low), workspace_max=tuple(high))
    driver, domain_id, dds = start_driver(safety, camera_hz=5.0)
    client = Node("client", namespace="arm", domain_id=domain_id, config=dds)
    try:
        publisher = client.publisher("/servo_node/delta_twist_cmds")
        assert publisher.wait_for_subscribers()
        started = time.monotonic()
        for _ in range(25):
            publisher.publish(twist(linear=command))
            time.sleep(0.02)
        records = [r for r in driver.records() if r.position is not None]  # holds before too
        assert records[0].held and records[0].time < started

        def distance(position):
            return float(
                np.linalg.norm(np.maximum(low - position, 0) + np.maximum(position - high, 0))
            )

        limit = safety.max_translation_step
        moved = 0
        for before, after in itertools.pairwise(records):
            if after.held:
                continue
            moved += 1
            assert np.linalg.norm(after.position - before.position) <= limit + 1e-9
            expected = max(0.0, distance(before.position) - limit)
            if distance(before.position) > 0:
                assert abs(distance(after.position) - expected) <= 1e-9
            else:
                assert distance(after.position) <= 1e-9
        assert moved >= 10
        final = driver.backend.read_state().tcp_position
        assert distance(final) < 2e-3, final
        inside = next(r.time for r in records if not r.held and distance(r.position) == 0)
        print(
            f"\nstarted {distance(records[0].position) * 100:.1f} cm outside the box: target "
            f"inside after {(inside - started) * 1000:.0f} ms at {limit * 1000:.0f} mm/tick; "
            f"the arm is {distance(final) * 1000:.2f} mm from the box at the end"
        )
    finally:
        client.close()
        driver.close()
