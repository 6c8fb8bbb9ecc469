"""``warp/cell_reach`` and ``warp/cell_pick_cube``: the robot cell on batched MuJoCo Warp worlds.

The sim twin of the real Panda cell (``robotrl_sim.cell``), N worlds at a time: the scene is
built by the same ``robotrl_sim.cell.scene.build_model`` (robosuite's Panda and gripper, the
table, the 5 cm cube, the reach target, the ``front`` and ``wrist`` cameras), the actions are the
same 4-D end-effector deltas ``[dx, dy, dz, gripper]`` at the same 10 Hz control rate (one
control step is 50 physics steps of 2 ms; ``action_repeat`` counts control steps, 1 in the
presets as in ``cell``), and rewards and success are ``robotrl_sim.cell.task_math``'s, the
functions ``CellEnv`` calls. Per control step, as ``CellEnv`` with default options (4-D actions,
``max_step`` 2 cm, ``joint_noise`` 0.02 rad, ``randomize=True``):

- the TCP target moves by ``max_step`` times the action's first three numbers, after being pulled
  back within ``MAX_LEAD`` of the measured TCP, and is clipped to the workspace box; the gripper
  holds top-down (``CellSim.home_tcp_quat``) and opens to ``0.08 (1 - g) / 2`` m;
- ``BatchedTcpController`` (``cell_control.py``) turns the targets into joint targets with
  ``CellSim.solve_ik``'s damped least squares, in torch on the sim's device, for every world;
- reward ``reach``: ``1 - tanh(10 d)`` of the TCP-target distance; ``pick_cube``:
  ``reach + 0.5 + lift`` while both finger pads touch the cube (found in MuJoCo Warp's contacts
  of the reached state); ``info["success"]`` is "success so far" in the episode.

Episodes: reach 5 s (50 agent steps), pick_cube 10 s (100), truncated only. Resets draw, per
world from its own random stream, the home-pose joint noise and the target (reach) or the cube's
place (pick_cube) uniformly from ``robotrl_sim.cell.arm``'s regions (not the same draws as a
``CellEnv`` with the same seed). ``proprio``: TCP position, TCP linear velocity, gripper opening
(7, float32, clipped into ``PROPRIO_BOUNDS``). Rendering hides robosuite's collision geoms
(group 0), as ``CellSim.render`` does; pick_cube hides the target sphere.

``scripted_actions(env)`` runs ``robotrl_sim.cell.scripted``'s experts on every world at once.
"""

from __future__ import annotations

from typing import Literal

import mujoco
import mujoco_warp as mjw
import torch
import warp as wp

from robotrl_sim.cell import arm, scene, task_math
from robotrl_sim.cell.env import PROPRIO_BOUNDS, REACH_CUBE_XY
from robotrl_sim.cell.scripted import ExpertView, pick_actions, reach_actions
from robotrl_sim.warp.batched import BatchedMujocoEnv, SimTensors, WarpTask
from robotrl_sim.warp.cell_control import BatchedTcpController

MAX_STEP = 0.02  # m of TCP target motion per control step at action 1 (CellOptions.max_step)
JOINT_NOISE = 0.02  # rad (CellOptions.joint_noise)


