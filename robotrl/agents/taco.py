"""TACO (Zheng et al., 2023, "TACO: Temporal Latent Action-Driven Contrastive Loss for Visual
Reinforcement Learning"): the building blocks, to be mixed into a DrQ-v2-style agent.

Method. Alongside the actor-critic, learn a latent action ``u = ψ(a)`` and make the state
representation predictive of the future under an action sequence: a projection
``G(z_t, u_t..u_{t+K-1})`` must pick out the representation of ``o_{t+K}`` among the other
futures of the batch, scored bilinearly, ``ℓ_ij = G_i^T W z⁺_j``, with InfoNCE (cross-entropy on
the diagonal). The critic is then trained on ``Q(s, ψ(a))``, so the learnt action representation
serves the value function too.

The reference implementation (github.com/FrankZheng2022/TACO, ``agents/taco.py`` and
``utils.py``) behaves as follows; this is what the parts below reproduce.

(a) ``z_t`` is neither the raw encoder output nor the critic's trunk: it is a TACO-owned state
    projection ``Linear(repr_dim, 50) → LayerNorm → Tanh`` (the trunk's architecture, separate
    weights) applied to the pixel encoder's output for a *fresh* random-shift augmentation of
    ``o_t`` (not the augmentation the critic was trained on in the same update).
(b) The action encoder maps one action through ``Linear(A, 64) → Tanh → Linear(64, d)`` with
    ``d = ⌊1.25·A⌋ + 1`` by default; no activation on the output. For the K-step sequence each
    action is encoded alone, the K codes are concatenated and mixed by
    ``Linear(K·d, K·d) → LayerNorm → Tanh``; the sequence code has ``K·d`` features.
(c) ``G`` is ``Linear(50 + K·d, 1024) → ReLU → Linear(1024, 50)`` on ``[z_t, sequence code]``.
    There is no separate ``H``: the future side is the same state projection as ``z_t``. ``W`` is
    a free ``50×50`` matrix initialised uniform in ``[0, 1)`` (CURL's choice). Logits are
    ``G @ W @ z⁺ᵀ`` minus each row's max, no temperature, labels on the diagonal.
(d) ``z⁺ = z_{t+K}`` is the *online* encoder and state projection applied to an augmented
    ``o_{t+K}`` under ``torch.no_grad`` (the reference's flag is called ``ema`` but there is no
    momentum encoder): stop-gradient, same weights as the anchor.
(e) CURL (config ``curl: true`` in the reference): InfoNCE between ``z_t`` and the projection of a
    second augmentation of ``o_t`` (no grad), with the *same* ``W``. Reward prediction
    (``reward: true``): ``Linear(50 + K·d, 1024) → ReLU → Linear(1024, 1)`` on
    ``[z_t, sequence code]``, MSE against the batch's n-step discounted return
    ``Σ_{i<n} γ^i r_{t+i}`` (n = K = 3 there, so the K-step discounted return). All three terms
    are summed with weight 1. Both are enabled in the reference's shipped config.
(f) One Adam, lr ``encoder_lr = 1e-4``, over every TACO parameter: pixel encoder, action
    encoder (both layers), state projection, ``G``, ``W``, reward head; stepped once per update
    on ``taco + curl + reward``, after the critic, actor and target updates, on batches of 1024.
    The pixel encoder and the action encoder also sit in a second Adam (lr 1e-4) stepped by the
    critic loss, so each gets two Adam steps per update, with separate moment estimates.
(g) The critic target evaluates ``Q_target(s', ψ(a'))`` with the *online* action encoder (no
    target copy), under ``no_grad``.
(h) Yes: the actor's sampled action goes through ``ψ`` before the critic. The actor loss also
    puts gradients on ``ψ``, but only the actor's optimizer steps there and the TACO optimizer
    clears them before its own backward, so the actor never changes ``ψ``.

Deviations.
- The sequence mixer (``Linear(K·d, K·d) → LayerNorm → Tanh``) lives in :class:`TacoObjective`,
  not in :class:`ActionEncoder`: the critic only ever uses single-step codes, so only the TACO
  loss reaches the mixer, and owning it here changes no update (the reference also lists it in
  the critic-side optimizer, where its gradient is always empty).
- The reward target is built here from the per-step rewards ``r_t..r_{t+K-1}`` as the
  ``discount``-weighted sum, which equals the reference's n-step return whenever ``n == K``.
- ``curl`` and ``reward_prediction`` default to off here, so the temporal contrastive term
  stands alone unless asked for; the reference's shipped config (``cfgs/agent/taco.yaml``)
  turns both on, so set both true to reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robotrl.nn.heads import trunk
from robotrl.nn.init import orthogonal_init


@dataclass
class TacoConfig:
    """TACO hyper-parameters; defaults are the reference's (DMC) except ``curl``/``reward``."""

    horizon: int = 3  # K: actions a_t..a_{t+K-1} predict o_{t+K}
    action_latent_dim: int = 0  # per-action code size; 0 = the reference's ⌊1.25·A⌋ + 1
    action_hidden_dim: int = 64
    projection_dim: int = 50  # state projection and G output (the agent's feature_dim)
    projection_hidden_dim: int = 1024  # hidden width of G and the reward head
    curl: bool = False  # add CURL's InfoNCE between two augmentations of o_t
    reward_prediction: bool = False  # add MSE prediction of the K-step discounted return
    contrastive_weight: float = 1.0
    curl_weight: float = 1.0
    reward_weight: float = 1.0
    lr: float = 1e-4  # Adam over every TACO parameter, the pixel encoder's included

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.action_latent_dim < 0:
            raise ValueError(
                f"action_latent_dim must be >= 0 (0 = auto), got {self.action_latent_dim}"
            )
        for name in ("action_hidden_dim", "projection_dim", "projection_hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("contrastive_weight", "curl_weight", "reward_weight"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def latent_dim(self, action_dim: int) -> int:
        """Size of one action's code for an action space of ``action_dim``."""
        return self.action_latent_dim or int(action_dim * 1.25) + 1


class ActionEncoder(nn.Module):
    """ψ: one action ``[..., A]`` to its latent code ``[..., latent_dim]``; the critic's input."""

    def __init__(self, action_dim: int, latent_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(action_dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, latent_dim)
        )
        self.apply(orthogonal_init)

    def forward(self, action: torch.Tensor) -> torch.Tensor:
        latent: torch.Tensor = self.net(action)
        return latent


def info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    W: torch.Tensor,  # noqa: N803 (the paper's W)
) -> torch.Tensor:
    """InfoNCE with in-batch negatives: row ``i`` of ``anchors @ W @ positives.T`` must pick ``i``.

    ``anchors`` and ``positives`` are ``[B, D]``, ``W`` is ``[D, D]``; returns the mean loss.
    """
    logits = anchors @ W @ positives.T
    # Per-row shift as in the reference: cross-entropy is invariant to it (value and gradient),
    # so it only guards exp() against overflow.
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    labels = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, labels)


