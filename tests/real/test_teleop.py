"""Teleop devices and the teleop publisher.

The physical devices are replaced by mocks (a fake key source, synthetic evdev events, hand-made
HID byte strings): no keyboard, gamepad or SpaceMouse is attached in CI. The mapping code under
test is the real one, and the DDS test uses real Cyclone DDS on loopback.
"""

from __future__ import annotations

import struct
import time

import evdev
import numpy as np
import pytest

from robotrl_real.node import Node, free_domain_id, loopback_config
from robotrl_real.teleop import (
    ABS_RZ,
    ABS_X,
    ABS_Y,
    ABS_Z,
    BTN_EAST,
    BTN_SOUTH,
    BTN_TL,
    BTN_TR,
    EV_ABS,
    EV_KEY,
    GamepadConfig,
    GamepadTeleop,
    InputEvent,
    InterventionSwitch,
    KeyboardConfig,
    KeyboardTeleop,
    KeyEvent,
    ScriptedTeleop,
    SpaceMouseConfig,
    SpaceMouseState,
    SpaceMouseTeleop,
    TeleopCommand,
    TeleopPublisher,
    apply_deadzone,
    parse_spacemouse_report,
    quaternion_multiply,
    rotation_vector,
)


class FakeSource:
    """Mock of a physical input device: hands out queued events, one batch per read."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.closed = False

    def read(self):
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        self.closed = True


def test_our_input_codes_are_the_kernels():
    e = evdev.ecodes
    assert (EV_KEY, EV_ABS) == (e.EV_KEY, e.EV_ABS)
    assert (ABS_X, ABS_Y, ABS_Z, ABS_RZ) == (e.ABS_X, e.ABS_Y, e.ABS_Z, e.ABS_RZ)
    assert (BTN_SOUTH, BTN_EAST, BTN_TL, BTN_TR) == (e.BTN_SOUTH, e.BTN_EAST, e.BTN_TL, e.BTN_TR)


def test_deadzone_is_continuous_and_reaches_full_scale():
    assert apply_deadzone(0.05, 0.1) == 0.0
    assert apply_deadzone(0.1, 0.1) == 0.0
    assert apply_deadzone(0.55, 0.1) == pytest.approx(0.5)  # (0.55 - 0.1) / 0.9
    assert apply_deadzone(-1.0, 0.1) == -1.0
    with pytest.raises(ValueError, match="deadzone"):
        apply_deadzone(0.5, 1.0)


def test_intervention_switch_toggle_and_hold():
    toggle = InterventionSwitch("toggle")
    toggle.press()
    toggle.press()  # still held (autorepeat): no second toggle
    assert toggle.active
    toggle.release()
    assert toggle.active
    toggle.press()
    toggle.release()
    assert not toggle.active
    hold = InterventionSwitch("hold")
    hold.press()
    assert hold.active
    hold.release()
    assert not hold.active
    with pytest.raises(ValueError, match="toggle"):
        InterventionSwitch("latch")


def test_keyboard_maps_held_keys_to_twist():
    source = FakeSource()
    keyboard = KeyboardTeleop(source, KeyboardConfig(linear_speed=0.1, angular_speed=0.5))
    source.batches = [[KeyEvent("w", True), KeyEvent("a", True), KeyEvent("j", True)]]
    command = keyboard.poll()
    np.testing.assert_allclose(command.twist, [0.1, 0.1, 0, 0, 0, 0.5])
    assert not command.intervene and command.gripper == 0.0
    # still held with no new events: same twist; opposite key cancels x
    source.batches = [[KeyEvent("s", True)]]
    np.testing.assert_allclose(keyboard.poll().twist, [0, 0.1, 0, 0, 0, 0.5])
    # a quick tap of space between polls toggles; c closes the gripper
    source.batches = [
        [KeyEvent("w", False), KeyEvent("space", True), KeyEvent("space", False)],
    ]
    source.batches[0] += [KeyEvent("c", True), KeyEvent("c", False)]
    command = keyboard.poll()
    assert command.intervene and command.gripper == 1.0
    np.testing.assert_allclose(command.twist, [-0.1, 0.1, 0, 0, 0, 0.5])
    source.batches = [[KeyEvent(k, False) for k in ("s", "a", "j")] + [KeyEvent("v", True)]]
    command = keyboard.poll()
    np.testing.assert_array_equal(command.twist, np.zeros(6))
    assert command.intervene and command.gripper == 0.0
    keyboard.close()
    assert source.closed


def test_keyboard_config_rejects_clashing_keys():
    with pytest.raises(ValueError, match="differ"):
        KeyboardConfig(close_key="w")


def test_gamepad_maps_synthetic_evdev_events():
    source = FakeSource()
    pad = GamepadTeleop(source, GamepadConfig(linear_speed=0.2, angular_speed=1.0, deadzone=0.1))
    # left stick fully up (ABS_Y min) and a bit right inside the deadzone; right trigger half
    source.batches = [
        [
            InputEvent(EV_ABS, ABS_Y, -32768),
            InputEvent(EV_ABS, ABS_X, 32767 // 20),
            InputEvent(EV_ABS, ABS_RZ, 512),
            InputEvent(EV_KEY, BTN_TR, 1),
        ]
    ]
    command = pad.poll()
    trigger = (512 / 1023 - 0.1) / 0.9
    np.testing.assert_allclose(command.twist, [0.2, 0.0, 0.2 * trigger, 1.0, 0.0, 0.0], atol=1e-9)
    assert not command.intervene
    source.batches = [
        [
            InputEvent(EV_KEY, BTN_SOUTH, 1),
            InputEvent(EV_KEY, BTN_SOUTH, 0),
            InputEvent(EV_KEY, BTN_EAST, 1),
            InputEvent(EV_KEY, BTN_TR, 0),
            InputEvent(EV_ABS, ABS_Y, 0),
            InputEvent(EV_ABS, ABS_RZ, 0),
            InputEvent(EV_ABS, ABS_Z, 1023),
        ]
    ]
    command = pad.poll()
    assert command.intervene and command.gripper == 1.0
    # ABS_Y = 0 of -32768..32767 is just off centre, inside the deadzone
    np.testing.assert_allclose(command.twist, [0, 0, -0.2, 0, 0, 0], atol=1e-9)


def _report(report_id: int, *values: int) -> bytes:
    return bytes([report_id]) + struct.pack(f"<{len(values)}h", *values)


def test_spacemouse_report_parsing():
    state = SpaceMouseState()
    # translation x=+300, y=-2, z=-350 written out by hand as little-endian int16
    state = parse_spacemouse_report(b"\x01\x2c\x01\xfe\xff\xa2\xfe", state)
    assert state.axes == (300, -2, -350, 0, 0, 0)
    state = parse_spacemouse_report(_report(2, -1, 256, 7), state)
    assert state.axes == (300, -2, -350, -1, 256, 7)
    state = parse_spacemouse_report(b"\x03\x02\x00", state)
    assert state.buttons == 2 and state.axes[0] == 300
    # newer models: all six axes in report 1
    state = parse_spacemouse_report(_report(1, 1, 2, 3, 4, 5, 6), state)
    assert state.axes == (1, 2, 3, 4, 5, 6)
    assert parse_spacemouse_report(b"\x17\x64", state) == state  # battery report: ignored
    with pytest.raises(ValueError, match="6 payload bytes"):
        parse_spacemouse_report(b"\x01\x00\x00", state)
    with pytest.raises(ValueError, match="empty"):
        parse_spacemouse_report(b"", state)


class FakeHid:
    """Mock of a hidapi device: returns queued reports, then [] (non-blocking, nothing new)."""

    def __init__(self, reports: list[bytes]) -> None:
        self.reports = list(reports)

    def read(self, max_length: int) -> list[int]:
        return list(self.reports.pop(0)) if self.reports else []

    def close(self) -> None:
        pass


def test_spacemouse_scaling_deadzone_signs_and_buttons():
    config = SpaceMouseConfig(full_scale=350, deadzone=0.1, linear_speed=0.1, angular_speed=1.0)
    reports = [_report(1, 175, 350, 20), _report(2, -700, 0, 35), b"\x03\x01\x00", b"\x03\x00\x00"]
    mouse = SpaceMouseTeleop(FakeHid(reports), config)
    command = mouse.poll()
    half = (0.5 - 0.1) / 0.9
    # signs (1, -1, -1, 1, -1, -1); 20/350 and 35/350 are inside the deadzone; -700 clips to -1
    np.testing.assert_allclose(command.twist, [0.1 * half, -0.1, 0.0, -1.0, 0.0, 0.0])
    assert command.intervene  # left button pressed and released: toggled on
    mouse.device = FakeHid([b"\x03\x02\x00", b"\x03\x00\x00", _report(1, 0, 0, 0)])
    command = mouse.poll()
    assert command.gripper == 1.0 and command.intervene
    np.testing.assert_allclose(command.twist[:3], 0.0)


def _integrate(position, orientation, twist, dt):
    """Toy kinematics: the TCP follows the commanded base-frame twist exactly."""
    position = position + twist[:3] * dt
    rotvec = twist[3:] * dt
    angle = np.linalg.norm(rotvec)
    axis = rotvec / angle if angle > 0 else np.zeros(3)
    delta = np.concatenate([axis * np.sin(angle / 2), [np.cos(angle / 2)]])
    orientation = quaternion_multiply(delta, orientation)
    return position, orientation / np.linalg.norm(orientation)


def test_rotation_vector_against_axis_angle():
    angle = 2.5
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    q = np.concatenate([axis * np.sin(angle / 2), [np.cos(angle / 2)]])
    np.testing.assert_allclose(rotation_vector(q), axis * angle)
    np.testing.assert_allclose(rotation_vector(-q), axis * angle)  # same rotation
    # 1.5 pi about z is -0.5 pi the short way
    q = np.array([0, 0, np.sin(0.75 * np.pi), np.cos(0.75 * np.pi)])
    np.testing.assert_allclose(rotation_vector(q), [0, 0, -0.5 * np.pi], atol=1e-12)


def test_scripted_teleop_converges_in_a_toy_kinematic_loop():
    position = np.array([0.4, -0.1, 0.3])
    orientation = np.array([0.0, 0.0, 0.0, 1.0])
    target_q = np.array([np.sin(0.4), 0.0, 0.0, np.cos(0.4)])  # 0.8 rad about x
    teleop = ScriptedTeleop(lambda: (position, orientation), [0.5, 0.1, 0.2], target_q, gripper=1.0)
    dt = 0.02
    steps = 0
    for _ in range(600):
        command = teleop.poll()
        assert np.linalg.norm(command.twist[:3]) <= teleop.config.max_linear_speed + 1e-12
        assert np.linalg.norm(command.twist[3:]) <= teleop.config.max_angular_speed + 1e-12
        if teleop.reached:
            break
        position, orientation = _integrate(position, orientation, command.twist, dt)
        steps += 1
    assert teleop.reached, f"not converged after {steps} steps"
    np.testing.assert_allclose(position, [0.5, 0.1, 0.2], atol=1e-3)
    assert abs(abs(np.dot(orientation, target_q)) - 1.0) < 1e-4
    assert command.intervene and command.gripper == 1.0
    np.testing.assert_array_equal(command.twist, np.zeros(6))
    # the straight-line distance 0.3 m at <= 0.1 m/s takes >= 3 s: the cap was honoured
    assert steps * dt >= 3.0


def test_teleop_command_rejects_bad_values():
    with pytest.raises(ValueError, match="6 finite"):
        TeleopCommand(np.array([0.0, np.inf, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="gripper"):
        TeleopCommand(np.zeros(6), gripper=1.5)


class ScriptedSequence:
    """A device whose poll returns prepared commands (the physical device mocked)."""

    def __init__(self, commands: list[TeleopCommand]) -> None:
        self.commands = commands
        self.index = 0

    def poll(self) -> TeleopCommand:
        command = self.commands[min(self.index, len(self.commands) - 1)]
        self.index += 1
        return command

    def close(self) -> None:
        pass


def test_teleop_publisher_over_dds_loopback():
    domain_id, config = free_domain_id(), loopback_config()
    commands = [
        TeleopCommand(np.array([0.01, -0.02, 0.03, 0.1, -0.2, 0.3]), 0.0, True),
        TeleopCommand(np.zeros(6), 0.0, False),
    ]
    with (
        Node("teleop", namespace="arm", domain_id=domain_id, config=config) as teleop_node,
        Node("driver", namespace="arm", domain_id=domain_id, config=config) as driver,
    ):
        interventions = driver.subscription("teleop/intervention")
        twists = driver.subscription("/arm/teleop/twist")
        publisher = TeleopPublisher(teleop_node, ScriptedSequence(commands), rate_hz=100)
        assert publisher.intervention.wait_for_subscribers(1, 3.0)
        assert publisher.twist.wait_for_subscribers(1, 3.0)
        for _ in commands:
            publisher.step()
        received_i, received_t = [], []
        deadline = time.monotonic() + 3.0
        while (len(received_i) < 2 or len(received_t) < 2) and time.monotonic() < deadline:
            received_i += interventions.take()
            received_t += twists.take()
            time.sleep(0.01)
        assert [m.data for m in received_i] == [True, False]
        first = received_t[0].twist
        got = [first.linear.x, first.linear.y, first.linear.z]
        got += [first.angular.x, first.angular.y, first.angular.z]
        np.testing.assert_array_equal(got, commands[0].twist)
        assert received_t[1].twist.linear.x == 0.0 and received_t[0].header.frame_id == "base_link"
        # the background thread publishes at the rate
        with publisher:
            time.sleep(0.2)
        assert 5 <= len(interventions.take()) <= 40


def test_teleop_publisher_stops_on_device_failure_with_zero_twist():
    class Broken:
        def poll(self) -> TeleopCommand:
            raise OSError("unplugged")

        def close(self) -> None:
            pass

    domain_id, config = free_domain_id(), loopback_config()
    with (
        Node("teleop", namespace="arm", domain_id=domain_id, config=config) as teleop_node,
        Node("driver", namespace="arm", domain_id=domain_id, config=config) as driver,
    ):
        twists = driver.subscription("teleop/twist")
        publisher = TeleopPublisher(teleop_node, Broken(), rate_hz=50)
        assert publisher.twist.wait_for_subscribers(1, 3.0)
        publisher.start()
        message = twists.wait_for_message(3.0)
        with pytest.raises(RuntimeError, match="device failed"):
            publisher.stop()
        assert message is not None and message.twist.linear.x == 0.0
    with pytest.raises(ValueError, match="rate_hz"):
        TeleopPublisher(teleop_node, Broken(), rate_hz=0)
