"""DreamerV3 (Hafner et al. 2023, "Mastering Diverse Domains through World Models") for
continuous control from pixels, with RePo (Zhu et al. 2023, "RePo: Resilient Model-Based
Reinforcement Learning by Regularizing Posterior Predictability") as an option.

World model (``robotrl.nn.world_model``). Trained on sequence batches ``[B, T]``
(``EpisodicReplay.sample_sequences``; ``replay_sequence = sequence_length``) with
``L = pred_scale·(image + proprio + reward + continue) + 0.5·dyn + 0.1·rep`` per step, free bits
1 nat, Adam (lr 1e-4, eps 1e-8, global-norm clip 1000).

Behaviour. From every posterior state of the batch (``B·T`` starts, detached), the actor
imagines ``imag_horizon`` steps in the RSSM. Rewards come from the reward head, per-step
discounts from the continue head's mode (``γ·c``; the start's continue flag from the data), and
λ-returns ``R_t = r_{t+1} + γ c_{t+1}((1 − λ) v_{t+1} + λ R_{t+1})``, ``R_H = v_H`` bootstrap on
the critic (the actor's baseline is the same ``v``). Steps are weighted by the cumulative
discount ``Π γ c``. Returns are scaled by ``S = max(1, P95 − P5)`` with both percentiles
tracked by an EMA (decay 0.99); the actor maximises ``R/S`` plus ``3e-4 · entropy``. The
critic is a two-hot distribution over symlog returns, trained towards the λ-returns and
regularised towards the slow (EMA, decay 0.98) critic's prediction (weight 1), as DreamerV3
does; actor and critic use Adam (lr 3e-5, eps 1e-5, clip 100).

Actor gradient estimator. Backpropagation of the return through the learned dynamics (the
action is a reparameterised Normal sample, ``mean = tanh(·)``, ``std ∈ [0.1, 1]``). This is what
the DreamerV3 release for the paper configures for continuous actions (``actor_grad_cont:
backprop``; Reinforce only for discrete actions); it has much lower variance than Reinforce for
continuous actions because the model is differentiable. The 2024 rewrite of the reference uses
Reinforce for all action spaces; we follow the paper's version. As in DreamerV2, the actor reads
stop-gradient features, so gradients reach earlier actions only through the dynamics. Sampled
actions are clipped into [-1, 1] with a straight-through gradient, so imagination sees the
same actions the environment and replay do.

RePo (``repo=true``). No reconstruction in the representation loss: the world model minimises
``reward + continue`` subject to ``KL(post ‖ prior) ≤ ε``, through the Lagrangian
``β·(KL_bal − ε)`` with ``KL_bal = (0.5·dyn + 0.1·rep)/0.6`` (the balanced KL without free bits;
RePo's ``prior_train_steps = 5`` gives the same 5:1 split) and ``β = exp(log β)`` learned by
dual gradient ascent (``log β ← log β + lr·(KL_bal − ε)`` through Adam; ε = 3, β₀ = 1e-5,
lr 1e-4: the reference's defaults; ``repo_max_beta`` clips β after each step, projected dual
ascent, which the reference does not need at its slow rate). With ``probe_decoder`` the
decoders are kept as a probe trained on stop-gradient features (they never shape the
representation). Proprio is reconstructed only by the probe too: RePo drops observation
reconstruction entirely.
``+experiment=repo`` adds the reference's world model: Gaussian latents (``latent=gaussian``,
30 dimensions, std ≥ 0.1), a default-initialised reward head (``reward_zero_init=false``) and
world-model lr 3e-4. With DreamerV3's zeroed reward output layer nothing but reward prediction
moves the representation, and on builtin/reach it never left the no-information level. The
reward head stays DreamerV3's two-hot where the reference has a unit-variance Normal
(``reward_dist=normal``): on builtin/reach the Normal head's policy scored lower
(docs/benchmarks.md, RePo).

Acting keeps ``(h, z, previous action)`` per env row and per ``eval_mode``; ``begin_episodes``
marks rows whose next ``act``/``act_batch`` starts from the initial state, in both modes' states
(the trainer calls it whenever training or evaluation envs reset; an evaluation in the middle of a
training episode therefore restarts that episode's acting state, which the posterior recovers
from within a few observations). Training mode samples
the actor (uniform actions while ``step < num_expl_steps``); evaluation takes its mean. The
posterior ``z`` is sampled in both modes, as in the reference.

Departures: ``replay.batch_size`` sets B (DreamerV3: 16) and the train ratio is set by
``update_every_steps`` (each update replays ``B·T`` steps: B=16, T=64, one update every 2 agent
steps is DreamerV3's DMC ratio of 512); the reference's replay lets windows run into the next
episode, ours does not (``robotrl.replay``). Gradient clipping is by global norm (the paper)
rather than the 2024 release's adaptive clipping. ``bootstrap_slow_critic=true`` bootstraps the
λ-returns on the slow critic instead (a target network, as in DreamerV2; our default until
2026-11-30); the paper bootstraps on the critic and uses the slow critic only as the
regulariser's target. Learning rates, Adam epsilons, clipping, KL
scales, free bits, unimix, return normalisation and entropy scale are the paper's table (arXiv
v1, 2023); the 2024 release's 4e-5 everywhere comes with LaProp and adaptive clipping, which
we do not use. ``cnn_norm=false`` drops the channel LayerNorm from encoder and decoder CNNs
(DreamerV1/V2's convolutions had none); on 32×32 reach frames an autoencoder with it stays on the
background-only plateau for hundreds of updates longer (docs/benchmarks.md, Dreamer).

World-model pretraining (``pretrain_updates = N``, default 0 = DreamerV3, which has none). As
DreamerV1's ``pretrain`` option (kept by many ports): the first update after the seed frames
first makes N world-model-only updates on the seed data, so the actor's first updates imagine
in a model that already reconstructs the scene. The agent draws the burst's data itself: its
first ``sample_batch`` returns ``(N + 1)·B`` sequences, which ``update`` splits into N
world-model batches and the normal update's batch. Whether the burst is still due is
checkpointed.

Accepted and ignored, so every task preset composes: ``feature_dim``, ``lr`` (the optimizers
have their own rates), ``stddev_schedule`` (the actor learns its own std). ``hidden_dim`` is
the MLP width of every network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robotrl.agents.base import Agent, Batch
from robotrl.nn.world_model import (
    LatentState,
    TwoHotBins,
    WorldModel,
    mlp,
)
from robotrl.replay import EpisodicReplay
from robotrl.schedules import LinearSchedule

log = logging.getLogger(__name__)


@dataclass
class DreamerConfig:
    """DreamerV3 hyper-parameters (paper, DMC; model size "S"); module docstring."""

    name: str = "dreamer"
    # World model (paper size S: GRU 512, MLPs 512 × 2, CNN depth 32, 32 × 32 latents).
    deter_dim: int = 512
    hidden_dim: int = 512
    mlp_layers: int = 2
    cnn_depth: int = 32
    cnn_norm: bool = True  # channel LayerNorm in encoder and decoder CNNs (module docstring)
    stoch_groups: int = 32
    stoch_classes: int = 32
    unimix: float = 0.01
    # "categorical" (DreamerV3) or "gaussian": a diagonal Normal of gaussian_size dimensions with
    # standard deviations >= gaussian_min_std (DreamerV1; the RePo reference's latent).
    latent: str = "categorical"
    gaussian_size: int = 30
    gaussian_min_std: float = 0.1
    # The reward head: "twohot" (DreamerV3) or "normal" (unit-variance Normal; DreamerV1, RePo).
    reward_dist: str = "twohot"
    # Zero the reward head's output layer (DreamerV3). RePo needs the default initialisation:
    # without reconstruction a zeroed head never leaves its constant (docs/benchmarks.md, RePo).
    reward_zero_init: bool = True
    num_bins: int = 255
    free_nats: float = 1.0
    pred_scale: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    model_lr: float = 1e-4
    model_eps: float = 1e-8
    model_grad_clip: float = 1000.0
    # Sequences and train ratio.
    sequence_length: int = 64
    update_every_steps: int = 2
    # Behaviour.
    imag_horizon: int = 15
    discount: float = 0.997
    return_lambda: float = 0.95
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    ac_eps: float = 1e-5
    ac_grad_clip: float = 100.0
    actor_entropy: float = 3e-4
    actor_min_std: float = 0.1
    actor_max_std: float = 1.0
    critic_ema_decay: float = 0.98
    critic_slowreg: float = 1.0
    bootstrap_slow_critic: bool = False  # λ-returns bootstrap on the slow critic (DreamerV2)
    return_norm_decay: float = 0.99
    return_norm_low: float = 0.05
    return_norm_high: float = 0.95
    return_norm_limit: float = 1.0
    num_expl_steps: int = 0  # uniform random actions before this agent step (training only)
    # World-model-only updates on the seed data before the first normal update (DreamerV1's
    # "pretrain"; 0 = DreamerV3). Module docstring.
    pretrain_updates: int = 0
    # RePo.
    repo: bool = False
    probe_decoder: bool = True
    repo_target_kl: float = 3.0
    repo_init_beta: float = 1e-5
    repo_beta_lr: float = 1e-4
    # Projected dual ascent: β is clipped to this ceiling after each step (the reference has
    # none; with the CPU preset's fast rate β otherwise runs away: docs/benchmarks.md, RePo).
    repo_max_beta: float = float("inf")
    # torch.compile the per-step functions of the observation and imagination loops
    # (scripts/bench_dreamer.py measures it against eager).
    compile: bool = False
    # Accepted and ignored (module docstring): set by the task presets for every agent.
    feature_dim: int = 50
    lr: float = 1e-4
    stddev_schedule: LinearSchedule = field(default_factory=LinearSchedule)

    def __post_init__(self) -> None:
        positive = {
            "deter_dim": self.deter_dim,
            "hidden_dim": self.hidden_dim,
            "cnn_depth": self.cnn_depth,
            "stoch_groups": self.stoch_groups,
            "stoch_classes": self.stoch_classes,
            "gaussian_size": self.gaussian_size,
            "gaussian_min_std": self.gaussian_min_std,
            "sequence_length": self.sequence_length,
            "update_every_steps": self.update_every_steps,
            "imag_horizon": self.imag_horizon,
            "model_lr": self.model_lr,
            "actor_lr": self.actor_lr,
            "critic_lr": self.critic_lr,
            "repo_init_beta": self.repo_init_beta,
            "repo_beta_lr": self.repo_beta_lr,
            "repo_max_beta": self.repo_max_beta,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ValueError(f"{key} must be > 0, got {value}")
        if self.mlp_layers < 1:
            raise ValueError(f"mlp_layers must be >= 1, got {self.mlp_layers}")
        if self.latent not in ("categorical", "gaussian"):
            raise ValueError(f"latent must be 'categorical' or 'gaussian', got {self.latent!r}")
        if self.reward_dist not in ("twohot", "normal"):
            raise ValueError(f"reward_dist must be 'twohot' or 'normal', got {self.reward_dist!r}")
        unit = {
            "unimix": (self.unimix, 0.0, 1.0),
            "discount": (self.discount, 0.0, 1.0),
            "return_lambda": (self.return_lambda, 0.0, 1.0),
            "critic_ema_decay": (self.critic_ema_decay, 0.0, 1.0),
            "return_norm_decay": (self.return_norm_decay, 0.0, 1.0),
        }
        for key, (value, low, high) in unit.items():
            if not low <= value <= high:
                raise ValueError(f"{key} must be in [{low}, {high}], got {value}")
        if not 0.0 <= self.return_norm_low < self.return_norm_high <= 1.0:
            raise ValueError(
                "need 0 <= return_norm_low < return_norm_high <= 1, got "
                f"{self.return_norm_low}, {self.return_norm_high}"
            )
        if not 0.0 < self.actor_min_std <= self.actor_max_std:
            raise ValueError(
                f"need 0 < actor_min_std <= actor_max_std, got {self.actor_min_std}, "
                f"{self.actor_max_std}"
            )
        if self.repo_max_beta < self.repo_init_beta:
            raise ValueError(
                f"repo_max_beta ({self.repo_max_beta}) must be >= repo_init_beta "
                f"({self.repo_init_beta})"
            )
        if self.num_bins < 3 or self.num_bins % 2 == 0:
            raise ValueError(f"num_bins must be odd and >= 3, got {self.num_bins}")
        nonnegative = ("free_nats", "repo_target_kl", "num_expl_steps", "actor_entropy")
        for key in (*nonnegative, "pretrain_updates"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")


# -- pieces with independent checks (tests/core/test_dreamer.py) ---------------------------------


def lambda_return(
    reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, discount: float, lam: float
) -> torch.Tensor:
    """λ-returns ``[N, H]`` for states ``s_0..s_H`` (all inputs ``[N, H+1]``, indexed by state:
    ``reward[:, t]``/``cont[:, t]`` describe arriving at ``s_t``, so column 0 is unused):
    ``R_t = r_{t+1} + γ c_{t+1}((1 − λ) v_{t+1} + λ R_{t+1})``, ``R_H = v_H``."""
    horizon = value.shape[1] - 1
    returns = [value[:, horizon]]
    for t in reversed(range(horizon)):
        bootstrap = (1 - lam) * value[:, t + 1] + lam * returns[-1]
        returns.append(reward[:, t + 1] + discount * cont[:, t + 1] * bootstrap)
    return torch.stack(returns[1:][::-1], 1)


class ReturnNormalizer:
    """EMA of the ``low``/``high`` percentiles of λ-returns; ``scale = max(limit, high − low)``.
    Starts at 0 like DreamerV3's moments (no bias correction)."""

    def __init__(self, decay: float, low: float, high: float, limit: float) -> None:
        self.decay, self.quantiles, self.limit = decay, (low, high), limit
        self.low = 0.0
        self.high = 0.0

    def update(self, returns: torch.Tensor) -> float:
        """Fold this batch's percentiles in; the new scale."""
        flat = returns.detach().float().flatten()
        qs = torch.quantile(flat, torch.tensor(self.quantiles, device=flat.device)).tolist()
        self.low = self.decay * self.low + (1 - self.decay) * qs[0]
        self.high = self.decay * self.high + (1 - self.decay) * qs[1]
        return self.scale

    @property
    def scale(self) -> float:
        return max(self.limit, self.high - self.low)


