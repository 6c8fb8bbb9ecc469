"""RLPD (Ball et al., 2023, "Efficient Online Reinforcement Learning with Offline Data") from
pixels, as HIL-SERL (Luo et al., 2024) uses it for fine-tuning on a real arm.

RLPD is SAC with three changes that make it learn quickly from a few demonstrations:

- **Symmetric sampling.** Every batch is half demonstrations, half online data. The agent
  overrides :meth:`RLPDAgent.sample_batch`: ``B/2`` transitions come from the demo replay
  (``cfg.demos``, a demo directory read with :func:`robotrl.demos.load_demos` on first use, or a
  replay attached with :meth:`RLPDAgent.attach_demos`), ``B/2`` from the online replay the
  trainer passes. The batch carries ``is_demo`` (bool ``[N]``) so the split can be checked.
- **A LayerNorm critic ensemble.** ``E = num_qs`` critics (default 10), each an MLP with a
  LayerNorm after every hidden layer (this bounds Q-extrapolation on out-of-distribution
  actions, the paper's key fix). The TD target takes the minimum over a random subset of
  ``num_min_qs = 2`` target critics, drawn anew for every update:
  ``y = r + γ_n · (min_{i∈S} Q̄_i(s', a') − α log π(a'|s'))`` with ``a' ~ π(·|s')`` (the entropy
  term is RLPD's ``backup_entropy``, on by default; ``γ_n`` is the replay's ``discount``, zero at
  termination). Every member regresses on the same ``y``.
- **High update-to-data ratio.** One call of :meth:`RLPDAgent.update` makes ``utd`` critic
  updates on ``utd`` mini-batches of ``B`` (sampled together, ``B·utd`` transitions, each
  mini-batch 50/50), then one actor and one temperature update on the last mini-batch, as the
  reference implementation does. Targets are Polyak-averaged after every critic update
  (``critic_target_tau``, 0.005).

The actor is a tanh-squashed Gaussian. The actor loss is ``α log π(a|s) − mean_i Q_i(s, a)``
(RLPD averages the ensemble here; it takes the min only in the target). The temperature is tuned
automatically towards the target entropy ``−|A|/2`` (RLPD's choice; SAC's is ``−|A|``), with
``α`` starting at ``init_temperature = 1``.

Pixels. The DrQ-v2 encoder (``robotrl.nn.encoder``) with DrQ's random shift on every batch, as
RLPD's V-D4RL experiments and HIL-SERL use a conv encoder with random-shift augmentation; the
encoder is shared by the whole ensemble and trained by the critic loss only (the actor sees
detached features, as in DrQ-v2). Proprio is appended to the encoder output and fused after
each head's trunk, exactly as in :mod:`robotrl.agents.drqv2`. Each critic member has its own
trunk (Linear → LayerNorm → Tanh, DrQ-v2's) and its own proprio fusion.

Departures. (1) HIL-SERL uses a frozen pretrained ResNet-10 encoder; no weights can be
downloaded here, so the encoder is DrQ-v2's, trained from scratch. (2) The ensemble members
share one encoder (HIL-SERL shares its encoder across the ensemble as well). (3) Batches use the
replay's n-step returns (``replay.nstep``; 1 reproduces the paper).

Keys accepted for task presets (``stddev_schedule``, ``num_expl_steps``; bc_chunk.py's note):
``num_expl_steps`` acts uniformly at random for that many agent steps, as SAC's start steps;
``stddev_schedule`` is unused (SAC learns its own exploration through the entropy term).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robotrl.agents.base import Agent, Batch
from robotrl.agents.drqv2 import soft_update
from robotrl.nn.augment import RandomShift
from robotrl.nn.encoder import PixelEncoder
from robotrl.nn.heads import head_input, proprio_fusion, trunk
from robotrl.nn.init import orthogonal_init
from robotrl.schedules import LinearSchedule

if TYPE_CHECKING:
    from robotrl.replay import EpisodicReplay

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass
class RLPDConfig:
    """RLPD hyper-parameters (module docstring); ``num_qs``, ``num_min_qs``, ``lr``, tau and the
    temperature settings are the paper's; ``utd`` 10 is below its state-based 20 (pixels on CPU)."""

    name: str = "rlpd"
    demos: str | None = None  # demo directory (robotrl.demos); or attach_demos() a replay
    lr: float = 3e-4
    feature_dim: int = 50
    hidden_dim: int = 256
    discount: float = 0.99  # sizes the replay's returns; the agent reads the batch's discount
    num_qs: int = 10  # E: critics in the ensemble
    num_min_qs: int = 2  # size of the random subset the target takes the min over
    utd: int = 10  # critic updates per update() call (the actor is updated once)
    critic_target_tau: float = 0.005
    init_temperature: float = 1.0
    # Target entropy per action dimension: -0.5 (RLPD) gives -|A|/2; -1.0 gives SAC's -|A|.
    target_entropy_per_dim: float = -0.5
    backup_entropy: bool = True
    demo_fraction: float = 0.5  # share of each mini-batch drawn from the demos (RLPD: 0.5)
    augment_pad: int = 4
    channels_last: bool = True
    update_every_steps: int = 1
    num_expl_steps: int = 0
    # Accepted so every task preset composes; SAC does not use a noise schedule.
    stddev_schedule: LinearSchedule = field(default_factory=LinearSchedule)

    def __post_init__(self) -> None:
        if self.num_qs < 1 or not 1 <= self.num_min_qs <= self.num_qs:
            raise ValueError(
                f"need num_qs >= 1 and 1 <= num_min_qs <= num_qs, got num_qs={self.num_qs}, "
                f"num_min_qs={self.num_min_qs}"
            )
        if self.utd < 1:
            raise ValueError(f"utd must be >= 1, got {self.utd}")
        if not 0.0 < self.critic_target_tau <= 1.0:
            raise ValueError(f"critic_target_tau must be in (0, 1], got {self.critic_target_tau}")
        if not 0.0 <= self.demo_fraction < 1.0:
            raise ValueError(f"demo_fraction must be in [0, 1), got {self.demo_fraction}")
        if self.init_temperature <= 0:
            raise ValueError(f"init_temperature must be > 0, got {self.init_temperature}")
        if self.update_every_steps < 1:
            raise ValueError("update_every_steps must be >= 1")


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied at once: ``[E, B, in] → [E, B, out]``."""

    def __init__(self, ensemble: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, out_dim))
        with torch.no_grad():
            for index in range(ensemble):  # as orthogonal_init does for nn.Linear
                nn.init.orthogonal_(self.weight.data[index].T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the features with a separate scale and shift per ensemble member."""

    def __init__(self, ensemble: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble, 1, dim))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class CriticEnsemble(nn.Module):
    """``E`` critics ``Q_i(s, a)``, each: trunk (+ proprio fusion), then
    ``[Linear → LayerNorm → ReLU] × 2 → Linear(1)``. Returns ``[E, B]``."""

    def __init__(
        self,
        ensemble: int,
        repr_dim: int,
        action_dim: int,
        feature_dim: int,
        hidden_dim: int,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.trunks = nn.ModuleList(trunk(repr_dim, feature_dim) for _ in range(ensemble))
        fusions = [
            proprio_fusion(repr_dim, proprio_dim, feature_dim, hidden_dim) for _ in range(ensemble)
        ]
        self.fusions = nn.ModuleList(f for f in fusions if f is not None)
        self.layers = nn.Sequential(
            EnsembleLinear(ensemble, feature_dim + action_dim, hidden_dim),
            EnsembleLayerNorm(ensemble, hidden_dim),
            nn.ReLU(),
            EnsembleLinear(ensemble, hidden_dim, hidden_dim),
            EnsembleLayerNorm(ensemble, hidden_dim),
            nn.ReLU(),
            EnsembleLinear(ensemble, hidden_dim, 1),
        )
        self.trunks.apply(orthogonal_init)
        self.fusions.apply(orthogonal_init)

    def forward(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        hidden = []
        for index, member_trunk in enumerate(self.trunks):
            fusion = self.fusions[index] if len(self.fusions) else None
            hidden.append(head_input(member_trunk, fusion, features))  # type: ignore[arg-type]
        h = torch.stack(hidden)  # [E, B, F]
        h = torch.cat([h, action.unsqueeze(0).expand(self.ensemble, -1, -1)], dim=-1)
        q: torch.Tensor = self.layers(h).squeeze(-1)
        return q


class TanhGaussianActor(nn.Module):
    """SAC's policy: trunk (+ proprio fusion) → MLP → mean and log-std; ``a = tanh(u)``."""

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
        self.proprio = proprio_fusion(repr_dim, proprio_dim, feature_dim, hidden_dim)
        self.policy = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 2 * action_dim),
        )
        self.apply(orthogonal_init)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the pre-tanh Gaussian."""
        mean, log_std = self.policy(head_input(self.trunk, self.proprio, features)).chunk(2, -1)
        # Soft clamp of the log-std into [LOG_STD_MIN, LOG_STD_MAX] (keeps gradients).
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std.exp()

    def sample(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in (-1, 1) and its log-probability ``[B]``."""
        mean, std = self(features)
        pre_tanh = mean + std * torch.randn_like(mean)
        action = torch.tanh(pre_tanh)
        log_prob = torch.distributions.Normal(mean, std).log_prob(pre_tanh)
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), the numerically stable form.
        log_prob = log_prob - 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        return action, log_prob.sum(-1)


