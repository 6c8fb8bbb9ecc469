"""Teleoperation devices for human interventions (HIL-SERL), and a publisher that puts them on DDS.

Every device is a :class:`TeleopDevice`: ``poll()`` returns the current :class:`TeleopCommand`
(a Cartesian twist ``[vx, vy, vz, wx, wy, wz]`` in m/s and rad/s in the robot base frame, a
gripper command in ``[0, 1]`` (0 open, 1 closed) and whether the human has taken over), never
blocks, and drains whatever input arrived since the last poll.

Taking over (:class:`InterventionSwitch`): by default a press of the intervention button
*toggles* the takeover (press once to take over, press again to hand back), so the human can let
go of a button while steering; ``intervention_mode="hold"`` makes it a dead-man switch instead
(intervening exactly while the button is held). Button presses are handled per input event, so a
press and release between two polls still toggles.

Devices (one module each in this package, all re-exported here):

- :class:`KeyboardTeleop`: held keys -> unit directions per axis x ``linear_speed`` /
  ``angular_speed`` (default bindings in :data:`DEFAULT_KEY_BINDINGS`; ``space`` intervenes,
  ``c``/``v`` close/open the gripper). The key source is injectable; the default reads a Linux
  keyboard through ``evdev`` (needs read access to ``/dev/input/event*``).
- :class:`GamepadTeleop`: an evdev gamepad (Xbox layout as the Linux ``xpad``/``hid`` drivers
  report it). Left stick: x/y translation; triggers: z down/up; right stick: pitch/yaw;
  bumpers: roll; A (``BTN_SOUTH``): intervention; B (``BTN_EAST``): toggle gripper. Axes are
  normalised by their ``absinfo`` range and pass a rescaled deadzone (below).
- :class:`SpaceMouseTeleop`: a 3Dconnexion SpaceMouse read as raw HID reports through ``hidapi``
  (:func:`parse_spacemouse_report`): report 1 holds translation x, y, z (6 bytes; newer models
  send all six axes, 12 bytes, in report 1), report 2 rotation rx, ry, rz, report 3 the button
  bitmask; axes are little-endian int16. Scaling: ``raw / full_scale`` (``full_scale=350``
  counts, the SpaceNavigator/SpaceMouse Compact range; Wireless/Pro models reach a little more,
  clipped to 1), then the deadzone, then ``linear_speed``/``angular_speed``. The HID frame is
  +x right, +y toward the user, +z down (pressing the cap); ``axis_signs`` maps it to a
  right-handed, z-up command frame (+x right, +y away from the user, +z up) by default.
  Left button: intervention; right button: toggle gripper.
- :class:`ScriptedTeleop`: a proportional controller toward a target pose, from a state callback;
  for scripted demos and tests.

Deadzone: ``|u| < d`` -> 0, else ``sign(u) (|u| - d) / (1 - d)``, so the output is continuous at
the edge of the deadzone and still reaches 1 at full deflection.

:class:`TeleopPublisher` polls a device at a fixed rate and publishes ``/<ns>/teleop/intervention``
(``std_msgs/Bool``) and ``/<ns>/teleop/twist`` (``geometry_msgs/TwistStamped``) on every tick,
both regardless of the intervention state, so the driver always has a fresh value and its
watchdog notices a dead teleop process (optionally ``/<ns>/gripper/command`` while intervening).
If the device fails (unplugged), the publisher sends one zero twist and stops; the driver's
watchdog then holds the arm.

Optional dependencies, imported only when a real device is opened: ``evdev`` (keyboard and
gamepad, ``pip install 'robotrl-real[teleop]'``) and ``hidapi`` (SpaceMouse,
``pip install 'robotrl-real[spacemouse]'``).
"""

from robotrl_real.teleop.base import (
    ABS_RX,
    ABS_RY,
    ABS_RZ,
    ABS_X,
    ABS_Y,
    ABS_Z,
    BTN_EAST,
    BTN_NORTH,
    BTN_SOUTH,
    BTN_TL,
    BTN_TR,
    BTN_WEST,
    EV_ABS,
    EV_KEY,
    EvdevSource,
    EventSource,
    InputEvent,
    InterventionSwitch,
    TeleopCommand,
    TeleopDevice,
    apply_deadzone,
    find_evdev_device,
)
from robotrl_real.teleop.gamepad import GamepadConfig, GamepadTeleop
from robotrl_real.teleop.keyboard import (
    DEFAULT_KEY_BINDINGS,
    EvdevKeyboard,
    KeyboardConfig,
    KeyboardTeleop,
    KeyEvent,
    KeySource,
)
from robotrl_real.teleop.publisher import TeleopPublisher
from robotrl_real.teleop.scripted import (
    ScriptedTeleop,
    ScriptedTeleopConfig,
    quaternion_multiply,
    rotation_vector,
)
from robotrl_real.teleop.spacemouse import (
    SpaceMouseConfig,
    SpaceMouseState,
    SpaceMouseTeleop,
    open_spacemouse,
    parse_spacemouse_report,
)

__all__ = [
    "ABS_RX",
    "ABS_RY",
    "ABS_RZ",
    "ABS_X",
    "ABS_Y",
    "ABS_Z",
    "BTN_EAST",
    "BTN_NORTH",
    "BTN_SOUTH",
    "BTN_TL",
    "BTN_TR",
    "BTN_WEST",
    "DEFAULT_KEY_BINDINGS",
    "EV_ABS",
    "EV_KEY",
    "EvdevKeyboard",
    "EvdevSource",
    "EventSource",
    "GamepadConfig",
    "GamepadTeleop",
    "InputEvent",
    "InterventionSwitch",
    "KeyEvent",
    "KeySource",
    "KeyboardConfig",
    "KeyboardTeleop",
    "ScriptedTeleop",
    "ScriptedTeleopConfig",
    "SpaceMouseConfig",
    "SpaceMouseState",
    "SpaceMouseTeleop",
    "TeleopCommand",
    "TeleopDevice",
    "TeleopPublisher",
    "apply_deadzone",
    "find_evdev_device",
    "open_spacemouse",
    "parse_spacemouse_report",
    "quaternion_multiply",
    "rotation_vector",
]
