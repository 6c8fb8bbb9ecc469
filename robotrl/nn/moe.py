"""Sparse mixture-of-experts layer (MENTOR's actor backbone, Huang et al., 2025).

A gate scores every expert for each sample; the top-k experts' outputs are mixed with their gate
probabilities renormalised over those k. Every expert is an ``nn.Linear`` block, so the dormant
ratio and the DrM/MENTOR perturbations see and treat expert layers like any other Linear.

The auxiliary loss has two terms, each with weight 1 as in the reference code:

- load balance, ``E · Σ_e f_e · p̄_e`` (Switch Transformer, Fedus et al., 2021), where ``f_e`` is
  the share of the batch's top-k slots routed to expert e and ``p̄_e`` its batch-mean gate
  probability; it equals 1 under uniform routing. The reference code uses the variance of the
  routed counts, which is computed from top-k indices and so carries no gradient: it never
  balances anything. We use the differentiable form so the term does what the paper asks of it.
- gate entropy, the batch mean of each sample's gate entropy, minimised (as in the reference):
  each sample commits to few experts while the balance term spreads samples across experts.

Experts run densely on the whole batch (as in the reference); with 16 small experts this is
one batched pass each and keeps dormant-ratio statistics over the full batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MoEConfig:
    """Mixture-of-experts sizes (MENTOR's DMC defaults)."""

    num_experts: int = 16
    top_k: int = 4
    expert_hidden_dim: int = 256
    gate_hidden_dim: int = 256
    gate_dropout: float = 0.1
    aux_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError(
                f"need 1 <= top_k <= num_experts, got top_k={self.top_k}, "
                f"num_experts={self.num_experts}"
            )
        if not 0.0 <= self.gate_dropout < 1.0:
            raise ValueError(f"gate_dropout must be in [0, 1), got {self.gate_dropout}")


class MixtureOfExperts(nn.Module):
    """``in_dim → out_dim`` through the top-k of ``num_experts`` two-layer experts.

    After each forward pass, ``aux_loss`` holds the auxiliary loss of that pass.
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: MoEConfig) -> None:
        super().__init__()
        self.top_k = cfg.top_k
        self.experts = nn.ModuleList(
            nn.Sequential(
                nn.Linear(in_dim, cfg.expert_hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(cfg.expert_hidden_dim, out_dim),
            )
            for _ in range(cfg.num_experts)
        )
        self.gate = nn.Sequential(
            nn.Linear(in_dim, cfg.gate_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.gate_dropout),
            nn.Linear(cfg.gate_hidden_dim, cfg.num_experts),
        )
        self.aux_loss = torch.zeros(())

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate probabilities [B, E], chosen experts [B, k] and their renormalised weights."""
        probs = F.softmax(self.gate(x), dim=-1)
        top_probs, top_index = probs.topk(self.top_k, dim=-1)
        weights = top_probs / top_probs.sum(dim=-1, keepdim=True).clamp_min(1e-9)
        return probs, top_index, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs, top_index, weights = self.route(x)
        outputs = torch.stack([expert(x) for expert in self.experts], dim=1)  # [B, E, out]
        chosen = outputs.gather(1, top_index.unsqueeze(-1).expand(-1, -1, outputs.shape[-1]))
        mixed = (weights.unsqueeze(-1) * chosen).sum(dim=1)

        routed = F.one_hot(top_index, self.num_experts).to(probs.dtype).sum(dim=1)  # [B, E]
        self.aux_loss = load_balance_loss(probs, routed) + gate_entropy(probs)
        return mixed


def load_balance_loss(probs: torch.Tensor, routed: torch.Tensor) -> torch.Tensor:
    """``E · Σ_e f_e · p̄_e``: 1 when routing is uniform, up to E when one expert takes all."""
    num_experts = probs.shape[-1]
    share = routed.sum(dim=0) / routed.sum()
    return num_experts * (share * probs.mean(dim=0)).sum()


def gate_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Batch mean of each sample's gate entropy (nats)."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1).mean()
