"""Camera models of MuJoCo cameras, for rewards that lift pixels to 3D (robotrl.rewards)."""

from __future__ import annotations

import mujoco

from robotrl.rewards.keypoints import CameraModel


def camera_model(
    model: mujoco.MjModel, data: mujoco.MjData, camera: str, *, height: int, width: int
) -> CameraModel:
    """The :class:`CameraModel` of ``camera`` as posed in ``data`` (kinematics up to date), for
    images of ``height`` x ``width`` pixels (MuJoCo's ``fovy`` is vertical, so any aspect works)."""
    camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    if camera_id < 0:
        raise ValueError(f"the model has no camera named {camera!r}")
    rotation = data.cam_xmat[camera_id].reshape(3, 3)
    x, y, z = (float(v) for v in data.cam_xpos[camera_id])
    return CameraModel(
        width=width,
        height=height,
        position=(x, y, z),
        rotation=tuple((float(a), float(b), float(c)) for a, b, c in rotation),
        fovy=float(model.cam_fovy[camera_id]),
        orthographic=bool(
            model.cam_projection[camera_id] == mujoco.mjtProjection.mjPROJ_ORTHOGRAPHIC
        ),
    )