class CellTask(WarpTask):
    """The cell's reach or pick_cube on batched worlds (see the module docstring)."""

    cameras = scene.CAMERAS
    action_size = 4
    control_substeps = round(arm.DEFAULT_CONTROL_DT / scene.PHYSICS_TIMESTEP)
    contacts = True
    geom_groups = (1, scene.SCENE_GROUP)
    reset_noise_size = 7 + 3  # joint noise, then the target's (or the cube's) place
    proprio_size = 7

    def __init__(self, task: Literal["reach", "pick_cube"]) -> None:
        self.task = task
        self.time_limit = 5.0 if task == "reach" else 10.0
        model = scene.build_model()
        if task != "reach":
            model.geom_rgba[model.geom("target").id, 3] = 0.0  # CellSim(show_target=False)
        self._model = model
        self._arm_qpos = [int(model.joint(name).qposadr[0]) for name in scene.ARM_JOINTS]
        self._arm_dofs = [int(model.joint(name).dofadr[0]) for name in scene.ARM_JOINTS]
        self._finger_qpos = [int(model.joint(name).qposadr[0]) for name in scene.FINGER_JOINTS]
        self._arm_ctrl = [int(model.actuator(name).id) for name in scene.ARM_ACTUATORS]
        self._finger_ctrl = [int(model.actuator(name).id) for name in scene.FINGER_ACTUATORS]
        self._cube_qpos = int(model.joint("cube").qposadr[0])
        self._target_mocap = int(model.body("target").mocapid[0])
        self._cube_geom = int(model.geom("cube").id)
        self._pad_geoms = [int(model.geom(name).id) for name in scene.FINGER_PADS]
        arm_joint_ids = [model.joint(name).id for name in scene.ARM_JOINTS]
        self._joint_range = model.jnt_range[arm_joint_ids].copy()
        self._controller: BatchedTcpController | None = None

    def build_model(self) -> mujoco.MjModel:
        return self._model

    def bind(self, data: mjw.Data, device: torch.device) -> None:
        self.device = device
        self._controller = BatchedTcpController(self._model, device)
        self._contact_geom = wp.to_torch(data.contact.geom)  # [naconmax, 2]
        self._contact_world = wp.to_torch(data.contact.worldid)
        self._contact_count = wp.to_torch(data.nacon)
        count = data.nworld
        float64 = torch.float64
        # What the controller holds each world to (CellSim's _Targets).
        self.tcp_target = torch.zeros(count, 3, dtype=float64, device=device)
        self.joint_target = torch.zeros(count, 7, dtype=float64, device=device)
        self.gripper_target = torch.full(
            (count,), scene.GRIPPER_MAX_WIDTH, dtype=float64, device=device
        )
        self._success = torch.zeros(count, dtype=torch.bool, device=device)
        low = [lo for _, size, lo, _ in PROPRIO_BOUNDS[:3] for _ in range(size)]
        high = [hi for _, size, _, hi in PROPRIO_BOUNDS[:3] for _ in range(size)]
        self._proprio_low = torch.tensor(low, dtype=torch.float32, device=device)
        self._proprio_high = torch.tensor(high, dtype=torch.float32, device=device)

    @property
    def controller(self) -> BatchedTcpController:
        if self._controller is None:
            raise RuntimeError("the task is not bound to worlds yet (BatchedMujocoEnv binds it)")
        return self._controller

    # -- episodes ----------------------------------------------------------------------------

    def initial_state(
        self, noise: torch.Tensor, qpos0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        uniform = torch.special.ndtr(noise)  # Φ(z): uniform on [0, 1)
        home = torch.as_tensor(scene.HOME_QPOS, dtype=torch.float32, device=noise.device)
        joint_range = torch.as_tensor(self._joint_range, dtype=torch.float32, device=noise.device)
        joints = home + JOINT_NOISE * (2.0 * uniform[:, :7] - 1.0)
        joints = torch.minimum(torch.maximum(joints, joint_range[:, 0]), joint_range[:, 1])
        qpos = qpos0.expand(len(noise), -1).clone()
        qpos[:, self._arm_qpos] = joints
        qpos[:, self._finger_qpos[0]] = scene.GRIPPER_MAX_WIDTH / 2
        qpos[:, self._finger_qpos[1]] = -scene.GRIPPER_MAX_WIDTH / 2
        if self.task == "reach":
            cube_xy = torch.tensor(REACH_CUBE_XY, device=noise.device).expand(len(noise), 2)
        else:
            cube_xy = _in_box(arm.CUBE_XY_LOW, arm.CUBE_XY_HIGH, uniform[:, 7:9])
        cube = self._cube_qpos
        qpos[:, cube : cube + 2] = cube_xy
        qpos[:, cube + 2] = scene.CUBE_HALF_SIZE
        qpos[:, cube + 3 : cube + 7] = torch.tensor([1.0, 0.0, 0.0, 0.0], device=noise.device)
        return qpos, torch.zeros(len(noise), self._model.nv, device=noise.device)

    def initial_mocap_pos(
        self, noise: torch.Tensor, mocap_pos0: torch.Tensor
    ) -> torch.Tensor | None:
        mocap_pos = mocap_pos0.expand(len(noise), -1, -1).clone()
        if self.task == "reach":
            uniform = torch.special.ndtr(noise[:, 7:10])
            mocap_pos[:, self._target_mocap] = _in_box(arm.TARGET_LOW, arm.TARGET_HIGH, uniform)
        else:
            mocap_pos[:, self._target_mocap] = torch.tensor(arm.TARGET_HOME, device=noise.device)
        return mocap_pos

    def on_reset(self, sim: SimTensors, mask: torch.Tensor) -> None:
        # CellSim.reset: hold the home joints (with their noise) and the TCP there, gripper open.
        joints = sim.qpos[:, self._arm_qpos].to(torch.float64)
        tcp, _, _ = self.controller.kinematics.forward(joints)
        rows = mask.unsqueeze(1)
        self.tcp_target = torch.where(rows, self.controller.clip_to_workspace(tcp), self.tcp_target)
        self.joint_target = torch.where(rows, joints, self.joint_target)
        self.gripper_target = torch.where(
            mask, torch.full_like(self.gripper_target, scene.GRIPPER_MAX_WIDTH), self.gripper_target
        )
        sim.ctrl.copy_(torch.where(rows, self._ctrl_for_targets(sim), sim.ctrl))
        self._success = torch.where(mask, self._succeeded(sim), self._success)

    # -- control -----------------------------------------------------------------------------

    def control(self, sim: SimTensors, action: torch.Tensor) -> torch.Tensor | None:
        # CellEnv._apply, then CellSim.command_tcp, for every world.
        action = action.to(torch.float64)
        target = task_math.next_tcp_target(
            self.tcp_target, self.tcp_position(sim), action[:, :3], MAX_STEP
        )
        controller = self.controller
        self.tcp_target = controller.clip_to_workspace(target)
        home_quat = controller.home_tcp_quat.expand(len(action), 4)
        self.joint_target = controller.solve_ik(self.tcp_target, home_quat, self.joint_target)
        width = task_math.gripper_width_command(action[:, 3], scene.GRIPPER_MAX_WIDTH)
        self.gripper_target = width.clamp(0.0, scene.GRIPPER_MAX_WIDTH)
        return self._ctrl_for_targets(sim)

    def _ctrl_for_targets(self, sim: SimTensors) -> torch.Tensor:
        ctrl = sim.ctrl.clone()
        ctrl[:, self._arm_ctrl] = self.joint_target.to(ctrl.dtype)
        half_width = (self.gripper_target / 2).to(ctrl.dtype)
        ctrl[:, self._finger_ctrl[0]] = half_width
        ctrl[:, self._finger_ctrl[1]] = -half_width
        return ctrl

    # -- state ---------------------------------------------------------------------------------

    def tcp_position(self, sim: SimTensors) -> torch.Tensor:
        """``[N, 3]`` float64 TCP positions (world frame, m)."""
        joints = sim.qpos[:, self._arm_qpos].to(torch.float64)
        return self.controller.kinematics.forward(joints)[0]

    def target_position(self, sim: SimTensors) -> torch.Tensor:
        return sim.mocap_pos[:, self._target_mocap].to(torch.float64)

    def cube_position(self, sim: SimTensors) -> torch.Tensor:
        return sim.qpos[:, self._cube_qpos : self._cube_qpos + 3].to(torch.float64)

    def gripper_width(self, sim: SimTensors) -> torch.Tensor:
        """``[N]`` distance between the finger pads (m)."""
        return (sim.qpos[:, self._finger_qpos[0]] - sim.qpos[:, self._finger_qpos[1]]).double()

    def cube_grasped(self, sim: SimTensors) -> torch.Tensor:
        """``[N]`` bool: both finger pads touch the cube (``CellSim.cube_grasped``), from the
        contacts of the current state (found after every control step)."""
        count = len(sim.qpos)
        slots = torch.arange(len(self._contact_geom), device=self.device)
        live = slots < self._contact_count[0]
        world = self._contact_world.long().clamp(0, count - 1)
        first, second = self._contact_geom[:, 0], self._contact_geom[:, 1]
        touches_all = torch.ones(count, dtype=torch.bool, device=self.device)
        for pad in self._pad_geoms:
            pair = ((first == self._cube_geom) & (second == pad)) | (
                (first == pad) & (second == self._cube_geom)
            )
            hits = torch.zeros(count, device=self.device).index_add_(
                0, world, (live & pair).to(torch.float32)
            )
            touches_all = touches_all & (hits > 0)
        return touches_all

    def _cube_height(self, sim: SimTensors) -> torch.Tensor:
        return self.cube_position(sim)[:, 2] - scene.CUBE_HALF_SIZE

    def _succeeded(self, sim: SimTensors) -> torch.Tensor:
        if self.task == "reach":
            distance = task_math.norm(self.tcp_position(sim) - self.target_position(sim))
            return task_math.reach_success(distance)
        return task_math.pick_success(self._cube_height(sim))

    # -- WarpTask ----------------------------------------------------------------------------

    def reward(self, sim: SimTensors) -> torch.Tensor:
        tcp = self.tcp_position(sim)
        if self.task == "reach":
            reward = task_math.reach_reward(task_math.norm(tcp - self.target_position(sim)))
        else:
            reward = task_math.pick_reward(
                task_math.norm(tcp - self.cube_position(sim)),
                self.cube_grasped(sim),
                self._cube_height(sim),
            )
        return reward.to(torch.float32)

    def after_control_step(self, sim: SimTensors) -> None:
        self._success = self._success | self._succeeded(sim)

    def success(self, sim: SimTensors) -> torch.Tensor | None:
        return self._success.clone()

    def proprio(self, sim: SimTensors) -> torch.Tensor:
        joints = sim.qpos[:, self._arm_qpos].to(torch.float64)
        tcp, _, jacobian = self.controller.kinematics.forward(joints)
        joint_velocity = sim.qvel[:, self._arm_dofs].to(torch.float64).unsqueeze(2)
        tcp_velocity = (jacobian[:, :3] @ joint_velocity).squeeze(2)
        proprio = torch.cat((tcp, tcp_velocity, self.gripper_width(sim).unsqueeze(1)), dim=1)
        return torch.clamp(proprio.to(torch.float32), self._proprio_low, self._proprio_high)

    def expert_view(self, sim: SimTensors) -> ExpertView:
        """The batched state ``robotrl_sim.cell.scripted``'s experts read."""
        return ExpertView(
            tcp=self.tcp_position(sim),
            tcp_target=self.tcp_target,
            cube=self.cube_position(sim),
            target=self.target_position(sim),
            gripper_width=self.gripper_width(sim),
            gripper_target=self.gripper_target,
        )


class CellReach(CellTask):
    """``cell/reach`` on batched worlds."""

    def __init__(self) -> None:
        super().__init__("reach")


class CellPickCube(CellTask):
    """``cell/pick_cube`` on batched worlds."""

    def __init__(self) -> None:
        super().__init__("pick_cube")


def _in_box(low: tuple[float, ...], high: tuple[float, ...], uniform: torch.Tensor) -> torch.Tensor:
    low_t = torch.tensor(low, dtype=uniform.dtype, device=uniform.device)
    high_t = torch.tensor(high, dtype=uniform.dtype, device=uniform.device)
    return low_t + (high_t - low_t) * uniform


def scripted_actions(env: BatchedMujocoEnv) -> torch.Tensor:
    """``[N, 4]`` float32 actions of ``robotrl_sim.cell.scripted``'s expert for every world."""
    task = env.task
    if not isinstance(task, CellTask):
        raise TypeError(f"scripted_actions needs a cell task, got {type(task).__name__}")
    view = task.expert_view(env.sim)
    expert = reach_actions if task.task == "reach" else pick_actions
    return expert(view, MAX_STEP).to(torch.float32)
