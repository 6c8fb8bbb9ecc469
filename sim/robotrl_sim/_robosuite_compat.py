"""Makes robosuite 1.5.2 run on the project's MuJoCo (3.17), and quiets its import-time notices.

robosuite 1.5.2 requires MuJoCo >= 3.3 and was written against it. On MuJoCo 3.17 two things
break, both while the first env is built or stepped; each patch below keeps robosuite's behaviour
and only changes how it talks to MuJoCo. :func:`apply` installs them once (it is idempotent) and
``robotrl_sim.robosuite`` calls it when it first imports robosuite. Nothing in site-packages is
edited; the tests in ``tests/sim/test_robosuite.py`` prove each patch.

**1. Joint addresses** (``robosuite.utils.binding_utils.MjModel.get_joint_qpos_addr`` and
``get_joint_qvel_addr``). robosuite reads ``model.jnt_type[j]`` (a numpy integer) and, for joints
that are neither free nor ball, asserts ``joint_type in (mjJNT_HINGE, mjJNT_SLIDE)``. ``x in
tuple`` compares ``enum == x``, and MuJoCo 3.17's enum types no longer compare equal to numpy
integers from that side (``numpy.int32(3) == mjJNT_HINGE`` is True, ``mjJNT_HINGE ==
numpy.int32(3)`` is False), so the assertion fails for every robot joint and no env can be built.
The replacement returns the same values, computed from integer joint types: ``jnt_qposadr`` /
``jnt_dofadr`` of the joint, as a ``(start, end)`` pair of width 7 / 6 for a free joint and 4 / 3
for a ball joint, and as a bare address for a hinge or slide joint; other types raise.

**2. The joint-space mass matrix** (``robosuite.controllers.parts.controller.Controller.update``,
used by OSC and the joint controllers). robosuite calls ``mujoco.mj_fullM(model, dst, data.qM)``,
the API of the MuJoCo it requires (>= 3.3). MuJoCo 3.17's ``MjData`` has no ``qM`` any more, and
its ``mj_fullM`` takes ``(model, data, dst)`` and reads the inertia from ``data`` itself; the old
call raises ``AttributeError`` on the first step. The replacement does what robosuite's
``update`` does (forward the simulation unless ``lite_physics`` lets it skip that, refresh the
reference frame, read the controlled joints' positions and velocities) and fills ``mass_matrix``
through the new signature: the same dense ``nv × nv`` inertia, cut to the controlled degrees of
freedom. On a MuJoCo that still has ``qM`` robosuite's own method is kept.

**Import notices.** ``import robosuite`` logs five warnings about optional parts we do not use
(no private macro file, no ``robosuite_models``, no ``mink`` whole-body IK for the GR1 humanoid),
and building an env logs which controller file it loaded. :func:`quiet_import_notices` drops
exactly those messages from robosuite's logger; every other robosuite warning or error still
shows.
"""

from __future__ import annotations

import logging
from typing import Any

import mujoco
import numpy as np

ROBOSUITE_LOGGER = "robosuite_logs"  # the logger robosuite.utils.log_utils configures
# Beginnings of robosuite's messages about optional parts this project does not use.
HARMLESS_NOTICES = (
    "No private macro file found!",
    "It is recommended to use a private macro file",
    "To setup, run: python ",  # ... robosuite/scripts/setup_macros.py
    "Could not import robosuite_models.",
    "Could not load the mink-based whole-body IK.",
    "Loading controller configuration from: ",
)
# qpos / qvel widths of the multi-dimensional joint types; hinge and slide joints have one each.
_QPOS_WIDTH = {int(mujoco.mjtJoint.mjJNT_FREE): 7, int(mujoco.mjtJoint.mjJNT_BALL): 4}
_QVEL_WIDTH = {int(mujoco.mjtJoint.mjJNT_FREE): 6, int(mujoco.mjtJoint.mjJNT_BALL): 3}
_SCALAR_JOINTS = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))

