"""The sim-twin backend: ``robotrl_sim.cell.CellSim`` (Panda, gripper, cube, two cameras).

``robotrl_sim`` (and MuJoCo) are imported when a :class:`SimBackend` is built, not when this
module is imported, so a robot PC without the simulators can import the backends package.

Physics runs in real time: :meth:`SimBackend.advance` steps by the wall time since the last tick
(rounded to physics steps, at most ``max_catch_up`` control periods), so TCP speeds computed
from wall-clock stamps are real speeds. Cameras render in the driver's camera thread from a
snapshot of the state (copied under a lock) into a separate ``MjData`` with a GL context of that
thread, so rendering never blocks or races the control loop's physics.

Conventions: CellSim quaternions are ``(w, x, y, z)``; the driver's are ``(x, y, z, w)``
(ROS). The gripper opening 0..1 maps to 0..``GRIPPER_MAX_WIDTH`` (0.08 m). Holding brakes:
each held tick sends the joint servos (``CellSim.command_joints``) the measured angles minus
``HOLD_BRAKE_TIME`` × the joint velocities, which stops the arm where it is within ~80 ms.
Work-around: ``CellSim`` has no public forward kinematics, so this backend computes it with its
own ``MjData`` (``mj_kinematics`` at the TCP site).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from robotrl_real.arm import ArmState
from robotrl_real.backends.sdk import require

FloatArray = NDArray[np.float64]

#: s; holding sets the joint servos to ``q - HOLD_BRAKE_TIME * dq`` every tick, so the servo's
#: spring brakes too: the twin stops from 0.15 m/s to under 5 mm/s in ~80 ms (at exactly ``q``,
#: ~120 ms; a single set-point at the stop pose overshoots and swings back for ~200 ms).
HOLD_BRAKE_TIME = 0.015


def wxyz_to_xyzw(quat: ArrayLike) -> FloatArray:
    """MuJoCo ``(w, x, y, z)`` -> ROS ``(x, y, z, w)``."""
    w, x, y, z = np.asarray(quat, dtype=float)
    return np.array([x, y, z, w])


def xyzw_to_wxyz(quat: ArrayLike) -> FloatArray:
    """ROS ``(x, y, z, w)`` -> MuJoCo ``(w, x, y, z)``."""
    x, y, z, w = np.asarray(quat, dtype=float)
    return np.array([w, x, y, z])


class SimBackend:
    """The sim twin as an :class:`~robotrl_real.driver.ArmBackend`.

    Args:
        control_hz: control rate of the driver (the physics step must divide its period).
        seed: seeds the sim's reset (joint noise, cube place).
        joint_noise: rad of uniform noise on the home posture at construction.
        max_catch_up: the most control periods one :meth:`advance` steps when the loop was late.
    """

    name = "sim"
    cameras = ("wrist", "front")

    def __init__(
        self,
        *,
        control_hz: float = 50.0,
        seed: int | None = 0,
        joint_noise: float = 0.0,
        max_catch_up: int = 3,
    ) -> None:
        if not (math.isfinite(control_hz) and 1.0 <= control_hz <= 500.0):
            raise ValueError(f"control_hz must be in [1, 500], got {control_hz}")
        require("robotrl_sim", "sim", "sim")
        self._mujoco: Any = require("mujoco", "sim", "sim")
        from robotrl_sim.cell import arm, scene

        self._scene = scene
        self._arm = arm
        self.control_period = 1.0 / control_hz
        self.sim = arm.CellSim(control_dt=self._round_to_physics(self.control_period))
        self.sim.reset(seed, joint_noise=joint_noise)
        self.joint_names = tuple(name.split("/")[-1] for name in scene.ARM_JOINTS)
        self._max_catch_up = max_catch_up
        self._lock = threading.Lock()
        model = self.sim.model
        self._fk_data = self._mujoco.MjData(model)
        self._render_data = self._mujoco.MjData(model)
        self._renderer: Any = None
        self._renderer_thread: int | None = None
        self._tcp_site = model.site(scene.TCP_SITE).id
        self._arm_qpos = np.array([model.joint(n).qposadr[0] for n in scene.ARM_JOINTS])
        self.steps = 0

    def _round_to_physics(self, period: float) -> float:
        timestep = self._scene.PHYSICS_TIMESTEP
        steps = max(1, round(period / timestep))
        return steps * timestep

    # -- state and commands (control thread) ----------------------------------------------------

    def read_state(self) -> ArmState:
        sim = self.sim
        with self._lock:
            position, quat = sim.tcp_pose()
            width = sim.gripper_width()
            return ArmState(
                joint_positions=sim.joint_positions(),
                joint_velocities=sim.joint_velocities(),
                tcp_position=position,
                tcp_orientation=wxyz_to_xyzw(quat),
                gripper_opening=float(np.clip(width / self._scene.GRIPPER_MAX_WIDTH, 0.0, 1.0)),
                gripper_width=width,
            )

    def command_tcp(self, position: FloatArray, orientation: FloatArray) -> None:
        with self._lock:
            self.sim.command_tcp(position, xyzw_to_wxyz(orientation), self.sim.gripper_target)

    def command_gripper(self, opening: float) -> None:
        width = float(np.clip(opening, 0.0, 1.0)) * self._scene.GRIPPER_MAX_WIDTH
        with self._lock:
            position, quat = self.sim.tcp_target
            self.sim.command_tcp(position, quat, width)

    def hold(self) -> None:
        with self._lock:
            sim = self.sim
            brake = sim.joint_positions() - HOLD_BRAKE_TIME * sim.joint_velocities()
            sim.command_joints(brake, sim.gripper_target)

    def advance(self, elapsed: float) -> None:
        timestep = self._scene.PHYSICS_TIMESTEP
        limit = self._max_catch_up * self.control_period
        duration = min(max(elapsed, timestep), limit)
        with self._lock:
            self.sim.step(round(duration / timestep) * timestep)
        self.steps += 1

    def forward_kinematics(self, joints: FloatArray) -> tuple[FloatArray, FloatArray]:
        joints = np.asarray(joints, dtype=float)
        if joints.shape != (len(self.joint_names),):
            raise ValueError(f"expected {len(self.joint_names)} joint angles, got {joints.shape}")
        mujoco, data = self._mujoco, self._fk_data
        data.qpos[self._arm_qpos] = joints
        mujoco.mj_kinematics(self.sim.model, data)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, data.site_xmat[self._tcp_site])
        return data.site_xpos[self._tcp_site].copy(), wxyz_to_xyzw(quat)

    def has_error(self) -> bool:
        return False

    def recover(self) -> bool:
        return True

    # -- cameras (camera thread) ----------------------------------------------------------------

    def camera_frame(self, camera: str, height: int, width: int) -> NDArray[np.uint8]:
        if camera not in self.cameras:
            raise ValueError(f"the sim has no camera {camera!r}; cameras: {self.cameras}")
        mujoco, model, data = self._mujoco, self.sim.model, self._render_data
        with self._lock:
            data.qpos[:] = self.sim.data.qpos
            data.mocap_pos[:] = self.sim.data.mocap_pos
            data.mocap_quat[:] = self.sim.data.mocap_quat
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        mujoco.mj_camlight(model, data)
        if self._renderer is None or self._renderer_thread != threading.get_ident():
            # a GL context belongs to the thread that made it
            self._renderer = self._arm.CellRenderer(model, max(64, height, width))
            self._renderer_thread = threading.get_ident()
        frame: NDArray[np.uint8] = self._renderer.render_view(data, camera, height, width)
        return frame

    def close_cameras(self) -> None:
        """Free the calling thread's GL context (the camera thread calls this as it ends)."""
        if self._renderer is not None and self._renderer_thread == threading.get_ident():
            self._renderer.close()
            self._renderer = None

    def camera_intrinsics(self, camera: str, height: int, width: int) -> tuple[float, ...]:
        model = self.sim.model
        camera_id = self._mujoco.mj_name2id(model, self._mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"the sim has no camera {camera!r}")
        fovy = math.radians(float(model.cam_fovy[camera_id]))
        focal = height / (2.0 * math.tan(fovy / 2.0))
        return (focal, focal, width / 2.0, height / 2.0)

    def close(self) -> None:
        self.sim.close()
