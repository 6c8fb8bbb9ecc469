"""DrQ-v2 (Yarats et al., 2021, "Mastering Visual Continuous Control: Improved Data-Augmented
Reinforcement Learning"): DDPG with n-step returns, clipped double Q, random-shift augmentation
and a scheduled exploration noise, learning from pixels.

The encoder is trained by the critic loss only; the actor sees detached features. Defaults are
the paper's DMC hyper-parameters.

Proprioception. When the env observes ``proprio`` (``proprio_dim > 0``), the agent appends it to
the encoder output and every head (actor, critic, DrM's value net) fuses it after its trunk, as
DrM's and MENTOR's Adroit agents do (``robotrl.nn.heads.ProprioFusion``); the encoder still sees
pixels only. Batches then carry ``proprio`` and ``next_proprio`` (``robotrl.replay``). VRL3
instead concatenates proprio to the encoder output *before* the trunk; we follow DrM/MENTOR,
whose Adroit results we compare with. Without proprio nothing changes.

The family's other methods plug in here by config: ``actor="moe"`` (MENTOR's mixture-of-experts
actor, ``robotrl.nn.moe``) and ``aux="taco"`` (TACO's latent action encoder for the critic and
its contrastive loss, ``robotrl.agents.taco``); DrM and MENTOR subclass the agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from robotrl.agents.base import Agent, Batch
from robotrl.agents.taco import ActionEncoder, TacoConfig, TacoObjective
from robotrl.nn.augment import RandomShift
from robotrl.nn.dormant import dormant_stats
from robotrl.nn.encoder import PixelEncoder
from robotrl.nn.heads import Actor, Critic
from robotrl.nn.moe import MoEConfig
from robotrl.schedules import LinearSchedule


@dataclass
class DrQV2Config:
    """DrQ-v2 hyper-parameters (paper Table 1, DMC)."""

    name: str = "drqv2"
    lr: float = 1e-4
    feature_dim: int = 50
    hidden_dim: int = 1024
    discount: float = 0.99
    critic_target_tau: float = 0.01
    update_every_steps: int = 2
    num_expl_steps: int = 2000
    stddev_schedule: LinearSchedule = field(default_factory=LinearSchedule)
    stddev_clip: float = 0.3
    # Clip the actor's gradient to this global L2 norm before its step (None: no clipping).
    actor_grad_clip_norm: float | None = None
    augment_pad: int = 4
    # NHWC convolutions: ~1.6x faster on CPU, neutral on GPU.
    channels_last: bool = True
    # "mlp": DrQ-v2's actor; "moe": MENTOR's mixture-of-experts actor, sized by ``moe``.
    actor: str = "mlp"
    moe: MoEConfig = field(default_factory=MoEConfig)
    # "none", or "taco": TACO's temporal contrastive loss and latent actions, sized by ``taco``.
    aux: str = "none"
    taco: TacoConfig = field(default_factory=TacoConfig)

    def __post_init__(self) -> None:
        if self.actor not in ("mlp", "moe"):
            raise ValueError(f"actor must be 'mlp' or 'moe', got {self.actor!r}")
        if self.aux not in ("none", "taco"):
            raise ValueError(f"aux must be 'none' or 'taco', got {self.aux!r}")
        if not 0.0 < self.critic_target_tau <= 1.0:
            raise ValueError(f"critic_target_tau must be in (0, 1], got {self.critic_target_tau}")
        if self.update_every_steps < 1:
            raise ValueError("update_every_steps must be >= 1")
        if self.actor_grad_clip_norm is not None and self.actor_grad_clip_norm <= 0:
            raise ValueError(
                f"actor_grad_clip_norm must be > 0 or None, got {self.actor_grad_clip_norm}"
            )


def soft_update(net: torch.nn.Module, target: torch.nn.Module, tau: float) -> None:
    """Polyak averaging: target ← τ·net + (1−τ)·target."""
    with torch.no_grad():
        for param, target_param in zip(net.parameters(), target.parameters(), strict=True):
            target_param.lerp_(param, tau)


class DrQV2Agent(Agent):
    """DrQ-v2 agent; see the module docstring."""

    config_class = DrQV2Config

    def __init__(
        self,
        cfg: DrQV2Config,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(
            cfg, obs_shape=obs_shape, action_dim=action_dim, device=device, proprio_dim=proprio_dim
        )
        self.cfg: DrQV2Config = cfg
        self.update_every_steps = cfg.update_every_steps
        self.encoder = PixelEncoder(self.pixels_shape).to(self.device)
        repr_dim = self.encoder.repr_dim
        moe = cfg.moe if cfg.actor == "moe" else None
        self.actor = Actor(
            repr_dim, action_dim, cfg.feature_dim, cfg.hidden_dim, moe, proprio_dim=proprio_dim
        )
        self.actor.to(self.device)
        # With TACO the critic sees latent actions ψ(a) (online ψ, also for the target critic).
        self.action_encoder: ActionEncoder | None = None
        self.taco: TacoObjective | None = None
        critic_action_dim = action_dim
        if cfg.aux == "taco":
            critic_action_dim = cfg.taco.latent_dim(action_dim)
            self.action_encoder = ActionEncoder(
                action_dim, critic_action_dim, cfg.taco.action_hidden_dim
            ).to(self.device)
            self.taco = TacoObjective(
                cfg.taco,
                repr_dim=repr_dim,
                action_latent_dim=critic_action_dim,
                discount=cfg.discount,
            ).to(self.device)
            self.replay_horizon = cfg.taco.horizon
        self.critic = Critic(
            repr_dim, critic_action_dim, cfg.feature_dim, cfg.hidden_dim, proprio_dim=proprio_dim
        )
        self.critic.to(self.device)
        self.critic_target = Critic(
            repr_dim, critic_action_dim, cfg.feature_dim, cfg.hidden_dim, proprio_dim=proprio_dim
        )
        self.critic_target.to(self.device).load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.encoder.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.augment = RandomShift(cfg.augment_pad)
        self.actor_dormant_ratio = 0.0  # of the last training batch (see dormant_ratios)

        self.modules = {
            "encoder": self.encoder,
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }
        self.acting_modules = ("encoder", "actor")
        # The critic loss trains the encoder (and TACO's action encoder) through this optimizer.
        representation = list(self.encoder.parameters())
        if self.action_encoder is not None and self.taco is not None:
            self.modules |= {"action_encoder": self.action_encoder, "taco": self.taco}
            representation += list(self.action_encoder.parameters())
        self.optimizers = {
            "encoder": torch.optim.Adam(representation, lr=cfg.lr),
            "actor": torch.optim.Adam(self.actor.parameters(), lr=cfg.lr),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=cfg.lr),
        }
        if self.taco is not None:
            # The reference steps encoder and ψ again in TACO's own Adam (separate moments).
            taco_params = representation + list(self.taco.parameters())
            self.optimizers["taco"] = torch.optim.Adam(taco_params, lr=cfg.taco.lr)
        self.train()

    def pixels(self, array: np.ndarray) -> torch.Tensor:
        """A batch of pixel stacks as ``[B, V*C*stack, H, W]`` (cameras folded into channels)."""
        tensor = self._to_tensor(array)
        return tensor.flatten(1, tensor.dim() - 3) if self.pixels_ndim == 4 else tensor

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixels.contiguous(memory_format=self.memory_format))

    def with_proprio(
        self, features: torch.Tensor, proprio: np.ndarray | torch.Tensor | None
    ) -> torch.Tensor:
        """The heads' input: encoder ``features``, with ``proprio`` appended if the agent has it."""
        if self.proprio_dim == 0:
            return features
        if proprio is None:
            raise KeyError(
                f"this agent was built for {self.proprio_dim} proprio values; "
                "the observation or batch has no 'proprio'"
            )
        proprio_tensor = torch.as_tensor(proprio, device=self.device, dtype=features.dtype)
        return torch.cat([features, proprio_tensor.reshape(len(features), -1)], dim=-1)

    def critic_action(self, action: torch.Tensor) -> torch.Tensor:
        """What the critic takes as its action input: ψ(a) with TACO, else the action itself."""
        return action if self.action_encoder is None else self.action_encoder(action)

    def policy_action(self, features: torch.Tensor, actor_action: torch.Tensor) -> torch.Tensor:
        """The env action for the actor's output at ``features``: the output itself in DrQ-v2
        (the residual agent adds it, scaled, to its base policy's action)."""
        return actor_action

    def stddev(self, step: int) -> float:
        """Exploration noise of the policy at ``step`` (DrQ-v2: the linear schedule)."""
        return self.cfg.stddev_schedule(step)

    def act(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        batch = {key: np.expand_dims(value, 0) for key, value in obs.items()}
        action: np.ndarray = self.act_batch(batch, step, eval_mode)[0]
        return action

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        features = self.with_proprio(self.encode(self.pixels(obs["pixels"])), obs.get("proprio"))
        dist = self.actor(features, self.stddev(step))
        if eval_mode:
            action = dist.mean
        else:
            action = dist.sample(clip=None)
            if step < self.cfg.num_expl_steps:
                action.uniform_(-1.0, 1.0)
        return action.cpu().numpy().astype(np.float32)

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        obs = self.pixels(batch["obs"])
        next_obs = self.pixels(batch["next_obs"])
        action = self._to_tensor(batch["action"])
        reward = self._to_tensor(batch["reward"])
        discount = self._to_tensor(batch["discount"])

        obs = obs.float()
        features = self.with_proprio(self.encode(self.augment(obs)), batch.get("proprio"))
        with torch.no_grad():
            next_features = self.with_proprio(
                self.encode(self.augment(next_obs.float())), batch.get("next_proprio")
            )

        metrics = self.dormant_ratios(features.detach(), action, step)
        metrics |= self.update_auxiliary(features.detach(), action, step)
        metrics |= self.update_critic(features, action, reward, discount, next_features, step)
        metrics |= self.update_actor(features.detach(), step)
        soft_update(self.critic, self.critic_target, self.cfg.critic_target_tau)
        if self.taco is not None:
            metrics |= self.update_taco(obs, batch)
        metrics["batch_reward"] = reward.mean().item()
        return metrics

    def dormant_ratios(
        self, features: torch.Tensor, action: torch.Tensor, step: int
    ) -> dict[str, float]:
        """Live diagnostic (DrM): dormant ratios of actor and critic on this training batch."""
        std = self.stddev(step)
        actor = dormant_stats(self.actor, lambda: self.actor(features, std))
        critic = dormant_stats(
            self.critic, lambda: self.critic(features, self.critic_action(action))
        )
        self.actor_dormant_ratio = actor.ratio
        return {"actor_dormant_ratio": actor.ratio, "critic_dormant_ratio": critic.ratio}

    def update_auxiliary(
        self, features: torch.Tensor, action: torch.Tensor, step: int
    ) -> dict[str, float]:
        """Extra heads trained on the batch before the critic (none in DrQ-v2; DrM's value net)."""
        return {}

    def target_value(self, next_features: torch.Tensor, step: int) -> torch.Tensor:
        """V(s') for the critic target: clipped double Q at a noisy next action."""
        next_action = self.actor(next_features, self.stddev(step)).sample(clip=self.cfg.stddev_clip)
        next_action = self.policy_action(next_features, next_action)
        target_q1, target_q2 = self.critic_target(next_features, self.critic_action(next_action))
        return torch.min(target_q1, target_q2)

    def update_critic(
        self,
        features: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        discount: torch.Tensor,
        next_features: torch.Tensor,
        step: int,
    ) -> dict[str, float]:
        with torch.no_grad():
            target_q = reward + discount * self.target_value(next_features, step)
        q1, q2 = self.critic(features, self.critic_action(action))
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)

        self.optimizers["encoder"].zero_grad(set_to_none=True)
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic"].step()
        self.optimizers["encoder"].step()
        return {
            "critic_loss": critic_loss.item(),
            "critic_q1": q1.mean().item(),
            "critic_q2": q2.mean().item(),
            "critic_target_q": target_q.mean().item(),
        }

    def update_actor(self, features: torch.Tensor, step: int) -> dict[str, float]:
        std = self.stddev(step)
        dist = self.actor(features, std)
        action = dist.sample(clip=self.cfg.stddev_clip)
        q1, q2 = self.critic(features, self.critic_action(self.policy_action(features, action)))
        actor_loss = -torch.min(q1, q2).mean()
        metrics = {"actor_loss": actor_loss.item()}
        moe_loss = self.actor.auxiliary_loss()
        if moe_loss is not None:
            metrics["moe_aux_loss"] = moe_loss.item()
            actor_loss = actor_loss + self.cfg.moe.aux_loss_weight * moe_loss

        self.optimizers["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        if self.cfg.actor_grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.actor.parameters(), self.cfg.actor_grad_clip_norm)
        self.optimizers["actor"].step()
        return metrics | {
            "actor_logprob": dist.log_prob(action).sum(-1).mean().item(),
            "actor_entropy": dist.entropy().sum(-1).mean().item(),
            "actor_stddev": std,
        }

    def update_taco(self, obs: torch.Tensor, batch: Batch) -> dict[str, float]:
        """TACO's step (after the actor-critic's, as in the reference), on fresh augmentations
        of ``obs`` (the batch's float observations) and of ``o_{t+K}``."""
        assert self.taco is not None and self.action_encoder is not None
        features = self.encode(self.augment(obs))
        with torch.no_grad():
            future = self.encode(self.augment(self.pixels(batch["obs_horizon"]).float()))
            other_view = self.encode(self.augment(obs)) if self.cfg.taco.curl else None
        loss, metrics = self.taco.loss(
            features,
            future,
            self.action_encoder(self._to_tensor(batch["action_seq"])),
            reward_seq=self._to_tensor(batch["reward_seq"]),
            other_view_features=other_view,
        )
        self.optimizers["taco"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["taco"].step()
        return metrics