_PATCH_MARKER = "_robotrl_mujoco_shim"


class _DropHarmlessNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HARMLESS_NOTICES)


def quiet_import_notices() -> None:
    """Drops robosuite's notices about unused optional parts; call it before importing robosuite.

    A filter on robosuite's own logger, so it applies however robosuite later configures it.
    """
    logger = logging.getLogger(ROBOSUITE_LOGGER)
    if not any(isinstance(existing, _DropHarmlessNotices) for existing in logger.filters):
        logger.addFilter(_DropHarmlessNotices())


def _joint_address(
    model: Any, name: str, addresses: np.ndarray, widths: dict[int, int]
) -> int | tuple[int, int]:
    joint_id = model.joint_name2id(name)
    joint_type = int(model.jnt_type[joint_id])
    start = int(addresses[joint_id])
    if joint_type in widths:
        return (start, start + widths[joint_type])
    if joint_type not in _SCALAR_JOINTS:
        raise ValueError(f"joint {name!r} has unknown MuJoCo joint type {joint_type}")
    return start


def get_joint_qpos_addr(self: Any, name: str) -> int | tuple[int, int]:
    """``MjModel.get_joint_qpos_addr``: a 1-dof joint's qpos index, else its (start, end)."""
    return _joint_address(self, name, self.jnt_qposadr, _QPOS_WIDTH)


def get_joint_qvel_addr(self: Any, name: str) -> int | tuple[int, int]:
    """``MjModel.get_joint_qvel_addr``: a 1-dof joint's qvel index, else its (start, end)."""
    return _joint_address(self, name, self.jnt_dofadr, _QVEL_WIDTH)


def full_mass_matrix(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """The dense ``nv × nv`` joint-space inertia of ``data``'s state (MuJoCo 3.17's API)."""
    dense = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, dense)
    return dense


def controller_update(self: Any, force: bool = False) -> None:
    """``Controller.update``: refresh the arm's state, Jacobians' frame and mass matrix."""
    # Like robosuite, skip redundant updates within one control step unless forced.
    if not (self.new_update or force):
        return
    # lite_physics: robosuite's env already ran mj_forward this step, so it is not repeated.
    if force or not self.lite_physics:
        self.sim.forward()
    if self.ref_name is not None:
        self.update_reference_data()
    self.joint_pos = np.array(self.sim.data.qpos[self.qpos_index])
    self.joint_vel = np.array(self.sim.data.qvel[self.qvel_index])
    dense = full_mass_matrix(self.sim.model._model, self.sim.data._data)
    self.mass_matrix = dense[np.ix_(self.qvel_index, self.qvel_index)]
    self.new_update = False


for _patch in (get_joint_qpos_addr, get_joint_qvel_addr, controller_update):
    setattr(_patch, _PATCH_MARKER, True)


def _needs_mass_matrix_patch() -> bool:
    return not hasattr(mujoco.MjData, "qM")


def is_applied() -> bool:
    """Whether robosuite's classes carry every patch this MuJoCo needs."""
    from robosuite.controllers.parts.controller import Controller
    from robosuite.utils.binding_utils import MjModel

    methods = [MjModel.get_joint_qpos_addr, MjModel.get_joint_qvel_addr]
    if _needs_mass_matrix_patch():
        methods.append(Controller.update)
    return all(getattr(method, _PATCH_MARKER, False) for method in methods)


def apply() -> None:
    """Installs the patches on robosuite's classes (once)."""
    from robosuite.controllers.parts.controller import Controller
    from robosuite.utils.binding_utils import MjModel

    if is_applied():
        return
    # Monkeypatching the methods is the point; setattr keeps the type checker out of it.
    setattr(MjModel, "get_joint_qpos_addr", get_joint_qpos_addr)  # noqa: B010
    setattr(MjModel, "get_joint_qvel_addr", get_joint_qvel_addr)  # noqa: B010
    if _needs_mass_matrix_patch():
        setattr(Controller, "update", controller_update)  # noqa: B010
