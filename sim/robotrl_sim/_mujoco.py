"""MuJoCo rendering shared by the adapters: fast visuals and a fixed-camera offscreen renderer.

Rendering, not physics, is what limits a pixel env on a CPU (Mesa llvmpipe). Shadows need an extra
shadow-map pass per light, reflective floors draw the scene a second time, and the skybox is a
large textured draw; turning the three off makes dm_control scenes several times faster at 84×84.
"""

from __future__ import annotations

import mujoco
import numpy as np

# The render flags that cost the most on a CPU rasteriser and carry no task information.
SLOW_RENDER_FLAGS = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
)


def fast_render_overrides() -> dict[mujoco.mjtRndFlag, bool]:
    """``render_flag_overrides`` for dm_control's ``Camera.render`` that switch the slow flags off."""
    return dict.fromkeys(SLOW_RENDER_FLAGS, False)


def disable_slow_visuals(scene: mujoco.MjvScene) -> None:
    """Switches shadows, reflections and the skybox off for every later render of ``scene``."""
    for flag in SLOW_RENDER_FLAGS:
        scene.flags[flag] = False


class FixedCameraRenderer:
    """Renders one named camera of a model at one size, with the slow visuals switched off."""

    def __init__(self, model: mujoco.MjModel, camera: str, size: int) -> None:
        # The offscreen buffer only has to hold our image; MuJoCo checks it against the model.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        self._renderer: mujoco.Renderer | None = mujoco.Renderer(model, height=size, width=size)
        disable_slow_visuals(self._renderer.scene)
        camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"model has no camera named {camera!r}")
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = camera_id

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """A new ``[H, W, 3]`` uint8 frame of ``data``'s current kinematics."""
        if self._renderer is None:
            raise RuntimeError("render() called after close()")
        self._renderer.update_scene(data, self._camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
