"""Actor and critic heads on top of encoded pixels (DrQ-v2 architecture).

With proprioception (``proprio_dim > 0``) every head takes ``[pixel features ‖ proprio]`` and fuses
the two after its trunk as DrM's and MENTOR's Adroit agents do (``drm_adroit.py``/
``mentor_adroit.py``, ``StateEncoder``): ``h = fusion(trunk(pixels) + state_mlp(proprio))``. Each
head has its own fusion, trained by that head's loss. Without proprio the heads are DrQ-v2's,
parameter for parameter.
"""

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


class ProprioFusion(nn.Module):
    """DrM's Adroit ``StateEncoder``: proprio → MLP, added to the trunk's output → MLP.

    A head with proprioception takes ``[pixel features ‖ proprio]`` (the agent appends proprio to
    the encoder output, so callers pass one tensor either way); this splits it, runs the head's
    trunk on the pixel part and fuses the proprio part into the result.
    """

    def __init__(self, repr_dim: int, proprio_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.repr_dim = repr_dim
        self.proprio_dim = proprio_dim
        self.state = nn.Sequential(
            nn.Linear(proprio_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, feature_dim),
        )
        self.fusion = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, feature_dim),
        )

    def forward(self, head_trunk: nn.Module, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.repr_dim + self.proprio_dim:
            raise ValueError(
                f"expected features of width {self.repr_dim} (pixels) + {self.proprio_dim} "
                f"(proprio), got {features.shape[-1]}"
            )
        pixels, proprio = features.split([self.repr_dim, self.proprio_dim], dim=-1)
        fused: torch.Tensor = self.fusion(head_trunk(pixels) + self.state(proprio))
        return fused


def proprio_fusion(
    repr_dim: int, proprio_dim: int, feature_dim: int, hidden_dim: int
) -> ProprioFusion | None:
    """A head's fusion module, or None without proprio (the head is then DrQ-v2's exactly)."""
    if proprio_dim < 0:
        raise ValueError(f"proprio_dim must be >= 0, got {proprio_dim}")
    return ProprioFusion(repr_dim, proprio_dim, feature_dim, hidden_dim) if proprio_dim else None


def head_input(
    head_trunk: nn.Module, proprio: ProprioFusion | None, features: torch.Tensor
) -> torch.Tensor:
    """The trunk's output, with proprio fused in when the head has it."""
    h: torch.Tensor = head_trunk(features) if proprio is None else proprio(head_trunk, features)
    return h


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
        proprio_dim: int = 0,
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
        self.proprio = proprio_fusion(repr_dim, proprio_dim, feature_dim, hidden_dim)
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
        mean = torch.tanh(self.policy(head_input(self.trunk, self.proprio, features)))
        return TruncatedNormal(mean, torch.ones_like(mean) * std)


class Critic(nn.Module):
    """Twin Q-networks sharing one trunk."""

    def __init__(
        self,
        repr_dim: int,
        action_dim: int,
        feature_dim: int,
        hidden_dim: int,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.q1 = mlp(feature_dim + action_dim, hidden_dim, 1)
        self.q2 = mlp(feature_dim + action_dim, hidden_dim, 1)
        self.proprio = proprio_fusion(repr_dim, proprio_dim, feature_dim, hidden_dim)
        self.apply(orthogonal_init)

    def forward(
        self, features: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h_action = torch.cat([head_input(self.trunk, self.proprio, features), action], dim=-1)
        return self.q1(h_action), self.q2(h_action)


class ValueNet(nn.Module):
    """State-value head V(s) with the same trunk design as the actor and critic."""

    def __init__(
        self, repr_dim: int, feature_dim: int, hidden_dim: int, proprio_dim: int = 0
    ) -> None:
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.value = mlp(feature_dim, hidden_dim, 1)
        self.proprio = proprio_fusion(repr_dim, proprio_dim, feature_dim, hidden_dim)
        self.apply(orthogonal_init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        value: torch.Tensor = self.value(head_input(self.trunk, self.proprio, features))
        return value
