"""Residual RL on a frozen base policy (``agent=residual``), after ResiP (Ankile et al., 2024,
"From Imitation to Refinement -- Residual RL for Precise Assembly").

The executed action is ``a = clip(a_base + scale * r, -1, 1)``: ``a_base`` comes from a frozen
chunked BC policy (``robotrl.agents.bc_chunk``, or its diffusion-head form
``robotrl.agents.diffusion_policy``; loaded from ``base_checkpoint``) and ``r`` from a
small per-step residual actor that sees the observation *and* ``a_base``. The residual actor's
last layer starts at zero, so ``r = 0`` and the agent acts exactly as its base at
initialisation; ``scale`` (``residual_scale``, default 0.1) keeps the correction small.

Learning is DrQ-v2's, reused by subclassing (``robotrl.agents.drqv2``): its own pixel encoder
trained by the critic, clipped double Q on n-step returns, random shift, scheduled exploration
noise on ``r``. The base action enters every head the way proprioception does (appended to the
encoder features and fused after the trunk, ``robotrl.nn.heads``), and the critic is trained on
the executed (combined) action: the replay stores it, and ``policy_action`` turns the actor's
``r`` into it for the target and the actor loss.

The base is queried per step (:meth:`~robotrl.agents.bc_chunk.BCChunkAgent.step_action`: the
first action of the chunk predicted from this observation), not with temporal ensembling or open
loop chunks: the base action is then a function of the observation, so the replay's transitions
stay Markov and ``a_base`` at ``s'`` can be recomputed when learning. A diffusion base samples
that chunk with fixed noise (the same on every call and every row: with the default DDIM
sampling, the deterministic DDIM path from a fixed initial noise), which keeps it a function of
the observation (``robotrl.agents.diffusion_policy``). The comparison "residual vs base" is
against the base acting this way (``act_with=base``).

Checkpoints hold the base's weights (modules ``base_encoder``, ``base_policy``) next to the
residual's, and the SHA-256 of the base weights (``extra``). ``base_checkpoint`` must still be
readable when the agent is built, for the base's config (its architecture); its weights are then
replaced by the checkpoint's copy, which must match the recorded hash (the base never trains).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from robotrl.agents.base import Batch
from robotrl.agents.bc_chunk import BCChunkAgent
from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config

log = logging.getLogger(__name__)
ACT_WITH = ("combined", "base")
#: Agents a residual can stand on: chunked BC with an MLP head, or with a diffusion head.
BASE_POLICY_AGENTS = ("bc_chunk", "diffusion_policy")


@dataclass
class ResidualConfig(DrQV2Config):
    """DrQ-v2's hyper-parameters for the residual, plus the base and the residual's scale."""

    name: str = "residual"
    # a bc_chunk or diffusion_policy checkpoint directory (step_<frame>)
    base_checkpoint: str | None = None
    residual_scale: float = 0.1
    # "combined": base + residual; "base": the base alone (e.g. robotrl-eval agent_options).
    act_with: str = "combined"
    num_expl_steps: int = 0  # the residual starts at the base: no uniform exploration phase

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {self.residual_scale}")
        if self.act_with not in ACT_WITH:
            raise ValueError(f"act_with must be one of {ACT_WITH}, got {self.act_with!r}")
        if self.aux != "none":
            raise ValueError("the residual agent does not take aux losses (aux must be 'none')")


def weights_sha256(modules: Mapping[str, torch.nn.Module]) -> str:
    """SHA-256 over the modules' tensors (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for module_name in sorted(modules):
        state = modules[module_name].state_dict()
        for key in sorted(state):
            tensor = state[key].detach().cpu().contiguous()
            digest.update(f"{module_name}.{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def load_base_policy(
    path: str | Path,
    *,
    obs_shape: tuple[int, ...],
    action_dim: int,
    device: str,
    proprio_dim: int = 0,
) -> BCChunkAgent:
    """The frozen ``bc_chunk`` or ``diffusion_policy`` agent saved in checkpoint ``path``."""
    from robotrl.agents import agent_class, class_path
    from robotrl.checkpoint import CheckpointError, load_checkpoint

    checkpoint = load_checkpoint(path)
    classes = {class_path(cls): cls for cls in map(agent_class, BASE_POLICY_AGENTS)}
    cls = classes.get(checkpoint.meta.get("agent_class"))  # type: ignore[arg-type]
    if cls is None or not issubclass(cls, BCChunkAgent):
        raise CheckpointError(
            f"base_checkpoint {path} holds a {checkpoint.meta.get('agent_class')} agent; the "
            f"residual agent needs a {' or '.join(BASE_POLICY_AGENTS)} checkpoint "
            f"({', '.join(classes)})"
        )
    raw = checkpoint.meta["config"]["agent"]
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.config_class), raw))
    base = cls(
        cfg,  # type: ignore[arg-type]
        obs_shape=obs_shape,
        action_dim=action_dim,
        device=device,
        proprio_dim=proprio_dim,
    )
    base.load_state_dict(checkpoint.state["agent"])
    for module in base.modules.values():
        module.requires_grad_(False)
    base.train(False)
    return base


