"""The teleop contract (:class:`TeleopCommand`, :class:`TeleopDevice`), the intervention switch,
the deadzone, and Linux input events; see :mod:`robotrl_real.teleop`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np


@dataclass(frozen=True)
class TeleopCommand:
    """What a device says now: twist (m/s, rad/s; base frame), gripper in [0, 1], takeover."""

    twist: np.ndarray
    gripper: float = 0.0
    intervene: bool = False

    def __post_init__(self) -> None:
        twist = np.asarray(self.twist, dtype=np.float64)
        if twist.shape != (6,) or not np.all(np.isfinite(twist)):
            raise ValueError(f"twist must be 6 finite numbers, got {self.twist!r}")
        if not (math.isfinite(self.gripper) and 0.0 <= self.gripper <= 1.0):
            raise ValueError(f"gripper must be in [0, 1], got {self.gripper!r}")
        object.__setattr__(self, "twist", twist)
        object.__setattr__(self, "intervene", bool(self.intervene))


class TeleopDevice(Protocol):
    """A teleop input: ``poll`` never blocks; ``close`` releases the device."""

    def poll(self) -> TeleopCommand: ...

    def close(self) -> None: ...


class InterventionSwitch:
    """Turns button presses into the takeover state: ``"toggle"`` or ``"hold"`` (module doc)."""

    def __init__(self, mode: str = "toggle", active: bool = False) -> None:
        if mode not in ("toggle", "hold"):
            raise ValueError(f"intervention_mode must be 'toggle' or 'hold', got {mode!r}")
        self.mode = mode
        self.active = active
        self._held = False

    def press(self) -> None:
        if not self._held and self.mode == "toggle":
            self.active = not self.active
        self._held = True
        if self.mode == "hold":
            self.active = True

    def release(self) -> None:
        self._held = False
        if self.mode == "hold":
            self.active = False


def apply_deadzone(value: float, deadzone: float) -> float:
    """``value`` in [-1, 1] through a rescaled deadzone (module docstring)."""
    if not 0.0 <= deadzone < 1.0:
        raise ValueError(f"deadzone must be in [0, 1), got {deadzone}")
    magnitude = abs(value)
    if magnitude < deadzone:
        return 0.0
    return math.copysign(min((magnitude - deadzone) / (1.0 - deadzone), 1.0), value)


def _check_speeds(linear_speed: float, angular_speed: float) -> None:
    if not (linear_speed > 0 and angular_speed > 0):
        raise ValueError(
            f"speeds must be positive, got linear {linear_speed}, angular {angular_speed}"
        )


class InputEvent(NamedTuple):
    """A Linux input event as evdev delivers it (``evdev.InputEvent`` has the same fields)."""

    type: int
    code: int
    value: int


class EventSource(Protocol):
    """Non-blocking input events: everything that arrived since the last call."""

    def read(self) -> Iterable[Any]: ...

    def close(self) -> None: ...


# Linux input-event codes (include/uapi/linux/input-event-codes.h), a stable kernel ABI; kept
# here so this module imports without evdev.
EV_KEY, EV_ABS = 0x01, 0x03
ABS_X, ABS_Y, ABS_Z, ABS_RX, ABS_RY, ABS_RZ = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
BTN_SOUTH, BTN_EAST, BTN_NORTH, BTN_WEST = 0x130, 0x131, 0x133, 0x134
BTN_TL, BTN_TR = 0x136, 0x137
KEY_UP, KEY_DOWN, KEY_HOLD = 0, 1, 2  # ... and the value of an autorepeat event


class EvdevSource:
    """Events of one ``/dev/input/event*`` device, read without blocking (needs ``evdev``)."""

    def __init__(self, path: str) -> None:
        evdev = _import_evdev()
        self.device = evdev.InputDevice(path)

    def read(self) -> list[Any]:
        try:
            return list(self.device.read())
        except BlockingIOError:  # nothing new since the last read
            return []

    def absinfo(self, code: int) -> tuple[int, int] | None:
        """The ``(min, max)`` range of an absolute axis, if the device has it."""
        for axis, info in self.device.capabilities().get(EV_ABS, []):
            if axis == code:
                return int(info.min), int(info.max)
        return None

    def close(self) -> None:
        self.device.close()


def _import_evdev() -> Any:
    try:
        import evdev
    except ImportError as error:
        raise ImportError(
            "keyboard and gamepad teleop read Linux input devices through evdev: "
            "pip install 'robotrl-real[teleop]' (or pip install evdev)"
        ) from error
    return evdev


def find_evdev_device(kind: str) -> str:
    """The path of the first ``"keyboard"`` (has KEY_A) or ``"gamepad"`` (has BTN_SOUTH)."""
    evdev = _import_evdev()
    wanted = {"keyboard": evdev.ecodes.KEY_A, "gamepad": BTN_SOUTH}.get(kind)
    if wanted is None:
        raise ValueError(f"kind must be 'keyboard' or 'gamepad', got {kind!r}")
    for path in evdev.list_devices():
        device = evdev.InputDevice(path)
        try:
            if wanted in device.capabilities().get(EV_KEY, []):
                return str(path)
        finally:
            device.close()
    raise OSError(
        f"no {kind} among the readable /dev/input/event* devices; is the user in the 'input' group?"
    )
