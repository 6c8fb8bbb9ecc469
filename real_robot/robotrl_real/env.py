"""``RobotEnv``: the learning side of the real robot, a Gymnasium env that talks only ROS 2 topics.

It never touches the arm or the simulator: it subscribes the driver's camera, pose, joint-state
and control-mode topics, and publishes twists, gripper commands and reset trajectories, so the
same env runs against the sim-twin driver in tests and a real arm's driver in the lab.

**Action** ``[dx, dy, dz, gripper]`` in ``[-1, 1]``: the TCP should move by ``max_step`` × the
first three (metres, base frame) over one env period, sent as a ``TwistStamped`` with velocity
``max_step · a / period`` (the driver holds a twist for ``watchdog_timeout`` = one period at
10 Hz, so one step moves by the commanded amount); the gripper opening ``(g + 1) / 2`` (0 closed,
1 open) goes to ``/<ns>/gripper/command``. Orientation is not commanded (4-D actions).

**Observation** ``pixels`` ``uint8 [V, 3, H, W]`` (decoded camera frames, RGB, in ``cameras``
order) and ``proprio`` ``float32 [x, y, z, gripper_width]``.

**Timing.** :meth:`RobotEnv.step` keeps a fixed rate: it publishes at the start of each period
and sleeps to the next period boundary, recording the error of every step's period;
:meth:`RobotEnv.period_error_p99_ms` reports the 99th percentile (also ``info["period_p99_ms"]``).

**Stale sensors.** The driver watches every camera and holds the arm when one is stale (its
mode ``stale_sensor``); a step during which the driver's mode was ``stale_sensor`` returns
``truncated=True`` at its end, so within one env period of the driver's hold, with
``info["stale"]`` naming the streams (from the driver's ``/diagnostics``). The env also checks
for itself: a step's observation needs every camera and the TCP pose younger than
``stale_after``; if one is older, the step waits up to ``stale_wait`` for it, and if it still has
not come (a dead driver), the env sends a zero twist and truncates the same way.

**Who moved the arm.** ``info["source"]`` says which of ``"policy"``, ``"teleop"`` or ``"hold"``
produced the step: the driver's ``control_mode`` in force for most of the step's period
(``policy`` → policy, ``teleop`` → teleop, every other mode → hold; a tie → hold), with
``info["step_window"]`` the period's (start, end) on the monotonic clock.
``info["intervention"]`` is ``source == "teleop"``.

**What the arm was commanded.** ``info["executed_action"]`` is the arm's command after the
driver's safety layer, in action units, from the driver's own per-tick report: every control
tick the driver publishes ``/<ns>/commanded_twist`` (the tick's commanded TCP velocity after
safety: zero for a held tick; for a tick a twist set-point drove, that set-point's velocity
corrected by what the box and the step limits took off the tick's step, stamped with the
set-point's header stamp) and, whenever it commands the gripper, the opening it sent on the
latched ``/<ns>/gripper/commanded`` (after the gripper limits). Over one step:

- ``executed_action[:3]`` = the mean of the linear commanded velocities of the step's ticks,
  times ``period / max_step``, clipped to [-1, 1]. The step's ticks are those whose
  ``commanded_twist`` arrived during the step's period, from the first one that this step's own
  twist drove (the echoed stamp); earlier ones belong to the step before. If the step's twist
  drove none (teleop in control, a hold), all ticks of the period count. So an unclipped policy
  step gives exactly its own action, a teleop step the teleop twist in action units, a step
  whose ticks were all held zero, a step the step limit halved half its action, and a step at
  a box wall 0 along the wall's normal. A step labelled ``hold`` by majority whose other ticks
  moved shows that motion, averaged over its ticks.
- ``executed_action[3]`` = ``2 · opening - 1`` for the last gripper opening the driver
  commanded by the step's end (so a gripper limit shows, and a command the driver ignored while
  it held leaves the value of the step before); ``1`` (open, what reset sends) before the
  driver has commanded any.

**Reset** publishes a one-point ``JointTrajectory`` to ``home_joints`` plus uniform noise of
``±reset_joint_noise`` rad (from the reset seed), opens the gripper, and waits until the driver's
control mode has gone through ``reset`` and left it. A driver that is e-stopped, at its
recovery limit or holding for a lost teleop does not move: reset then returns at once with
``info["holding"]`` the driver's mode (and ``info["estop"] = True`` for the two latches).

**Reward** comes from a pluggable ``reward_fn(obs) -> (reward, success)``; privileged sim state
is not on the topics. A reward with per-episode state may define ``reset(obs)``, called with
each reset's observation. :class:`ReachReward` (negative distance of the TCP to a target) and
:class:`ProgressReachReward` (KAGI-style: a success reward, else the distance gained) are test
rewards for the sim twin.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from numpy.typing import ArrayLike, NDArray

from robotrl_real import msgs
from robotrl_real.driver import joint_trajectory
from robotrl_real.node import Node

Observation = dict[str, NDArray[Any]]
RewardFn = Callable[[Observation], tuple[float, bool]]

#: Panda home posture (rad), the sim twin's, with the gripper pointing down.
PANDA_HOME = (0.0, 0.0, 0.0, -2.2, 0.0, 2.2, math.pi / 4)
PANDA_JOINTS = tuple(f"joint{index}" for index in range(1, 8))


@dataclass
class RobotEnvConfig:
    """Settings of :class:`RobotEnv` (metres, seconds, Hz, pixels)."""

    namespace: str = "robot"
    cameras: tuple[str, ...] = ("wrist", "front")
    image_size: int = 64
    control_hz: float = 10.0
    max_step: float = 0.02  # m per step at |action| = 1
    max_episode_steps: int = 100
    stale_after: float = 0.5  # s; older camera frames / poses are stale
    stale_wait: float = 0.3  # s a step waits for a stale stream before truncating
    reset_timeout: float = 15.0
    joint_names: tuple[str, ...] = PANDA_JOINTS
    home_joints: tuple[float, ...] = PANDA_HOME
    reset_joint_noise: float = 0.05  # rad, uniform
    frame_id: str = "base"

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("RobotEnv needs at least one camera")
        if not 8 <= self.image_size <= 512:
            raise ValueError(f"image_size must be in [8, 512], got {self.image_size}")
        for name in ("control_hz", "max_step", "stale_after", "stale_wait", "reset_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")
        if len(self.home_joints) != len(self.joint_names):
            raise ValueError(
                f"home_joints has {len(self.home_joints)} values for "
                f"{len(self.joint_names)} joint_names"
            )
        if self.max_episode_steps < 1 or self.reset_joint_noise < 0:
            raise ValueError("max_episode_steps must be >= 1 and reset_joint_noise >= 0")

    @property
    def period(self) -> float:
        return 1.0 / self.control_hz


@dataclass
class ReachReward:
    """``-‖tcp - target‖`` (m); success within ``threshold``."""

    target: tuple[float, float, float]
    threshold: float = 0.03

    def __call__(self, obs: Observation) -> tuple[float, bool]:
        distance = float(np.linalg.norm(obs["proprio"][:3] - np.asarray(self.target)))
        return -distance, distance < self.threshold


@dataclass
class ProgressReachReward:
    """KAGI's form of a reach reward: ``success_reward`` within ``threshold`` of the target,
    elsewhere ``weight · (γ Φ(o') − Φ(o))`` with ``Φ = −‖tcp − target‖`` (the metres gained
    this step, as a potential). DrQ-v2-style critics learn from it much faster than from minus
    the distance itself (robotrl.rewards.keypoints, tests/sim/test_learning.py)."""

    target: tuple[float, float, float]
    threshold: float = 0.03
    weight: float = 10.0
    success_reward: float = 1.0
    discount: float = 0.99
    _potential: float | None = field(default=None, init=False, repr=False)  # Φ(previous obs)

    def potential(self, obs: Observation) -> float:
        return -float(np.linalg.norm(obs["proprio"][:3] - np.asarray(self.target)))

    def reset(self, obs: Observation) -> None:
        self._potential = self.potential(obs)

    def __call__(self, obs: Observation) -> tuple[float, bool]:
        if self._potential is None:
            raise RuntimeError("ProgressReachReward called before reset(obs)")
        potential = self.potential(obs)
        gain = self.discount * potential - self._potential
        self._potential = potential
        success = -potential < self.threshold
        return (self.success_reward if success else self.weight * gain), success


def twist_from_action(action: ArrayLike, config: RobotEnvConfig) -> msgs.TwistStamped:
    """The ``TwistStamped`` of an action's first three values (not clipped or checked: the
    driver's safety layer is what stops bad values)."""
    values = np.asarray(action, dtype=np.float64)
    velocity = values[:3] * config.max_step / config.period
    message = msgs.TwistStamped(header=msgs.stamped_header(config.frame_id))
    message.twist.linear = msgs.Vector3(*map(float, velocity))
    return message


def action_from_twist(twist: msgs.Twist, config: RobotEnvConfig) -> NDArray[np.float32]:
    """A twist's linear part in action units (``v · period / max_step``), clipped to [-1, 1]."""
    velocity = np.array([twist.linear.x, twist.linear.y, twist.linear.z])
    return np.clip(velocity * config.period / config.max_step, -1.0, 1.0).astype(np.float32)


@dataclass
class _Latest:
    """Newest message of a stream and when it arrived (monotonic)."""

    value: Any = None
    arrival: float = -math.inf
    count: int = 0


@dataclass
class _Streams:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: dict[str, _Latest] = field(default_factory=dict)
    modes: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=100_000))
    # (arrival, header stamp, linear velocity) of every tick's commanded_twist
    commanded: deque[tuple[float, msgs.Time, NDArray[np.float64]]] = field(
        default_factory=lambda: deque(maxlen=100_000)
    )
    driver_stale: list[str] = field(default_factory=list)  # from the driver's /diagnostics


