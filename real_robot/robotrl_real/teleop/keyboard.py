"""Keyboard teleop: held keys -> twist; see :mod:`robotrl_real.teleop`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from robotrl_real.teleop.base import (
    EV_KEY,
    KEY_DOWN,
    KEY_HOLD,
    EvdevSource,
    InterventionSwitch,
    TeleopCommand,
    _check_speeds,
    _import_evdev,
    find_evdev_device,
)

#: key name -> (twist axis, direction); axes are vx, vy, vz, wx (roll), wy (pitch), wz (yaw).
DEFAULT_KEY_BINDINGS: dict[str, tuple[int, float]] = {
    "w": (0, 1.0),
    "s": (0, -1.0),
    "a": (1, 1.0),
    "d": (1, -1.0),
    "r": (2, 1.0),
    "f": (2, -1.0),
    "u": (3, 1.0),
    "o": (3, -1.0),
    "i": (4, 1.0),
    "k": (4, -1.0),
    "j": (5, 1.0),
    "l": (5, -1.0),
}


@dataclass
class KeyboardConfig:
    """Keyboard teleop: speeds at a held key, bindings, and the special keys."""

    linear_speed: float = 0.05
    angular_speed: float = 0.3
    bindings: Mapping[str, tuple[int, float]] = field(
        default_factory=lambda: dict(DEFAULT_KEY_BINDINGS)
    )
    intervention_key: str = "space"
    close_key: str = "c"
    open_key: str = "v"
    intervention_mode: str = "toggle"

    def __post_init__(self) -> None:
        _check_speeds(self.linear_speed, self.angular_speed)
        for key, (axis, direction) in self.bindings.items():
            if axis not in range(6) or direction not in (-1.0, 1.0):
                raise ValueError(f"binding {key!r}: axis must be 0..5 and direction +-1")
        special = {self.intervention_key, self.close_key, self.open_key}
        if len(special) != 3 or special & set(self.bindings):
            raise ValueError(
                "intervention, close and open keys must differ from each other and "
                "from the motion bindings"
            )


class KeyEvent(NamedTuple):
    """A key going down (``pressed``) or up; ``key`` is a lower-case name (``"w"``, ``"space"``)."""

    key: str
    pressed: bool


class KeySource(Protocol):
    """Key events since the last call, without blocking."""

    def read(self) -> Iterable[KeyEvent]: ...

    def close(self) -> None: ...


class EvdevKeyboard:
    """:class:`KeySource` of a Linux keyboard (default: the first one found)."""

    def __init__(self, path: str | None = None) -> None:
        self._evdev = _import_evdev()
        self._source = EvdevSource(path or find_evdev_device("keyboard"))

    def read(self) -> list[KeyEvent]:
        events = []
        for event in self._source.read():
            if event.type != EV_KEY or event.value == KEY_HOLD:
                continue
            name = self._evdev.ecodes.KEY.get(event.code)
            if isinstance(name, list):  # codes with aliases list every name
                name = name[0]
            if isinstance(name, str) and name.startswith("KEY_"):
                events.append(KeyEvent(name[4:].lower(), event.value == KEY_DOWN))
        return events

    def close(self) -> None:
        self._source.close()


class KeyboardTeleop:
    """Teleop from held keys (module docstring); ``source`` defaults to an evdev keyboard."""

    def __init__(self, source: KeySource | None = None, config: KeyboardConfig | None = None):
        self.config = KeyboardConfig() if config is None else config
        self.source: KeySource = EvdevKeyboard() if source is None else source
        self.held: set[str] = set()
        self.gripper = 0.0
        self.switch = InterventionSwitch(self.config.intervention_mode)

    def poll(self) -> TeleopCommand:
        config = self.config
        for key, pressed in self.source.read():
            if key == config.intervention_key:
                self.switch.press() if pressed else self.switch.release()
            elif pressed and key == config.close_key:
                self.gripper = 1.0
            elif pressed and key == config.open_key:
                self.gripper = 0.0
            if pressed:
                self.held.add(key)
            else:
                self.held.discard(key)
        direction = np.zeros(6)
        for key in self.held:
            if key in config.bindings:
                axis, sign = config.bindings[key]
                direction[axis] += sign
        direction = np.clip(direction, -1.0, 1.0)  # opposite keys cancel
        speeds = np.array([config.linear_speed] * 3 + [config.angular_speed] * 3)
        return TeleopCommand(direction * speeds, self.gripper, self.switch.active)

    def close(self) -> None:
        self.source.close()
