"""The driver's safety layer: every command passes through here before it reaches the arm.

Pure logic, no DDS and no clock of its own: the driver passes the time (``now``, seconds on a
monotonic clock) into every call, so tests drive it with a fake clock. What it enforces
(docs/design.md §2.6):

- **Workspace box** on the commanded TCP position: the target is projected into the box.
- **Per-step limits** between consecutive targets, from any state: translation by Euclidean
  length, rotation by the angle of the relative rotation (axis-angle magnitude); an over-long
  step is shortened along its own direction. From a previous target in the box, the step is
  clipped first and the result then projected into the box; because projection onto a convex
  box never moves a point further from any point inside it, the step still obeys the limit.
  From a previous target outside the box (the arm was started or pushed there), the command's
  translation is set aside: the target moves straight towards the nearest point of the box by
  ``min(max_translation_step, distance)`` per step (clipped as ``"return_to_box"``) until it is
  inside; rotation follows the command within its limit as usual.
- **Malformed commands** are dropped: the arm holds, and the reason is counted for
  ``/diagnostics``. Checked in this order: not real numbers (strings, ``None``, bools, complex
  values, objects: ``not_a_number``), wrong shape (``wrong_shape``), NaN/Inf (``nonfinite``),
  a magnitude no float64 holds or above ``max_command_value`` (``out_of_range``; a rotation of
  1e300 rad has no meaningful direction), a quaternion far from unit length
  (``bad_quaternion``). Any real dtype is a number: Python and NumPy ints and floats of every
  width. These checks never raise.
- **Command watchdog**: no fresh command for ``watchdog_timeout`` (100 ms) -> hold the measured
  pose. A command whose own stamp is older than that is stale and dropped too.
- **E-stop latch**: once set, every command holds until :meth:`SafetyLayer.enable`. Nothing
  else clears it: not :meth:`SafetyLayer.reset` (new episode), not new policy weights (the layer
  does not know about them), not an ``estop=False`` message.
- **Stale sensors**: any registered stream (the TCP pose always is) older than its timeout
  (``sensor_timeout``, 150 ms, unless registered with its own; the driver gives each camera
  one), or never received -> hold, and the decision is marked truncated
  so the episode ends there without a terminal (bootstrap) transition.
- **Recovery cap**: the driver asks before each automatic error recovery; the first
  ``max_recoveries`` are allowed, the next request is refused and latches like an e-stop.

"Hold" means the target is the last measured TCP pose, which stops a pose-tracking controller
where the arm is. Holding is also what happens while latched. Latched holds and stale-sensor
holds are ``truncated``; watchdog holds and dropped commands are not (the next good command
continues the episode).

Not covered here: joint limits, velocity/acceleration of the arm itself, an orientation cone,
collision checking (those belong to the vendor controller or a planner); gripper commands are
only clamped to ``[gripper_min, gripper_max]``.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from robotrl_real import msgs

FloatArray = NDArray[np.float64]

#: Ways an accepted command can be shortened; the keys of :attr:`SafetySummary.clipped`.
CLIPS = ("translation_step", "rotation_step", "workspace", "return_to_box")

#: Reasons a command is dropped or the arm holds; the keys of :attr:`SafetySummary.counts`.
REASONS = (
    "not_a_number",
    "wrong_shape",
    "nonfinite",
    "out_of_range",
    "bad_quaternion",
    "stale_command",
    "watchdog",
    "stale_sensor",
    "estop",
    "recovery_limit",
    "no_pose",
    "teleop_lost",
)


@dataclass
class SafetyConfig:
    """Limits of the safety layer (metres, radians, seconds; positions in the robot base frame)."""

    workspace_min: tuple[float, float, float] = (0.25, -0.3, 0.02)
    workspace_max: tuple[float, float, float] = (0.75, 0.3, 0.5)
    max_translation_step: float = 0.01  # m between consecutive targets
    max_rotation_step: float = 0.05  # rad between consecutive targets
    watchdog_timeout: float = 0.1  # s without a fresh command before holding
    sensor_timeout: float = 0.15  # s before a registered sensor stream counts as stale
    max_recoveries: int = 3  # automatic error recoveries before latching
    gripper_min: float = 0.0
    gripper_max: float = 1.0
    quaternion_tolerance: float = 0.1  # |‖q‖ - 1| above this is rejected, below is normalised
    max_command_value: float = 1e9  # |component| (m, rad, m/s, rad/s) above this is rejected

    def __post_init__(self) -> None:
        low, high = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if low.shape != (3,) or high.shape != (3,):
            raise ValueError("workspace_min and workspace_max must have 3 values (x, y, z)")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
            raise ValueError(
                f"workspace_min must be finite and below workspace_max in every axis, got "
                f"{tuple(low)} and {tuple(high)}"
            )
        for name in (
            "max_translation_step",
            "max_rotation_step",
            "watchdog_timeout",
            "sensor_timeout",
            "quaternion_tolerance",
            "max_command_value",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")
        if self.max_rotation_step > math.pi:
            raise ValueError(f"max_rotation_step must be at most π, got {self.max_rotation_step}")
        if self.max_recoveries < 0:
            raise ValueError(f"max_recoveries must be >= 0, got {self.max_recoveries}")
        if not self.gripper_min < self.gripper_max:
            raise ValueError("gripper_min must be below gripper_max")


@dataclass(frozen=True)
class SafetyDecision:
    """What the driver sends to the arm after one command (or one tick without a command).

    ``position``/``orientation`` (quaternion x, y, z, w) are the target; ``None`` only when no
    TCP pose has ever been measured, in which case the driver must send nothing.
    """

    position: FloatArray | None
    orientation: FloatArray | None
    held: bool
    reason: str | None = None  # why it holds; None if the command went through (maybe clipped)
    clipped: tuple[str, ...] = ()  # of CLIPS
    truncated: bool = False  # the episode must end here (latched or stale sensor)


@dataclass
class SafetySummary:
    """Counters and state for ``/diagnostics``."""

    state: str  # "ok", "holding", "estop" or "recovery_limit"
    last_reason: str | None
    accepted: int
    clipped: dict[str, int]
    counts: dict[str, int]
    recoveries: int
    stale_sensors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# quaternions (x, y, z, w), rotation vectors


def quaternion_multiply(a: FloatArray, b: FloatArray) -> FloatArray:
    """The Hamilton product ``a ⊗ b`` (rotation ``b`` first, then ``a``)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def quaternion_conjugate(q: FloatArray) -> FloatArray:
    """The inverse of a unit quaternion."""
    return np.array([-q[0], -q[1], -q[2], q[3]])


