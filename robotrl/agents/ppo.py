"""PPO (Schulman et al., 2017, "Proximal Policy Optimization Algorithms") from pixels, for many
parallel envs, with the effective details of CleanRL's ``ppo_continuous_action.py`` (Huang et
al., 2022, "The 37 Implementation Details of Proximal Policy Optimization").

The agent is ``on_policy``: the trainer runs :func:`robotrl.onpolicy.train_on_policy`, which
collects rollouts of ``rollout_steps`` per env, computes GAE(λ) advantages
(:func:`generalized_advantages`) and calls :meth:`PPOAgent.update_rollout` on the flattened
rollout. One update is ``update_epochs`` passes over the rollout in ``num_minibatches`` shuffled
minibatches, each one Adam step (``eps = 1e-5``) on

    L = L_clip + value_coef · L_V − entropy_coef · H,

with the clipped surrogate ``L_clip = −E[min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â)]``
(:func:`clipped_surrogate_loss`; ``Â`` normalised per minibatch), the optionally clipped value
loss ``L_V`` (:func:`value_loss`), and the global gradient norm clipped to ``max_grad_norm``. The
learning rate anneals linearly to zero over the run (``anneal_lr``; the loop sets it). With
``target_kl`` set, the epochs stop early once an epoch's mean approximate KL exceeds it.

Policy. A Gaussian with a state-independent, learned log-std (``init_log_std``) and an unbounded
mean, as in CleanRL: the log-probabilities are those of the raw sample, and the env gets the
sample clipped to [-1, 1] (CleanRL's ``ClipAction`` wrapper). Clipping instead of a tanh squash
keeps the log-probability exact for the stored sample without a change-of-variables term; the
cost is that probability mass beyond the bounds all maps to the bound. Evaluation acts with the
clipped mean.

Networks. One DrQ-v2 pixel encoder (``robotrl.nn.encoder``) is shared by actor and critic and
trained by the total loss (as CleanRL's pixel PPO shares its CNN: separate encoders would double
the cost of every forward pass over pixels); each head has its own DrQ-v2 trunk
(Linear → LayerNorm → Tanh) and MLP, with ``proprio`` fused after the trunk exactly as in the
DrQ-v2 heads (``robotrl.nn.heads.ProprioFusion``). Pixels are scaled to [-0.5, 0.5] in the
encoder as in every agent here; proprio is passed unnormalised, as the other agents do.
Initialisation: orthogonal (``robotrl.nn.init``), the policy's last layer with gain 0.01 so the
initial mean is ≈ 0 (CleanRL), the value's with gain 1.

Departures from CleanRL, and why: no observation or reward normalisation wrappers (pixels are
already scaled, and the other agents here see raw rewards; ``normalize_advantages`` still scales
the policy gradient); no image augmentation (the ratio would compare log-probabilities of
differently augmented views); truncation is handled properly — ``r + γ V(final_obs)`` on a
truncated step, ``r`` on a terminated one, and GAE never chains across an episode end
(CleanRL's script treats both as terminal).

Residual PPO (``base_checkpoint``; ResiP, Ankile et al., 2024, "From Imitation to Refinement --
Residual RL for Precise Assembly"). A frozen ``bc_chunk`` or ``diffusion_policy`` policy (loaded
and hashed as in ``robotrl.agents.residual``) gives ``a_base`` per step; the PPO policy, which
also sees ``a_base`` (fused like proprio), gives ``r``, and the env gets
``clip(a_base + residual_scale · r, -1, 1)``. The policy's last layer starts at zero, so the
mean residual is 0 at first. PPO's ratios are those of ``r``.

Keys that task presets set on every agent: ``hidden_dim``, ``feature_dim``, ``lr`` and
``discount`` (γ) are used; ``stddev_schedule`` and ``num_expl_steps`` are accepted and unused
(PPO learns its own standard deviation and explores with it from the first step).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from robotrl.agents.base import Agent, Batch
from robotrl.nn.encoder import PixelEncoder
from robotrl.nn.heads import ValueNet, head_input, mlp, proprio_fusion, trunk
from robotrl.nn.init import orthogonal_init
from robotrl.schedules import LinearSchedule

TensorObs = Mapping[str, torch.Tensor | np.ndarray]
#: What :meth:`PPOAgent.update_rollout` needs besides the observations (``pixels``, ``proprio``).
ROLLOUT_KEYS = ("action", "log_prob", "value", "advantage", "return")


@dataclass
class PPOConfig:
    """PPO hyper-parameters (module docstring); defaults for many parallel worlds."""

    name: str = "ppo"
    rollout_steps: int = 64  # env steps per env between updates
    update_epochs: int = 4
    num_minibatches: int = 8  # the rollout (rollout_steps × num_envs) splits into this many
    lr: float = 3e-4
    anneal_lr: bool = True  # linear decay to 0 over cfg.frames
    adam_eps: float = 1e-5
    discount: float = 0.99  # γ
    gae_lambda: float = 0.95  # λ
    clip_coef: float = 0.2  # ε of the surrogate (and of the value clip)
    clip_value_loss: bool = True
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True  # per minibatch
    target_kl: float | None = None  # stop the epochs early above this approximate KL
    init_log_std: float = 0.0
    feature_dim: int = 50
    hidden_dim: int = 256
    channels_last: bool = True
    # Residual PPO: a bc_chunk or diffusion_policy checkpoint directory (step_<frame>) of the
    # frozen base policy.
    base_checkpoint: str | None = None
    residual_scale: float = 0.1
    # Accepted so every task preset composes; PPO does not use them (module docstring).
    stddev_schedule: LinearSchedule = field(default_factory=LinearSchedule)
    num_expl_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("rollout_steps", "update_epochs", "num_minibatches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        for name in ("lr", "clip_coef", "max_grad_norm", "adam_eps", "residual_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("value_coef", "entropy_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"target_kl must be > 0 or None, got {self.target_kl}")
        if not math.isfinite(self.init_log_std):
            raise ValueError(f"init_log_std must be finite, got {self.init_log_std}")


# ------------------------------------------------------------------------ the math


def generalized_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    discount: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(λ) advantages and returns (``Â + V``) of a ``[T, N]`` rollout.

    ``next_values[t]`` is V of the observation step ``t`` really reached: the env's
    ``final_obs`` where the step ended an episode, never the next episode's first observation.
    A terminated step bootstraps nothing, a truncated one bootstraps from that value, and the
    advantage recursion stops at every episode end:

        δ_t = r_t + γ (1 − term_t) V(s'_t) − V(s_t),   Â_t = δ_t + γ λ (1 − done_t) Â_{t+1}.
    """
    if not rewards.shape == values.shape == next_values.shape == terminated.shape:
        raise ValueError(
            "rewards, values, next_values and terminated must have one [T, N] shape, got "
            f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(next_values.shape)}, "
            f"{tuple(terminated.shape)}"
        )
    not_terminal = (~terminated.bool()).to(values.dtype)
    continues = (~(terminated.bool() | truncated.bool())).to(values.dtype)
    deltas = rewards + discount * not_terminal * next_values - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in reversed(range(len(rewards))):
        running = deltas[t] + discount * gae_lambda * continues[t] * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_surrogate_loss(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> torch.Tensor:
    """PPO's policy loss ``−mean(min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â))``."""
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
    return -torch.min(unclipped, clipped).mean()


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_coef: float | None,
) -> torch.Tensor:
    """``0.5 · mean((V − R)²)``; with ``clip_coef`` the pessimistic clipped form
    ``0.5 · mean(max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²))`` (CleanRL)."""
    squared = (values - returns) ** 2
    if clip_coef is None:
        return 0.5 * squared.mean()
    clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max(squared, (clipped - returns) ** 2).mean()