# -- networks --------------------------------------------------------------------------------


def straight_through_clip(action: torch.Tensor) -> torch.Tensor:
    """Clip into [-1, 1]; the gradient passes as if the clip were the identity."""
    return action + (action.clamp(-1.0, 1.0) - action).detach()


class DreamerActor(nn.Module):
    """Model features → Normal(``tanh`` mean, std in ``[min_std, max_std]``) over actions."""

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        hidden_dim: int,
        layers: int,
        std: tuple[float, float],
    ) -> None:
        super().__init__()
        self.min_std, self.max_std = std
        self.net = mlp(feature_dim, hidden_dim, layers, 2 * action_dim)

    def forward(self, features: torch.Tensor) -> torch.distributions.Normal:
        mean, std = self.net(features).chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return torch.distributions.Normal(torch.tanh(mean), std)


class DreamerCritic(nn.Module):
    """Model features → logits over the two-hot return bins (output layer zero-initialised)."""

    def __init__(self, feature_dim: int, hidden_dim: int, layers: int, num_bins: int) -> None:
        super().__init__()
        self.net = mlp(feature_dim, hidden_dim, layers, num_bins)
        final = self.net[-1]
        assert isinstance(final, nn.Linear)
        nn.init.zeros_(final.weight)
        nn.init.zeros_(final.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(features)
        return logits


class LagrangeMultiplier(nn.Module):
    """RePo's β = exp(log β), learned by dual gradient ascent; :meth:`project` keeps it at or
    below ``maximum``."""

    def __init__(self, initial: float, maximum: float = float("inf")) -> None:
        super().__init__()
        self.log_beta = nn.Parameter(torch.tensor(float(np.log(initial))))
        self.log_max = float(np.log(maximum))

    def forward(self) -> torch.Tensor:
        return self.log_beta.exp()

    @torch.no_grad()
    def project(self) -> None:
        self.log_beta.clamp_(max=self.log_max)


# -- the agent -------------------------------------------------------------------------------


@dataclass
class _ActingState:
    latent: LatentState
    prev_action: torch.Tensor


class DreamerAgent(Agent):
    """DreamerV3 (optionally RePo); see the module docstring."""

    config_class = DreamerConfig

    def __init__(
        self,
        cfg: DreamerConfig,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(cfg, obs_shape=obs_shape, action_dim=action_dim, device=device)
        self.cfg: DreamerConfig = cfg
        if proprio_dim < 0:
            raise ValueError(f"proprio_dim must be >= 0, got {proprio_dim}")
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.proprio_dim = proprio_dim
        self.replay_sequence = cfg.sequence_length
        self.update_every_steps = cfg.update_every_steps
        self.world_model = WorldModel(
            tuple(obs_shape),
            action_dim,
            proprio_dim=proprio_dim,
            deter_dim=cfg.deter_dim,
            hidden_dim=cfg.hidden_dim,
            groups=cfg.stoch_groups,
            classes=cfg.stoch_classes,
            latent=cfg.latent,
            gaussian_size=cfg.gaussian_size,
            min_std=cfg.gaussian_min_std,
            reward_dist=cfg.reward_dist,
            reward_zero_init=cfg.reward_zero_init,
            cnn_depth=cfg.cnn_depth,
            mlp_layers=cfg.mlp_layers,
            unimix=cfg.unimix,
            num_bins=cfg.num_bins,
            cnn_norm=cfg.cnn_norm,
        ).to(self.device)
        feature_dim = self.world_model.rssm.feature_dim
        std = (cfg.actor_min_std, cfg.actor_max_std)
        self.actor = DreamerActor(feature_dim, action_dim, cfg.hidden_dim, cfg.mlp_layers, std)
        self.actor.to(self.device)
        self.critic = DreamerCritic(feature_dim, cfg.hidden_dim, cfg.mlp_layers, cfg.num_bins)
        self.critic.to(self.device)
        self.slow_critic = DreamerCritic(feature_dim, cfg.hidden_dim, cfg.mlp_layers, cfg.num_bins)
        self.slow_critic.to(self.device).load_state_dict(self.critic.state_dict())
        self.slow_critic.requires_grad_(False)
        self.twohot = TwoHotBins(cfg.num_bins).to(self.device)
        self.return_norm = ReturnNormalizer(
            cfg.return_norm_decay, cfg.return_norm_low, cfg.return_norm_high, cfg.return_norm_limit
        )
        self.modules = {
            "world_model": self.world_model,
            "actor": self.actor,
            "critic": self.critic,
            "slow_critic": self.slow_critic,
        }
        self.acting_modules = ("world_model", "actor")
        self.optimizers = {
            "world_model": torch.optim.Adam(
                self.world_model.parameters(), lr=cfg.model_lr, eps=cfg.model_eps
            ),
            "actor": torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, eps=cfg.ac_eps),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, eps=cfg.ac_eps),
        }
        self.multiplier: LagrangeMultiplier | None = None
        if cfg.repo:
            multiplier = LagrangeMultiplier(cfg.repo_init_beta, cfg.repo_max_beta)
            self.multiplier = multiplier.to(self.device)
            self.modules["multiplier"] = self.multiplier
            self.optimizers["multiplier"] = torch.optim.Adam(
                self.multiplier.parameters(), lr=cfg.repo_beta_lr
            )
        # Acting state per eval_mode; rows flagged by begin_episodes restart on the next call.
        self._acting: dict[bool, _ActingState] = {}
        # Per eval_mode: reset every row (True), the rows of a mask, or nothing (None).
        self._pending: dict[bool, np.ndarray | bool | None] = {False: None, True: None}
        self._policy_step: Callable[..., Any] = self.imagine_step
        self.pretrain_due = cfg.pretrain_updates > 0  # the burst before the first update
        if cfg.compile:
            self._compile()
        self.train()

    def _compile(self) -> None:
        if not hasattr(torch, "compile"):
            raise RuntimeError("agent.compile=true needs torch.compile (PyTorch >= 2.0)")
        rssm = self.world_model.rssm
        # The per-step functions are compiled once and reused by every loop iteration; the
        # Python loops over T and H stay uncompiled (unrolling them compiles for minutes).
        rssm.img_step = torch.compile(rssm.img_step)  # type: ignore[method-assign]
        rssm.posterior = torch.compile(rssm.posterior)  # type: ignore[method-assign]
        self._policy_step = torch.compile(self.imagine_step)

    # -- acting ------------------------------------------------------------------------------

    def begin_episodes(self, mask: np.ndarray | None = None) -> None:
        for mode, pending in self._pending.items():
            if mask is None or pending is True:
                self._pending[mode] = True
                continue
            rows = np.asarray(mask, dtype=bool)
            if isinstance(pending, np.ndarray) and len(pending) == len(rows):
                rows = rows | pending
            self._pending[mode] = rows

    def act(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        batch = {key: np.expand_dims(value, 0) for key, value in obs.items()}
        action: np.ndarray = self.act_batch(batch, step, eval_mode)[0]
        return action

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        pixels = torch.as_tensor(np.asarray(obs["pixels"]), device=self.device)
        if tuple(pixels.shape[1:]) != tuple(self.obs_shape):
            raise ValueError(
                f"pixels must be [N, {', '.join(map(str, self.obs_shape))}], "
                f"got {list(pixels.shape)}"
            )
        count = len(pixels)
        rssm = self.world_model.rssm
        state = self._acting.get(eval_mode)
        fresh = torch.zeros(count, dtype=torch.bool, device=self.device)
        pending = self._pending[eval_mode]
        if state is None or len(state.prev_action) != count or pending is True:
            state = _ActingState(
                rssm.initial_state(count), torch.zeros(count, self.action_dim, device=self.device)
            )
            fresh[:] = True
        elif isinstance(pending, np.ndarray) and len(pending) == count:
            fresh = torch.as_tensor(pending, device=self.device)
        self._pending[eval_mode] = None
        latent, prev_action = rssm.reset_where(state.latent, state.prev_action, fresh)

        proprio = obs.get("proprio")
        proprio_tensor = None if proprio is None else torch.as_tensor(proprio, device=self.device)
        embed = self.world_model.embed(pixels, proprio_tensor)
        deter, _ = rssm.img_step(latent, prev_action)
        stoch = rssm.latent.sample(rssm.posterior(deter, embed))
        latent = LatentState(deter, stoch)
        dist = self.actor(latent.features())
        if eval_mode:
            action = dist.mean
        else:
            action = dist.sample().clamp(-1.0, 1.0)
            if step < self.cfg.num_expl_steps:
                action.uniform_(-1.0, 1.0)
        self._acting[eval_mode] = _ActingState(latent, action)
        return action.cpu().numpy().astype(np.float32)

    # -- learning ----------------------------------------------------------------------------

    def sample_batch(self, replay: EpisodicReplay, batch_size: int) -> dict[str, np.ndarray]:
        """Sequences ``[B, T]``; ``pretrain_updates + 1`` times as many while the pretraining
        burst is due (module docstring)."""
        if self.pretrain_due:
            batch_size *= self.cfg.pretrain_updates + 1
        return replay.sample_sequences(batch_size, self.replay_sequence)

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        inputs = self._sequence_inputs(batch)
        if self.pretrain_due:
            inputs = self._pretrain(inputs)
        try:
            metrics, starts = self.update_world_model(inputs)
            metrics |= self.update_behaviour(starts)
        except Exception as error:
            if not self.cfg.compile or "dynamo" not in type(error).__module__ + str(error):
                raise
            raise RuntimeError(
                f"agent.compile=true: torch.compile failed ({type(error).__name__}: {error}); "
                "run with agent.compile=false"
            ) from error
        return metrics

    def _sequence_inputs(self, batch: Batch) -> dict[str, Any]:
        pixels = self._to_tensor(batch["obs"])
        if pixels.dim() != len(self.obs_shape) + 2:
            raise ValueError(
                "Dreamer learns from sequence batches: obs must be [B, T, "
                f"{', '.join(map(str, self.obs_shape))}], got {list(pixels.shape)} "
                "(EpisodicReplay.sample_sequences)"
            )
        proprio = batch.get("proprio")
        return {
            "pixels": pixels,
            "proprio": None if proprio is None else self._to_tensor(proprio).float(),
            "prev_action": self._to_tensor(batch["prev_action"]).float(),
            "reward": self._to_tensor(batch["reward"]).float(),
            "is_first": self._to_tensor(batch["is_first"]).bool(),
            "is_terminal": self._to_tensor(batch["is_terminal"]).bool(),
        }

    def _pretrain(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The burst: world-model updates on all but the last ``B`` rows; those last rows."""
        count = self.cfg.pretrain_updates + 1
        size, extra = divmod(len(inputs["pixels"]), count)
        if size == 0 or extra:
            raise ValueError(
                f"the pretraining batch must hold pretrain_updates + 1 = {count} batches, got "
                f"{len(inputs['pixels'])} rows (draw it with DreamerAgent.sample_batch)"
            )
        chunks = [
            {k: None if v is None else v[i * size : (i + 1) * size] for k, v in inputs.items()}
            for i in range(count)
        ]
        losses = [self.update_world_model(chunk)[0]["image_loss"] for chunk in chunks[:-1]]
        log.info(
            "world-model pretraining: %d updates, image loss %.2f -> %.2f",
            count - 1,
            losses[0],
            losses[-1],
        )
        self.pretrain_due = False
        return chunks[-1]

    def update_world_model(
        self, inputs: dict[str, Any]
    ) -> tuple[dict[str, float], tuple[LatentState, torch.Tensor]]:
        cfg = self.cfg
        terms = self.world_model.losses(
            inputs["pixels"],
            inputs["proprio"],
            inputs["prev_action"],
            inputs["reward"],
            inputs["is_first"],
            inputs["is_terminal"],
            free_nats=cfg.free_nats,
            decoder_on_detached=cfg.repo,
            reconstruct=not cfg.repo or cfg.probe_decoder,
        )
        metrics: dict[str, float] = {}
        reconstruction = (terms.image + terms.proprio).mean()
        prediction = (terms.reward + terms.cont).mean()
        if self.multiplier is None:
            loss = cfg.pred_scale * (reconstruction + prediction)
            loss = loss + (cfg.dyn_scale * terms.dyn + cfg.rep_scale * terms.rep).mean()
        else:
            dyn, rep = self.world_model.rssm.kl_terms(terms.post, terms.prior, 0.0)
            balanced = (cfg.dyn_scale * dyn + cfg.rep_scale * rep).mean()
            balanced = balanced / (cfg.dyn_scale + cfg.rep_scale)
            violation = balanced - cfg.repo_target_kl
            beta = self.multiplier()
            # The probe's reconstruction only reaches the decoders (stop-gradient features).
            loss = prediction + beta.detach() * violation + reconstruction
            dual_loss = -self.multiplier.log_beta * violation.detach()
            self.optimizers["multiplier"].zero_grad(set_to_none=True)
            dual_loss.backward()
            self.optimizers["multiplier"].step()
            self.multiplier.project()
            metrics |= {"repo_beta": beta.item(), "repo_kl_violation": violation.item()}

        optimizer = self.optimizers["world_model"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.world_model.parameters(), cfg.model_grad_clip)
        optimizer.step()
        metrics |= {
            "model_loss": loss.item(),
            "image_loss": terms.image.mean().item(),
            "proprio_loss": terms.proprio.mean().item(),
            "reward_loss": terms.reward.mean().item(),
            "cont_loss": terms.cont.mean().item(),
            "dyn_loss": terms.dyn.mean().item(),
            "rep_loss": terms.rep.mean().item(),
            "kl": terms.kl.mean().item(),
            "model_grad_norm": float(grad_norm),
        }
        states = terms.states
        starts = LatentState(
            states.deter.detach().flatten(0, 1), states.stoch.detach().flatten(0, 1)
        )
        return metrics, (starts, (~inputs["is_terminal"]).flatten().float())

    def imagine(self, start: LatentState) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[N, H+1, F]`` of imagined states (differentiable w.r.t. the actor through
        the dynamics) and the actor's entropy ``[N, H]`` at ``s_0..s_{H-1}``."""
        state = start
        features = [state.features()]
        entropies = []
        for _ in range(self.cfg.imag_horizon):
            state, feature, entropy = self._policy_step(state, features[-1])
            features.append(feature)
            entropies.append(entropy)
        return torch.stack(features, 1), torch.stack(entropies, 1)

    def imagine_step(
        self, state: LatentState, feature: torch.Tensor
    ) -> tuple[LatentState, torch.Tensor, torch.Tensor]:
        """One imagined step from ``state`` (its ``feature``): the actor's action (a
        reparameterised sample, clipped straight-through), the next state from the prior, its
        feature, and the actor's entropy."""
        dist = self.actor(feature.detach())
        action = straight_through_clip(dist.rsample())
        state = self.world_model.rssm.imagine_step(state, action)
        return state, state.features(), dist.entropy().sum(-1)

    def update_behaviour(self, starts: tuple[LatentState, torch.Tensor]) -> dict[str, float]:
        """Actor and critic on imagined rollouts from ``starts`` (states, continue flags)."""
        cfg = self.cfg
        start, start_cont = starts
        # Gradients go through model and critic to the actions, not into their parameters.
        self.world_model.requires_grad_(False)
        self.critic.requires_grad_(False)
        try:
            features, entropy = self.imagine(start)
            reward = self.world_model.reward(features)
            cont = (self.world_model.cont_logit(features) > 0).float()
            cont = torch.cat([start_cont[:, None], cont[:, 1:]], 1)
            value_net = self.slow_critic if cfg.bootstrap_slow_critic else self.critic
            value = self.twohot.decode(value_net(features))
            returns = lambda_return(reward, cont, value, cfg.discount, cfg.return_lambda)
            # Weight of s_t: the probability of reaching it, Π_{k<=t} γ c_k / γ.
            weight = (torch.cumprod(cfg.discount * cont, 1) / cfg.discount).detach()
            weight = weight[:, :-1]
            scale = self.return_norm.update(returns)
            advantage = (returns - value[:, :-1].detach()) / scale
            actor_loss = -(weight * (advantage + cfg.actor_entropy * entropy)).mean()
            self.optimizers["actor"].zero_grad(set_to_none=True)
            actor_loss.backward()
            actor_grad = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.ac_grad_clip)
            self.optimizers["actor"].step()
        finally:
            self.world_model.requires_grad_(True)
            self.critic.requires_grad_(True)

        critic_in = features.detach()[:, :-1]
        logits = self.critic(critic_in)
        critic_loss = self.twohot.loss(logits, returns.detach())
        if cfg.bootstrap_slow_critic:  # already evaluated on these features for the returns
            slow_value = value[:, :-1].detach()
        else:
            with torch.no_grad():
                slow_value = self.twohot.decode(self.slow_critic(critic_in))
        critic_loss = critic_loss + cfg.critic_slowreg * self.twohot.loss(logits, slow_value)
        critic_loss = (weight * critic_loss).mean()
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_grad = nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.ac_grad_clip)
        self.optimizers["critic"].step()
        with torch.no_grad():
            for param, slow in zip(
                self.critic.parameters(), self.slow_critic.parameters(), strict=True
            ):
                slow.lerp_(param, 1.0 - cfg.critic_ema_decay)
        return {
            "actor_loss": actor_loss.item(),
            "critic_loss": critic_loss.item(),
            "actor_entropy": entropy.mean().item(),
            "imag_return": returns.mean().item(),
            "imag_reward": reward[:, 1:].mean().item(),
            "return_scale": scale,
            "actor_grad_norm": float(actor_grad),
            "critic_grad_norm": float(critic_grad),
        }

    def extra_state(self) -> dict[str, Any]:
        return {
            "return_norm_low": self.return_norm.low,
            "return_norm_high": self.return_norm.high,
            "pretrain_due": self.pretrain_due,
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.return_norm.low = float(state.get("return_norm_low", 0.0))
        self.return_norm.high = float(state.get("return_norm_high", 0.0))
        # Checkpoints from before the option had no burst to come.
        self.pretrain_due = bool(state.get("pretrain_due", False))
