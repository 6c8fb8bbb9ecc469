"""MuJoCo rendering shared by the adapters: fast visuals and a fixed-camera offscreen renderer.

Rendering, not physics, is what limits a pixel env on a CPU (Mesa llvmpipe). Shadows need an extra
shadow-map pass per light, reflective floors draw the scene a second time, and the skybox is a
large textured draw; turning the three off makes dm_control scenes several times faster at 84×84.
"""

from __future__ import annotations

import atexit
import weakref

import mujoco
import numpy as np

# The render flags that cost the most on a CPU rasteriser and carry no task information.
SLOW_RENDER_FLAGS = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
)


def fast_render_overrides() -> dict[mujoco.mjtRndFlag, bool]:
    """``render_flag_overrides`` for dm_control's ``Camera.render``: the slow flags off."""
    return dict.fromkeys(SLOW_RENDER_FLAGS, False)


def disable_slow_visuals(scene: mujoco.MjvScene) -> None:
    """Switches shadows, reflections and the skybox off for every later render of ``scene``."""
    for flag in SLOW_RENDER_FLAGS:
        scene.flags[flag] = False


# Renderers still open at exit are closed by an atexit hook registered after MuJoCo's own EGL hook,
# so it runs first: once EGL is terminated, freeing a context raises during interpreter shutdown.
_open_renderers: weakref.WeakSet[FixedCameraRenderer] = weakref.WeakSet()
_exit_hook_registered = False


def _close_open_renderers() -> None:
    for renderer in list(_open_renderers):
        renderer.close()


class FixedCameraRenderer:
    """Renders one named camera of a model at any size up to ``max_size``.

    Shadows, reflections and the skybox are off unless ``fast_visuals=False`` asks for the model's
    own visuals (slower on a CPU, but what published pixel results were rendered with).

    One GL context and one ``MjrContext`` serve every size, so an env that renders small
    observations and large eval frames holds a single context. (Two ``mujoco.Renderer`` objects in
    one thread corrupt each other: closing one frees GL objects in whichever context is current.)
    """

    def __init__(
        self, model: mujoco.MjModel, camera: str, max_size: int, *, fast_visuals: bool = True
    ) -> None:
        camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"model has no camera named {camera!r}")
        self._model = model
        self._max_size = max_size
        # MuJoCo sizes the offscreen buffer from the model; keep it as small as our largest image.
        model.vis.global_.offwidth = max_size
        model.vis.global_.offheight = max_size
        self._gl: mujoco.GLContext | None = mujoco.GLContext(max_size, max_size)
        global _exit_hook_registered
        if not _exit_hook_registered:
            atexit.register(_close_open_renderers)
            _exit_hook_registered = True
        _open_renderers.add(self)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=max(100, 2 * model.ngeom))
        if fast_visuals:
            disable_slow_visuals(self._scene)
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = camera_id

    def render(self, data: mujoco.MjData, size: int) -> np.ndarray:
        """A new ``[size, size, 3]`` uint8 frame of ``data``'s current kinematics."""
        if self._gl is None:
            raise RuntimeError("render() called after close()")
        if size > self._max_size:
            raise ValueError(f"size {size} exceeds the renderer's max_size {self._max_size}")
        self._gl.make_current()
        mujoco.mjv_updateScene(
            self._model,
            data,
            self._option,
            None,
            self._camera,
            mujoco.mjtCatBit.mjCAT_ALL,
            self._scene,
        )
        viewport = mujoco.MjrRect(0, 0, size, size)
        mujoco.mjr_render(viewport, self._scene, self._context)
        frame = np.empty((size, size, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(frame, None, viewport, self._context)
        # OpenGL's first row is the bottom of the image.
        return np.ascontiguousarray(frame[::-1])

    def close(self) -> None:
        """Frees the GL resources; safe to call twice."""
        if self._gl is None:
            return
        # Free our GL objects in our own context, not in whichever context is current.
        self._gl.make_current()
        self._context.free()
        self._gl.free()
        self._gl = None

    def __del__(self) -> None:
        # An env dropped without close() must still free its GL objects in its own context.
        self.close()