# ------------------------------------------------------------------------ networks


class GaussianActor(nn.Module):
    """Features → trunk (+ proprio fusion) → MLP → mean; a learned state-independent log-std."""

    def __init__(
        self,
        repr_dim: int,
        action_dim: int,
        feature_dim: int,
        hidden_dim: int,
        proprio_dim: int = 0,
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.mean = mlp(feature_dim, hidden_dim, action_dim)
        self.proprio = proprio_fusion(repr_dim, proprio_dim, feature_dim, hidden_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))
        self.apply(orthogonal_init)
        last = self.mean[-1]
        assert isinstance(last, nn.Linear)
        nn.init.orthogonal_(last.weight, gain=0.01)

    def forward(self, features: torch.Tensor) -> Normal:
        mean = self.mean(head_input(self.trunk, self.proprio, features))
        return Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)


@dataclass
class PolicyStep:
    """What acting in a rollout returns, on the agent's device: ``action`` is the policy's raw
    sample (stored, scored by PPO), ``env_action`` what the env gets (clipped, base added)."""

    action: torch.Tensor
    env_action: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor


# ------------------------------------------------------------------------ the agent


class PPOAgent(Agent):
    """PPO from pixels (+ proprio), optionally residual on a frozen base; module docstring."""

    config_class = PPOConfig
    on_policy = True

    def __init__(
        self,
        cfg: PPOConfig,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(
            cfg, obs_shape=obs_shape, action_dim=action_dim, device=device, proprio_dim=proprio_dim
        )
        self.cfg: PPOConfig = cfg
        self.base: Any = None  # a frozen BCChunkAgent (or diffusion policy) with base_checkpoint
        self.base_sha256: str | None = None
        if cfg.base_checkpoint:
            from robotrl.agents.residual import load_base_policy, weights_sha256

            self.base = load_base_policy(
                cfg.base_checkpoint,
                obs_shape=obs_shape,
                action_dim=action_dim,
                device=device,
                proprio_dim=proprio_dim,
            )
            self.base_sha256 = weights_sha256(self._base_modules())
        # The heads' extra input: [proprio ‖ base action] (each part only if present).
        head_extra_dim = proprio_dim + (action_dim if self.base is not None else 0)

        self.encoder = PixelEncoder(self.pixels_shape).to(self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.encoder.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        repr_dim = self.encoder.repr_dim
        self.actor = GaussianActor(
            repr_dim,
            action_dim,
            cfg.feature_dim,
            cfg.hidden_dim,
            proprio_dim=head_extra_dim,
            init_log_std=cfg.init_log_std,
        ).to(self.device)
        if self.base is not None:  # the residual starts at exactly zero mean
            last = self.actor.mean[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
        self.critic = ValueNet(repr_dim, cfg.feature_dim, cfg.hidden_dim, head_extra_dim)
        self.critic.to(self.device)

        self.modules = {"encoder": self.encoder, "actor": self.actor, "critic": self.critic}
        self.acting_modules = ("encoder", "actor")
        if self.base is not None:
            self.modules |= self._base_modules()
            self.acting_modules = (*self.acting_modules, "base_encoder", "base_policy")
        self.trained_parameters = [
            *self.encoder.parameters(),
            *self.actor.parameters(),
            *self.critic.parameters(),
        ]
        self.optimizers = {
            "ppo": torch.optim.Adam(self.trained_parameters, lr=cfg.lr, eps=cfg.adam_eps),
        }
        self.train()

    def _base_modules(self) -> dict[str, nn.Module]:
        return {"base_encoder": self.base.encoder, "base_policy": self.base.policy}

    def train(self, training: bool = True) -> None:
        super().train(training)
        if self.base is not None:
            self.base.train(False)  # frozen: always the acting base

    # -- forward passes ----------------------------------------------------------------------

    def features(self, obs: TensorObs) -> torch.Tensor:
        """Heads' input for a batch of observations (numpy or torch, any device):
        encoder features ‖ proprio ‖ base action."""
        pixels = torch.as_tensor(obs["pixels"], device=self.device)
        if self.pixels_ndim == 4:  # cameras folded into channels
            pixels = pixels.flatten(1, pixels.dim() - 3)
        features = self.encoder(pixels.contiguous(memory_format=self.memory_format))
        parts = [features]
        proprio = obs.get("proprio")
        if self.proprio_dim:
            if proprio is None:
                raise KeyError(
                    f"this agent was built for {self.proprio_dim} proprio values; "
                    "the observation or batch has no 'proprio'"
                )
            proprio_tensor = torch.as_tensor(proprio, device=self.device, dtype=features.dtype)
            parts.append(proprio_tensor.reshape(len(features), -1))
        if self.base is not None:
            parts.append(self.base_action(obs))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else features

    @torch.no_grad()
    def base_action(self, obs: TensorObs) -> torch.Tensor:
        """``[B, A]`` actions of the frozen base (the first of its predicted chunk; a function
        of the observation, for a diffusion base too)."""
        assert self.base is not None
        action: torch.Tensor = self.base.step_action(obs)
        return action

    def env_action(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """What the env executes for the policy's raw ``action`` (module docstring)."""
        if self.base is None:
            return action.clamp(-1.0, 1.0)
        base = features[:, -self.action_dim :]  # appended last by ``features``
        return (base + self.cfg.residual_scale * action).clamp(-1.0, 1.0)

    @torch.no_grad()
    def explore(self, obs: TensorObs) -> PolicyStep:
        """A sampled action, its log-probability and V(obs) for a batch of observations."""
        features = self.features(obs)
        dist = self.actor(features)
        action = dist.sample()
        return PolicyStep(
            action=action,
            env_action=self.env_action(features, action),
            log_prob=dist.log_prob(action).sum(-1),
            value=self.critic(features).squeeze(-1),
        )

    @torch.no_grad()
    def value(self, obs: TensorObs) -> torch.Tensor:
        """``[B]`` state values (the loop bootstraps truncated episodes with these)."""
        return self.critic(self.features(obs)).squeeze(-1)

    def act(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        batch = {key: np.expand_dims(value, 0) for key, value in obs.items()}
        action: np.ndarray = self.act_batch(batch, step, eval_mode)[0]
        return action

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        features = self.features(obs)
        dist = self.actor(features)
        action = dist.mean if eval_mode else dist.sample()
        return self.env_action(features, action).cpu().numpy().astype(np.float32)

    # -- learning ----------------------------------------------------------------------------

    def set_lr_fraction(self, fraction: float) -> None:
        """Learning rate ``fraction · lr`` (the loop's linear annealing)."""
        for group in self.optimizers["ppo"].param_groups:
            group["lr"] = fraction * self.cfg.lr

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """:meth:`update_rollout` on a flattened rollout given as arrays."""
        return self.update_rollout({key: self._to_tensor(value) for key, value in batch.items()})

    def update_rollout(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The PPO epochs on one flattened rollout: ``pixels`` (+ ``proprio``) and
        ``ROLLOUT_KEYS``, ``[B, ...]`` each; returns the means of the minibatch metrics."""
        missing = [key for key in ("pixels", *ROLLOUT_KEYS) if key not in batch]
        if missing:
            raise KeyError(f"a PPO update needs rollout keys {missing}")
        size = len(batch["action"])
        minibatch = size // self.cfg.num_minibatches
        if minibatch < 2:
            raise ValueError(
                f"a rollout of {size} transitions cannot be split into num_minibatches="
                f"{self.cfg.num_minibatches} minibatches of at least 2 (rollout_steps × num_envs "
                "must be >= 2 × num_minibatches)"
            )
        batch = {key: torch.as_tensor(value, device=self.device) for key, value in batch.items()}
        history: dict[str, list[float]] = defaultdict(list)
        epochs = 0
        for _ in range(self.cfg.update_epochs):
            epochs += 1
            epoch_kl: list[float] = []
            order = torch.randperm(size, device=self.device)
            for indices in order.chunk(self.cfg.num_minibatches):
                metrics = self.minibatch_step({key: value[indices] for key, value in batch.items()})
                epoch_kl.append(metrics["approx_kl"])
                for name, value in metrics.items():
                    history[name].append(value)
            if self.cfg.target_kl is not None and np.mean(epoch_kl) > self.cfg.target_kl:
                break
        returns, values = batch["return"], batch["value"]
        explained = 1.0 - (returns - values).var() / returns.var().clamp_min(1e-8)
        return {name: float(np.mean(values_)) for name, values_ in history.items()} | {
            "explained_variance": explained.item(),
            "epochs": float(epochs),
            "learning_rate": float(self.optimizers["ppo"].param_groups[0]["lr"]),
            "policy_std": self.actor.log_std.exp().mean().item(),
        }

    def losses(self, minibatch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """PPO's loss terms on one minibatch (``loss`` is what is minimised)."""
        features = self.features(minibatch)
        dist = self.actor(features)
        log_prob = dist.log_prob(minibatch["action"]).sum(-1)
        entropy = dist.entropy().sum(-1).mean()
        log_ratio = log_prob - minibatch["log_prob"]
        ratio = log_ratio.exp()
        advantages = minibatch["advantage"]
        if self.cfg.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = clipped_surrogate_loss(ratio, advantages, self.cfg.clip_coef)
        values = self.critic(features).squeeze(-1)
        critic_loss = value_loss(
            values,
            minibatch["value"],
            minibatch["return"],
            self.cfg.clip_coef if self.cfg.clip_value_loss else None,
        )
        loss = policy_loss + self.cfg.value_coef * critic_loss - self.cfg.entropy_coef * entropy
        with torch.no_grad():
            # Schulman's low-variance estimator of KL(old ‖ new): E[(ρ − 1) − log ρ].
            approx_kl = ((ratio - 1.0) - log_ratio).mean()
            clip_fraction = ((ratio - 1.0).abs() > self.cfg.clip_coef).float().mean()
        return {
            "loss": loss,
            "policy_loss": policy_loss,
            "value_loss": critic_loss,
            "entropy": entropy,
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
        }

    def minibatch_step(self, minibatch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One Adam step on one minibatch, gradients clipped to ``max_grad_norm`` globally."""
        terms = self.losses(minibatch)
        optimizer = self.optimizers["ppo"]
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = nn.utils.clip_grad_norm_(self.trained_parameters, self.cfg.max_grad_norm)
        optimizer.step()
        return {name: value.item() for name, value in terms.items()} | {
            "grad_norm": grad_norm.item()
        }

    # -- checkpoints -------------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {} if self.base_sha256 is None else {"base_sha256": self.base_sha256}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if self.base is None:
            return
        from robotrl.agents.residual import weights_sha256

        recorded = state.get("base_sha256")
        loaded = weights_sha256(self._base_modules())
        if recorded is not None and recorded != loaded:
            raise ValueError(
                f"the base weights in this checkpoint hash to {loaded[:12]}..., but the residual "
                f"was trained on a base hashing to {recorded[:12]}...: the checkpoint is damaged"
            )
        self.base_sha256 = loaded
