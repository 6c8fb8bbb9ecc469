"""``CellSim``: the physics and control of the robot cell, with no Gymnasium in it.

The sim backend of the robot driver node owns one of these and publishes what a real arm driver
publishes (joint states, TCP pose, wrist and front images); the Gymnasium env in
``robotrl_sim.cell.env`` wraps one too.

**Frames.** World = robot base frame (``link0``), metres and radians; the table top is ``z = 0``,
``+x`` points away from the robot across the table, ``+z`` up (see ``robotrl_sim.cell.scene``).
Poses are a position and a unit quaternion ``(w, x, y, z)`` of the TCP frame in the world; the TCP
frame's ``+z`` is the gripper's approach axis and its ``+x`` the fingers' travel (world ``+y`` at
home). At the home pose the gripper points straight down (TCP ``z`` = world ``-z``); that
orientation is :attr:`CellSim.home_tcp_quat`, which 4-D env actions hold.

**Control (MoveIt-Servo-like).** :meth:`CellSim.command_tcp` clips the TCP target to the
workspace box, then solves damped-least-squares differential IK for joint targets:
``dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e`` with ``e`` the 6-D pose error (position, then rotation as a
rotation vector), iterated from the last joint target, plus a null-space pull of the redundant
seventh degree of freedom towards the home posture, ``(I - J⁺ J) k (q_home - q)``. The joint
targets go to the arm's position servos; :meth:`CellSim.step` advances the physics by one control
period. The gripper command is the finger opening in metres (0 closed, 0.08 fully open).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import mujoco
import numpy as np
from numpy.typing import ArrayLike

from robotrl_sim._mujoco import FixedCameraRenderer
from robotrl_sim.cell import scene

DEFAULT_CONTROL_DT = 0.1  # s, 10 Hz like the real cell's servo commands
IK_DAMPING = 0.05  # λ of the damped least squares
IK_ITERATIONS = 20
IK_TOLERANCE = 1e-4  # m / rad
IK_NULLSPACE_GAIN = 0.2  # fraction of the posture error removed per iteration, in the null space
IK_MAX_JOINT_STEP = 0.2  # rad per iteration, so a far target cannot fling the arm
# The cube's default place and the region it is drawn from ("random"); the target's region.
CUBE_HOME_XY = (0.5, 0.0)
CUBE_XY_LOW = (0.42, -0.12)
CUBE_XY_HIGH = (0.6, 0.12)
TARGET_HOME = (0.5, 0.0, 0.15)
TARGET_LOW = (0.38, -0.18, 0.06)
TARGET_HIGH = (0.65, 0.18, 0.3)


@dataclass(frozen=True)
class WorkspaceBox:
    """Axis-aligned box (world frame, metres) that TCP targets are clipped into."""

    low: tuple[float, float, float] = (0.3, -0.3, 0.02)
    high: tuple[float, float, float] = (0.75, 0.3, 0.45)

    def __post_init__(self) -> None:
        low, high = np.asarray(self.low, float), np.asarray(self.high, float)
        if low.shape != (3,) or high.shape != (3,) or not np.all(low < high):
            raise ValueError(f"workspace needs 3-D low < high, got low={self.low} high={self.high}")

    def clip(self, position: np.ndarray) -> np.ndarray:
        return np.clip(position, self.low, self.high)


@dataclass
class _Targets:
    """What the controller is currently holding the arm to."""

    tcp_pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    tcp_quat: np.ndarray = field(default_factory=lambda: np.array([1.0, 0, 0, 0]))
    joints: np.ndarray = field(default_factory=lambda: scene.HOME_QPOS.copy())
    gripper_width: float = scene.GRIPPER_MAX_WIDTH


def _finite_vector(value: ArrayLike, size: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def quat_multiply(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Hamilton product of two ``(w, x, y, z)`` quaternions."""
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, left, right)
    return out


