"""Actor and critic heads on top of encoded pixels (DrQ-v2 architecture)."""

from __future__ import annotations

import torch
from torch import nn

from robotrl.nn.distributions import TruncatedNormal
from robotrl.nn.init import orthogonal_init
from robotrl.nn.moe import MixtureOfExperts, MoEConfig


def trunk(repr_dim: int, feature_dim: int) -> nn.Sequential:
    """Projection of the encoder output: ``Linear → LayerNorm → Tanh``."""
    return nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Two hidden ReLU layers."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class Actor(nn.Module):
    """Deterministic-mean policy; the standard deviation comes from a schedule.

    With ``moe`` the second hidden layer is a mixture of experts (MENTOR); its auxiliary loss
    of the last forward pass is ``auxiliary_loss()``. Without it, the DrQ-v2 MLP.
    """

    def __init__(
        self,
        repr_dim: int,
        action_dim: int,
        feature_dim: int,
        hidden_dim: int,
        moe: MoEConfig | None = None,
    ) -> None:
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        if moe is None:
            self.policy = mlp(feature_dim, hidden_dim, action_dim)
        else:
            self.policy = nn.Sequential(
                nn.Linear(feature_dim, hidden_dim),
                nn.ReLU(inplace=True),
                MixtureOfExperts(hidden_dim, hidden_dim, moe),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, action_dim),
            )
        # Orthogonal everywhere, experts and gate included (the reference's effective init).
        self.apply(orthogonal_init)

    @property
    def moe(self) -> MixtureOfExperts | None:
        """The mixture-of-experts layer (the policy's third module), if this actor has one."""
        layer = self.policy[2]
        return layer if isinstance(layer, MixtureOfExperts) else None

    def auxiliary_loss(self) -> torch.Tensor | None:
        """The mixture-of-experts loss of the last forward pass (None for the MLP actor)."""
        return None if self.moe is None else self.moe.aux_loss

    def forward(self, features: torch.Tensor, std: float) -> TruncatedNormal:
        mean = torch.tanh(self.policy(self.trunk(features)))
        return TruncatedNormal(mean, torch.ones_like(mean) * std)


class Critic(nn.Module):
    """Twin Q-networks sharing one trunk."""

    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.q1 = mlp(feature_dim + action_dim, hidden_dim, 1)
        self.q2 = mlp(feature_dim + action_dim, hidden_dim, 1)
        self.apply(orthogonal_init)

    def forward(
        self, features: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h_action = torch.cat([self.trunk(features), action], dim=-1)
        return self.q1(h_action), self.q2(h_action)


class ValueNet(nn.Module):
    """State-value head V(s) with the same trunk design as the actor and critic."""

    def __init__(self, repr_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.value = mlp(feature_dim, hidden_dim, 1)
        self.apply(orthogonal_init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        value: torch.Tensor = self.value(self.trunk(features))
        return value
