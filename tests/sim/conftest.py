"""Headless EGL rendering for every simulator test, whatever a test module imports first.

``robotrl_sim`` sets the same default, but dm_control picks its GL backend when it is first
imported, and a test module may import dm_control before robotrl_sim.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
