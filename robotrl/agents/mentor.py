"""MENTOR (Huang et al., 2025, "MENTOR: Mixture-of-Experts Network with Task-Oriented
Perturbation for Visual Reinforcement Learning"): DrM with a mixture-of-experts actor and
perturbation toward good past agents instead of toward fresh weights.

- Mixture-of-experts actor: ``actor="moe"`` (``robotrl.nn.moe``), 16 experts, top-4. Any
  DrQ-v2-family agent can use it (``agent=drqv2 agent.actor=moe``); MENTOR defaults to it.
- Task-oriented perturbation: at the end of every training episode the agent offers a snapshot
  of its networks with the episode's return; the ``snapshots`` best by return are kept. At each
  perturbation every Linear parameter θ of actor, critic, target critic and value net becomes
  α·θ + (1 − α)·θ̃, with θ̃ drawn from a Gaussian fitted per parameter entry across the kept
  snapshots and α the DrM factor clip(1 − 2β, min_perturb, max_perturb). Until the first episode
  ends there is no snapshot and the perturbation is DrM's (toward a fresh initialisation).
- Exploration noise 0.8·sigmoid(10(β − 0.2)) at every step (no awaken schedule) and the actor's
  gradient clipped to a global norm of 1e-3, as in the public code. Everything else (expectile
  exploitation, optimizer reset) is DrM's.

Where the public code differs (measured sizes: ``docs/agents.md``): its Gaussian uses the
unbiased standard deviation, which is NaN for one snapshot; we use the unbiased one from two
snapshots on and σ = 0 for a single snapshot (θ̃ is then that snapshot), without its 1e-7 floor.
Its actor perturbation also moves the MoE experts and gate toward a fresh initialisation before
moving them toward θ̃; we apply the paper's single step to every layer. Its aux-loss scale
(``aux_loss_scale``) is computed but never applied; we use its effective weight 1
(``moe.aux_loss_weight``). Its perturbation interval counts updates (10k); ours counts agent
steps, so the default is 20k steps (10k updates at one update every 2 steps).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robotrl.agents.drm import DrMAgent, DrMConfig

Snapshot = dict[str, torch.Tensor]  # "<network>/<parameter name>" -> CPU copy


@dataclass
class MentorConfig(DrMConfig):
    """MENTOR hyper-parameters (the public DMC config)."""

    name: str = "mentor"
    actor: str = "moe"
    stddev_type: str = "dormant"  # MENTOR's noise: 0.8·sigmoid(10(β − 0.2)), no awaken schedule
    dormant_stddev_scale: float = 0.8
    actor_grad_clip_norm: float | None = 1e-3
    perturb_every_steps: int = 20_000
    snapshots: int = 10  # top-k end-of-episode snapshots kept, by return

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.snapshots < 1:
            raise ValueError(f"snapshots must be >= 1, got {self.snapshots}")


def linear_parameters(network: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters (weights and biases) of every Linear layer, by their name in ``network``."""
    return {
        f"{module_name}.{param_name}" if module_name else param_name: param
        for module_name, module in network.named_modules()
        if isinstance(module, nn.Linear)
        for param_name, param in module.named_parameters(recurse=False)
    }


def sample_from_snapshots(snapshots: list[Snapshot], generator: torch.Generator) -> Snapshot:
    """One draw from the per-entry Gaussian N(mean, std) fitted across the snapshots."""
    sample = {}
    for name in snapshots[0]:
        values = torch.stack([snapshot[name] for snapshot in snapshots])
        mean = values.mean(dim=0)
        if len(snapshots) == 1:
            sample[name] = mean
            continue
        std = values.std(dim=0)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        sample[name] = mean + std * noise
    return sample


class MentorAgent(DrMAgent):
    """MENTOR agent; see the module docstring."""

    config_class = MentorConfig

    def __init__(
        self,
        cfg: MentorConfig,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(
            cfg, obs_shape=obs_shape, action_dim=action_dim, device=device, proprio_dim=proprio_dim
        )
        self.cfg: MentorConfig = cfg
        self.snapshot_returns: list[float] = []
        self.snapshots: list[Snapshot] = []
        # θ̃ is drawn from its own generator (seeded by the run), checkpointed with the agent.
        self.snapshot_generator = torch.Generator().manual_seed(torch.initial_seed())

    # -- the top-k snapshot set ----------------------------------------------------------------

    def observe_episode(self, episode_return: float) -> None:
        """Keep a snapshot if this episode's return is among the best ``snapshots`` seen."""
        if len(self.snapshots) < self.cfg.snapshots:
            self.snapshots.append(self.take_snapshot())
            self.snapshot_returns.append(episode_return)
            return
        worst = min(range(len(self.snapshots)), key=self.snapshot_returns.__getitem__)
        if episode_return > self.snapshot_returns[worst]:
            self.snapshots[worst] = self.take_snapshot()
            self.snapshot_returns[worst] = episode_return

    def take_snapshot(self) -> Snapshot:
        return {
            f"{net_name}/{name}": param.detach().cpu().clone()
            for net_name, network in self.perturbed_networks.items()
            for name, param in linear_parameters(network).items()
        }

    # -- perturbation --------------------------------------------------------------------------

    def shrink_and_perturb(self, alpha: float) -> None:
        """θ ← α·θ + (1−α)·θ̃, θ̃ drawn from the snapshots (DrM's fresh init while none exist)."""
        if not self.snapshots:
            super().shrink_and_perturb(alpha)
            return
        target = sample_from_snapshots(self.snapshots, self.snapshot_generator)
        with torch.no_grad():
            for net_name, network in self.perturbed_networks.items():
                for name, param in linear_parameters(network).items():
                    toward = target[f"{net_name}/{name}"].to(param.device)
                    param.mul_(alpha).add_(toward, alpha=1.0 - alpha)

    def update(self, batch: Mapping[str, Any], step: int) -> dict[str, float]:
        metrics = super().update(batch, step)
        if self.snapshot_returns:
            metrics["snapshot_mean_return"] = sum(self.snapshot_returns) / len(
                self.snapshot_returns
            )
        return metrics

    # -- checkpointed state ------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return super().extra_state() | {
            "snapshot_returns": list(self.snapshot_returns),
            "snapshots": list(self.snapshots),
            "snapshot_generator": self.snapshot_generator.get_state(),
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        super().load_extra_state(state)
        self.snapshot_returns = [float(value) for value in state["snapshot_returns"]]
        self.snapshots = [dict(snapshot) for snapshot in state["snapshots"]]
        self.snapshot_generator.set_state(state["snapshot_generator"])
