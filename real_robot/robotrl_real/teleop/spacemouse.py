"""SpaceMouse teleop from raw HID reports; see :mod:`robotrl_real.teleop`."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from robotrl_real.teleop.base import (
    InterventionSwitch,
    TeleopCommand,
    _check_speeds,
    apply_deadzone,
)


@dataclass
class SpaceMouseConfig:
    """SpaceMouse scaling (module docstring): counts at full deflection, deadzone, speeds."""

    full_scale: float = 350.0
    deadzone: float = 0.05
    linear_speed: float = 0.05
    angular_speed: float = 0.3
    axis_signs: tuple[float, float, float, float, float, float] = (1, -1, -1, 1, -1, -1)
    intervention_mode: str = "toggle"
    intervention_button: int = 0
    gripper_button: int = 1

    def __post_init__(self) -> None:
        _check_speeds(self.linear_speed, self.angular_speed)
        apply_deadzone(0.0, self.deadzone)
        if not self.full_scale > 0:
            raise ValueError(f"full_scale must be positive, got {self.full_scale}")
        if len(self.axis_signs) != 6 or any(s not in (-1, 1) for s in self.axis_signs):
            raise ValueError(f"axis_signs must be six of +-1, got {self.axis_signs}")
        if self.intervention_button == self.gripper_button:
            raise ValueError("intervention and gripper buttons must differ")


@dataclass(frozen=True)
class SpaceMouseState:
    """Raw HID state: the six axes in counts (x, y, z, rx, ry, rz) and the button bitmask."""

    axes: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)
    buttons: int = 0


TRANSLATION_REPORT, ROTATION_REPORT, BUTTON_REPORT = 1, 2, 3


def parse_spacemouse_report(
    report: bytes | Sequence[int], state: SpaceMouseState
) -> SpaceMouseState:
    """``state`` updated by one HID input report (byte 0 is the report id; see module docstring).

    Reports with other ids (battery level of wireless models, ...) leave the state unchanged.
    """
    data = bytes(report)
    if not data:
        raise ValueError("empty HID report")
    report_id, payload = data[0], data[1:]
    axes = list(state.axes)
    if report_id in (TRANSLATION_REPORT, ROTATION_REPORT):
        if len(payload) < 6:
            raise ValueError(
                f"SpaceMouse report {report_id} needs 6 payload bytes (3 int16), got {len(payload)}"
            )
        if report_id == TRANSLATION_REPORT and len(payload) >= 12:
            axes = list(struct.unpack_from("<6h", payload))  # one report with all six axes
        else:
            first = 0 if report_id == TRANSLATION_REPORT else 3
            axes[first : first + 3] = struct.unpack_from("<3h", payload)
        return replace(state, axes=tuple(axes))  # type: ignore[arg-type]
    if report_id == BUTTON_REPORT:
        return replace(state, buttons=int.from_bytes(payload, "little"))
    return state


class HidDevice(Protocol):
    """The part of ``hid.device`` (hidapi) we use: a non-blocking ``read``."""

    def read(self, max_length: int) -> Sequence[int]: ...

    def close(self) -> None: ...


#: USB vendor ids of 3Dconnexion devices (old ones were sold under Logitech's id).
SPACEMOUSE_VENDOR_IDS = (0x256F, 0x046D)


def open_spacemouse() -> HidDevice:
    """The first connected SpaceMouse, opened non-blocking through hidapi."""
    try:
        import hid
    except ImportError as error:
        raise ImportError(
            "SpaceMouse teleop reads HID reports through hidapi: "
            "pip install 'robotrl-real[spacemouse]' (or pip install hidapi)"
        ) from error
    for info in hid.enumerate():
        # usage page 1 (generic desktop), usage 8 (multi-axis controller)
        if info["vendor_id"] in SPACEMOUSE_VENDOR_IDS and info.get("usage") in (8, 0):
            device = hid.device()
            device.open_path(info["path"])
            device.set_nonblocking(1)
            return device
    raise OSError("no 3Dconnexion SpaceMouse found (check the udev rule for /dev/hidraw*)")


class SpaceMouseTeleop:
    """Teleop from a SpaceMouse's raw HID reports (module docstring)."""

    def __init__(self, device: HidDevice | None = None, config: SpaceMouseConfig | None = None):
        self.config = SpaceMouseConfig() if config is None else config
        self.device = open_spacemouse() if device is None else device
        self.state = SpaceMouseState()
        self.gripper = 0.0
        self.switch = InterventionSwitch(self.config.intervention_mode)

    def _update_buttons(self, before: int, after: int) -> None:
        for bit, on_change in (
            (self.config.intervention_button, self._intervention_button),
            (self.config.gripper_button, self._gripper_button),
        ):
            was, now = bool(before >> bit & 1), bool(after >> bit & 1)
            if was != now:
                on_change(now)

    def _intervention_button(self, pressed: bool) -> None:
        self.switch.press() if pressed else self.switch.release()

    def _gripper_button(self, pressed: bool) -> None:
        if pressed:
            self.gripper = 1.0 - self.gripper

    def command(self) -> TeleopCommand:
        """The command of the current state (no reading)."""
        config = self.config
        normalised = [
            sign * apply_deadzone(max(-1.0, min(1.0, raw / config.full_scale)), config.deadzone)
            for raw, sign in zip(self.state.axes, config.axis_signs, strict=True)
        ]
        speeds = np.array([config.linear_speed] * 3 + [config.angular_speed] * 3)
        return TeleopCommand(np.array(normalised) * speeds, self.gripper, self.switch.active)

    def poll(self, max_reports: int = 256) -> TeleopCommand:
        for _ in range(max_reports):
            report = self.device.read(64)
            if not report:
                break
            buttons = self.state.buttons
            self.state = parse_spacemouse_report(report, self.state)
            self._update_buttons(buttons, self.state.buttons)
        return self.command()

    def close(self) -> None:
        self.device.close()
