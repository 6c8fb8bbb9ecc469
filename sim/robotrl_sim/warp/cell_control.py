"""The cell's TCP controller, batched in torch: ``CellSim``'s damped-least-squares IK for N worlds.

``ArmKinematics`` is the forward kinematics of the Panda's chain from the world to the TCP site,
read from the compiled ``MjModel`` (body offsets, hinge axes and anchors; the same recursion as
``mj_kinematics``), with the TCP's 6 x 7 Jacobian from the joints' world axes and anchors: the
column of hinge ``j`` is ``(a_j × (p_tcp − anchor_j), a_j)``, which is what ``mj_jacSite``
returns for the arm's degrees of freedom. ``BatchedTcpController`` runs ``CellSim.solve_ik``'s
iteration on ``[N, 7]`` joint vectors (same damping, iteration count, tolerance, null-space pull,
step limit and joint clipping, imported from ``robotrl_sim.cell.arm``), each world stopping when
its own error is below tolerance, as ``CellSim`` does per call. It runs in float64 on the sim's
device, whatever the simulator's precision, so the joint targets match ``CellSim``'s (tested).
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch

from robotrl_sim.cell import arm, scene

Tensor = torch.Tensor


def quat_multiply(left: Tensor, right: Tensor) -> Tensor:
    """Hamilton product of ``(w, x, y, z)`` quaternions ``[..., 4]``."""
    w1, x1, y1, z1 = left.unbind(-1)
    w2, x2, y2, z2 = right.unbind(-1)
    return torch.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        dim=-1,
    )


def quat_rotate(quat: Tensor, vector: Tensor) -> Tensor:
    """``vector [..., 3]`` rotated by unit ``quat [..., 4]``."""
    w = quat[..., :1]
    xyz = quat[..., 1:]
    twice_cross = 2.0 * torch.linalg.cross(xyz, vector, dim=-1)
    return vector + w * twice_cross + torch.linalg.cross(xyz, twice_cross, dim=-1)


def rotation_error(target_quat: Tensor, current_quat: Tensor) -> Tensor:
    """Rotation vector (world frame) that turns ``current_quat`` into ``target_quat``, the short
    way round (``mju_quat2Vel`` of ``target · current⁻¹``, as ``robotrl_sim.cell.arm``)."""
    conjugate = current_quat * current_quat.new_tensor([1.0, -1.0, -1.0, -1.0])
    difference = quat_multiply(target_quat, conjugate)
    difference = torch.where(difference[..., :1] < 0, -difference, difference)
    sin_half = torch.linalg.vector_norm(difference[..., 1:], dim=-1, keepdim=True)
    cos_half = difference[..., :1]
    # angle / sin(angle/2) → 2 / cos(angle/2) as the angle → 0.
    small = sin_half < 1e-12
    scale = torch.where(
        small, 2.0 / cos_half, 2.0 * torch.atan2(sin_half, cos_half) / sin_half.clamp(min=1e-12)
    )
    return difference[..., 1:] * scale


class ArmKinematics:
    """Batched forward kinematics and Jacobian of the cell's TCP site, in torch."""

    def __init__(self, model: mujoco.MjModel, device: torch.device) -> None:
        def tensor(values: np.ndarray) -> Tensor:
            return torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)

        site = model.site(scene.TCP_SITE).id
        arm_joints = [model.joint(name).id for name in scene.ARM_JOINTS]
        chain = []
        body = int(model.site_bodyid[site])
        while body != 0:
            chain.append(body)
            body = int(model.body_parentid[body])
        chain.reverse()
        # (body_pos, body_quat, index into the arm joints or -1) for each body of the chain.
        self._links: list[tuple[Tensor, Tensor, int]] = []
        for body in chain:
            joints = [int(j) for j in np.flatnonzero(model.jnt_bodyid == body)]
            if len(joints) > 1 or (joints and joints[0] not in arm_joints):
                raise ValueError(f"unexpected joints {joints} on the TCP's chain (body {body})")
            if joints and model.jnt_type[joints[0]] != mujoco.mjtJoint.mjJNT_HINGE:
                raise ValueError("the arm's joints must be hinges")
            arm_index = arm_joints.index(joints[0]) if joints else -1
            self._links.append(
                (tensor(model.body_pos[body]), tensor(model.body_quat[body]), arm_index)
            )
        self._axes = tensor(model.jnt_axis[arm_joints])
        self._anchors = tensor(model.jnt_pos[arm_joints])
        self._qpos0 = tensor(model.qpos0[[model.jnt_qposadr[j] for j in arm_joints]])
        self._site_pos = tensor(model.site_pos[site])
        self._site_quat = tensor(model.site_quat[site])

    def forward(self, joints: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """TCP position ``[N, 3]``, quaternion ``[N, 4]`` and Jacobian ``[N, 6, 7]`` (linear rows
        first) at arm joint angles ``joints [N, 7]`` (float64)."""
        count = joints.shape[0]
        position = joints.new_zeros(count, 3)
        quat = joints.new_zeros(count, 4)
        quat[:, 0] = 1.0
        axes, anchors = [], []
        for body_pos, body_quat, arm_index in self._links:
            position = position + quat_rotate(quat, body_pos.expand(count, 3))
            quat = quat_multiply(quat, body_quat.expand(count, 4))
            if arm_index >= 0:
                local_axis = self._axes[arm_index].expand(count, 3)
                local_anchor = self._anchors[arm_index].expand(count, 3)
                anchor = quat_rotate(quat, local_anchor) + position
                axes.append(quat_rotate(quat, local_axis))
                anchors.append(anchor)
                half = 0.5 * (joints[:, arm_index] - self._qpos0[arm_index]).unsqueeze(1)
                turn = torch.cat((torch.cos(half), torch.sin(half) * local_axis), dim=1)
                quat = quat_multiply(quat, turn)
                quat = quat / torch.linalg.vector_norm(quat, dim=1, keepdim=True)
                position = anchor - quat_rotate(quat, local_anchor)
        tcp = position + quat_rotate(quat, self._site_pos.expand(count, 3))
        tcp_quat = quat_multiply(quat, self._site_quat.expand(count, 4))
        axis = torch.stack(axes, dim=2)  # [N, 3, 7]
        lever = tcp.unsqueeze(2) - torch.stack(anchors, dim=2)
        linear = torch.linalg.cross(axis, lever, dim=1)
        return tcp, tcp_quat, torch.cat((linear, axis), dim=1)


class BatchedTcpController:
    """``CellSim.command_tcp`` for N worlds: workspace clipping, then DLS IK for joint targets."""

    def __init__(
        self,
        model: mujoco.MjModel,
        device: torch.device,
        workspace: arm.WorkspaceBox | None = None,
    ) -> None:
        def tensor(values: object) -> Tensor:
            return torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)

        self.kinematics = ArmKinematics(model, device)
        workspace = workspace or arm.WorkspaceBox()
        self._low = tensor(workspace.low)
        self._high = tensor(workspace.high)
        joint_ids = [model.joint(name).id for name in scene.ARM_JOINTS]
        self._joint_low = tensor(model.jnt_range[joint_ids, 0])
        self._joint_high = tensor(model.jnt_range[joint_ids, 1])
        self._home = tensor(scene.HOME_QPOS)
        self._damping = arm.IK_DAMPING**2 * torch.eye(6, dtype=torch.float64, device=device)
        self._identity = torch.eye(7, dtype=torch.float64, device=device)
        _, home_quat, _ = self.kinematics.forward(self._home.unsqueeze(0))
        # CellSim.home_tcp_quat: w >= 0.
        self.home_tcp_quat = torch.where(home_quat[:, :1] < 0, -home_quat, home_quat)[0]

    def clip_to_workspace(self, position: Tensor) -> Tensor:
        return torch.minimum(torch.maximum(position, self._low), self._high)

    def solve_ik(self, target_pos: Tensor, target_quat: Tensor, initial: Tensor) -> Tensor:
        """``[N, 7]`` joint angles putting the TCP at the poses, by damped least squares from
        ``initial`` (``CellSim.solve_ik``, every world at once; float64)."""
        joints = initial.to(torch.float64)
        active = torch.ones(joints.shape[0], dtype=torch.bool, device=joints.device)
        for _ in range(arm.IK_ITERATIONS):
            position, quat, jacobian = self.kinematics.forward(joints)
            error = torch.cat((target_pos - position, rotation_error(target_quat, quat)), dim=1)
            jacobian_t = jacobian.transpose(1, 2)
            pseudo_inverse = jacobian_t @ torch.linalg.inv(jacobian @ jacobian_t + self._damping)
            step = (pseudo_inverse @ error.unsqueeze(2)).squeeze(2)
            nullspace = self._identity - pseudo_inverse @ jacobian
            posture = arm.IK_NULLSPACE_GAIN * (self._home - joints)
            step = step + (nullspace @ posture.unsqueeze(2)).squeeze(2)
            largest = step.abs().amax(dim=1, keepdim=True)
            step = step * (arm.IK_MAX_JOINT_STEP / largest.clamp(min=arm.IK_MAX_JOINT_STEP))
            updated = torch.minimum(torch.maximum(joints + step, self._joint_low), self._joint_high)
            joints = torch.where(active.unsqueeze(1), updated, joints)
            # CellSim applies the step of the iteration that converged, then stops.
            active = active & (torch.linalg.vector_norm(error, dim=1) >= arm.IK_TOLERANCE)
        return joints
