"""``warp/cartpole_swingup``: dm_control's cartpole swing-up, on the batched MuJoCo Warp backend.

The scene (``cartpole.xml``) has DMC's joints, masses, limits, actuator (gear 10, control in
[-1, 1]) and fixed camera, with flat colours for the ray tracer and Euler integration at 0.01 s.
Episodes start with the pole hanging down, as DMC's ``initialize_episode(swing_up=True)``::

    cart x = 0.01 n1,  pole angle = π + 0.01 n2,  velocities = 0.01 (n3, n4),  n ~ N(0, 1)

and are truncated after 10 s of simulated time (1000 physics steps), never terminated.

The reward is DMC's smooth swing-up reward, per physics step, in [0, 1]::

    upright        = (cos θ + 1) / 2                          (cos θ: the pole's z-axis, zz)
    centered       = (1 + tolerance(x, margin=2)) / 2           Gaussian, 0.1 at |x| = 2 m
    small_control  = (4 + tolerance(u, margin=1, value_at_margin=0, sigmoid="quadratic")) / 5
                   = (4 + max(0, 1 - u²)) / 5
    small_velocity = (1 + tolerance(θ̇, margin=5)) / 2           Gaussian, 0.1 at |θ̇| = 5 rad/s
    reward         = upright · centered · small_control · small_velocity

where ``tolerance(v, margin=m)`` with bounds (0, 0) is ``exp(-½ (|v|/m)² · 2 ln 10)``, i.e. 1 at 0
and 0.1 at the margin (dm_control ``rewards.tolerance``). ``proprio`` is DMC's observation:
``[x, cos θ, sin θ, ẋ, θ̇]`` (float32, 5).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import mujoco
import torch

from robotrl_sim.warp.batched import SimTensors, WarpTask

# tolerance(..., sigmoid="gaussian", value_at_margin=0.1): exp(-½ (d · scale)²) with this scale.
_GAUSSIAN_SCALE = math.sqrt(-2.0 * math.log(0.1))


def gaussian_tolerance(value: torch.Tensor, margin: float) -> torch.Tensor:
    """dm_control's ``rewards.tolerance(value, bounds=(0, 0), margin)``: Gaussian, 0.1 at margin."""
    distance = value.abs() / margin
    return torch.exp(-0.5 * (distance * _GAUSSIAN_SCALE) ** 2)


def quadratic_tolerance(value: torch.Tensor, margin: float) -> torch.Tensor:
    """dm_control's ``tolerance(value, bounds=(0, 0), margin, sigmoid="quadratic",
    value_at_margin=0)``: ``1 - (v/m)²`` inside the margin, 0 outside."""
    distance = value.abs() / margin
    return torch.where(distance < 1.0, 1.0 - distance**2, torch.zeros_like(distance))


def swingup_reward(
    cart_position: torch.Tensor,
    pole_cos: torch.Tensor,
    pole_angular_velocity: torch.Tensor,
    control: torch.Tensor,
) -> torch.Tensor:
    """DMC's smooth cartpole swing-up reward (see the module docstring), elementwise."""
    upright = (pole_cos + 1.0) / 2.0
    centered = (1.0 + gaussian_tolerance(cart_position, margin=2.0)) / 2.0
    small_control = (4.0 + quadratic_tolerance(control, margin=1.0)) / 5.0
    small_velocity = (1.0 + gaussian_tolerance(pole_angular_velocity, margin=5.0)) / 2.0
    return upright * centered * small_control * small_velocity


class CartpoleSwingup(WarpTask):
    """Swing the pole up from hanging down and balance it, with the cart near the centre."""

    cameras = ("fixed",)
    time_limit = 10.0
    reset_noise_size = 4
    proprio_size = 5

    def __init__(self) -> None:
        self.xml_path = Path(str(resources.files("robotrl_sim.warp") / "cartpole.xml"))
        model = mujoco.MjModel.from_xml_path(str(self.xml_path))
        self._pole = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "pole_1")

    def initial_state(
        self, noise: torch.Tensor, qpos0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cart = 0.01 * noise[:, 0]
        hinge = math.pi + 0.01 * noise[:, 1]
        return torch.stack((cart, hinge), dim=1), 0.01 * noise[:, 2:4]

    def reward(self, sim: SimTensors) -> torch.Tensor:
        return swingup_reward(
            cart_position=sim.qpos[:, 0],
            pole_cos=sim.xmat[:, self._pole, 2, 2],
            pole_angular_velocity=sim.qvel[:, 1],
            control=sim.ctrl[:, 0],
        )

    def proprio(self, sim: SimTensors) -> torch.Tensor:
        pole = sim.xmat[:, self._pole]
        return torch.stack(
            (sim.qpos[:, 0], pole[:, 2, 2], pole[:, 0, 2], sim.qvel[:, 0], sim.qvel[:, 1]), dim=1
        )
