"""Publishes a teleop device on DDS; see :mod:`robotrl_real.teleop`."""

from __future__ import annotations

import logging
import math
import threading
import time
from types import TracebackType

import numpy as np

from robotrl_real import msgs
from robotrl_real.node import Node
from robotrl_real.teleop.base import (
    TeleopCommand,
    TeleopDevice,
)

logger = logging.getLogger(__name__)


class TeleopPublisher:
    """Polls a device at ``rate_hz`` and publishes intervention + twist (module docstring).

    Use :meth:`step` for one poll-and-publish, or :meth:`start`/:meth:`stop` (or ``with``) for a
    background thread at the rate.
    """

    def __init__(
        self,
        node: Node,
        device: TeleopDevice,
        *,
        rate_hz: float = 50.0,
        frame_id: str = "base_link",
        publish_gripper: bool = False,
    ) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.device = device
        self.period = 1.0 / rate_hz
        self.frame_id = frame_id
        self.intervention = node.publisher("teleop/intervention")
        self.twist = node.publisher("teleop/twist")
        self.gripper = node.publisher("gripper/command") if publish_gripper else None
        self.last_command: TeleopCommand | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _publish_twist(self, twist: np.ndarray) -> None:
        vx, vy, vz, wx, wy, wz = (float(v) for v in twist)
        self.twist.publish(
            msgs.TwistStamped(
                header=msgs.stamped_header(self.frame_id),
                twist=msgs.Twist(msgs.Vector3(vx, vy, vz), msgs.Vector3(wx, wy, wz)),
            )
        )

    def step(self) -> TeleopCommand:
        """Poll the device once and publish what it says."""
        command = self.device.poll()
        self.intervention.publish(msgs.Bool(command.intervene))
        self._publish_twist(command.twist)
        if self.gripper is not None and command.intervene:
            self.gripper.publish(msgs.Float64(command.gripper))
        self.last_command = command
        return command

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as error:  # a dead device must stop the arm, not the process
                logger.exception("teleop device failed; publishing a zero twist and stopping")
                self.error = error
                self._publish_twist(np.zeros(6))
                return
            next_tick += self.period
            delay = next_tick - time.monotonic()
            if delay < 0:  # fell behind (slow device): restart the schedule, no burst
                next_tick, delay = time.monotonic(), 0.0
            self._stop.wait(delay)

    def start(self) -> None:
        """Start publishing at the rate on a background thread."""
        if self._thread is not None:
            raise RuntimeError("the teleop publisher is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="teleop-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; re-raises the device's error if it stopped because of one."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise RuntimeError("the teleop device failed") from error

    def __enter__(self) -> TeleopPublisher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