#: What produced a step, by the driver's control mode.
SOURCE_OF_MODE = {"policy": "policy", "teleop": "teleop"}  # every other mode: "hold"


class RobotEnv(gym.Env[Observation, NDArray[np.float32]]):
    """A pixel env on top of the driver topics; see the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(
        self,
        config: RobotEnvConfig | None = None,
        *,
        reward_fn: RewardFn | None = None,
        domain_id: int | None = None,
        dds_config: str | None = None,
    ) -> None:
        self.config = RobotEnvConfig() if config is None else config
        cfg = self.config
        self.reward_fn: RewardFn = reward_fn or (lambda obs: (0.0, False))
        size, views = cfg.image_size, len(cfg.cameras)
        self.observation_space = gym.spaces.Dict(  # type: ignore[assignment]
            {
                "pixels": gym.spaces.Box(0, 255, (views, 3, size, size), np.uint8),
                "proprio": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.node = Node(
            "robot_env", namespace=cfg.namespace, domain_id=domain_id, config=dds_config
        )
        self._streams = _Streams()
        self._executed_gripper = 1.0  # reset opens the gripper
        for camera in cfg.cameras:
            self._subscribe(f"/cameras/{camera}/image_raw/compressed", f"camera/{camera}")
        self._subscribe("tcp_pose", "tcp_pose")
        self._subscribe("/joint_states", "joint_states")
        self._subscribe("gripper/commanded", "gripper_commanded")
        self.node.subscription("commanded_twist", callback=self._on_commanded_twist)
        self.node.subscription("control_mode", callback=self._on_mode)
        self.node.subscription("/diagnostics", callback=self._on_diagnostics)
        self._twist = self.node.publisher("/servo_node/delta_twist_cmds")
        self._gripper = self.node.publisher("gripper/command")
        self._trajectory = self.node.publisher("/joint_trajectory_controller/joint_trajectory")
        self._steps = 0
        self._next_deadline: float | None = None
        self._last_publish: float | None = None
        self.period_errors: list[float] = []  # s, actual minus nominal period per step

    # -- subscriptions (DDS threads) --------------------------------------------------------------

    def _subscribe(self, topic: str, key: str) -> None:
        self._streams.latest[key] = _Latest()

        def on_message(message: Any) -> None:
            with self._streams.lock:
                latest = self._streams.latest[key]
                latest.value, latest.arrival = message, time.monotonic()
                latest.count += 1

        self.node.subscription(topic, callback=on_message)

    def _on_mode(self, message: msgs.String) -> None:
        with self._streams.lock:
            self._streams.modes.append((time.monotonic(), message.data))

    def _on_commanded_twist(self, message: msgs.TwistStamped) -> None:
        linear = message.twist.linear
        velocity = np.array([linear.x, linear.y, linear.z])
        with self._streams.lock:
            self._streams.commanded.append((time.monotonic(), message.header.stamp, velocity))

    def _on_diagnostics(self, message: msgs.DiagnosticArray) -> None:
        for status in message.status:
            if status.name == "robotrl: safety":
                values = {kv.key: kv.value for kv in status.values}
                stale = [name for name in values.get("stale_sensors", "").split(",") if name]
                with self._streams.lock:
                    self._streams.driver_stale = stale

    # -- Gymnasium API ----------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        super().reset(seed=seed)
        cfg = self.config
        noise = self.np_random.uniform(
            -cfg.reset_joint_noise, cfg.reset_joint_noise, len(cfg.home_joints)
        )
        joints = np.asarray(cfg.home_joints) + noise
        self._wait_for_subscribers()
        sent = time.monotonic()
        self._gripper.publish(msgs.Float64(1.0))
        self._trajectory.publish(joint_trajectory(cfg.joint_names, joints))
        holding = self._wait_for_reset(sent)
        estop = holding in ("estop", "recovery_limit")
        self._executed_gripper = 1.0
        self._steps = 0
        self._next_deadline = None
        self._last_publish = None
        obs, stale = self._observe(wait=cfg.reset_timeout if holding is None else cfg.stale_wait)
        if stale and holding is None:
            raise RuntimeError(
                f"reset: no fresh data from {', '.join(stale)} within {cfg.reset_timeout} s; "
                "is the driver running and are its cameras alive?"
            )
        info: dict[str, Any] = {
            "estop": estop,
            "holding": holding,
            "reset_joints": joints,
            "stale": stale,
        }
        reset_reward = getattr(self.reward_fn, "reset", None)
        if reset_reward is not None:
            reset_reward(obs)
        return obs, info

    def step(self, action: ArrayLike) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        cfg = self.config
        values = np.asarray(action, dtype=np.float64)
        if values.shape != (4,):
            raise ValueError(
                f"action must have shape (4,) [dx, dy, dz, gripper], got {values.shape}"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"action must be finite, got {values.tolist()}")
        values = np.clip(values, -1.0, 1.0)
        self._wait_for_period_start()
        start = time.monotonic()
        twist = twist_from_action(values, cfg)
        self._twist.publish(twist)
        self._gripper.publish(msgs.Float64((values[3] + 1.0) / 2.0))
        self._sleep_to_deadline()
        end = time.monotonic()
        durations = self._mode_durations(start, end)
        source = max(
            ("hold", "teleop", "policy"),
            key=lambda name: sum(t for m, t in durations.items() if _source(m) == name),
        )  # a tie goes to the first: hold
        driver_stale: list[str] = []
        if durations.get("stale_sensor", 0.0) > 0:
            with self._streams.lock:
                driver_stale = list(self._streams.driver_stale) or ["driver"]
        obs, own_stale = self._observe(wait=0.0 if driver_stale else cfg.stale_wait)
        stale = sorted(set(own_stale) | set(driver_stale))
        self._steps += 1
        executed = self._executed_action(start, end, twist.header.stamp)
        info: dict[str, Any] = {
            "source": source,
            "intervention": source == "teleop",
            "executed_action": executed,
            "step_window": (start, end),
            "modes": durations,
            "stale": stale,
            "period_p99_ms": self.period_error_p99_ms(),
        }
        if stale:
            self._twist.publish(twist_from_action(np.zeros(3), cfg))  # hold; the watchdog too
            info["success"] = False
            return obs, 0.0, False, True, info
        reward, success = self.reward_fn(obs)
        info["success"] = success
        truncated = self._steps >= cfg.max_episode_steps
        return obs, float(reward), False, truncated, info

    def close(self) -> None:
        self.node.close()

    # -- timing -----------------------------------------------------------------------------------

    def _wait_for_period_start(self) -> None:
        now = time.monotonic()
        if self._next_deadline is not None and now < self._next_deadline:
            time.sleep(self._next_deadline - now)
        now = time.monotonic()
        if self._last_publish is not None:
            self.period_errors.append(now - self._last_publish - self.config.period)
        self._last_publish = now
        self._next_deadline = now + self.config.period

    def _sleep_to_deadline(self) -> None:
        assert self._next_deadline is not None
        remaining = self._next_deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def period_error_p99_ms(self) -> float:
        """99th percentile of ``|actual - nominal|`` step period (ms); NaN before two steps."""
        if not self.period_errors:
            return math.nan
        return float(np.percentile(np.abs(self.period_errors), 99) * 1000.0)

    def _mode_durations(self, start: float, end: float) -> dict[str, float]:
        """Seconds of ``[start, end]`` that each driver control mode was in force (by arrival of
        the ``control_mode`` messages)."""
        with self._streams.lock:
            modes = list(self._streams.modes)
        durations: dict[str, float] = {}
        current, since = None, start
        for stamp, mode in modes:
            if stamp >= end:
                break
            if stamp > start and current is not None:
                durations[current] = durations.get(current, 0.0) + stamp - since
            current, since = mode, max(stamp, start)
        if current is not None:
            durations[current] = durations.get(current, 0.0) + end - since
        return durations

    def _executed_action(self, start: float, end: float, own: msgs.Time) -> NDArray[np.float32]:
        """What the driver commanded over ``[start, end]``, after safety, in action units (see
        the module docstring)."""
        cfg = self.config
        with self._streams.lock:
            ticks = [(s, v) for t, s, v in self._streams.commanded if start <= t <= end]
            gripper = self._streams.latest["gripper_commanded"].value
        # the ticks before the first one this step's twist drove belong to the step before
        first = next((i for i, (stamp, _) in enumerate(ticks) if stamp == own), 0)
        motion = np.zeros(3)
        if ticks[first:]:
            velocity = np.mean([v for _, v in ticks[first:]], axis=0)
            motion = np.clip(velocity * cfg.period / cfg.max_step, -1.0, 1.0)
        if gripper is not None:
            self._executed_gripper = float(np.clip(2.0 * gripper.data - 1.0, -1.0, 1.0))
        return np.array([*motion, self._executed_gripper], np.float32)

    # -- observations -----------------------------------------------------------------------------

    def _stale_streams(self, now: float) -> list[str]:
        keys = [f"camera/{camera}" for camera in self.config.cameras] + ["tcp_pose"]
        with self._streams.lock:
            return [
                key
                for key in keys
                if now - self._streams.latest[key].arrival > self.config.stale_after
            ]

    def _observe(self, wait: float) -> tuple[Observation, list[str]]:
        deadline = time.monotonic() + wait
        stale = self._stale_streams(time.monotonic())
        while stale and time.monotonic() < deadline:
            time.sleep(0.01)
            stale = self._stale_streams(time.monotonic())
        return self._build_observation(), stale

    def _build_observation(self) -> Observation:
        cfg = self.config
        size = cfg.image_size
        pixels = np.zeros((len(cfg.cameras), 3, size, size), np.uint8)
        with self._streams.lock:
            images = [self._streams.latest[f"camera/{c}"].value for c in cfg.cameras]
            pose = self._streams.latest["tcp_pose"].value
            joints = self._streams.latest["joint_states"].value
        for index, image in enumerate(images):
            if image is not None:
                pixels[index] = decode_image(image, size).transpose(2, 0, 1)
        proprio = np.zeros(4, np.float32)
        if pose is not None:
            position = pose.pose.position
            proprio[:3] = (position.x, position.y, position.z)
        if joints is not None:
            names_positions = zip(joints.name, joints.position, strict=False)
            proprio[3] = float(sum(p for n, p in names_positions if n.startswith("finger")))
        return {"pixels": pixels, "proprio": proprio}

    # -- reset helpers ----------------------------------------------------------------------------

    def _wait_for_subscribers(self, timeout: float = 5.0) -> None:
        for publisher in (self._twist, self._gripper, self._trajectory):
            if not publisher.wait_for_subscribers(1, timeout):
                raise RuntimeError(
                    f"no driver subscribes {publisher.spec.name} after {timeout} s; "
                    "is robotrl-robot running in this domain and namespace?"
                )

    def _wait_for_reset(self, sent: float) -> str | None:
        """Wait until the driver went into ``reset`` and out again; the driver's mode if it
        holds whatever is sent (e-stop, recovery limit, lost teleop), else None."""
        deadline = sent + self.config.reset_timeout
        started = False
        while time.monotonic() < deadline:
            with self._streams.lock:
                modes = [mode for stamp, mode in self._streams.modes if stamp >= sent]
                last = self._streams.modes[-1][1] if self._streams.modes else None
            if last in ("estop", "recovery_limit", "teleop_lost"):
                return last
            started = started or "reset" in modes
            if started and last != "reset":
                return None
            if not started and time.monotonic() - sent > 1.0 and last not in (None, "reset"):
                return None  # the goal was already reached before a reset mode was seen
            time.sleep(0.01)
        raise TimeoutError(
            f"the driver did not finish the reset within {self.config.reset_timeout} s"
        )


def _source(mode: str) -> str:
    return SOURCE_OF_MODE.get(mode, "hold")


def decode_image(message: msgs.CompressedImage, size: int) -> NDArray[np.uint8]:
    """A ``CompressedImage`` as an RGB ``[size, size, 3]`` array (resized if needed)."""
    buffer = np.frombuffer(message.data_bytes(), dtype=np.uint8)
    bgr: NDArray[Any] | None = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"could not decode a {message.format!r} image of {buffer.size} bytes")
    if bgr.shape[:2] != (size, size):
        bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return rgb


__all__: Sequence[str] = (
    "ProgressReachReward",
    "ReachReward",
    "RobotEnv",
    "RobotEnvConfig",
    "action_from_twist",
    "decode_image",
    "twist_from_action",
)