def rotation_error(target_quat: np.ndarray, current_quat: np.ndarray) -> np.ndarray:
    """Rotation vector (world frame) that turns ``current_quat`` into ``target_quat``."""
    conjugate = np.zeros(4)
    mujoco.mju_negQuat(conjugate, current_quat)
    difference = quat_multiply(target_quat, conjugate)
    if difference[0] < 0:  # the short way round
        difference = -difference
    velocity = np.zeros(3)
    mujoco.mju_quat2Vel(velocity, difference, 1.0)
    return velocity


def rotate_quat(quat: np.ndarray, rotation_vector: np.ndarray) -> np.ndarray:
    """``quat`` turned further by ``rotation_vector`` (axis × angle, world frame)."""
    delta = np.zeros(4)
    angle = float(np.linalg.norm(rotation_vector))
    if angle < 1e-12:
        return quat.copy()
    mujoco.mju_axisAngle2Quat(delta, rotation_vector / angle, angle)
    out = quat_multiply(delta, quat)
    return out / np.linalg.norm(out)


class CellRenderer(FixedCameraRenderer):
    """Any camera of the cell at any ``height × width`` up to ``max_size``, drawn geoms only."""

    def __init__(self, model: mujoco.MjModel, max_size: int) -> None:
        super().__init__(model, scene.CAMERAS[0], max_size)
        self._option.geomgroup[0] = 0  # robosuite's collision geoms
        self._option.sitegroup[:] = 0

    def render_view(self, data: mujoco.MjData, camera: str, height: int, width: int) -> np.ndarray:
        """A new upright ``[height, width, 3]`` uint8 frame from ``camera``."""
        if self._gl is None:
            raise RuntimeError("render called after close()")
        camera_id = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"the cell has no camera {camera!r}; cameras: {scene.CAMERAS}")
        for name, size in (("height", height), ("width", width)):
            if not 1 <= size <= self._max_size:
                raise ValueError(f"{name} must be in [1, {self._max_size}], got {size}")
        self._camera.fixedcamid = camera_id
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
        viewport = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjr_render(viewport, self._scene, self._context)
        frame = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(frame, None, viewport, self._context)
        return np.ascontiguousarray(frame[::-1])  # OpenGL's first row is the image's bottom