def quaternion_from_rotvec(rotvec: FloatArray) -> FloatArray:
    """The unit quaternion of a rotation vector (axis × angle in radians)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        q = np.array([rotvec[0] / 2, rotvec[1] / 2, rotvec[2] / 2, 1.0])
        return q / np.linalg.norm(q)
    axis = rotvec / angle
    return np.concatenate([axis * math.sin(angle / 2), [math.cos(angle / 2)]])


def rotvec_from_quaternion(q: FloatArray) -> FloatArray:
    """The rotation vector (angle in ``[0, π]``) of a unit quaternion."""
    if q[3] < 0:  # q and -q are the same rotation; take the short way round
        q = -q
    sin_half = float(np.linalg.norm(q[:3]))
    angle = 2.0 * math.atan2(sin_half, float(q[3]))
    if sin_half < 1e-12:
        return 2.0 * q[:3]  # small-angle limit
    return q[:3] / sin_half * angle


def rotation_angle(a: FloatArray, b: FloatArray) -> float:
    """The angle (radians, ``[0, π]``) of the rotation taking orientation ``a`` to ``b``."""
    return float(
        np.linalg.norm(rotvec_from_quaternion(quaternion_multiply(b, quaternion_conjugate(a))))
    )


# ---------------------------------------------------------------------------------------------


class SafetyLayer:
    """Applies :class:`SafetyConfig` to every command; see the module docstring for the rules.

    The driver calls :meth:`update_pose` (and :meth:`update_sensor` for other streams) as
    measurements arrive, :meth:`command_delta` or :meth:`command_target` per command, and
    :meth:`tick` on control cycles without a command; it sends each returned decision's target.
    """

    TCP_POSE = "tcp_pose"

    def __init__(self, config: SafetyConfig | None = None) -> None:
        self.config = SafetyConfig() if config is None else config
        self._low = np.asarray(self.config.workspace_min, float)
        self._high = np.asarray(self.config.workspace_max, float)
        self._sensors: dict[str, float | None] = {self.TCP_POSE: None}
        self._timeouts: dict[str, float] = {self.TCP_POSE: self.config.sensor_timeout}
        self._measured_position: FloatArray | None = None
        self._measured_orientation: FloatArray | None = None
        self._target_position: FloatArray | None = None
        self._target_orientation: FloatArray | None = None
        self._last_command_time: float | None = None
        self._last_now = -math.inf
        self._latch: str | None = None  # "estop" or "recovery_limit"
        self._recoveries = 0
        self._counts: Counter[str] = Counter({reason: 0 for reason in REASONS})
        self._clipped: Counter[str] = Counter({name: 0 for name in CLIPS})
        self._accepted = 0
        self._last_reason: str | None = None
        self._holding = False

    # -- measurements ---------------------------------------------------------------------------

    def register_sensor(self, name: str, timeout: float | None = None) -> None:
        """Watch stream ``name`` for staleness (older than ``timeout``, default
        ``sensor_timeout``); it counts as stale until its first update."""
        timeout = self.config.sensor_timeout if timeout is None else float(timeout)
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"a sensor timeout must be a positive finite number, got {timeout}")
        self._sensors.setdefault(name, None)
        self._timeouts[name] = timeout

    def sensor_timeout(self, name: str) -> float:
        """The staleness threshold of stream ``name`` (s)."""
        return self._timeouts[name]

    def update_sensor(self, name: str, now: float) -> None:
        """Stream ``name`` delivered a message at ``now``."""
        if name not in self._sensors:
            raise KeyError(f"sensor {name!r} is not registered; call register_sensor first")
        self._sensors[name] = float(now)

    def update_pose(self, position: ArrayLike, orientation: ArrayLike, now: float) -> None:
        """The measured TCP pose (position, quaternion x, y, z, w) at ``now``."""
        position_array = np.asarray(position, dtype=float)
        orientation_array = np.asarray(orientation, dtype=float)
        if position_array.shape != (3,) or orientation_array.shape != (4,):
            raise ValueError(
                f"a TCP pose is a position of 3 and a quaternion of 4 values, got shapes "
                f"{position_array.shape} and {orientation_array.shape}"
            )
        norm = float(np.linalg.norm(orientation_array))
        if not (np.all(np.isfinite(position_array)) and math.isfinite(norm) and norm > 0.5):
            raise ValueError(f"invalid measured TCP pose {position_array}, {orientation_array}")
        self._measured_position = position_array
        self._measured_orientation = orientation_array / norm
        self._sensors[self.TCP_POSE] = float(now)
        if self._target_position is None:
            self._target_position = position_array.copy()
            self._target_orientation = self._measured_orientation.copy()

    def stale_sensors(self, now: float) -> list[str]:
        """Registered streams with no update within their timeout of ``now``."""
        return [
            name
            for name, stamp in self._sensors.items()
            if stamp is None or now - stamp > self._timeouts[name]
        ]

    # -- latches --------------------------------------------------------------------------------

    def estop(self) -> None:
        """Latch the e-stop: hold on every command until :meth:`enable`."""
        self._latch = "estop"

    def on_estop_message(self, pressed: bool) -> None:
        """An ``estop`` Bool message: ``True`` latches; ``False`` does nothing (enable clears)."""
        if pressed:
            self.estop()

    def enable(self) -> None:
        """Clear the e-stop or recovery-limit latch and the recovery count; the arm holds until
        the next fresh command."""
        self._latch = None
        self._recoveries = 0
        self._last_command_time = None

    @property
    def latched(self) -> str | None:
        """``"estop"``, ``"recovery_limit"``, or ``None``."""
        return self._latch

    def request_recovery(self) -> bool:
        """Whether the driver may run one more automatic error recovery.

        The first ``max_recoveries`` requests are allowed; the next is refused and latches
        (``"recovery_limit"``) until :meth:`enable`.
        """
        if self._latch is not None:
            return False
        if self._recoveries >= self.config.max_recoveries:
            self._latch = "recovery_limit"
            self._count("recovery_limit")
            return False
        self._recoveries += 1
        return True

    def reset(self) -> None:
        """Start a new episode: forget the command history (the watchdog holds until the first
        command). Latches, counters and the recovery count are kept."""
        self._last_command_time = None
        if self._measured_position is not None and self._measured_orientation is not None:
            self._target_position = self._measured_position.copy()
            self._target_orientation = self._measured_orientation.copy()

    # -- commands -------------------------------------------------------------------------------

    def command_delta(
        self, delta: ArrayLike, now: float, stamp: float | None = None
    ) -> SafetyDecision:
        """A relative command: ``[dx, dy, dz, rx, ry, rz]`` (m, rotation vector in rad, base frame)
        applied to the last target. ``stamp`` is when the command was made, if known."""
        self._advance(now)
        values, reason = self.check(delta, (6,))
        if values is None:
            return self.reject(reason or "wrong_shape")
        blocked = self._blocked(now, stamp)
        if blocked is not None:
            return blocked
        assert self._target_position is not None and self._target_orientation is not None
        desired_position = self._target_position + values[:3]
        desired_orientation = quaternion_multiply(
            quaternion_from_rotvec(values[3:]), self._target_orientation
        )
        return self._accept(desired_position, desired_orientation, now)

    def command_target(
        self, position: ArrayLike, orientation: ArrayLike, now: float, stamp: float | None = None
    ) -> SafetyDecision:
        """An absolute target pose: position (3) and quaternion x, y, z, w (4), base frame."""
        self._advance(now)
        position_array, reason = self.check(position, (3,))
        if position_array is None:
            return self.reject(reason or "wrong_shape")
        orientation_array, reason = self.check(orientation, (4,))
        if orientation_array is None:
            return self.reject(reason or "wrong_shape")
        # |q_i| <= 2 first, so that the norm below cannot overflow
        norm = float(np.linalg.norm(orientation_array)) if _max_abs(orientation_array) <= 2 else 0
        if abs(norm - 1.0) > self.config.quaternion_tolerance:
            return self.reject("bad_quaternion")
        blocked = self._blocked(now, stamp)
        if blocked is not None:
            return blocked
        return self._accept(position_array, orientation_array / norm, now)

    def hold(self, reason: str, now: float) -> SafetyDecision:
        """Hold for a reason of the caller's (the driver's ``teleop_lost``), counted under it;
        a latch, a missing pose or a stale sensor takes precedence. No command stays in
        force: the watchdog holds on the next tick too."""
        self._advance(now)
        blocked = self._blocked(now, None)
        self._last_command_time = None
        return blocked if blocked is not None else self._hold(reason)

    def tick(self, now: float) -> SafetyDecision:
        """A control cycle without a new command: keep the last target, or hold if the watchdog
        expired, a sensor is stale or a latch is set."""
        self._advance(now)
        blocked = self._blocked(now, None, fresh=False)
        if blocked is not None:
            return blocked
        assert self._last_command_time is not None
        if now - self._last_command_time > self.config.watchdog_timeout:
            return self._hold("watchdog")
        self._holding = False
        return SafetyDecision(self._target_position, self._target_orientation, held=False)

    def filter_gripper(self, value: object) -> float | None:
        """The gripper command clamped into range, or ``None`` (drop it; counted) if it is not
        one real finite number; ``None`` too while latched."""
        checked, reason = self.check(value, ())
        if checked is None:
            self._count(reason or "wrong_shape")
            return None
        if self._latch is not None:
            return None
        return min(max(float(checked), self.config.gripper_min), self.config.gripper_max)

    def check(self, values: object, shape: tuple[int, ...]) -> tuple[FloatArray | None, str | None]:
        """``values`` as a float64 array of ``shape``, or ``None`` and the reason it is malformed
        (see the module docstring); counts nothing and never raises."""
        array, reason = _as_real_array(values)
        if array is None:
            return None, reason
        if array.shape != shape:
            return None, "wrong_shape"
        if not np.all(np.isfinite(array)):
            return None, "nonfinite"
        with np.errstate(over="ignore"):
            converted = array.astype(np.float64)
        if not (np.all(np.isfinite(converted)) and _max_abs(converted) <= self.max_value):
            return None, "out_of_range"
        return converted, None

    @property
    def max_value(self) -> float:
        """The largest magnitude a command component may have (``max_command_value``)."""
        return self.config.max_command_value

    def reject(self, reason: str) -> SafetyDecision:
        """Drop a malformed command for ``reason`` (one of :data:`REASONS`): counted, the arm
        holds; truncated only while latched."""
        return self._hold(reason, truncated=self._latch is not None)

    # -- internals ------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite time in seconds, got {now}")
        if now < self._last_now:
            raise ValueError(
                f"time went backwards ({now} after {self._last_now}); pass a monotonic clock"
            )
        self._last_now = now

    def _count(self, reason: str) -> None:
        self._counts[reason] += 1
        self._last_reason = reason

    def _hold(self, reason: str, truncated: bool = False) -> SafetyDecision:
        self._count(reason)
        self._holding = True
        position, orientation = self._measured_position, self._measured_orientation
        if position is not None and orientation is not None:
            # the next step starts from where the arm is, so holding never causes a jump later
            self._target_position, self._target_orientation = position.copy(), orientation.copy()
        return SafetyDecision(position, orientation, held=True, reason=reason, truncated=truncated)

    def _blocked(
        self, now: float, stamp: float | None, fresh: bool = True
    ) -> SafetyDecision | None:
        if self._latch is not None:
            return self._hold(self._latch, truncated=True)
        if self._measured_position is None:
            return self._hold("no_pose")
        if self.stale_sensors(now):
            return self._hold("stale_sensor", truncated=True)
        if fresh and stamp is not None and not now - stamp <= self.config.watchdog_timeout:
            return self._hold("stale_command")
        if not fresh and self._last_command_time is None:
            return self._hold("watchdog")
        return None

    def _accept(
        self, desired_position: FloatArray, desired_orientation: FloatArray, now: float
    ) -> SafetyDecision:
        assert self._target_position is not None and self._target_orientation is not None
        clipped: list[str] = []
        limit = self.config.max_translation_step
        previous = self._target_position
        nearest = np.clip(previous, self._low, self._high)
        if not np.array_equal(nearest, previous):
            # outside the box: straight back towards it at the limit, whatever was commanded
            way_back = nearest - previous
            distance = float(np.linalg.norm(way_back))
            boxed = nearest if distance <= limit else previous + way_back * (limit / distance)
            clipped.append("return_to_box")
        else:
            step = desired_position - previous
            length = float(np.linalg.norm(step))
            if length > limit:
                step *= limit / length
                clipped.append("translation_step")
            position = previous + step
            boxed = np.clip(position, self._low, self._high)
            if not np.array_equal(boxed, position):
                clipped.append("workspace")
        rotation = rotvec_from_quaternion(
            quaternion_multiply(desired_orientation, quaternion_conjugate(self._target_orientation))
        )
        angle = float(np.linalg.norm(rotation))
        if angle > self.config.max_rotation_step:
            rotation *= self.config.max_rotation_step / angle
            clipped.append("rotation_step")
        orientation = quaternion_multiply(
            quaternion_from_rotvec(rotation), self._target_orientation
        )
        orientation /= np.linalg.norm(orientation)
        for name in clipped:
            self._clipped[name] += 1
        self._accepted += 1
        self._last_command_time = now
        self._holding = False
        self._target_position, self._target_orientation = boxed, orientation
        return SafetyDecision(boxed.copy(), orientation.copy(), held=False, clipped=tuple(clipped))

    # -- reporting ------------------------------------------------------------------------------

    def summary(self, now: float | None = None) -> SafetySummary:
        """Counters and state for ``/diagnostics`` (``now`` lists the stale sensors)."""
        state = self._latch or ("holding" if self._holding else "ok")
        return SafetySummary(
            state=state,
            last_reason=self._last_reason,
            accepted=self._accepted,
            clipped=dict(self._clipped),
            counts=dict(self._counts),
            recoveries=self._recoveries,
            stale_sensors=[] if now is None else self.stale_sensors(now),
        )


def _as_real_array(values: object) -> tuple[NDArray[Any] | None, str | None]:
    """``values`` as an array of a real (int or float) dtype, or ``None`` and the reason."""
    try:
        array = np.asarray(values)
    except ValueError:  # ragged nesting
        return None, "wrong_shape"
    except Exception:  # an object that will not be read as an array: no number at all
        return None, "not_a_number"
    kind = array.dtype.kind
    if kind in "iuf":
        return array, None
    if kind != "O":  # bools, complex, strings, bytes, dates
        return None, "not_a_number"
    # Python ints beyond int64 (and other objects) give an object array
    items = array.ravel().tolist()
    if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in items):
        return None, "not_a_number"
    converted = []
    for item in items:
        try:
            converted.append(float(item))
        except Exception:  # OverflowError for ints beyond float64
            return None, "out_of_range"
    return np.array(converted, dtype=np.float64).reshape(array.shape), None


def _max_abs(array: FloatArray) -> float:
    return float(np.max(np.abs(array))) if array.size else 0.0


def to_diagnostic_status(
    summary: SafetySummary, name: str = "robotrl: safety", hardware_id: str = ""
) -> msgs.DiagnosticStatus:
    """The summary as a ROS 2 ``DiagnosticStatus``: OK, WARN while holding, ERROR when latched."""
    from robotrl_real import msgs

    level = {
        "ok": msgs.DiagnosticStatus.OK,
        "holding": msgs.DiagnosticStatus.WARN,
    }.get(summary.state, msgs.DiagnosticStatus.ERROR)
    values = [
        msgs.KeyValue("state", summary.state),
        msgs.KeyValue("last_reason", summary.last_reason or ""),
        msgs.KeyValue("accepted", str(summary.accepted)),
        msgs.KeyValue("recoveries", str(summary.recoveries)),
        msgs.KeyValue("stale_sensors", ",".join(summary.stale_sensors)),
    ]
    values += [msgs.KeyValue(f"clipped.{k}", str(v)) for k, v in sorted(summary.clipped.items())]
    values += [msgs.KeyValue(f"count.{k}", str(v)) for k, v in sorted(summary.counts.items())]
    message = (
        summary.state if summary.last_reason is None else f"{summary.state} ({summary.last_reason})"
    )
    if summary.stale_sensors:
        message += f"; stale: {', '.join(summary.stale_sensors)}"
    return msgs.DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id, values=values
    )


def to_diagnostic_array(
    summary: SafetySummary, stamp: float | None = None, hardware_id: str = ""
) -> msgs.DiagnosticArray:
    """A ``DiagnosticArray`` for ``/diagnostics`` holding the safety status, stamped now or at
    ``stamp`` seconds."""
    from robotrl_real import msgs

    return msgs.DiagnosticArray(
        header=msgs.stamped_header("", stamp),
        status=[to_diagnostic_status(summary, hardware_id=hardware_id)],
    )