class TacoObjective(nn.Module):
    """TACO's heads and loss on top of a pixel encoder and an :class:`ActionEncoder`.

    Holds the state projection, the sequence mixer, ``G``, the bilinear ``W`` and (when enabled)
    the reward head. ``features`` arguments are the pixel encoder's outputs ``[B, repr_dim]``;
    the state projection is applied here. ``discount`` weights the per-step rewards of the
    reward-prediction target.
    """

    reward_weights: torch.Tensor  # [K]: discount^i, turns r_t..r_{t+K-1} into the reward target

    def __init__(
        self, cfg: TacoConfig, *, repr_dim: int, action_latent_dim: int, discount: float
    ) -> None:
        super().__init__()
        self.cfg = cfg
        sequence_dim = cfg.horizon * action_latent_dim
        dim, hidden = cfg.projection_dim, cfg.projection_hidden_dim
        self.state_projection = trunk(repr_dim, dim)
        self.sequence_mixer = nn.Sequential(
            nn.Linear(sequence_dim, sequence_dim), nn.LayerNorm(sequence_dim), nn.Tanh()
        )
        self.state_action_projection = nn.Sequential(
            nn.Linear(dim + sequence_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim)
        )
        self.reward_head: nn.Sequential | None = None
        if cfg.reward_prediction:
            self.reward_head = nn.Sequential(
                nn.Linear(dim + sequence_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1)
            )
        self.apply(orthogonal_init)
        self.W = nn.Parameter(torch.rand(dim, dim))
        steps = torch.arange(cfg.horizon, dtype=torch.float32)
        self.register_buffer("reward_weights", discount**steps, persistent=False)

    def project_state(self, features: torch.Tensor) -> torch.Tensor:
        """z = state projection of encoder features, ``[B, repr_dim] → [B, projection_dim]``."""
        z: torch.Tensor = self.state_projection(features)
        return z

    def encode_sequence(self, action_latents: torch.Tensor) -> torch.Tensor:
        """Codes of ``K`` actions ``[B, K, latent]`` → one sequence code ``[B, K·latent]``."""
        if action_latents.ndim != 3 or action_latents.shape[1] != self.cfg.horizon:
            raise ValueError(
                f"action latents must be [B, {self.cfg.horizon}, latent], "
                f"got {tuple(action_latents.shape)}"
            )
        code: torch.Tensor = self.sequence_mixer(action_latents.flatten(start_dim=1))
        return code

    def loss(
        self,
        features: torch.Tensor,
        future_features: torch.Tensor,
        action_latents: torch.Tensor,
        reward_seq: torch.Tensor | None = None,
        other_view_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted TACO (+ CURL, + reward) loss and its parts as metrics.

        ``features``: encoder output for augmented ``o_t``; ``future_features``: for augmented
        ``o_{t+K}`` (no gradient flows into it); ``action_latents``: ``ψ(a_t..a_{t+K-1})``
        ``[B, K, latent]``; ``reward_seq``: ``r_t..r_{t+K-1}`` ``[B, K]``, needed with
        ``reward_prediction``; ``other_view_features``: encoder output for a second augmentation
        of ``o_t`` (no gradient), needed with ``curl``.
        """
        cfg = self.cfg
        z = self.project_state(features)
        with torch.no_grad():
            z_future = self.project_state(future_features.detach())
        sequence_code = self.encode_sequence(action_latents)
        state_action = torch.cat([z, sequence_code], dim=-1)
        contrastive = info_nce(self.state_action_projection(state_action), z_future, self.W)
        total = cfg.contrastive_weight * contrastive
        metrics = {"taco_contrastive_loss": contrastive.item()}

        if cfg.curl:
            if other_view_features is None:
                raise ValueError("curl is enabled: pass other_view_features")
            curl = self.curl_loss(z, other_view_features)
            total = total + cfg.curl_weight * curl
            metrics["taco_curl_loss"] = curl.item()
        if self.reward_head is not None:
            if reward_seq is None:
                raise ValueError("reward_prediction is enabled: pass reward_seq")
            target = (reward_seq * self.reward_weights).sum(dim=1, keepdim=True)
            reward = F.mse_loss(self.reward_head(state_action), target)
            total = total + cfg.reward_weight * reward
            metrics["taco_reward_loss"] = reward.item()
        metrics["taco_loss"] = total.item()
        return total, metrics

    def curl_loss(self, z: torch.Tensor, other_view_features: torch.Tensor) -> torch.Tensor:
        """CURL: projected ``o_t`` (``z``) must pick its other augmentation, scored with ``W``."""
        with torch.no_grad():
            z_other = self.project_state(other_view_features.detach())
        return info_nce(z, z_other, self.W)