class CellSim:
    """The Panda cell: owns ``model``/``data``, takes TCP (or joint) commands, steps, renders.

    Typical use: ``reset(seed)``, then per control period ``command_tcp(...)`` and ``step()``;
    read ``tcp_pose()``, ``joint_positions()``, ``gripper_width()``, ``cube_pose()`` and
    ``render("wrist", 64, 64)`` in between.
    """

    def __init__(
        self,
        *,
        workspace: WorkspaceBox | None = None,
        control_dt: float = DEFAULT_CONTROL_DT,
        show_target: bool = True,
    ) -> None:
        self.model = scene.build_model()
        self.data = mujoco.MjData(self.model)
        substeps = control_dt / self.model.opt.timestep
        if not control_dt > 0 or abs(substeps - round(substeps)) > 1e-6 or round(substeps) < 1:
            raise ValueError(
                f"control_dt must be a positive multiple of the physics timestep "
                f"{self.model.opt.timestep} s, got {control_dt}"
            )
        self.control_dt = control_dt
        self.workspace = workspace or WorkspaceBox()
        model = self.model
        self._arm_qpos = np.array([model.joint(name).qposadr[0] for name in scene.ARM_JOINTS])
        self._arm_dofs = np.array([model.joint(name).dofadr[0] for name in scene.ARM_JOINTS])
        self._finger_qpos = np.array([model.joint(n).qposadr[0] for n in scene.FINGER_JOINTS])
        self._finger_dofs = np.array([model.joint(n).dofadr[0] for n in scene.FINGER_JOINTS])
        self._arm_ctrl = np.array([model.actuator(n).id for n in scene.ARM_ACTUATORS])
        self._finger_ctrl = np.array([model.actuator(n).id for n in scene.FINGER_ACTUATORS])
        self._joint_low = model.jnt_range[[model.joint(n).id for n in scene.ARM_JOINTS], 0]
        self._joint_high = model.jnt_range[[model.joint(n).id for n in scene.ARM_JOINTS], 1]
        self._cube_qpos = model.joint("cube").qposadr[0]
        self._cube_dofs = model.joint("cube").dofadr[0]
        self._tcp_site = model.site(scene.TCP_SITE).id
        self._target_mocap = model.body("target").mocapid[0]
        self._cube_geom = model.geom("cube").id
        self._pad_geoms = {model.geom(name).id for name in scene.FINGER_PADS}
        if not show_target:
            model.geom_rgba[model.geom("target").id, 3] = 0.0
        self._ik_data = mujoco.MjData(model)
        self._targets = _Targets()
        self._renderer: CellRenderer | None = None
        self.reset()
        self.home_tcp_quat = self.tcp_pose()[1]

    # ----------------------------------------------------------------------------- episodes
    def reset(
        self,
        seed: int | np.random.Generator | None = None,
        *,
        joint_noise: float = 0.0,
        cube_xy: ArrayLike | Literal["random"] | None = None,
        target_pos: ArrayLike | Literal["random"] | None = None,
    ) -> None:
        """Home pose, gripper open, cube and target placed.

        ``joint_noise`` (rad) adds uniform noise in ``±joint_noise`` to the home joint angles;
        ``cube_xy`` / ``target_pos`` are a place, ``"random"`` (drawn uniformly from
        ``CUBE_XY_LOW..HIGH`` / ``TARGET_LOW..HIGH``) or None (``CUBE_HOME_XY`` / ``TARGET_HOME``).
        Random draws use ``seed`` (an int or a ``numpy`` Generator).
        """
        if not np.isfinite(joint_noise) or joint_noise < 0:
            raise ValueError(f"joint_noise must be >= 0, got {joint_noise}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        model, data = self.model, self.data
        mujoco.mj_resetData(model, data)
        home = scene.HOME_QPOS + rng.uniform(-joint_noise, joint_noise, size=7)
        home = np.clip(home, self._joint_low, self._joint_high)
        data.qpos[self._arm_qpos] = home
        data.qpos[self._finger_qpos] = [scene.GRIPPER_MAX_WIDTH / 2, -scene.GRIPPER_MAX_WIDTH / 2]

        if cube_xy is None:
            cube = np.array(CUBE_HOME_XY)
        elif isinstance(cube_xy, str):
            if cube_xy != "random":
                raise ValueError(f"cube_xy must be a place, 'random' or None, got {cube_xy!r}")
            cube = rng.uniform(CUBE_XY_LOW, CUBE_XY_HIGH)
        else:
            cube = _finite_vector(cube_xy, 2, "cube_xy")
        data.qpos[self._cube_qpos : self._cube_qpos + 7] = [
            cube[0], cube[1], scene.CUBE_HALF_SIZE, 1.0, 0.0, 0.0, 0.0,
        ]  # fmt: skip

        if target_pos is None:
            target = np.array(TARGET_HOME)
        elif isinstance(target_pos, str):
            if target_pos != "random":
                raise ValueError(
                    f"target_pos must be a place, 'random' or None, got {target_pos!r}"
                )
            target = rng.uniform(TARGET_LOW, TARGET_HIGH)
        else:
            target = _finite_vector(target_pos, 3, "target_pos")
        data.mocap_pos[self._target_mocap] = target

        mujoco.mj_forward(model, data)
        position, quat = self.tcp_pose()
        self._targets = _Targets(
            tcp_pos=self.workspace.clip(position),
            tcp_quat=quat,
            joints=home.copy(),
            gripper_width=scene.GRIPPER_MAX_WIDTH,
        )
        data.ctrl[self._arm_ctrl] = home
        self._apply_gripper(scene.GRIPPER_MAX_WIDTH)

    # ----------------------------------------------------------------------------- commands
    def command_tcp(
        self, target_pos: ArrayLike, target_quat: ArrayLike | None = None, gripper: float = 0.08
    ) -> np.ndarray:
        """Holds the TCP to ``target_pos`` (clipped to the workspace) and ``target_quat``
        (default: the current orientation target) and the gripper opening to ``gripper`` metres.

        Returns the clipped TCP position target. Non-finite or wrongly shaped input raises.
        """
        position = self.workspace.clip(_finite_vector(target_pos, 3, "target_pos"))
        if target_quat is None:
            quat = self._targets.tcp_quat
        else:
            quat = _finite_vector(target_quat, 4, "target_quat")
            norm = float(np.linalg.norm(quat))
            if norm < 1e-9:
                raise ValueError("target_quat must be a non-zero quaternion")
            quat = quat / norm
        joints = self.solve_ik(position, quat, self._targets.joints)
        self._targets = _Targets(position, quat, joints, self._checked_gripper(gripper))
        self.data.ctrl[self._arm_ctrl] = joints
        self._apply_gripper(self._targets.gripper_width)
        return position.copy()

    def command_joints(self, joint_targets: ArrayLike, gripper: float = 0.08) -> None:
        """Holds the arm to joint angles (clipped to the joint limits), as a trajectory
        controller's set point, and the gripper opening to ``gripper`` metres."""
        joints = np.clip(
            _finite_vector(joint_targets, 7, "joint_targets"), self._joint_low, self._joint_high
        )
        position, quat = self._forward_kinematics(joints)
        self._targets = _Targets(position, quat, joints, self._checked_gripper(gripper))
        self.data.ctrl[self._arm_ctrl] = joints
        self._apply_gripper(self._targets.gripper_width)

    def step(self, dt: float | None = None) -> None:
        """Advances the physics by ``dt`` seconds (default: one control period)."""
        duration = self.control_dt if dt is None else dt
        substeps = round(duration / self.model.opt.timestep)
        if substeps < 1:
            raise ValueError(f"dt must be at least one physics step, got {duration}")
        mujoco.mj_step(self.model, self.data, nstep=substeps)
        # mj_step leaves positions-dependent quantities at the start of its last substep.
        mujoco.mj_forward(self.model, self.data)

    def set_target_position(self, position: ArrayLike) -> None:
        """Moves the reach target marker (drawn, never collides)."""
        self.data.mocap_pos[self._target_mocap] = _finite_vector(position, 3, "position")
        mujoco.mj_forward(self.model, self.data)

    # ----------------------------------------------------------------------------- state
    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The TCP's world position (m) and orientation quaternion ``(w, x, y, z)``, w >= 0."""
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self._tcp_site])
        if quat[0] < 0:
            quat = -quat
        return self.data.site_xpos[self._tcp_site].copy(), quat

    def tcp_velocity(self) -> np.ndarray:
        """The TCP's linear then angular velocity in the world frame (m/s, rad/s)."""
        velocity = np.zeros(6)
        mujoco.mj_objectVelocity(
            self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self._tcp_site, velocity, 0
        )
        return np.concatenate([velocity[3:], velocity[:3]])

    @property
    def tcp_target(self) -> tuple[np.ndarray, np.ndarray]:
        """The commanded TCP position and orientation (after workspace clipping)."""
        return self._targets.tcp_pos.copy(), self._targets.tcp_quat.copy()

    @property
    def gripper_target(self) -> float:
        return self._targets.gripper_width

    def joint_positions(self) -> np.ndarray:
        """The seven arm joint angles (rad), base to flange."""
        return self.data.qpos[self._arm_qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._arm_dofs].copy()

    def finger_positions(self) -> np.ndarray:
        """The two finger slide joints (m): 0 closed, ±0.04 fully open."""
        return self.data.qpos[self._finger_qpos].copy()

    def gripper_width(self) -> float:
        """Distance between the finger pads (m)."""
        left, right = self.data.qpos[self._finger_qpos]
        return float(left - right)

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The cube centre's world position and its quaternion ``(w, x, y, z)``."""
        state = self.data.qpos[self._cube_qpos : self._cube_qpos + 7]
        return state[:3].copy(), state[3:].copy()

    def target_position(self) -> np.ndarray:
        return self.data.mocap_pos[self._target_mocap].copy()

    def cube_grasped(self) -> bool:
        """True when both finger pads touch the cube."""
        touching: set[int] = set()
        for contact in self.data.contact[: self.data.ncon]:
            pair = {int(contact.geom1), int(contact.geom2)}
            if self._cube_geom in pair:
                touching |= pair & self._pad_geoms
        return touching == self._pad_geoms

    # ----------------------------------------------------------------------------- rendering
    def render(self, camera: str, height: int, width: int) -> np.ndarray:
        """``camera``'s (``"front"`` or ``"wrist"``) current view, ``[height, width, 3]`` uint8."""
        size = max(height, width)
        if self._renderer is None or self._renderer._max_size < size:
            if self._renderer is not None:
                self._renderer.close()
            self._renderer = CellRenderer(self.model, max(size, 64))
        return self._renderer.render_view(self.data, camera, height, width)

    def close(self) -> None:
        """Frees the renderer's GL context; safe to call twice."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ----------------------------------------------------------------------------- internals
    def _checked_gripper(self, width: float) -> float:
        value = float(width)
        if not np.isfinite(value):
            raise ValueError(f"gripper must be finite, got {width}")
        return float(np.clip(value, 0.0, scene.GRIPPER_MAX_WIDTH))

    def _apply_gripper(self, width: float) -> None:
        self.data.ctrl[self._finger_ctrl] = [width / 2, -width / 2]

    def _forward_kinematics(self, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ik = self._ik_data
        ik.qpos[self._arm_qpos] = joints
        mujoco.mj_kinematics(self.model, ik)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, ik.site_xmat[self._tcp_site])
        return ik.site_xpos[self._tcp_site].copy(), quat

    def solve_ik(
        self, target_pos: np.ndarray, target_quat: np.ndarray, initial: ArrayLike
    ) -> np.ndarray:
        """Joint angles that put the TCP at the pose, by damped least squares from ``initial``."""
        model, ik = self.model, self._ik_data
        joints = np.asarray(initial, dtype=np.float64).copy()
        jacp = np.zeros((3, model.nv))
        jacr = np.zeros((3, model.nv))
        damping = IK_DAMPING**2 * np.eye(6)
        for _ in range(IK_ITERATIONS):
            position, quat = self._forward_kinematics(joints)
            error = np.concatenate([target_pos - position, rotation_error(target_quat, quat)])
            mujoco.mj_comPos(model, ik)
            mujoco.mj_jacSite(model, ik, jacp, jacr, self._tcp_site)
            jacobian = np.vstack([jacp[:, self._arm_dofs], jacr[:, self._arm_dofs]])
            solve = np.linalg.solve(jacobian @ jacobian.T + damping, np.eye(6))
            pseudo_inverse = jacobian.T @ solve
            step = pseudo_inverse @ error
            nullspace = np.eye(7) - pseudo_inverse @ jacobian
            step += nullspace @ (IK_NULLSPACE_GAIN * (scene.HOME_QPOS - joints))
            largest = float(np.max(np.abs(step)))
            if largest > IK_MAX_JOINT_STEP:
                step *= IK_MAX_JOINT_STEP / largest
            joints = np.clip(joints + step, self._joint_low, self._joint_high)
            if np.linalg.norm(error) < IK_TOLERANCE:
                break
        return joints

    @property
    def cube_rest_height(self) -> float:
        """The cube centre's height when it rests on the table."""
        return scene.CUBE_HALF_SIZE
