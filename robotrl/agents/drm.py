"""DrM (Xu et al., 2024, "DrM: Mastering Visual Reinforcement Learning through Dormant Ratio
Minimization"): DrQ-v2 steered by the actor's dormant ratio β.

Three mechanisms, all driven by β (measured on every update's augmented, encoded batch, hidden
layers after their ReLU: ``robotrl.nn.dormant``):

1. Dormant-ratio-guided perturbation: every ``perturb_every_steps`` agent steps the Linear
   layers of actor, critic, target critic and value net move to α·θ + (1−α)·θ_fresh with
   α = clip(1 − perturb_rate·β, min_perturb, max_perturb); LayerNorms stay; all optimizer
   states are reset.
2. Awaken exploration (``stddev_type="awake"``): noise sigmoid(10(β − 0.2)) until β first drops
   below 0.2 after the uniform-exploration phase, then the larger of that and the linear
   schedule restarted there. ``stddev_type="dormant"`` keeps ``dormant_stddev_scale``·sigmoid(·)
   throughout (MENTOR's rule).
3. Dormant-ratio-guided exploitation: an expectile (τ_e) value net V(s) regressed on min Q, and
   the critic target V(s') = λ·V(s') + (1−λ)·min Q_target(s', a'), λ = 0.6 / (1 + e^{50(β−0.2)})
   (or a constant λ with ``exploitation="constant"``, as the paper uses on MetaWorld).

Where the public code differs (measured sizes: ``docs/agents.md``): its value-net loss
back-propagates into the critic and relies on the critic update zeroing those gradients; we
compute min Q without gradients, which updates the same parameters. It builds the value net
before the critic, so one seed gives other initial weights. It perturbs on
``step % interval == 0`` inside updates; we perturb at the first update at or after each
multiple of the interval, so the interval needs no relation to ``update_every_steps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from robotrl.agents.base import Batch
from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.nn.dormant import (
    DORMANT_THRESHOLD,
    AwakenSchedule,
    awaken_stddev,
    exploitation_weight,
    perturb_factor,
    perturb_linear_layers,
    reset_optimizer_state,
)
from robotrl.nn.heads import ValueNet


@dataclass
class DrMConfig(DrQV2Config):
    """DrM hyper-parameters (the public DMC config); per-task values live in agent_task/drm/."""

    name: str = "drm"
    dormant_threshold: float = DORMANT_THRESHOLD  # β̂: "awake" below it
    awaken_temperature: float = 10.0
    # "awake": DrM's awaken exploration; "dormant": the noise is scale·sigmoid(·) of β alone.
    stddev_type: str = "awake"
    dormant_stddev_scale: float = 1.0
    perturb_every_steps: int = 100_000
    perturb_rate: float = 2.0
    min_perturb: float = 0.2
    max_perturb: float = 0.9
    exploitation: str = "dormant"  # "dormant": λ(β); "constant": λ = target_lambda
    target_lambda: float = 0.6
    lambda_temperature: float = 50.0
    expectile: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stddev_type not in ("awake", "dormant"):
            raise ValueError(f"stddev_type must be 'awake' or 'dormant', got {self.stddev_type!r}")
        if self.dormant_stddev_scale <= 0.0:
            raise ValueError(f"dormant_stddev_scale must be > 0, got {self.dormant_stddev_scale}")
        if self.exploitation not in ("dormant", "constant"):
            raise ValueError(
                f"exploitation must be 'dormant' or 'constant', got {self.exploitation!r}"
            )
        if not 0.0 < self.min_perturb <= self.max_perturb <= 1.0:
            raise ValueError("need 0 < min_perturb <= max_perturb <= 1")
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile}")


def expectile_loss(error: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric squared error: weight τ_e where V < target (error < 0), 1 − τ_e above."""
    weight = torch.where(error > 0, 1.0 - expectile, expectile)
    return (weight * error.pow(2)).mean()