class RLPDAgent(Agent):
    """RLPD from pixels (+ proprio); see the module docstring."""

    config_class = RLPDConfig

    def __init__(
        self,
        cfg: RLPDConfig,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(
            cfg, obs_shape=obs_shape, action_dim=action_dim, device=device, proprio_dim=proprio_dim
        )
        self.cfg: RLPDConfig = cfg
        self.update_every_steps = cfg.update_every_steps
        self.encoder = PixelEncoder(self.pixels_shape).to(self.device)
        repr_dim = self.encoder.repr_dim
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.encoder.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        sizes = (repr_dim, action_dim, cfg.feature_dim, cfg.hidden_dim)
        self.actor = TanhGaussianActor(*sizes, proprio_dim=proprio_dim).to(self.device)
        self.critic = CriticEnsemble(cfg.num_qs, *sizes, proprio_dim=proprio_dim).to(self.device)
        self.critic_target = CriticEnsemble(cfg.num_qs, *sizes, proprio_dim=proprio_dim)
        self.critic_target.to(self.device).load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        # The target critic's encoder: a Polyak copy of the online one, as in RLPD/HIL-SERL,
        # where the target network includes the encoder.
        self.encoder_target = PixelEncoder(self.pixels_shape).to(self.device)
        self.encoder_target.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.encoder_target.load_state_dict(self.encoder.state_dict())
        self.encoder_target.requires_grad_(False)
        self.temperature = _LogTemperature(cfg.init_temperature).to(self.device)
        self.target_entropy = cfg.target_entropy_per_dim * action_dim
        self.augment = RandomShift(cfg.augment_pad)
        self.modules = {
            "encoder": self.encoder,
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "encoder_target": self.encoder_target,
            "temperature": self.temperature,
        }
        self.acting_modules = ("encoder", "actor")
        self.optimizers = {
            "critic": torch.optim.Adam(
                [*self.encoder.parameters(), *self.critic.parameters()], lr=cfg.lr
            ),
            "actor": torch.optim.Adam(self.actor.parameters(), lr=cfg.lr),
            "temperature": torch.optim.Adam(self.temperature.parameters(), lr=cfg.lr),
        }
        self.demo_replay: EpisodicReplay | None = None
        self.critic_updates = 0  # also seeds each target's random subset (reproducible resume)
        self.train()

    # -- data -------------------------------------------------------------------------------------

    def attach_demos(self, replay: EpisodicReplay) -> None:
        """Use ``replay`` as the demo half of every batch (instead of ``cfg.demos``)."""
        self.demo_replay = replay

    def demos(self, online: EpisodicReplay) -> EpisodicReplay:
        """The demo replay: attached, or loaded from ``cfg.demos`` with ``online``'s stacking."""
        if self.demo_replay is None:
            if not self.cfg.demos:
                raise ValueError(
                    "RLPD samples half of every batch from demonstrations: set agent.demos=DIR "
                    "(a demo directory, robotrl.demos) or call attach_demos(replay)"
                )
            from robotrl.demos import load_demos

            self.demo_replay = load_demos(
                Path(self.cfg.demos),
                frame_stack=online.frame_stack,
                nstep=online.nstep,
                discount=online.discount,
                pixels_shape=self.obs_shape,
            )
        return self.demo_replay

    def demo_count(self, batch_size: int) -> int:
        """Demo transitions in a mini-batch of ``batch_size`` (RLPD: half)."""
        return round(self.cfg.demo_fraction * batch_size)

    def sample_batch(self, replay: EpisodicReplay, batch_size: int) -> dict[str, np.ndarray]:
        """``utd`` mini-batches of ``batch_size``, concatenated: each ``demo_fraction`` demos
        first, then online transitions, marked by ``is_demo``."""
        demos = self.demos(replay)
        num_demo = self.demo_count(batch_size)
        num_online = batch_size - num_demo
        if num_online < 1:
            raise ValueError(f"batch_size {batch_size} leaves no room for online data")
        parts: list[dict[str, np.ndarray]] = []
        for _ in range(self.cfg.utd):
            if num_demo:
                parts.append(demos.sample(num_demo) | {"is_demo": np.ones(num_demo, bool)})
            parts.append(replay.sample(num_online) | {"is_demo": np.zeros(num_online, bool)})
        keys = set(parts[0])
        for part in parts[1:]:
            if set(part) != keys:
                raise ValueError(
                    f"demo and online batches carry different keys: {sorted(keys)} vs "
                    f"{sorted(part)}; were the demos recorded with the same observations?"
                )
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    # -- acting -----------------------------------------------------------------------------------

    def pixels(self, array: np.ndarray) -> torch.Tensor:
        """A batch of pixel stacks as ``[B, V*C*stack, H, W]`` (cameras folded into channels)."""
        tensor = self._to_tensor(array)
        return tensor.flatten(1, tensor.dim() - 3) if self.pixels_ndim == 4 else tensor

    def encode(self, pixels: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        encoder = self.encoder if encoder is None else encoder
        features: torch.Tensor = encoder(pixels.contiguous(memory_format=self.memory_format))
        return features

    def with_proprio(self, features: torch.Tensor, proprio: Any) -> torch.Tensor:
        """Encoder ``features`` with ``proprio`` appended when the agent has it."""
        if self.proprio_dim == 0:
            return features
        if proprio is None:
            raise KeyError(
                f"this agent was built for {self.proprio_dim} proprio values; "
                "the observation or batch has no 'proprio'"
            )
        tensor = torch.as_tensor(proprio, device=self.device, dtype=features.dtype)
        return torch.cat([features, tensor.reshape(len(features), -1)], dim=-1)

    def act(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        batch = {key: np.expand_dims(value, 0) for key, value in obs.items()}
        action: np.ndarray = self.act_batch(batch, step, eval_mode)[0]
        return action

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        features = self.with_proprio(self.encode(self.pixels(obs["pixels"])), obs.get("proprio"))
        if eval_mode:
            action = torch.tanh(self.actor(features)[0])
        elif step < self.cfg.num_expl_steps:
            action = torch.empty(len(features), self.action_dim).uniform_(-1.0, 1.0)
        else:
            action = self.actor.sample(features)[0]
        return action.cpu().numpy().astype(np.float32)

    # -- learning ---------------------------------------------------------------------------------

    @property
    def alpha(self) -> torch.Tensor:
        return self.temperature.log_alpha.exp()

    def target_subset(self) -> torch.Tensor:
        """Indices of the ``num_min_qs`` target critics the next target takes the min over."""
        generator = torch.Generator().manual_seed(self.critic_updates)
        perm = torch.randperm(self.cfg.num_qs, generator=generator)
        return perm[: self.cfg.num_min_qs].to(self.device)

    @torch.no_grad()
    def td_target(
        self,
        next_features: torch.Tensor,
        reward: torch.Tensor,
        discount: torch.Tensor,
        subset: torch.Tensor,
    ) -> torch.Tensor:
        """``r + γ (min_{i ∈ subset} Q̄_i(s', a') − α log π(a'|s'))``, ``a' ~ π(s')``; ``[B]``."""
        next_action, next_log_prob = self.actor.sample(next_features)
        target_qs = self.critic_target(next_features, next_action)  # [E, B]
        next_value = target_qs[subset].min(dim=0).values
        if self.cfg.backup_entropy:
            next_value = next_value - self.alpha * next_log_prob
        return reward + discount * next_value

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        total = len(batch["action"])
        if total % self.cfg.utd:
            raise ValueError(
                f"a batch of {total} transitions does not split into utd={self.cfg.utd} "
                "mini-batches; draw it with sample_batch()"
            )
        size = total // self.cfg.utd
        metrics: dict[str, float] = {}
        features = torch.empty(0)
        for index in range(self.cfg.utd):
            part = {key: value[index * size : (index + 1) * size] for key, value in batch.items()}
            features, critic_metrics = self.update_critic(part)
            metrics |= critic_metrics
        metrics |= self.update_actor_and_temperature(features.detach())
        metrics["batch_reward"] = float(np.mean(batch["reward"]))
        return metrics

    def update_critic(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """One critic (and encoder) step and a Polyak update; returns the batch's features."""
        obs = self.augment(self.pixels(batch["obs"]).float())
        next_obs = self.augment(self.pixels(batch["next_obs"]).float())
        reward = self._to_tensor(batch["reward"]).reshape(-1)
        discount = self._to_tensor(batch["discount"]).reshape(-1)
        action = self._to_tensor(batch["action"])
        features = self.with_proprio(self.encode(obs), batch.get("proprio"))
        with torch.no_grad():
            next_features = self.with_proprio(
                self.encode(next_obs, self.encoder_target), batch.get("next_proprio")
            )
            target = self.td_target(next_features, reward, discount, self.target_subset())
        qs = self.critic(features, action)
        critic_loss = ((qs - target.unsqueeze(0)) ** 2).mean(dim=1).sum()
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic"].step()
        soft_update(self.critic, self.critic_target, self.cfg.critic_target_tau)
        soft_update(self.encoder, self.encoder_target, self.cfg.critic_target_tau)
        self.critic_updates += 1
        return features, {
            "critic_loss": critic_loss.item() / self.cfg.num_qs,
            "critic_q": qs.mean().item(),
            "critic_target_q": target.mean().item(),
        }

    def update_actor_and_temperature(self, features: torch.Tensor) -> dict[str, float]:
        action, log_prob = self.actor.sample(features)
        q = self.critic(features, action).mean(dim=0)
        actor_loss = (self.alpha.detach() * log_prob - q).mean()
        self.optimizers["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        self.optimizers["actor"].step()
        # The critic got gradients from the actor loss; they are cleared before its next step.

        entropy = -log_prob.detach().mean()
        temperature_loss = self.alpha * (entropy - self.target_entropy)
        self.optimizers["temperature"].zero_grad(set_to_none=True)
        temperature_loss.backward()
        self.optimizers["temperature"].step()
        return {
            "actor_loss": actor_loss.item(),
            "actor_entropy": entropy.item(),
            "temperature": self.alpha.item(),
            "temperature_loss": temperature_loss.item(),
        }

    def extra_state(self) -> dict[str, Any]:
        return {"critic_updates": self.critic_updates}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.critic_updates = int(state.get("critic_updates", 0))


class _LogTemperature(nn.Module):
    """``log α`` as a module, so it is saved with the other modules."""

    def __init__(self, init: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init)))
