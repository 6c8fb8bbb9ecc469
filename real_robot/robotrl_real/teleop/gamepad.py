"""Gamepad teleop from evdev events; see :mod:`robotrl_real.teleop`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from robotrl_real.teleop.base import (
    ABS_RX,
    ABS_RY,
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
    KEY_DOWN,
    KEY_HOLD,
    EvdevSource,
    EventSource,
    InterventionSwitch,
    TeleopCommand,
    _check_speeds,
    apply_deadzone,
    find_evdev_device,
)


@dataclass
class GamepadConfig:
    """Gamepad teleop: speeds at full deflection, deadzone, and axis ranges.

    ``axis_ranges`` overrides the ``(min, max)`` of absolute axes; unset axes take the device's
    ``absinfo`` or, without one, the xpad defaults (sticks -32768..32767, triggers 0..1023).
    """

    linear_speed: float = 0.05
    angular_speed: float = 0.3
    deadzone: float = 0.1
    intervention_mode: str = "toggle"
    axis_ranges: Mapping[int, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_speeds(self.linear_speed, self.angular_speed)
        apply_deadzone(0.0, self.deadzone)  # validates
        for code, (low, high) in self.axis_ranges.items():
            if not high > low:
                raise ValueError(f"axis {code}: range ({low}, {high}) is empty")


_STICKS = (ABS_X, ABS_Y, ABS_RX, ABS_RY)
_TRIGGERS = (ABS_Z, ABS_RZ)
_DEFAULT_RANGES = {**{a: (-32768, 32767) for a in _STICKS}, **{a: (0, 1023) for a in _TRIGGERS}}


class GamepadTeleop:
    """Teleop from an evdev gamepad (module docstring); ``source`` defaults to the first one."""

    def __init__(self, source: EventSource | None = None, config: GamepadConfig | None = None):
        self.config = GamepadConfig() if config is None else config
        self.source: EventSource = (
            EvdevSource(find_evdev_device("gamepad")) if source is None else source
        )
        self.ranges = dict(_DEFAULT_RANGES)
        if isinstance(self.source, EvdevSource):
            for code in self.ranges:
                info = self.source.absinfo(code)
                if info is not None and info[1] > info[0]:
                    self.ranges[code] = info
        self.ranges.update(self.config.axis_ranges)
        self.axes = {code: 0.0 for code in self.ranges}  # normalised: sticks [-1,1], triggers [0,1]
        self.bumpers = {BTN_TL: False, BTN_TR: False}
        self.gripper = 0.0
        self.switch = InterventionSwitch(self.config.intervention_mode)

    def _normalise(self, code: int, value: int) -> float:
        low, high = self.ranges[code]
        unit = (min(max(value, low), high) - low) / (high - low)  # [0, 1]
        if code in _TRIGGERS:
            return apply_deadzone(unit, self.config.deadzone)
        return apply_deadzone(2.0 * unit - 1.0, self.config.deadzone)

    def poll(self) -> TeleopCommand:
        for event in self.source.read():
            if event.type == EV_ABS and event.code in self.axes:
                self.axes[event.code] = self._normalise(event.code, event.value)
            elif event.type == EV_KEY and event.value != KEY_HOLD:
                pressed = event.value == KEY_DOWN
                if event.code == BTN_SOUTH:
                    self.switch.press() if pressed else self.switch.release()
                elif event.code == BTN_EAST and pressed:
                    self.gripper = 1.0 - self.gripper
                elif event.code in self.bumpers:
                    self.bumpers[event.code] = pressed
        a = self.axes
        # Stick y grows downward; pushing a stick forward/left should move forward/left.
        direction = np.array(
            [
                -a[ABS_Y],
                -a[ABS_X],
                a[ABS_RZ] - a[ABS_Z],
                float(self.bumpers[BTN_TR]) - float(self.bumpers[BTN_TL]),
                -a[ABS_RY],
                -a[ABS_RX],
            ]
        )
        speeds = np.array([self.config.linear_speed] * 3 + [self.config.angular_speed] * 3)
        return TeleopCommand(direction * speeds, self.gripper, self.switch.active)

    def close(self) -> None:
        self.source.close()
