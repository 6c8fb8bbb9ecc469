"""Actor and critic heads on top of encoded pixels (DrQ-v2 architecture)."""

from __future__ import annotations

import torch
from torch import nn

from robotrl.nn.distributions import TruncatedNormal
from robotrl.nn.init import orthogonal_init


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
    """Deterministic-mean policy; the standard deviation comes from a schedule."""

    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.policy = mlp(feature_dim, hidden_dim, action_dim)
        self.apply(orthogonal_init)

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