class DrMAgent(DrQV2Agent):
    """DrM agent; see the module docstring."""

    config_class = DrMConfig

    def __init__(
        self,
        cfg: DrMConfig,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(
            cfg, obs_shape=obs_shape, action_dim=action_dim, device=device, proprio_dim=proprio_dim
        )
        self.cfg: DrMConfig = cfg
        repr_dim = self.encoder.repr_dim
        self.value_net = ValueNet(
            repr_dim, cfg.feature_dim, cfg.hidden_dim, proprio_dim=self.proprio_dim
        ).to(self.device)
        self.modules["value_net"] = self.value_net
        # The networks a perturbation touches (their Linear layers), by module name.
        self.perturbed_networks = {
            name: self.modules[name] for name in ("actor", "critic", "critic_target", "value_net")
        }
        self.optimizers["value_net"] = torch.optim.Adam(self.value_net.parameters(), lr=cfg.lr)
        self.awaken = AwakenSchedule(
            base=cfg.stddev_schedule,
            threshold=cfg.dormant_threshold,
            slope=cfg.awaken_temperature,
            scale=cfg.dormant_stddev_scale,
            earliest_step=cfg.num_expl_steps,
        )
        self.actor_dormant_ratio = 1.0  # fully dormant until measured, as in the public code
        self.next_perturb_step = cfg.perturb_every_steps
        self.train()

    # -- β-driven quantities -----------------------------------------------------------------

    def stddev(self, step: int) -> float:
        if self.cfg.stddev_type == "dormant":
            return awaken_stddev(
                self.actor_dormant_ratio,
                self.cfg.dormant_threshold,
                self.cfg.awaken_temperature,
                self.cfg.dormant_stddev_scale,
            )
        return self.awaken(step, self.actor_dormant_ratio)

    def exploitation_lambda(self) -> float:
        if self.cfg.exploitation == "constant":
            return self.cfg.target_lambda
        return exploitation_weight(
            self.actor_dormant_ratio,
            self.cfg.target_lambda,
            self.cfg.dormant_threshold,
            self.cfg.lambda_temperature,
        )

    def perturb(self) -> float:
        """Shrink-and-perturb toward fresh weights; returns the α used."""
        alpha = perturb_factor(
            self.actor_dormant_ratio,
            self.cfg.max_perturb,
            self.cfg.min_perturb,
            self.cfg.perturb_rate,
        )
        self.shrink_and_perturb(alpha)
        for optimizer in self.optimizers.values():
            reset_optimizer_state(optimizer)
        return alpha

    def shrink_and_perturb(self, alpha: float) -> None:
        """θ ← α·θ + (1−α)·θ_fresh on the Linear layers of actor, critic, target and value net."""
        for network in self.perturbed_networks.values():
            perturb_linear_layers(network, alpha)

    # -- learning ------------------------------------------------------------------------------

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if step >= self.next_perturb_step:
            metrics["perturb_alpha"] = self.perturb()
            while self.next_perturb_step <= step:
                self.next_perturb_step += self.cfg.perturb_every_steps
        metrics |= super().update(batch, step)
        metrics["exploitation_lambda"] = self.exploitation_lambda()
        return metrics

    def dormant_ratios(
        self, features: torch.Tensor, action: torch.Tensor, step: int
    ) -> dict[str, float]:
        metrics = super().dormant_ratios(features, action, step)
        self.awaken.observe(step, self.actor_dormant_ratio)
        return metrics

    def update_auxiliary(
        self, features: torch.Tensor, action: torch.Tensor, step: int
    ) -> dict[str, float]:
        """Expectile regression of V(s) on min Q(s, a), before the critic update."""
        with torch.no_grad():
            q1, q2 = self.critic(features, self.critic_action(action))
        value_loss = expectile_loss(
            self.value_net(features) - torch.min(q1, q2), self.cfg.expectile
        )
        self.optimizers["value_net"].zero_grad(set_to_none=True)
        value_loss.backward()
        self.optimizers["value_net"].step()
        return {"value_loss": value_loss.item()}

    def target_value(self, next_features: torch.Tensor, step: int) -> torch.Tensor:
        explore = super().target_value(next_features, step)
        weight = self.exploitation_lambda()
        return weight * self.value_net(next_features) + (1.0 - weight) * explore

    # -- checkpointed state ------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {
            "actor_dormant_ratio": self.actor_dormant_ratio,
            "awaken_step": self.awaken.awaken_step,
            "next_perturb_step": self.next_perturb_step,
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.actor_dormant_ratio = float(state["actor_dormant_ratio"])
        self.awaken.awaken_step = state["awaken_step"]
        self.next_perturb_step = int(state["next_perturb_step"])
