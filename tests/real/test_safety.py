"""Safety properties of the driver's safety layer, checked on random and adversarial commands.

A fake arm tracks each target perfectly and reports it back as the measured pose; the clock is
fake (10 ms control cycles). Rotations are checked against scipy, an independent implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from robotrl_real import msgs
from robotrl_real.safety import (
    REASONS,
    SafetyConfig,
    SafetyLayer,
    quaternion_from_rotvec,
    quaternion_multiply,
    rotation_angle,
    rotvec_from_quaternion,
    to_diagnostic_array,
    to_diagnostic_status,
)

CONFIG = SafetyConfig(
    workspace_min=(0.3, -0.2, 0.05),
    workspace_max=(0.6, 0.2, 0.4),
    max_translation_step=0.01,
    max_rotation_step=0.05,
)
DT = 0.01
HOME_POSITION = np.array([0.45, 0.0, 0.2])
HOME_ORIENTATION = np.array([1.0, 0.0, 0.0, 0.0])  # tool pointing down


class FakeArm:
    """Drives a SafetyLayer like the driver does and checks every target it sends."""

    def __init__(self, config: SafetyConfig = CONFIG) -> None:
        self.layer = SafetyLayer(config)
        self.config = config
        self.now = 0.0
        self.position = HOME_POSITION.copy()
        self.orientation = HOME_ORIENTATION.copy()
        self.layer.update_pose(self.position, self.orientation, self.now)
        self.max_box_violation = 0.0
        self.max_translation = 0.0
        self._orientation_steps: list[tuple[np.ndarray, np.ndarray]] = []

    @property
    def max_rotation(self) -> float:
        """The largest rotation between consecutive targets, computed by scipy in one batch."""
        if not self._orientation_steps:
            return 0.0
        before, after = (np.array(side) for side in zip(*self._orientation_steps, strict=True))
        return float(
            (Rotation.from_quat(after) * Rotation.from_quat(before).inv()).magnitude().max()
        )

    def step(self, decision):
        if decision.position is not None:
            low, high = np.asarray(self.config.workspace_min), np.asarray(self.config.workspace_max)
            violation = np.maximum(low - decision.position, decision.position - high).max()
            self.max_box_violation = max(self.max_box_violation, float(violation))
            self.max_translation = max(
                self.max_translation, float(np.linalg.norm(decision.position - self.position))
            )
            self._orientation_steps.append((self.orientation, decision.orientation))
            assert abs(np.linalg.norm(decision.orientation) - 1.0) < 1e-9
            self.position, self.orientation = decision.position, decision.orientation
        self.now += DT
        self.layer.update_pose(self.position, self.orientation, self.now)
        return decision


def _scipy_angle(a, b) -> float:
    return float((Rotation.from_quat(b) * Rotation.from_quat(a).inv()).magnitude())


def _random_unit_quaternion(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def test_quaternion_helpers_agree_with_scipy():
    rng = np.random.default_rng(0)
    for _ in range(200):
        rotvec = rng.normal(size=3) * rng.uniform(0, 3)
        q = quaternion_from_rotvec(rotvec)
        expected = Rotation.from_rotvec(rotvec).as_quat()
        assert np.allclose(q, expected) or np.allclose(q, -expected)
        assert np.allclose(rotvec_from_quaternion(q), Rotation.from_quat(q).as_rotvec(), atol=1e-9)
        a, b = _random_unit_quaternion(rng), _random_unit_quaternion(rng)
        product = (Rotation.from_quat(a) * Rotation.from_quat(b)).as_quat()
        ours = quaternion_multiply(a, b)
        assert np.allclose(ours, product) or np.allclose(ours, -product)
        assert rotation_angle(a, b) == pytest.approx(_scipy_angle(a, b), abs=1e-9)
    assert np.allclose(rotvec_from_quaternion(np.array([0.0, 0.0, 0.0, 1.0])), 0.0)


def test_commands_within_limits_pass_unchanged():
    arm = FakeArm()
    delta = np.array([0.004, -0.003, 0.002, 0.01, -0.02, 0.015])  # 5.4 mm, 0.027 rad
    decision = arm.step(arm.layer.command_delta(delta, arm.now))
    assert not decision.held and decision.clipped == ()
    assert np.allclose(decision.position, HOME_POSITION + delta[:3], atol=1e-15)
    expected = Rotation.from_rotvec(delta[3:]) * Rotation.from_quat(HOME_ORIENTATION)
    assert _scipy_angle(expected.as_quat(), decision.orientation) < 1e-12


def test_over_long_steps_are_shortened_along_their_direction():
    arm = FakeArm()
    decision = arm.layer.command_delta([0.03, 0.04, 0.0, 0.0, 0.0, 0.2], arm.now)
    assert set(decision.clipped) == {"translation_step", "rotation_step"}
    assert np.allclose(decision.position - HOME_POSITION, [0.006, 0.008, 0.0])  # 3-4-5 → 1 cm
    expected = Rotation.from_rotvec([0.0, 0.0, 0.05]) * Rotation.from_quat(HOME_ORIENTATION)
    assert _scipy_angle(expected.as_quat(), decision.orientation) < 1e-12


def test_targets_outside_the_box_are_projected_into_it():
    config = SafetyConfig(
        workspace_min=CONFIG.workspace_min,
        workspace_max=CONFIG.workspace_max,
        max_translation_step=10.0,
    )
    arm = FakeArm(config)
    decision = arm.layer.command_target([2.0, -0.1, -1.0], HOME_ORIENTATION, arm.now)
    assert decision.clipped == ("workspace",)
    assert np.allclose(decision.position, [0.6, -0.1, 0.05])


def test_ten_thousand_random_commands_respect_box_and_step_limits():
    rng = np.random.default_rng(1)
    arm = FakeArm()
    unclipped_checked = 0
    for _ in range(10_000):
        if rng.random() < 0.7:
            scale = rng.choice([0.3, 1.0, 5.0])
            delta = np.concatenate(
                [rng.normal(size=3) * 0.01 * scale, rng.normal(size=3) * 0.05 * scale]
            )
            before = arm.position.copy()
            decision = arm.step(arm.layer.command_delta(delta, arm.now))
            if not decision.clipped:
                unclipped_checked += 1
                assert np.allclose(decision.position, before + delta[:3], atol=1e-12)
        else:
            target = rng.uniform(-1.0, 1.5, size=3)
            decision = arm.step(
                arm.layer.command_target(target, _random_unit_quaternion(rng), arm.now)
            )
        assert not decision.held
    assert arm.max_box_violation <= 1e-3
    assert arm.max_translation <= CONFIG.max_translation_step + 1e-12
    assert arm.max_rotation <= CONFIG.max_rotation_step + 1e-9
    summary = arm.layer.summary()
    assert summary.accepted == 10_000
    assert unclipped_checked > 1000
    assert summary.clipped["workspace"] > 0 and summary.clipped["rotation_step"] > 1000
    assert sum(summary.counts.values()) == 0


def _adversarial_commands(rng, count: int):
    """(kind, args, expected drop reason or None) for the adversarial test."""
    commands = []
    for index in range(count):
        kind = index % 8
        if kind == 0:  # huge translation
            commands.append(("delta", [1e6 * rng.choice([-1, 1]), 0, 0, 0, 0, 0], None))
        elif kind == 1:  # NaN or Inf somewhere
            delta = rng.normal(size=6) * 0.01
            delta[rng.integers(6)] = rng.choice([np.nan, np.inf, -np.inf])
            commands.append(("delta", delta, "nonfinite"))
        elif kind == 2:  # wrong length or shape, or not numbers
            bad = [
                ([], "wrong_shape"),
                ([0.0] * 5, "wrong_shape"),
                ([0.0] * 7, "wrong_shape"),
                (np.zeros((2, 3)), "wrong_shape"),
                ("forward", "not_a_number"),
                (None, "not_a_number"),
                ([[0.0] * 6], "wrong_shape"),
                (["a"] * 6, "not_a_number"),
            ]
            commands.append(("delta", *bad[rng.integers(len(bad))]))
        elif kind == 3:  # target far outside the box
            commands.append(("target", (rng.uniform(-100, 100, 3), HOME_ORIENTATION), None))
        elif kind == 4:  # rotation beyond the limit, up to (almost) a half turn
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            commands.append(("delta", [0, 0, 0, *(axis * rng.uniform(0.1, 3.1))], None))
        elif kind == 5:  # alternating extremes
            sign = 1 if (index // 8) % 2 else -1
            commands.append(("delta", [sign * 1e3] * 3 + [sign * 1e3] * 3, None))
        elif kind == 6:  # NaN/Inf or wrong shape in an absolute target
            if rng.random() < 0.5:
                commands.append(("target", ([np.nan, 0.4, 0.2], HOME_ORIENTATION), "nonfinite"))
            else:
                commands.append(("target", ([0.4, 0.0], HOME_ORIENTATION), "wrong_shape"))
        else:  # quaternion far from unit length, or Inf in the quaternion
            if rng.random() < 0.5:
                commands.append(("target", (HOME_POSITION, [0.0, 0.0, 0.0, 0.0]), "bad_quaternion"))
            else:
                commands.append(("target", (HOME_POSITION, [0, 0, np.inf, 1.0]), "nonfinite"))
    return commands


def test_one_thousand_adversarial_commands():
    rng = np.random.default_rng(2)
    arm = FakeArm()
    expected_drops = {"nonfinite": 0, "wrong_shape": 0, "not_a_number": 0, "bad_quaternion": 0}
    accepted = 0
    for kind, args, reason in _adversarial_commands(rng, 1000):
        before = (arm.position.copy(), arm.orientation.copy())
        if kind == "delta":
            decision = arm.layer.command_delta(args, arm.now)
        else:
            decision = arm.layer.command_target(*args, arm.now)
        if reason is None:
            assert not decision.held
            accepted += 1
        else:
            expected_drops[reason] += 1
            assert decision.held and decision.reason == reason and not decision.truncated
            # a dropped command holds the measured pose
            assert np.array_equal(decision.position, before[0])
            assert np.allclose(decision.orientation, before[1], atol=1e-15)
        arm.step(decision)
    assert arm.max_box_violation <= 1e-3
    assert arm.max_translation <= CONFIG.max_translation_step + 1e-12
    assert arm.max_rotation <= CONFIG.max_rotation_step + 1e-9
    summary = arm.layer.summary()
    assert summary.accepted == accepted
    for reason, count in expected_drops.items():
        assert count > 0
        assert summary.counts[reason] == count, reason


def test_watchdog_holds_after_100_ms_without_a_fresh_command():
    arm = FakeArm()
    layer = arm.layer
    layer.command_delta([0.005, 0, 0, 0, 0, 0], 0.0)
    layer.update_pose(
        HOME_POSITION + np.array([0.002, 0, 0]), HOME_ORIENTATION, 0.05
    )  # arm lags behind
    running = layer.tick(0.1)
    assert not running.held and np.allclose(
        running.position, HOME_POSITION + np.array([0.005, 0, 0])
    )
    held = layer.tick(0.1001)
    assert held.held and held.reason == "watchdog" and not held.truncated
    assert np.allclose(held.position, HOME_POSITION + np.array([0.002, 0, 0]))  # the measured pose
    layer.update_pose(held.position, held.orientation, 0.11)
    resumed = layer.command_delta([0.001, 0, 0, 0, 0, 0], 0.12)
    assert not resumed.held
    assert np.allclose(
        resumed.position, HOME_POSITION + np.array([0.003, 0, 0])
    )  # from the held pose
    assert layer.summary().counts["watchdog"] == 1


def test_stale_command_stamp_and_no_command_yet_hold():
    arm = FakeArm()
    first = arm.layer.tick(0.0)
    assert first.held and first.reason == "watchdog"  # nothing commanded yet
    arm.layer.update_pose(HOME_POSITION, HOME_ORIENTATION, 1.0)
    stale = arm.layer.command_delta([0.001, 0, 0, 0, 0, 0], 1.0, stamp=0.85)
    assert stale.held and stale.reason == "stale_command"
    fresh = arm.layer.command_delta([0.001, 0, 0, 0, 0, 0], 1.0, stamp=0.95)
    assert not fresh.held


def test_estop_latch_holds_until_enable_and_nothing_else_clears_it():
    arm = FakeArm()
    layer = arm.layer
    arm.step(layer.command_delta([0.005, 0, 0, 0, 0, 0], arm.now))
    layer.on_estop_message(True)
    assert layer.latched == "estop"
    for _ in range(50):  # commands, ticks, a new episode, a released button, time passing
        decision = arm.step(layer.command_delta([0.005, 0, 0, 0, 0, 0], arm.now))
        assert decision.held and decision.reason == "estop" and decision.truncated
        assert layer.tick(arm.now).reason == "estop"
        layer.reset()
        layer.on_estop_message(False)
        assert layer.filter_gripper(0.5) is None
    arm.now += 3600.0
    layer.update_pose(arm.position, arm.orientation, arm.now)
    assert layer.command_target(HOME_POSITION, HOME_ORIENTATION, arm.now).reason == "estop"
    assert layer.summary().state == "estop"
    layer.enable()
    assert layer.latched is None
    assert layer.tick(arm.now).reason == "watchdog"  # enable alone does not move the arm
    decision = layer.command_delta([0.005, 0, 0, 0, 0, 0], arm.now)
    assert not decision.held and layer.summary().state == "ok"


def test_stale_sensor_holds_and_truncates():
    arm = FakeArm()
    layer = arm.layer
    layer.register_sensor("wrist_camera")
    assert layer.command_delta([0.001, 0, 0, 0, 0, 0], 0.0).reason == "stale_sensor"  # never seen
    layer.update_sensor("wrist_camera", 0.0)
    assert not layer.command_delta([0.001, 0, 0, 0, 0, 0], 0.0).held
    layer.update_pose(HOME_POSITION, HOME_ORIENTATION, 0.15)
    assert not layer.command_delta([0.001, 0, 0, 0, 0, 0], 0.15).held  # exactly 150 ms: fresh
    layer.update_pose(HOME_POSITION, HOME_ORIENTATION, 0.151)
    decision = layer.command_delta([0.001, 0, 0, 0, 0, 0], 0.151)
    assert decision.held and decision.reason == "stale_sensor" and decision.truncated
    assert np.array_equal(decision.position, HOME_POSITION)
    assert layer.stale_sensors(0.151) == ["wrist_camera"]
    assert layer.summary(0.151).stale_sensors == ["wrist_camera"]
    layer.update_sensor("wrist_camera", 0.16)
    assert not layer.command_delta([0.001, 0, 0, 0, 0, 0], 0.16).held
    # the TCP pose itself is a watched stream
    assert layer.command_delta([0.001, 0, 0, 0, 0, 0], 0.31).reason == "stale_sensor"
    with pytest.raises(KeyError, match="register_sensor"):
        layer.update_sensor("force_torque", 0.3)


def test_recovery_cap_latches_until_enable():
    arm = FakeArm(
        SafetyConfig(
            workspace_min=CONFIG.workspace_min, workspace_max=CONFIG.workspace_max, max_recoveries=2
        )
    )
    layer = arm.layer
    assert layer.request_recovery() and layer.request_recovery()
    assert not layer.request_recovery()
    assert layer.latched == "recovery_limit"
    decision = layer.command_delta([0.001, 0, 0, 0, 0, 0], arm.now)
    assert decision.held and decision.reason == "recovery_limit" and decision.truncated
    layer.reset()
    assert not layer.request_recovery()
    layer.enable()
    assert layer.request_recovery()  # the count starts again
    assert not layer.command_delta([0.001, 0, 0, 0, 0, 0], arm.now).held


def test_diagnostics_summary_and_ros_message():
    arm = FakeArm()
    layer = arm.layer
    arm.step(layer.command_delta([0.05, 0, 0, 0, 0, 0], arm.now))
    arm.step(layer.command_delta([np.nan] * 6, arm.now))
    arm.step(layer.command_delta([0.0] * 4, arm.now))
    summary = layer.summary()
    assert summary.state == "holding" and summary.last_reason == "wrong_shape"
    assert summary.accepted == 1 and summary.clipped["translation_step"] == 1
    assert summary.counts["nonfinite"] == 1 and summary.counts["wrong_shape"] == 1
    assert set(summary.counts) == set(REASONS)
    status = to_diagnostic_status(summary, hardware_id="arm-1")
    assert status.level == msgs.DiagnosticStatus.WARN
    values = {kv.key: kv.value for kv in status.values}
    assert values["count.nonfinite"] == "1" and values["state"] == "holding"
    layer.estop()
    assert to_diagnostic_status(layer.summary()).level == msgs.DiagnosticStatus.ERROR
    layer.enable()
    arm.step(layer.command_delta([0.001, 0, 0, 0, 0, 0], arm.now))
    array = to_diagnostic_array(layer.summary(), stamp=5.0)
    assert array.status[0].level == msgs.DiagnosticStatus.OK
    decoded = get_typestore(Stores.ROS2_HUMBLE).deserialize_cdr(
        array.serialize(), "diagnostic_msgs/msg/DiagnosticArray"
    )
    assert decoded.header.stamp.sec == 5 and decoded.status[0].name == "robotrl: safety"


def test_gripper_commands_are_clamped_or_dropped():
    layer = FakeArm().layer
    assert layer.filter_gripper(0.4) == 0.4
    assert layer.filter_gripper(7.0) == 1.0 and layer.filter_gripper(-1.0) == 0.0
    assert layer.filter_gripper(math.nan) is None
    assert layer.summary().counts["nonfinite"] == 1


def test_no_pose_yet_means_no_target():
    layer = SafetyLayer(CONFIG)
    decision = layer.command_delta([0.001, 0, 0, 0, 0, 0], 0.0)
    assert decision.held and decision.reason == "no_pose" and decision.position is None


def test_bad_inputs_are_clear_errors():
    layer = FakeArm().layer
    layer.tick(1.0)
    with pytest.raises(ValueError, match="backwards"):
        layer.tick(0.5)
    with pytest.raises(ValueError, match="finite"):
        layer.tick(math.nan)
    with pytest.raises(ValueError, match="3 and a quaternion of 4"):
        layer.update_pose([0.0, 0.0], HOME_ORIENTATION, 1.0)
    with pytest.raises(ValueError, match="invalid measured"):
        layer.update_pose([math.nan, 0.0, 0.0], HOME_ORIENTATION, 1.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"workspace_min": (0.0, 0.0, 1.0), "workspace_max": (1.0, 1.0, 0.5)}, "below"),
        ({"workspace_min": (0.0, 0.0)}, "3 values"),
        ({"max_translation_step": 0.0}, "max_translation_step"),
        ({"max_rotation_step": math.inf}, "max_rotation_step"),
        ({"max_rotation_step": 4.0}, "π"),
        ({"watchdog_timeout": -0.1}, "watchdog_timeout"),
        ({"max_recoveries": -1}, "max_recoveries"),
        ({"gripper_min": 1.0, "gripper_max": 0.0}, "gripper_min"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        SafetyConfig(**overrides)


# ---------------------------------------------------------------------------------------------
# malformed commands of every kind: rejected with a reason, never an exception


MALFORMED_DELTAS = [
    ([0, 0, 0, 1e300, 0, 0], "out_of_range"),  # the norm of this overflows
    ([0, 0, 0, 1e200, 1e200, 1e200], "out_of_range"),
    ([1e300, 1e300, 0, 0, 0, 0], "out_of_range"),
    ([10**400, 0, 0, 0, 0, 0], "out_of_range"),  # no float can hold it
    (np.array([0, 0, 0, 0, 0, "1e4000"], dtype=np.longdouble), "out_of_range"),
    (np.zeros(6, dtype=complex), "not_a_number"),  # its imaginary part would be dropped
    (np.array([0.001, 0, 0, 0, 0, 1j]), "not_a_number"),
    ([0.001, 0, 0, 0, 0, "0"], "not_a_number"),
    ("forward", "not_a_number"),
    (None, "not_a_number"),
    ([None] * 6, "not_a_number"),
    ([True] * 6, "not_a_number"),
    ([[0.0] * 3, [0.0] * 2], "wrong_shape"),  # ragged
    (np.zeros((2, 3)), "wrong_shape"),
    (np.float32(0.1), "wrong_shape"),
    ([0.0, 0.0, 0.0, math.nan, 0.0, 0.0], "nonfinite"),
    (np.array([0, 0, 0, 0, 0, np.inf], dtype=np.float16), "nonfinite"),
]


@pytest.mark.parametrize(("delta", "reason"), MALFORMED_DELTAS)
def test_malformed_deltas_are_rejected_with_their_reason(delta, reason):
    arm = FakeArm()
    decision = arm.layer.command_delta(delta, arm.now)
    assert decision.held and decision.reason == reason
    assert np.array_equal(decision.position, HOME_POSITION)
    assert arm.layer.summary().counts[reason] == 1


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.longdouble, np.int8, np.int64, np.uint16]
)
def test_deltas_of_any_real_dtype_are_accepted(dtype):
    arm = FakeArm()
    delta = np.array([2, 0, 0, 0, 0, 0], dtype=dtype) / (1000 if dtype(0.5) else 1)
    decision = arm.layer.command_delta(delta.astype(dtype), arm.now)
    assert not decision.held


@pytest.mark.parametrize(
    ("position", "orientation", "reason"),
    [
        ([1e300, 0.4, 0.2], HOME_ORIENTATION, "out_of_range"),
        ([10**400, 0.4, 0.2], HOME_ORIENTATION, "out_of_range"),
        (HOME_POSITION, [1e300, 0, 0, 1e300], "out_of_range"),
        (HOME_POSITION, [3.0, 0, 0, 0], "bad_quaternion"),
        (HOME_POSITION, [10**400, 0, 0, 0], "out_of_range"),
        (HOME_POSITION, np.array([1, 0, 0, 0], dtype=complex), "not_a_number"),
        ("home", HOME_ORIENTATION, "not_a_number"),
    ],
)
def test_malformed_targets_are_rejected_with_their_reason(position, orientation, reason):
    arm = FakeArm()
    decision = arm.layer.command_target(position, orientation, arm.now)
    assert decision.held and decision.reason == reason
    assert arm.layer.summary().counts[reason] == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.float32(0.25), 0.25),
        (np.float16(0.5), 0.5),
        (np.float64(2.0), 1.0),
        (np.longdouble(0.75), 0.75),
        (np.int64(0), 0.0),
        (1, 1.0),
        (np.array(0.5, dtype=np.float32), 0.5),
    ],
)
def test_gripper_accepts_any_real_number(value, expected):
    layer = FakeArm().layer
    assert layer.filter_gripper(value) == pytest.approx(expected)
    assert sum(layer.summary().counts.values()) == 0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (10**400, "out_of_range"),
        (np.float32(math.nan), "nonfinite"),
        (-math.inf, "nonfinite"),
        (0.5 + 0j, "not_a_number"),
        ("open", "not_a_number"),
        (None, "not_a_number"),
        (True, "not_a_number"),
        ([0.5], "wrong_shape"),
    ],
)
def test_malformed_gripper_commands_are_dropped_with_their_reason(value, reason):
    layer = FakeArm().layer
    assert layer.filter_gripper(value) is None
    assert layer.summary().counts[reason] == 1


# ---------------------------------------------------------------------------------------------
# an arm outside the box


def _box_distance(position, config: SafetyConfig = CONFIG) -> float:
    low, high = np.asarray(config.workspace_min), np.asarray(config.workspace_max)
    return float(np.linalg.norm(np.maximum(low - position, 0) + np.maximum(position - high, 0)))


@pytest.mark.parametrize("command", ["zero", "away", "into", "target"])
def test_an_arm_outside_the_box_is_brought_back_at_the_step_limit(command):
    """10 cm above the box: every step is the translation limit, straight towards the box,
    whatever the command says, until the target is in the box."""
    arm = FakeArm()
    arm.position = np.array([0.45, 0.0, CONFIG.workspace_max[2] + 0.1])
    arm.layer.update_pose(arm.position, arm.orientation, arm.now)
    arm.layer.reset()
    limit = CONFIG.max_translation_step
    distances = [_box_distance(arm.position)]
    for _ in range(15):
        if command == "target":
            decision = arm.layer.command_target([0.3, -0.2, 0.05], HOME_ORIENTATION, arm.now)
        else:
            delta = {"zero": [0.0] * 3, "away": [0.0, 0.0, 1.0], "into": [0.1, 0.1, -1.0]}
            decision = arm.layer.command_delta([*delta[command], 0.0, 0.0, 0.0], arm.now)
        assert not decision.held
        arm.step(decision)
        distances.append(_box_distance(arm.position))
    assert arm.max_translation <= limit + 1e-12
    assert distances[10] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(np.diff(distances[:11]), -limit, atol=1e-12)
    assert max(distances[10:]) <= 1e-12  # inside from then on
