"""The robot driver: one arm backend behind the ROS 2 topics of docs/design.md §2.6, safety first.

:class:`DriverNode` owns an :class:`ArmBackend` (the sim twin, or a vendor SDK adapter) and a
:class:`~robotrl_real.safety.SafetyLayer`, and runs a control loop thread at the backend's
control period. Each tick it reads the arm state, applies every command that arrived since the
last tick, sends one target to the arm, and publishes ``/joint_states`` and ``/<ns>/tcp_pose``.
Cameras are :class:`~robotrl_real.camera.CameraStream` s (:mod:`robotrl_real.camera`), each its
own DDS publisher that can be killed on its own (a dead camera node, for tests); ``/diagnostics``
goes out about once a second and ``/<ns>/control_mode`` (latched) whenever the mode changes.

**Twist mapping (MoveIt Servo-like).** A ``TwistStamped`` on ``/servo_node/delta_twist_cmds`` is
a velocity set-point in the base frame (m/s, rad/s) held until the next one arrives, and at most
``watchdog_timeout`` (MoveIt Servo's ``incoming_command_timeout``) after it arrived. Each tick the
TCP target moves by the set-point integrated over the tick, ``Σ_i v_i · |[t_i, t_{i+1}) ∩ tick|``
for the set-points ``v_i`` in force during the tick, and that one step goes through
:meth:`SafetyLayer.command_delta`. So the safety layer's per-step limit bounds what the arm is
asked to move per control period even when commands arrive in bursts, and a burst of messages
moves the arm no further than its duration at the commanded speed.

**Every command goes through the safety layer.** A twist is checked on arrival by
:meth:`SafetyLayer.check` (NaN/Inf, or a component above ``max_command_value`` m/s or rad/s,
such as a 1e300 rad/s burst): a malformed one is rejected and counted there, its sender's
earlier set-point is dropped, and the arm holds until a good twist arrives, in ticks that go on
as usual (state published, backend stepped). A well-formed twist is part
of its tick's integrated step (clipped to the per-step limit and the workspace box there); an
expired set-point is handed over with its arrival time, so the layer holds (``stale_command``)
and then its own watchdog keeps holding. A joint trajectory (reset pose) becomes a TCP goal by
the backend's forward kinematics and is approached by :meth:`SafetyLayer.command_target` steps
of at most ``reset_speed · dt`` (and ``reset_rotation_speed · dt``) until both the position and
the orientation are within ``reset_tolerance``; a trajectory point that is not one finite
position per joint is rejected like any malformed command. Gripper commands (``Float64``,
opening 0 = closed .. 1 = open) pass :meth:`SafetyLayer.filter_gripper`. ``estop``/``enable``
set and clear the layer's latch; nothing else does.

**Teleop, with a lease.** ``/<ns>/teleop/intervention`` true gives the teleop control:
``/<ns>/teleop/twist`` set-points are used and policy set-points ignored (counted); the switch
takes effect on the next tick. Teleop twists without control are ignored (counted): a device
streams them all the time. As for the policy, the mode reads ``teleop`` only while a teleop
set-point is in force, ``hold`` otherwise. Only a change of hands drops pending set-points,
since devices repeat the flag every tick. Each teleop message (flag or twist) renews a lease of
``teleop_lease`` (200 ms); a tick that finds it expired holds the arm (mode ``teleop_lost``,
``/diagnostics`` WARN) and keeps holding: policy twists, reset trajectories and gripper commands
are ignored (counted). **Hand-back rule** (HIL-SERL's: the person releases the intervention):
control returns to the policy only on an explicit ``intervention=False``, from the device or an
operator; a device that comes back and sends ``intervention=True`` takes control again. Nothing
else hands back: not the policy's twists, not a reset, not time.

**Cameras are watched sensors.** The driver subscribes to the ``image_raw/compressed`` topic of
each of its own cameras and of each camera in ``watched_cameras`` (published by other nodes),
and registers it with the safety layer as ``camera/<name>``, stale after ``camera_timeout``
(default ``max(sensor_timeout, 3 / camera_hz)``, 200 ms at 15 Hz). A stale stream holds the arm
(mode ``stale_sensor``, truncated decisions, gripper commands ignored) until it is fresh again;
``/diagnostics`` names it. :meth:`DriverNode.start` returns once no stream is stale (or after
``startup_timeout``). **Diagnostics** go out every ``diagnostics_period`` and at once whenever
the driver enters or leaves a holding mode (:data:`HOLDING_MODES`) or the set of stale streams
changes.

**What the arm was commanded.** Each tick publishes ``/<ns>/commanded_twist``
(``TwistStamped``): the tick's commanded TCP velocity after safety. A held tick is a zero twist,
stamped now. A tick a twist set-point drove gives that set-point's velocity ``v`` corrected by
what the safety layer took off the tick's step, per second of the tick the set-points covered,
``v + (step_commanded - step_requested) / covered``, with the set-point's own header stamp (so a
sender finds the ticks its twist drove): exactly ``v`` when nothing was clipped, 0 along a box
wall the arm is against, the limit's speed when the step limit clipped. Other ticks (a target
kept, a reset step) give ``step_commanded / dt``, stamped now. Every gripper command that
reaches the arm is published, after :meth:`SafetyLayer.filter_gripper`, on the latched
``/<ns>/gripper/commanded``. ``RobotEnv`` builds ``info["executed_action"]`` from the two.

**Record.** Every target sent to the arm is appended to :attr:`DriverNode.record` as a
:class:`CommandRecord` (monotonic time, target, held or not, reason, mode), so tests can check
what reached the arm.

Departures: a trajectory's ``time_from_start`` and intermediate points are ignored (the last
point is the goal, approached at ``reset_speed``); header stamps of twists are checked against
the local wall clock only when ``max_command_age`` is set (clocks across machines must be
synchronised for that).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from robotrl_real import msgs
from robotrl_real.arm import ArmBackend, ArmState
from robotrl_real.camera import CameraStream, camera_loop
from robotrl_real.camera import encode_image as encode_image  # its former home: still importable
from robotrl_real.node import Node
from robotrl_real.safety import (
    SafetyConfig,
    SafetyDecision,
    SafetyLayer,
    quaternion_conjugate,
    quaternion_from_rotvec,
    quaternion_multiply,
    rotation_angle,
    rotvec_from_quaternion,
    to_diagnostic_array,
)
from robotrl_real.topics import driver_topics

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

#: Values of ``/<ns>/control_mode``.
MODES = (
    "hold",
    "policy",
    "teleop",
    "teleop_lost",
    "reset",
    "stale_sensor",
    "estop",
    "recovery_limit",
)
#: Modes in which the driver holds the arm whatever the policy sends.
HOLDING_MODES = ("teleop_lost", "stale_sensor", "estop", "recovery_limit")


# ---------------------------------------------------------------------------------------------
# configuration and records


@dataclass
class DriverConfig:
    """Settings of the driver node (seconds, metres, Hz)."""

    namespace: str = "robot"
    frame_id: str = "base"
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    camera_size: int = 64  # px, square frames
    camera_hz: float = 15.0
    image_format: str = "jpeg"  # or "png"
    jpeg_quality: int = 90
    diagnostics_period: float = 1.0
    reset_speed: float = 0.25  # m/s towards a joint-trajectory goal
    reset_rotation_speed: float = 1.0  # rad/s
    reset_tolerance: float = 1e-3  # m (and rad) at which a reset goal counts as reached
    max_command_age: float | None = None  # s; reject twists whose header stamp is older
    teleop_lease: float = 0.2  # s without a teleop message before the driver holds
    camera_timeout: float | None = None  # s; None: max(sensor_timeout, 3 / camera_hz)
    watched_cameras: tuple[str, ...] = ()  # cameras published by other nodes, watched too
    startup_timeout: float = 10.0  # s start() waits for the first frame of every camera
    record_length: int = 200_000

    def __post_init__(self) -> None:
        if not 8 <= self.camera_size <= 512:
            raise ValueError(f"camera_size must be in [8, 512] px, got {self.camera_size}")
        for name in (
            "camera_hz",
            "diagnostics_period",
            "reset_speed",
            "reset_rotation_speed",
            "startup_timeout",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")
        if not (math.isfinite(self.teleop_lease) and 0 < self.teleop_lease <= 0.2):
            raise ValueError(f"teleop_lease must be in (0, 0.2] s, got {self.teleop_lease}")
        if self.camera_timeout is not None and not (
            math.isfinite(self.camera_timeout) and self.camera_timeout > 0
        ):
            raise ValueError(f"camera_timeout must be positive, got {self.camera_timeout}")
        if self.image_format not in ("jpeg", "png"):
            raise ValueError(f"image_format must be 'jpeg' or 'png', got {self.image_format!r}")

    @property
    def camera_stale_after(self) -> float:
        """The staleness threshold of each camera stream (s)."""
        if self.camera_timeout is not None:
            return self.camera_timeout
        return max(self.safety.sensor_timeout, 3.0 / self.camera_hz)


@dataclass(frozen=True)
class CommandRecord:
    """One target sent to the arm (or a hold), at monotonic time ``time``."""

    time: float
    position: FloatArray | None
    orientation: FloatArray | None
    held: bool
    reason: str | None
    mode: str


@dataclass
class _SetPoint:
    velocity: FloatArray  # 6: linear, angular
    arrival: float
    stamp: msgs.Time | None = None  # the twist's header stamp, echoed on commanded_twist


# ---------------------------------------------------------------------------------------------
# the node


class DriverNode:
    """Runs ``backend`` behind the driver topics; see the module docstring.

    Use as a context manager or call :meth:`start` / :meth:`close`. ``domain_id``/``dds_config``
    are passed to :class:`~robotrl_real.node.Node`.
    """

    def __init__(
        self,
        backend: ArmBackend,
        config: DriverConfig | None = None,
        *,
        domain_id: int | None = None,
        dds_config: str | None = None,
    ) -> None:
        self.backend = backend
        self.config = DriverConfig() if config is None else config
        self.safety = SafetyLayer(self.config.safety)
        self.period = float(backend.control_period)
        if not (math.isfinite(self.period) and self.period > 0):
            raise ValueError(f"backend control_period must be positive, got {self.period}")
        cameras = ("wrist", "front", *backend.cameras, *self.config.watched_cameras)
        self.node = Node(
            f"{backend.name}_driver",
            namespace=self.config.namespace,
            topics=driver_topics(self.config.namespace, tuple(dict.fromkeys(cameras))),
            domain_id=domain_id,
            config=dds_config,
        )
        self.record: deque[CommandRecord] = deque(maxlen=self.config.record_length)
        self.gripper_record: deque[tuple[float, float]] = deque(maxlen=self.config.record_length)
        self.counts: Counter[str] = Counter()
        self.mode = "hold"
        self.arrivals: dict[str, float] = {}  # kind -> monotonic arrival of the newest message
        self._events: queue.SimpleQueue[tuple[str, Any, float]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._policy: deque[_SetPoint] = deque()
        self._teleop: deque[_SetPoint] = deque()
        self._control = "policy"  # who may move the arm: "policy", "teleop" or "teleop_lost"
        self._lease_renewed = -math.inf  # monotonic arrival of the last teleop message
        self._stale: list[str] = []  # stale sensor streams at the last tick
        self._status_key: tuple[str, tuple[str, ...]] | None = None
        self._camera_arrivals: dict[str, float] = {}
        self._goal: tuple[FloatArray, FloatArray] | None = None
        self._goal_reached = False  # the last reset step went out this tick
        self._last_tick: float | None = None
        self._target: tuple[FloatArray, FloatArray] | None = None  # last target sent
        self._lock = threading.Lock()  # guards record/counts readers against the loop

        self._joint_states = self.node.publisher("/joint_states")
        self._tcp_pose = self.node.publisher("tcp_pose")
        self._diagnostics = self.node.publisher("/diagnostics")
        self._control_mode = self.node.publisher("control_mode")
        self._commanded_twist = self.node.publisher("commanded_twist")
        self._commanded_gripper = self.node.publisher("gripper/commanded")
        # this tick's motion: the newest set-point's velocity and stamp, the requested step
        self._tick_motion: tuple[FloatArray, msgs.Time | None, FloatArray, float] | None = None
        self.cameras: dict[str, CameraStream] = {
            camera: CameraStream(self.node, camera, backend, self.config)
            for camera in backend.cameras
        }
        for camera in dict.fromkeys((*self.cameras, *self.config.watched_cameras)):
            name = f"camera/{camera}"
            self.safety.register_sensor(name, self.config.camera_stale_after)
            self.node.subscription(
                f"/cameras/{camera}/image_raw/compressed", callback=self._frame_arrived(name)
            )
        self._stale = self.safety.stale_sensors(0.0)  # every stream, until the first tick
        for topic, kind in (
            ("/servo_node/delta_twist_cmds", "twist"),
            ("/joint_trajectory_controller/joint_trajectory", "trajectory"),
            ("gripper/command", "gripper"),
            ("estop", "estop"),
            ("enable", "enable"),
            ("teleop/intervention", "intervention"),
            ("teleop/twist", "teleop_twist"),
        ):
            self.node.subscription(topic, callback=self._enqueue(kind))
        self._publish_mode(force=True)

    def _enqueue(self, kind: str) -> Any:
        def on_message(message: Any) -> None:
            arrival = time.monotonic()
            self.arrivals[kind] = arrival
            self._events.put((kind, message, arrival))

        return on_message

    def _frame_arrived(self, name: str) -> Any:
        def on_frame(message: Any) -> None:
            self._camera_arrivals[name] = time.monotonic()

        return on_frame

    @property
    def _intervention(self) -> bool:
        return self._control == "teleop"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> DriverNode:
        """Start the control loop and the camera thread."""
        if self._threads:
            raise RuntimeError("the driver is already running")
        self._threads = [threading.Thread(target=self._control_loop, name="driver", daemon=True)]
        if self.cameras:
            self._threads.append(
                threading.Thread(target=self._camera_loop, name="cameras", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + self.config.startup_timeout
        while self._stale and time.monotonic() < deadline:
            time.sleep(0.005)
        if self._stale:
            logger.warning("no data from %s yet; the arm holds until there is", self._stale)
        return self

    def close(self) -> None:
        """Stop the threads, hold the arm, leave the DDS domain, close the backend."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        try:
            self.backend.hold()
        finally:
            self.node.close()
            self.backend.close()

    def __enter__(self) -> DriverNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def kill_camera(self, camera: str) -> None:
        """Kill one camera's publishers (simulates a dead camera node)."""
        self.cameras[camera].kill()

    # -- the control loop -----------------------------------------------------------------------

    def _control_loop(self) -> None:
        next_tick = time.monotonic()
        next_diagnostics = next_tick
        while not self._stop.is_set():
            try:
                self.tick(time.monotonic())
            except Exception:  # keep holding rather than die: a dead loop cannot hold the arm
                logger.exception("driver tick failed; holding")
                self.counts["tick_errors"] += 1
                self.backend.hold()
            now = time.monotonic()
            if now >= next_diagnostics:
                self.publish_diagnostics(now)
                next_diagnostics = now + self.config.diagnostics_period
            next_tick += self.period
            if now > next_tick + self.period:  # fell behind: count it, do not try to catch up
                self.counts["overruns"] += 1
                next_tick = now
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def tick(self, now: float) -> None:
        """One control cycle at monotonic time ``now`` (the loop calls this; tests may too)."""
        backend, safety = self.backend, self.safety
        state = backend.read_state()
        safety.update_pose(state.tcp_position, state.tcp_orientation, now)
        for name, arrival in list(self._camera_arrivals.items()):
            safety.update_sensor(name, arrival)
        self._stale = safety.stale_sensors(now)
        if backend.has_error() and safety.request_recovery():
            self.counts["recoveries"] += 1
            backend.recover()
        previous = self._last_tick if self._last_tick is not None else now - self.period
        self._last_tick = now
        self._tick_motion = None
        sent, held = False, True
        while True:
            try:
                kind, message, arrival = self._events.get_nowait()
            except queue.Empty:
                break
            rejected = self._handle(kind, message, arrival, now)
            if rejected is not None:  # the layer's hold reaches the arm (and the record) now
                held = self._send(rejected, now)
                sent = True
        if self._control == "teleop" and now - self._lease_renewed > self.config.teleop_lease:
            self._control = "teleop_lost"
            self.counts["teleop_lease_expired"] += 1
            self._clear_motion()
            logger.warning("teleop lease expired: holding until intervention=False")
        before = self._target
        decision: SafetyDecision | None
        if self._control == "teleop_lost":
            decision = safety.hold("teleop_lost", now)
        else:
            decision = self._motion(previous, now, state)
        if decision is None and not sent:
            decision = safety.tick(now)
        if decision is not None:
            held = self._send(decision, now)
        self._publish_commanded_twist(before, held, now - previous)
        if self._goal_reached:
            self._goal, self._goal_reached = None, False
        self._publish_state(state)
        mode = self._current_mode()
        status_key = (mode if mode in HOLDING_MODES else "", tuple(self._stale))
        if status_key != self._status_key:  # a new hold is on /diagnostics before the mode
            self._status_key = status_key
            self.mode = mode
            self.publish_diagnostics(now)
        self._publish_mode()
        backend.advance(now - previous)

    def _handle(self, kind: str, message: Any, arrival: float, now: float) -> SafetyDecision | None:
        """Apply one received message; a rejected one returns the safety layer's hold."""
        safety = self.safety
        self.counts[f"received.{kind}"] += 1
        if kind in ("twist", "teleop_twist"):
            values, reason = safety.check(_twist_vector(message.twist), (6,))
            if values is None:  # NaN/Inf or an absurd magnitude: rejected and counted,
                # and the sender's earlier set-point no longer stands: hold until a good one
                (self._teleop if kind == "teleop_twist" else self._policy).clear()
                return safety.reject(reason or "wrong_shape")
            if kind == "teleop_twist" and self._control == "teleop":
                self._lease_renewed = arrival
            if self.config.max_command_age is not None:
                age = time.time() - msgs.time_to_seconds(message.header.stamp)
                if message.header.stamp.sec and age > self.config.max_command_age:
                    return safety.command_delta(np.zeros(6), now, stamp=now - age)
            if kind == "twist" and self._control != "policy":
                self.counts[f"ignored.policy_during_{self._control}"] += 1
                return None
            if kind == "teleop_twist" and not self._intervention:
                # a teleop device streams twists all the time; they act only while it has control
                self.counts["ignored.teleop_without_intervention"] += 1
                return None
            self._goal = None
            target = self._teleop if kind == "teleop_twist" else self._policy
            target.append(_SetPoint(values, arrival, message.header.stamp))
            return None
        if kind == "trajectory":
            if self._control == "teleop_lost":
                self.counts["ignored.trajectory_during_teleop_lost"] += 1
                return None
            decision = self._start_reset(message, now)
            if self._goal is not None:
                self._publish_mode()  # "reset" is seen even if the arm is already at the goal
            return decision
        if kind == "gripper":
            if self._control == "teleop_lost" or self._stale:
                self.counts["ignored.gripper_while_holding"] += 1
                return None
            opening = safety.filter_gripper(message.data)
            if opening is not None:
                self.backend.command_gripper(opening)
                self.gripper_record.append((now, opening))
                self._commanded_gripper.publish(msgs.Float64(opening))
            return None
        if kind == "estop":
            safety.on_estop_message(bool(message.data))
            if message.data:
                self._clear_motion()
            return None
        if kind == "enable":
            if message.data:
                safety.enable()
                self._clear_motion()
            return None
        if kind == "intervention":
            # Devices repeat the flag every tick; only a change of hands drops the set-points
            # (a repeated flag must not wipe a teleop twist that arrived just before it).
            control = "teleop" if message.data else "policy"
            if control == "teleop":
                self._lease_renewed = arrival
            if control != self._control:
                if self._control == "teleop_lost":
                    self.counts[f"teleop_lost_ended_by.{control}"] += 1
                self._control = control
                self._policy.clear()
                self._teleop.clear()
            return None
        raise AssertionError(f"unknown event kind {kind}")

    def _clear_motion(self) -> None:
        self._policy.clear()
        self._teleop.clear()
        self._goal, self._goal_reached = None, False

    def _start_reset(self, message: msgs.JointTrajectory, now: float) -> SafetyDecision | None:
        names = list(message.joint_names)
        if not message.points:
            self.counts["rejected.trajectory_empty"] += 1
            return self.safety.reject("wrong_shape")
        joints = self.backend.joint_names
        positions, reason = self.safety.check(list(message.points[-1].positions), (len(joints),))
        if positions is None or (names and sorted(names) != sorted(joints)):
            # not one finite position per joint: a malformed command
            reason = reason or "wrong_shape"
            self.counts[f"rejected.trajectory_{reason}"] += 1
            return self.safety.reject(reason)
        if names:
            positions = positions[[names.index(name) for name in joints]]
        try:
            goal = self.backend.forward_kinematics(positions)
        except NotImplementedError:
            logger.warning("backend %s cannot reset to joint angles", self.backend.name)
            self.counts["rejected.trajectory_unsupported"] += 1
            return None
        self._clear_motion()
        self._goal = goal
        return None

    def _motion(self, previous: float, now: float, state: ArmState) -> SafetyDecision | None:
        """The tick's motion command through the safety layer, or None if there is none."""
        safety = self.safety
        if self._goal is not None:
            return self._reset_step(now)
        points = self._teleop if self._intervention else self._policy
        if not points:
            return None
        timeout = self.config.safety.watchdog_timeout
        delta = np.zeros(6)
        covered = 0.0  # s of the tick some set-point was in force
        items = list(points)
        for index, point in enumerate(items):
            end = items[index + 1].arrival if index + 1 < len(items) else math.inf
            end = min(end, point.arrival + timeout)
            overlap = min(end, now) - max(point.arrival, previous)
            if overlap > 0:
                delta += point.velocity * overlap
                covered += overlap
        newest = items[-1]
        while len(points) > 1:  # keep only the set-point still in force
            points.popleft()
        if now - newest.arrival > timeout:
            points.clear()  # expired: with its arrival as stamp the layer holds (stale_command)
        self._tick_motion = (newest.velocity, newest.stamp, delta, covered)
        return safety.command_delta(delta, now, stamp=newest.arrival)

    def _reset_step(self, now: float) -> SafetyDecision:
        """One step towards the reset goal, at most ``reset_speed · dt`` (and the rotation
        speed), through :meth:`SafetyLayer.command_target`."""
        assert self._goal is not None
        goal_position, goal_orientation = self._goal
        if self._target is None:
            return self.safety.command_target(goal_position, goal_orientation, now)
        position, orientation = self._target
        step = goal_position - position
        limit = self.config.reset_speed * self.period
        length = float(np.linalg.norm(step))
        if length > limit:
            step *= limit / length
        rotation = rotvec_from_quaternion(
            quaternion_multiply(goal_orientation, quaternion_conjugate(orientation))
        )
        angle_limit = self.config.reset_rotation_speed * self.period
        angle = float(np.linalg.norm(rotation))
        if angle > angle_limit:
            rotation *= angle_limit / angle
        decision = self.safety.command_target(
            position + step, quaternion_multiply(quaternion_from_rotvec(rotation), orientation), now
        )
        if not decision.held and decision.position is not None and decision.orientation is not None:
            remaining = float(np.linalg.norm(goal_position - decision.position))
            turn = rotation_angle(decision.orientation, goal_orientation)
            # Reached only when the position and the orientation are both there: a wrist-only
            # reset moves the TCP's orientation alone. Cleared after this last step is sent
            # (``tick``): cleared now, the mode would read "hold" and the step would be turned
            # into a hold short of the goal.
            self._goal_reached = max(remaining, turn) < self.config.reset_tolerance
        return decision

    def _send(self, decision: SafetyDecision, now: float) -> bool:
        """Send one decision to the arm and record it; whether the arm holds."""
        self.mode = self._current_mode()
        held, reason = decision.held, decision.reason
        if not held and self.mode in ("hold", "teleop_lost"):
            # no command in force (a set-point expired, a reset finished): brake where the arm
            # is rather than servo back to the last target
            held, reason = True, "no_command"
        if held or decision.position is None or decision.orientation is None:
            if decision.position is not None:
                self.backend.hold()
        else:
            self.backend.command_tcp(decision.position, decision.orientation)
        if decision.position is not None and decision.orientation is not None:
            self._target = (decision.position.copy(), decision.orientation.copy())
        with self._lock:
            self.record.append(
                CommandRecord(
                    now,
                    None if decision.position is None else decision.position.copy(),
                    None if decision.orientation is None else decision.orientation.copy(),
                    held,
                    reason,
                    self.mode,
                )
            )
        return held

    def _publish_commanded_twist(
        self, before: tuple[FloatArray, FloatArray] | None, held: bool, dt: float
    ) -> None:
        """Publish this tick's commanded TCP velocity after safety on ``commanded_twist``.

        A held tick is a zero twist. A tick driven by a twist set-point gives that set-point's
        velocity corrected by what the safety layer took off the tick's step, per second of the
        tick that set-points covered: ``v + (step_commanded - step_requested) / covered``,
        stamped with the set-point's own header stamp (so a sender finds the ticks its twist
        drove); an unclipped tick gives exactly ``v``, a tick at a box wall 0 along it. Any
        other tick (a kept target, a reset step) gives ``step_commanded / dt``, stamped now.
        """
        after = self._target
        velocity = np.zeros(6)
        stamp: msgs.Time | None = None
        if not held and before is not None and after is not None and dt > 0:
            commanded = np.concatenate(
                [
                    after[0] - before[0],
                    rotvec_from_quaternion(
                        quaternion_multiply(after[1], quaternion_conjugate(before[1]))
                    ),
                ]
            )
            if self._tick_motion is not None:
                set_point, stamp, requested, covered = self._tick_motion
                velocity = set_point + (commanded - requested) / (covered if covered > 0 else dt)
            else:
                velocity = commanded / dt
        header = msgs.stamped_header(self.config.frame_id)
        if stamp is not None:
            header.stamp = stamp
        message = msgs.TwistStamped(header=header)
        message.twist.linear = msgs.Vector3(*map(float, velocity[:3]))
        message.twist.angular = msgs.Vector3(*map(float, velocity[3:]))
        self._commanded_twist.publish(message)

    def _current_mode(self) -> str:
        latch = self.safety.latched
        if latch is not None:
            return latch
        if self._stale:
            return "stale_sensor"
        if self._control == "teleop_lost":
            return "teleop_lost"
        if self._goal is not None:
            return "reset"
        if self._control == "teleop":
            # as for the policy: "teleop" only while a teleop set-point is in force
            return "teleop" if self._teleop else "hold"
        if self._policy:
            return "policy"
        return "hold"

    # -- publishing -----------------------------------------------------------------------------

    def _publish_state(self, state: ArmState) -> None:
        header = msgs.stamped_header(self.config.frame_id)
        finger = state.gripper_width / 2.0
        self._joint_states.publish(
            msgs.JointState(
                header=header,
                name=[*self.backend.joint_names, "finger_joint1", "finger_joint2"],
                position=[*map(float, state.joint_positions), finger, finger],
                velocity=[*map(float, state.joint_velocities), 0.0, 0.0],
            )
        )
        x, y, z = map(float, state.tcp_position)
        qx, qy, qz, qw = map(float, state.tcp_orientation)
        self._tcp_pose.publish(
            msgs.PoseStamped(
                header=header,
                pose=msgs.Pose(msgs.Point(x, y, z), msgs.Quaternion(qx, qy, qz, qw)),
            )
        )

    def _publish_mode(self, force: bool = False) -> None:
        mode = self._current_mode()
        if force or mode != getattr(self, "_published_mode", None):
            self._published_mode = mode
            self._control_mode.publish(msgs.String(mode))

    def publish_diagnostics(self, now: float) -> None:
        """Publish the safety summary and the driver's counters on ``/diagnostics``."""
        array = to_diagnostic_array(self.safety.summary(now), hardware_id=self.backend.name)
        with self._lock:
            counts = dict(self.counts)
        mode, level, message = self.mode, msgs.DiagnosticStatus.OK, self.mode
        if mode in ("estop", "recovery_limit"):
            level = msgs.DiagnosticStatus.ERROR
        elif mode == "teleop_lost":
            level = msgs.DiagnosticStatus.WARN
            message = f"teleop_lost: no teleop message for over {self.config.teleop_lease:g} s"
        elif mode == "stale_sensor":
            level = msgs.DiagnosticStatus.WARN
            message = f"stale_sensor: {', '.join(self._stale)}"
        array.status.append(
            msgs.DiagnosticStatus(
                level=level,
                name="robotrl: driver",
                message=message,
                hardware_id=self.backend.name,
                values=[msgs.KeyValue(key, str(value)) for key, value in sorted(counts.items())],
            )
        )
        self._diagnostics.publish(array)

    # -- cameras --------------------------------------------------------------------------------

    def _camera_loop(self) -> None:
        camera_loop(self.cameras, self.backend, self.config, self._stop)

    # -- reading back ---------------------------------------------------------------------------

    def records(self) -> list[CommandRecord]:
        """A copy of the command record."""
        with self._lock:
            return list(self.record)


def _twist_vector(twist: msgs.Twist) -> FloatArray:
    linear, angular = twist.linear, twist.angular
    return np.array(
        [linear.x, linear.y, linear.z, angular.x, angular.y, angular.z], dtype=np.float64
    )


def joint_trajectory(
    joint_names: Sequence[str], positions: Sequence[float], seconds: float = 2.0
) -> msgs.JointTrajectory:
    """A one-point ``JointTrajectory`` to ``positions`` (what a reset sends)."""
    return msgs.JointTrajectory(
        header=msgs.stamped_header(""),
        joint_names=list(joint_names),
        points=[
            msgs.JointTrajectoryPoint(
                positions=[float(p) for p in positions],
                time_from_start=msgs.duration_from_seconds(seconds),
            )
        ],
    )
