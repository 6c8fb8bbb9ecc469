"""Simulators for robotrl: the built-in pixel tasks and benchmark adapters.

The core finds the suites through the ``robotrl.envs`` entry points (``builtin``, ``dmc``,
``metaworld``); each suite module exposes
``make_env(task, *, seed, image_size, action_repeat, **options)``.
"""

import os

# Headless EGL rendering unless the user chose a backend; MuJoCo reads this when it first renders,
# so it has to be set before any submodule imports mujoco or dm_control.
os.environ.setdefault("MUJOCO_GL", "egl")

# Submodules may import mujoco, so they come after MUJOCO_GL is set.
from robotrl_sim._common import UnknownTaskError

__all__ = ["UnknownTaskError"]
