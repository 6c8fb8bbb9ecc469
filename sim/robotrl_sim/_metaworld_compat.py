"""Makes MetaWorld 3.1.1 run on the project's MuJoCo (3.17) instead of the 3.3.0 it pins.

**What changed in MuJoCo.** ``mjModel.eq_data`` holds ``mjNEQDATA`` numbers per equality
constraint. In MuJoCo 3.3 there were 11; for a weld: anchor (3), relative pose (position 3,
quaternion 4), torque scale (1). MuJoCo 3.17 has 12 (``mujoco.mjNEQDATA``). A weld keeps the same
first 11 numbers and uses the 12th as a flag: 1 when the MJCF gave no ``relpose``, so that
``mj_setConst`` recomputes the relative pose from ``qpos0``; 0 when the relative pose is given.
(MuJoCo 3.3 made the same decision from an all-zero quaternion instead of a flag.) MetaWorld's
welds give no ``relpose`` in XML, so they compile with the flag set.

**What breaks.** Every MetaWorld env calls ``SawyerMocapBase.reset_mocap_welds`` while it is built.
It assigns an 11-number array to each weld's row (``eq_data[i] = array(11)``), which numpy cannot
broadcast into a row of 12, so building any env raises ``ValueError``.

**What the shim does.** It replaces that method with one that writes MetaWorld's 11 numbers into
the first 11 slots of each weld row (zero anchor and relative position, orientation
``-1, 0, 0, 0``, torque scale 5) and clears the flag, because that relative pose is now explicit:
as on MuJoCo 3.3, a later ``mj_setConst`` keeps it. The simulation does not read the flag, so the
physics is MetaWorld's on MuJoCo 3.3; MetaWorld's scripted experts reach their usual success rates
(``tests/sim/test_metaworld.py``). :func:`apply` is idempotent; ``robotrl_sim.metaworld`` calls it
when it first imports MetaWorld. Nothing else in MetaWorld is touched.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

# MetaWorld's weld data, slot by slot as in MuJoCo 3.3: anchor, relative position, relative
# orientation (a unit quaternion, sign flipped), torque scale.
METAWORLD_WELD_DATA = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0])
# MuJoCo 3.17's 12th weld slot: 1 = "relpose not given, recompute it from qpos0 in mj_setConst".
WELD_RELPOSE_FROM_QPOS0_SLOT = 11

_PATCH_MARKER = "_robotrl_weld_shim"


def reset_mocap_welds(env: Any) -> None:
    """``SawyerMocapBase.reset_mocap_welds`` for any ``mjNEQDATA`` >= 11."""
    model = env.model
    if model.nmocap == 0 or model.eq_data is None:
        return
    for index in range(model.neq):
        if model.eq_type[index] == mujoco.mjtEq.mjEQ_WELD:
            model.eq_data[index, : METAWORLD_WELD_DATA.size] = METAWORLD_WELD_DATA
            if model.eq_data.shape[1] > WELD_RELPOSE_FROM_QPOS0_SLOT:
                model.eq_data[index, WELD_RELPOSE_FROM_QPOS0_SLOT] = 0.0


setattr(reset_mocap_welds, _PATCH_MARKER, True)


def apply() -> None:
    """Installs the shim on ``metaworld.sawyer_xyz_env.SawyerMocapBase`` (once)."""
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    if getattr(SawyerMocapBase.reset_mocap_welds, _PATCH_MARKER, False):
        return
    if mujoco.mjNEQDATA < METAWORLD_WELD_DATA.size:
        raise RuntimeError(
            f"MuJoCo {mujoco.__version__} has mjNEQDATA={mujoco.mjNEQDATA}, fewer than the "
            f"{METAWORLD_WELD_DATA.size} weld numbers MetaWorld writes; this shim cannot help"
        )
    # Monkeypatching the method is the point; setattr keeps the type checker out of it.
    setattr(SawyerMocapBase, "reset_mocap_welds", reset_mocap_welds)  # noqa: B010
