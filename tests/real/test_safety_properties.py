"""Property-based fuzz of the safety layer with hypothesis: arm states and commands drawn together.

Each example starts the arm anywhere within 0.5 m of the workspace box (inside or outside) in
any orientation, then runs a sequence of operations on a fake clock: deltas and absolute
targets whose components are drawn from every magnitude (tiny to 1e300, ints up to 10**400,
NaN/Inf), as lists or NumPy arrays of several dtypes, malformed values (strings, None, complex,
wrong shapes), gripper values, ticks, e-stops, enables, new episodes, and the arm turning up
somewhere else (pushed). The arm tracks every target it is sent. Invariants checked after every
operation:

- no exception;
- an accepted command moves the target by at most ``max_translation_step`` and
  ``max_rotation_step`` from the previous target;
- from a previous target in the box the new one is in the box; from one outside it, the
  distance to the box shrinks by exactly the step limit (or to zero);
- a command is held iff it is malformed (by this file's own definition), the e-stop is latched,
  or the watchdog/stale-sensor rules hold it; every hold is counted once;
- once the e-stop is pressed every command and tick holds (``estop``, truncated) and gripper
  commands are dropped, until ``enable``.

``make test`` runs 3,000 examples; the ``slow`` tier 20,000.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from robotrl_real.safety import REASONS, SafetyConfig, SafetyLayer

CONFIG = SafetyConfig(
    workspace_min=(0.3, -0.2, 0.05),
    workspace_max=(0.6, 0.2, 0.4),
    max_translation_step=0.01,
    max_rotation_step=0.05,
)
LOW, HIGH = np.asarray(CONFIG.workspace_min), np.asarray(CONFIG.workspace_max)
TOLERANCE = 1e-9

# -- strategies ---------------------------------------------------------------------------------

components = st.one_of(
    st.floats(-0.03, 0.03),  # within the limits
    st.floats(-2.0, 2.0),  # beyond them
    st.floats(allow_nan=True, allow_infinity=True),  # anything a double holds
    st.sampled_from([1e9, -1e9, 1.0000001e9, 1.3e154, 1e300, -1e300, math.nan, math.inf]),
    st.integers(-(10**400), 10**400),
    st.integers(-3, 3),
)
containers = st.sampled_from(["list", "tuple", "float64", "float32", "float16", "longdouble"])
malformed = st.one_of(
    st.text(max_size=6),
    st.none(),
    st.just([None] * 6),
    st.lists(st.floats(-0.01, 0.01), max_size=8).filter(lambda v: len(v) not in (3, 4, 6)),
    st.builds(lambda re, im: np.full(6, complex(re, im)), st.floats(-1, 1), st.floats(-1, 1)),
    st.just([[0.0] * 3, [0.0] * 3]),
    st.just([True] * 6),
)
box_positions = st.tuples(
    *(st.floats(low - 0.5, high + 0.5) for low, high in zip(LOW, HIGH, strict=True))
)
quaternions = (
    st.tuples(*(st.floats(-1, 1) for _ in range(4)))
    .filter(lambda q: np.linalg.norm(q) > 0.1)
    .map(lambda q: np.asarray(q) / np.linalg.norm(q))
)


@st.composite
def vectors(draw, size: int):
    values = draw(st.lists(components, min_size=size, max_size=size))
    container = draw(containers)
    if container == "list":
        return values
    if container == "tuple":
        return tuple(values)
    as_floats = []
    for value in values:
        try:
            as_floats.append(float(value))
        except OverflowError:
            as_floats.append(math.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.array(as_floats).astype(container)


operations = st.one_of(
    st.tuples(st.just("delta"), vectors(6)),
    st.tuples(st.just("delta"), malformed),
    st.tuples(st.just("small_delta"), st.lists(st.floats(-0.02, 0.02), min_size=6, max_size=6)),
    st.tuples(st.just("target"), st.tuples(box_positions, quaternions)),
    st.tuples(st.just("target"), st.tuples(vectors(3), quaternions)),
    st.tuples(st.just("target"), st.tuples(box_positions, vectors(4))),
    st.tuples(st.just("tick"), st.none()),
    st.tuples(st.just("gripper"), st.one_of(components, malformed, st.floats(0, 1))),
    st.tuples(st.just("estop"), st.none()),
    st.tuples(st.just("enable"), st.none()),
    st.tuples(st.just("reset"), st.none()),
    st.tuples(st.just("pushed"), st.tuples(box_positions, quaternions)),
)
steps = st.tuples(operations, st.sampled_from([0.0, 0.01, 0.01, 0.01, 0.05, 0.2]))
examples = st.tuples(box_positions, quaternions, st.lists(steps, min_size=1, max_size=25))

# -- the independent model ---------------------------------------------------------------------


def well_formed(values: object, size: int) -> bool:
    """Whether ``values`` is ``size`` real, finite numbers of magnitude <= max_command_value."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iuf" or values.shape != (size,):
            return False
        items = values.tolist()
    elif isinstance(values, list | tuple):
        items = list(values)
    else:
        return False
    if len(items) != size:
        return False
    for item in items:
        if not isinstance(item, numbers.Real) or isinstance(item, bool):
            return False
        try:
            value = float(item)
        except OverflowError:
            return False
        if not (math.isfinite(value) and abs(value) <= CONFIG.max_command_value):
            return False
    return True


def box_distance(position: np.ndarray) -> float:
    return float(np.linalg.norm(np.maximum(LOW - position, 0) + np.maximum(position - HIGH, 0)))


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return float((Rotation.from_quat(b) * Rotation.from_quat(a).inv()).magnitude())