class ResidualAgent(DrQV2Agent):
    """A frozen base policy plus a DrQ-v2-trained residual; see the module docstring."""

    config_class = ResidualConfig

    def __init__(
        self,
        cfg: ResidualConfig,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        if not cfg.base_checkpoint:
            raise ValueError(
                "agent=residual needs agent.base_checkpoint=PATH (a bc_chunk or diffusion_policy "
                "checkpoint)"
            )
        base = load_base_policy(
            cfg.base_checkpoint,
            obs_shape=obs_shape,
            action_dim=action_dim,
            device=device,
            proprio_dim=proprio_dim,
        )
        # The heads' "proprio" input is [proprio ‖ base action]: the base action is fused in.
        super().__init__(
            cfg,
            obs_shape=obs_shape,
            action_dim=action_dim,
            device=device,
            proprio_dim=proprio_dim + action_dim,
        )
        self.cfg: ResidualConfig = cfg
        self.base = base
        self.env_proprio_dim = proprio_dim
        last = self.actor.policy[-1]
        assert isinstance(last, torch.nn.Linear)
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        base_modules = {"base_encoder": base.encoder, "base_policy": base.policy}
        self.base_sha256 = weights_sha256(base_modules)
        self.modules |= base_modules
        self.acting_modules = (*self.acting_modules, *base_modules)
        self.train()

    def train(self, training: bool = True) -> None:
        super().train(training)
        if hasattr(self, "base"):
            self.base.train(False)  # frozen: always the acting base

    # -- acting ------------------------------------------------------------------------------

    def base_action(self, pixels: np.ndarray, proprio: np.ndarray | None) -> torch.Tensor:
        """``[B, A]`` base actions (per step, module docstring)."""
        obs = {"pixels": pixels} if proprio is None else {"pixels": pixels, "proprio": proprio}
        return self.base.step_action(obs)

    def head_extras(self, proprio: np.ndarray | None, base_action: torch.Tensor) -> torch.Tensor:
        """What the heads get besides pixel features: ``[proprio ‖ base action]``."""
        if self.env_proprio_dim == 0:
            return base_action
        if proprio is None:
            raise KeyError(f"this agent was built for {self.env_proprio_dim} proprio values")
        proprio_tensor = torch.as_tensor(proprio, device=self.device, dtype=base_action.dtype)
        return torch.cat([proprio_tensor.reshape(len(base_action), -1), base_action], dim=-1)

    def policy_action(self, features: torch.Tensor, actor_action: torch.Tensor) -> torch.Tensor:
        base_action = features[:, -self.action_dim :]  # appended last by head_extras
        combined = base_action + self.cfg.residual_scale * actor_action
        return combined.clamp(-1.0, 1.0)

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        base_action = self.base_action(obs["pixels"], obs.get("proprio"))
        if self.cfg.act_with == "base":
            return base_action.cpu().numpy().astype(np.float32)
        extras = self.head_extras(obs.get("proprio"), base_action)
        features = self.with_proprio(self.encode(self.pixels(obs["pixels"])), extras)
        dist = self.actor(features, self.stddev(step))
        if eval_mode:
            residual = dist.mean
        else:
            residual = dist.sample(clip=None)
            if step < self.cfg.num_expl_steps:
                residual.uniform_(-1.0, 1.0)
        return self.policy_action(features, residual).cpu().numpy().astype(np.float32)

    # -- learning ----------------------------------------------------------------------------

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        base_now = self.base_action(batch["obs"], batch.get("proprio"))
        base_next = self.base_action(batch["next_obs"], batch.get("next_proprio"))
        with_base = dict(batch)
        with_base["proprio"] = self.head_extras(batch.get("proprio"), base_now).cpu().numpy()
        with_base["next_proprio"] = (
            self.head_extras(batch.get("next_proprio"), base_next).cpu().numpy()
        )
        metrics = super().update(with_base, step)
        residual = (self._to_tensor(batch["action"]) - base_now) / self.cfg.residual_scale
        metrics["residual_abs"] = residual.abs().mean().item()
        return metrics

    # -- checkpoints -------------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {"base_sha256": self.base_sha256}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        recorded = state.get("base_sha256")
        loaded = weights_sha256(
            {"base_encoder": self.base.encoder, "base_policy": self.base.policy}
        )
        if recorded is not None and recorded != loaded:
            raise ValueError(
                f"the base weights in this checkpoint hash to {loaded[:12]}..., but the residual "
                f"was trained on a base hashing to {recorded[:12]}...: the checkpoint is damaged"
            )
        if recorded is not None and recorded != self.base_sha256:
            log.warning(
                "base_checkpoint %s no longer holds the base this residual was trained on; "
                "using the base weights saved with the residual",
                self.cfg.base_checkpoint,
            )
        self.base_sha256 = loaded
