"""Behaviour cloning with action chunks (``agent=bc_chunk``): the base policy of residual RL.

The policy maps an observation to the next ``K`` actions, ``a_t .. a_{t+K-1}`` (ACT, Zhao et al.
2023, "Learning Fine-Grained Bimanual Manipulation with Low-Cost Hardware"), with the DrQ-v2
pixel encoder, DrQ-v2's trunk, proprio fused as in the DrQ-v2 heads, and an MLP chunk head whose
``K·A`` outputs pass through tanh (actions live in [-1, 1]). Encoder and head learn together from
an L1 (ACT's choice) or L2 loss on demonstration chunks, with DrQ's random shift on the images.

Training data. Batches come from a demo directory (``robotrl.demos``) through
``EpisodicReplay.sample(B, horizon=K, pad=True)``: every step of every demo is drawn, windows
that run past an episode's end repeat its last action, and ``action_seq_mask`` removes those
padded steps from the loss (ACT's ``is_pad``). The agent is ``offline``: ``robotrl-train
agent=bc_chunk agent.demos=PATH`` runs updates and periodic evaluations without collecting
(``robotrl.offline``); one update counts as one agent step (``action_repeat`` frames), so
``frames``, ``eval_every_frames`` and ``checkpoint_every_frames`` keep their units.

Inference (``inference``):
- ``"chunk"``: predict a chunk, execute its first ``execute_steps`` actions (0: all ``K``) open
  loop, then predict again.
- ``"ensemble"``: temporal ensembling: predict a chunk every step and execute the weighted mean
  of every still-valid prediction for the current step, ``w_i = exp(-m·i)`` with ``i = 0`` the
  oldest (ACT; ``m = ensemble_decay``).
Both keep per-episode state, one row per env of ``act_batch``; the evaluation loops clear it
through ``begin_episodes`` when episodes begin. :meth:`BCChunkAgent.step_action` is the
stateless alternative (the first action of the chunk predicted from this observation), which the
residual agent uses so that its replay stays Markov.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robotrl.agents.base import Agent, Batch
from robotrl.nn.augment import RandomShift
from robotrl.nn.encoder import PixelEncoder
from robotrl.nn.heads import head_input, mlp, proprio_fusion, trunk
from robotrl.nn.init import orthogonal_init
from robotrl.schedules import LinearSchedule

INFERENCE_MODES = ("chunk", "ensemble")
LOSSES = ("l1", "l2")


@dataclass
class BCChunkConfig:
    """Hyper-parameters of the chunked BC policy (module docstring)."""

    name: str = "bc_chunk"
    demos: str | None = None  # demo directory (robotrl.demos); training needs it
    chunk_size: int = 8  # K: actions predicted per observation
    loss: str = "l1"  # "l1" (ACT) or "l2"
    lr: float = 3e-4
    weight_decay: float = 0.0
    feature_dim: int = 50
    hidden_dim: int = 1024
    augment_pad: int = 4  # DrQ random shift in pixels; 0: off
    channels_last: bool = True
    inference: str = "ensemble"  # "ensemble" (temporal ensembling) or "chunk" (execution)
    ensemble_decay: float = 0.01  # m in ACT's w_i = exp(-m i)
    execute_steps: int = 0  # "chunk": actions run per prediction; 0: the whole chunk
    # Unused by BC; accepted so every task preset composes: discount sizes the replay's n-step
    # returns, and presets set the exploration noise of the DrQ-v2 family.
    discount: float = 0.99
    stddev_schedule: LinearSchedule = field(default_factory=LinearSchedule)
    num_expl_steps: int = 0

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {INFERENCE_MODES}, got {self.inference!r}")
        if not 0 <= self.execute_steps <= self.chunk_size:
            raise ValueError(
                f"execute_steps must be in [0, chunk_size={self.chunk_size}], "
                f"got {self.execute_steps}"
            )
        if self.ensemble_decay < 0:
            raise ValueError(f"ensemble_decay must be >= 0, got {self.ensemble_decay}")


class ChunkPolicy(nn.Module):
    """Encoder features (‖ proprio) → trunk (+ proprio fusion) → MLP → ``[B, K, A]`` in [-1, 1]."""

    def __init__(
        self,
        repr_dim: int,
        action_dim: int,
        chunk_size: int,
        feature_dim: int,
        hidden_dim: int,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__()
        self.chunk_size, self.action_dim = chunk_size, action_dim
        self.trunk = trunk(repr_dim, feature_dim)
        self.head = mlp(feature_dim, hidden_dim, chunk_size * action_dim)
        self.proprio = proprio_fusion(repr_dim, proprio_dim, feature_dim, hidden_dim)
        self.apply(orthogonal_init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.head(head_input(self.trunk, self.proprio, features))
        return torch.tanh(out).reshape(len(features), self.chunk_size, self.action_dim)


class BCChunkAgent(Agent):
    """Chunked behaviour cloning from pixels (+ proprio); see the module docstring."""

    config_class = BCChunkConfig
    offline = True
    replay_pad = True

    def __init__(
        self,
        cfg: BCChunkConfig,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(
            cfg, obs_shape=obs_shape, action_dim=action_dim, device=device, proprio_dim=proprio_dim
        )
        self.cfg: BCChunkConfig = cfg
        self.replay_horizon = cfg.chunk_size
        self.encoder = PixelEncoder(self.pixels_shape).to(self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.encoder.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.policy = self.build_policy().to(self.device)
        self.augment = RandomShift(cfg.augment_pad)
        self.modules = {"encoder": self.encoder, "policy": self.policy}
        self.acting_modules = ("encoder", "policy")
        parameters = [*self.encoder.parameters(), *self.policy.parameters()]
        self.optimizers = {
            "policy": torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
        }
        # Per-env acting state (module docstring); None until the first act after a reset.
        self._chunks: torch.Tensor | None = None  # "ensemble" [N, K, K, A], "chunk" [N, K, A]
        self._valid: torch.Tensor | None = None  # "ensemble": [N, K] which predictions count
        self._position: torch.Tensor | None = None  # "chunk": [N] next action of the chunk
        self.train()

    def build_policy(self) -> nn.Module:
        """The chunk head on the encoder's features; ``diffusion_policy`` swaps in its own."""
        cfg = self.cfg
        return ChunkPolicy(
            self.encoder.repr_dim,
            self.action_dim,
            cfg.chunk_size,
            cfg.feature_dim,
            cfg.hidden_dim,
            proprio_dim=self.proprio_dim,
        )

    # -- forward -----------------------------------------------------------------------------

    def predict_chunk(
        self, pixels: np.ndarray | torch.Tensor, proprio: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Action chunks ``[B, K, A]`` for a batch of pixel stacks (no augmentation)."""
        return self.policy(self._features(self._pixels(pixels).float(), proprio))

    @torch.no_grad()
    def step_action(self, obs: Mapping[str, np.ndarray]) -> torch.Tensor:
        """``[B, A]``: the first action of the chunk predicted from each observation (stateless)."""
        return self.predict_chunk(obs["pixels"], obs.get("proprio"))[:, 0]

    def _pixels(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        tensor = torch.as_tensor(array, device=self.device)
        return tensor.flatten(1, tensor.dim() - 3) if self.pixels_ndim == 4 else tensor

    def _features(
        self, pixels: torch.Tensor, proprio: np.ndarray | torch.Tensor | None
    ) -> torch.Tensor:
        features: torch.Tensor = self.encoder(pixels.contiguous(memory_format=self.memory_format))
        if self.proprio_dim == 0:
            return features
        if proprio is None:
            raise KeyError(
                f"this agent was built for {self.proprio_dim} proprio values; none given"
            )
        proprio_tensor = torch.as_tensor(proprio, device=self.device, dtype=features.dtype)
        return torch.cat([features, proprio_tensor.reshape(len(features), -1)], dim=-1)

    # -- acting ------------------------------------------------------------------------------

    def act(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        batch = {key: np.expand_dims(value, 0) for key, value in obs.items()}
        action: np.ndarray = self.act_batch(batch, step, eval_mode)[0]
        return action

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        count = len(obs["pixels"])
        if self._chunks is None or len(self._chunks) != count:
            self._start_state(count)
        if self.cfg.inference == "ensemble":
            action = self._ensemble_action(obs)
        else:
            action = self._chunk_action(obs)
        return action.cpu().numpy().astype(np.float32)

    def begin_episodes(self, mask: np.ndarray | None = None) -> None:
        if mask is None or self._chunks is None or len(mask) != len(self._chunks):
            self._chunks = None
            return
        rows = torch.as_tensor(np.asarray(mask, bool), device=self.device)
        if self._valid is not None:
            self._valid[rows] = False
        if self._position is not None:
            self._position[rows] = self.cfg.chunk_size  # past the end: predict a new chunk

    def _start_state(self, count: int) -> None:
        k, a = self.cfg.chunk_size, self.action_dim
        if self.cfg.inference == "ensemble":
            self._chunks = torch.zeros(count, k, k, a, device=self.device)
            self._valid = torch.zeros(count, k, dtype=torch.bool, device=self.device)
        else:
            self._chunks = torch.zeros(count, k, a, device=self.device)
            self._position = torch.full((count,), k, dtype=torch.long, device=self.device)

    def _ensemble_action(self, obs: Mapping[str, np.ndarray]) -> torch.Tensor:
        assert self._chunks is not None and self._valid is not None
        chunk = self.predict_chunk(obs["pixels"], obs.get("proprio"))
        # Slot s holds the chunk predicted s steps ago; its action for now is entry s.
        self._chunks = torch.cat([chunk[:, None], self._chunks[:, :-1]], dim=1)
        self._valid = torch.cat([torch.ones_like(self._valid[:, :1]), self._valid[:, :-1]], dim=1)
        ages = torch.arange(self.cfg.chunk_size, device=self.device)
        now = self._chunks[:, ages, ages]  # [N, K, A]
        # ACT weighs the oldest prediction exp(0) and each newer one exp(-m) less: ∝ exp(m·age).
        weights = torch.exp(self.cfg.ensemble_decay * ages.float()) * self._valid
        return (now * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)

    def _chunk_action(self, obs: Mapping[str, np.ndarray]) -> torch.Tensor:
        assert self._chunks is not None and self._position is not None
        execute = self.cfg.execute_steps or self.cfg.chunk_size
        stale = self._position >= execute
        if stale.any():
            rows = stale.cpu().numpy()
            proprio = obs.get("proprio")
            chunk = self.predict_chunk(
                obs["pixels"][rows], None if proprio is None else proprio[rows]
            )
            self._chunks[stale] = chunk
            self._position[stale] = 0
        action = self._chunks[torch.arange(len(self._chunks)), self._position]
        self._position += 1
        return action

    # -- learning ----------------------------------------------------------------------------

    def masked_chunk_loss(self, error: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean L1/L2 (``cfg.loss``) of ``error [B, K, A]`` over the chunk steps that are real
        actions (``action_seq_mask``; padding past an episode's end counts for nothing)."""
        mask = batch.get("action_seq_mask")
        weight = (
            torch.ones(error.shape[:2], device=self.device)
            if mask is None
            else torch.as_tensor(mask, device=self.device).float()
        )
        per_step = error.abs().mean(-1) if self.cfg.loss == "l1" else error.pow(2).mean(-1)
        return (per_step * weight).sum() / weight.sum().clamp(min=1.0)

    def step_policy(self, loss: torch.Tensor) -> None:
        optimizer = self.optimizers["policy"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        pixels = self._pixels(batch["obs"]).float()
        chunk = self.policy(self._features(self.augment(pixels), batch.get("proprio")))
        error = chunk - torch.as_tensor(batch["action_seq"], device=self.device)
        loss = self.masked_chunk_loss(error, batch)
        self.step_policy(loss)
        return {
            "bc_loss": loss.item(),
            "bc_first_action_l1": error[:, 0].abs().mean().item(),
        }