@dataclass
class Run:
    """One example: the layer, the arm it drives, and what the test expects of both."""

    layer: SafetyLayer
    arm_position: np.ndarray
    arm_orientation: np.ndarray
    now: float = 0.0
    estop: bool = False
    last_command: float | None = None  # when the layer last accepted a command
    holds: int = 0
    previous: tuple[np.ndarray, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.layer.update_pose(self.arm_position, self.arm_orientation, self.now)
        self.previous = (self.arm_position.copy(), self.arm_orientation.copy())

    def check(self, decision, command_ok: bool, is_tick: bool = False) -> None:
        held_reasons = sum(self.layer.summary().counts.values())
        if decision.held:
            self.holds += 1
        assert held_reasons == self.holds  # every hold counted once
        if self.estop:
            assert decision.held and decision.truncated
            assert decision.reason == "estop" or (not command_ok and decision.reason in REASONS)
        elif not command_ok:
            assert decision.held and decision.reason in REASONS, decision
        elif is_tick:
            expired = self.last_command is None or (
                self.now - self.last_command > CONFIG.watchdog_timeout
            )
            assert decision.held == expired, decision
        else:
            assert not decision.held, decision
        if decision.held:
            np.testing.assert_array_equal(decision.position, self.arm_position)
        elif is_tick:  # a tick without a command keeps the last target
            np.testing.assert_array_equal(decision.position, self.previous[0])
            np.testing.assert_array_equal(decision.orientation, self.previous[1])
        else:
            position, orientation = decision.position, decision.orientation
            before, before_orientation = self.previous
            assert np.linalg.norm(position - before) <= CONFIG.max_translation_step + TOLERANCE
            assert angle_between(before_orientation, orientation) <= (
                CONFIG.max_rotation_step + TOLERANCE
            )
            if box_distance(before) == 0.0:
                assert box_distance(position) <= TOLERANCE
            else:  # outside: back towards the box at the limit
                expected = max(0.0, box_distance(before) - CONFIG.max_translation_step)
                assert abs(box_distance(position) - expected) <= TOLERANCE
            self.last_command = self.now
        self.previous = (decision.position.copy(), decision.orientation.copy())
        # the arm tracks its target exactly
        self.arm_position, self.arm_orientation = self.previous[0].copy(), self.previous[1].copy()


def run_example(start_position, start_orientation, sequence) -> None:
    run = Run(SafetyLayer(CONFIG), np.asarray(start_position), np.asarray(start_orientation))
    layer = run.layer
    for (kind, argument), dt in sequence:
        run.now += dt
        layer.update_pose(run.arm_position, run.arm_orientation, run.now)
        if kind in ("delta", "small_delta"):
            run.check(layer.command_delta(argument, run.now), well_formed(argument, 6))
        elif kind == "target":
            position, orientation = argument
            ok = well_formed(position, 3) and well_formed(orientation, 4)
            if ok:  # unit length within the tolerance, by this file's own arithmetic
                norm = math.sqrt(sum(float(q) ** 2 for q in orientation))
                ok = abs(norm - 1.0) <= CONFIG.quaternion_tolerance
            run.check(layer.command_target(position, orientation, run.now), ok)
        elif kind == "tick":
            run.check(layer.tick(run.now), True, is_tick=True)
        elif kind == "gripper":
            counted = sum(layer.summary().counts.values())
            opening = layer.filter_gripper(argument)
            dropped = sum(layer.summary().counts.values()) - counted
            run.holds += dropped  # a malformed gripper value is counted, though nothing holds
            if well_formed([argument], 1) and not isinstance(argument, list | tuple):
                assert dropped == 0
                if run.estop:
                    assert opening is None
                else:
                    assert opening is not None
                    assert CONFIG.gripper_min <= opening <= CONFIG.gripper_max
            else:
                assert opening is None and dropped == 1
        elif kind == "estop":
            layer.estop()
            run.estop = True
        elif kind == "enable":
            layer.enable()
            run.estop, run.last_command = False, None
        elif kind == "reset":
            layer.reset()
            run.last_command = None
            run.previous = (run.arm_position.copy(), run.arm_orientation.copy())
        elif kind == "pushed":  # the arm is somewhere else now; the layer learns it
            run.arm_position, run.arm_orientation = (np.asarray(a) for a in argument)
            layer.update_pose(run.arm_position, run.arm_orientation, run.now)
            if layer.latched or run.last_command is None:
                continue
            # the next step starts from the last target, which this file tracks as `previous`
        assert (layer.latched == "estop") == run.estop


COMMON = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}


@settings(max_examples=3_000, **COMMON)
@given(examples)
def test_safety_invariants_hold_for_drawn_arm_states_and_commands(example):
    run_example(*example)


@pytest.mark.slow
@settings(max_examples=20_000, **COMMON)
@given(examples)
def test_safety_invariants_hold_for_twenty_thousand_drawn_examples(example):
    run_example(*example)


def test_the_invariants_catch_a_layer_that_ignores_the_box():
    """A layer whose box is larger than the one the model checks steps sideways from outside
    the model's box; the model must see that."""
    start = np.array([0.45, 0.0, CONFIG.workspace_max[2] + 0.1])
    broken = SafetyLayer(CONFIG)
    broken._low, broken._high = LOW - 1.0, HIGH + 1.0
    run = Run(broken, start, np.array([1.0, 0, 0, 0]))
    decision = broken.command_target([0.6, 0.2, 0.5], [1.0, 0, 0, 0], 0.0)
    with pytest.raises(AssertionError):
        run.check(decision, True)
