"""``warp/reach``: ``builtin/reach`` on the batched MuJoCo Warp backend.

The same arena, agent, target and top-down orthographic camera as ``builtin/reach``
(``reach.xml``): an orange point mass on two damped slide joints (full action: 0.5 m/s) has to
reach a green target disc. Differences, all for the batched backend:

- One physics step is builtin's control step (0.05 s, implicitfast), so an agent step is
  ``action_repeat`` of them and the reward of an agent step is a sum of ``action_repeat`` per-step
  rewards, as in builtin (which integrates each control step in five 0.01 s substeps; the velocity
  responds a little more slowly here: 0.25 m/s after the first step at full force, not 0.45).
- The joint limits are ±0.235 m (builtin: ±0.25) because they are soft at this step size.
- Episodes last 5 s of simulated time: 50 agent steps at ``action_repeat=2``, builtin's preset.

Each episode draws, per world from the world's own random stream, a target centre uniform in
``[-SPAWN_HALF_WIDTH, SPAWN_HALF_WIDTH]²`` and a start position uniform in the same square but not
on the target (distance > ``TARGET_RADIUS + AGENT_RADIUS``): of ``START_CANDIDATES`` uniform
draws, the first far enough, or the farthest if none is (probability ~5e-7). The target is a
mocap body, so it is part of the rendered scene but not of ``qpos``.

Reward per physics step, in [0, 1], as ``builtin.reach.reach_reward``: 1 within
``TARGET_RADIUS`` of the target centre, then ``exp(-½ (d' · s)²)`` of the distance ``d'`` beyond
it with ``s = sqrt(-2 ln 0.1) / REWARD_MARGIN`` (0.1 at the margin). ``info["success"]``: the
agent centre is within ``TARGET_RADIUS`` of the target centre at the end of the agent step.
``proprio``: agent position and velocity (float32, 4), as builtin's.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import mujoco
import torch

from robotrl_sim.warp.batched import SimTensors, WarpTask

# builtin/reach's geometry and reward (robotrl_sim.builtin.reach), repeated so that this module
# needs no import of the builtin suite's renderer.
TARGET_RADIUS = 0.06
REWARD_MARGIN = 0.2
SPAWN_HALF_WIDTH = 0.22
AGENT_RADIUS = 0.04
START_CANDIDATES = 8
_REWARD_SCALE = math.sqrt(-2.0 * math.log(0.1)) / REWARD_MARGIN


def reach_reward(distance: torch.Tensor) -> torch.Tensor:
    """1 within TARGET_RADIUS, then exp(-d²/2σ²) of the distance d beyond it (0.1 at the margin)."""
    beyond = (distance - TARGET_RADIUS).clamp(min=0.0)
    return torch.exp(-0.5 * (beyond * _REWARD_SCALE) ** 2)


def spawn(noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target [N, 2], start [N, 2])`` of new episodes from ``noise [N, 2 + 2 K]`` normals."""
    # Φ(z) is uniform on [0, 1) for standard normal z.
    uniform = torch.special.ndtr(noise) * 2.0 - 1.0
    squares = SPAWN_HALF_WIDTH * uniform
    target = squares[:, :2]
    candidates = squares[:, 2:].reshape(len(noise), START_CANDIDATES, 2)
    distance = torch.linalg.vector_norm(candidates - target.unsqueeze(1), dim=2)
    far_enough = distance > TARGET_RADIUS + AGENT_RADIUS
    # argmax returns the first maximum: the first candidate far enough, else the farthest.
    choice = torch.where(
        far_enough.any(dim=1), far_enough.to(torch.int8).argmax(dim=1), distance.argmax(dim=1)
    )
    start = candidates[torch.arange(len(noise), device=noise.device), choice]
    return target, start


class Reach(WarpTask):
    """Steer the point mass onto the target disc (see the module docstring)."""

    cameras = ("top",)
    time_limit = 5.0
    reset_noise_size = 2 + 2 * START_CANDIDATES
    proprio_size = 4

    def __init__(self) -> None:
        self.xml_path = Path(str(resources.files("robotrl_sim.warp") / "reach.xml"))
        model = mujoco.MjModel.from_xml_path(str(self.xml_path))
        target_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "target")
        self._target = int(model.body_mocapid[target_body])

    def initial_state(
        self, noise: torch.Tensor, qpos0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _, start = spawn(noise)
        return start, torch.zeros_like(start)

    def initial_mocap_pos(
        self, noise: torch.Tensor, mocap_pos0: torch.Tensor
    ) -> torch.Tensor | None:
        target, _ = spawn(noise)
        mocap_pos = mocap_pos0.expand(len(noise), -1, -1).clone()
        mocap_pos[:, self._target, :2] = target
        return mocap_pos

    def target_position(self, sim: SimTensors) -> torch.Tensor:
        """``[N, 2]`` x, y of the target centres."""
        return sim.mocap_pos[:, self._target, :2]

    def distance(self, sim: SimTensors) -> torch.Tensor:
        """``[N]`` distance from the agent's centre to the target's."""
        return torch.linalg.vector_norm(sim.qpos[:, :2] - self.target_position(sim), dim=1)

    def reward(self, sim: SimTensors) -> torch.Tensor:
        return reach_reward(self.distance(sim))

    def success(self, sim: SimTensors) -> torch.Tensor | None:
        return self.distance(sim) <= TARGET_RADIUS

    def proprio(self, sim: SimTensors) -> torch.Tensor:
        return torch.cat((sim.qpos[:, :2], sim.qvel[:, :2]), dim=1)
