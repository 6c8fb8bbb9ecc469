"""Diffusion Policy (``agent=diffusion_policy``): chunked BC whose chunk head is a denoiser.

After Chi et al. 2023, "Diffusion Policy: Visuomotor Policy Learning via Action Diffusion". The
observation side is :mod:`robotrl.agents.bc_chunk`'s, reused by subclassing: the DrQ-v2 pixel
encoder, DrQ-v2's trunk, proprio fused after it, DrQ's random shift, the padded demo batches and
the offline training loop, both inference modes (temporal ensembling, open-loop chunk execution)
and the checkpoint layout (modules ``encoder`` and ``policy``). Only the head differs: instead of
regressing the chunk, it learns to denoise it.

Noise schedule (:class:`NoiseSchedule`). ``T = num_train_timesteps`` (100) steps of the
squared-cosine schedule, as the reference's ``DDPMScheduler(beta_schedule="squaredcos_cap_v2")``
(Nichol & Dhariwal 2021): ``ᾱ(s) = cos²((s + 0.008) / 1.008 · π/2)``,
``β_k = min(1 − ᾱ((k+1)/T) / ᾱ(k/T), 0.999)``, ``ᾱ_k = Π_{j≤k} (1 − β_j)``.

Training (DDPM, Ho et al. 2020). For a demo chunk ``x_0`` (``[K, A]``), a random ``k`` and
``ε ~ N(0, I)``: ``x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε``; the network predicts ``ε`` from ``x_k``, ``k``
and the observation, with an L2 loss (``loss``; L1 possible), padded steps masked as in bc_chunk.
The encoder trains end to end through this loss, as in the reference.

Noise-prediction network (:class:`NoiseNet`). The MLP counterpart of the reference's conditional
1-D U-Net: the flattened noisy chunk is projected to ``hidden_dim`` and passes ``num_blocks``
residual blocks ``x + (Linear → LayerNorm → Mish)(FiLM((Linear → LayerNorm → Mish)(x)))``, with
the FiLM scale and bias ``(γ, β) = Linear(Mish(c))`` computed from ``c = [observation features ‖
timestep embedding]``; the timestep embedding is the reference's (sinusoidal, then
``Linear → Mish → Linear``). The observation features are the trunk's output (proprio fused).

Sampling (``inference_steps`` = n network evaluations). From ``x ~ N(0, I)``:
- ``n == T``: DDPM ancestral sampling over every step, with the "fixed small" posterior variance
  ``σ_k² = (1 − ᾱ_{k−1}) / (1 − ᾱ_k) · β_k`` (the reference's default);
- ``n < T``: deterministic DDIM (Song et al. 2021, η = 0) on ``n`` evenly spaced timesteps
  ``t_i = ⌊T (n − i) / n⌋ − 1`` (the last one, ``T − 1``, first: sampling starts where the
  training noise is fullest), ``x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'}) ε̂`` with ``ᾱ_{−1} = 1``.
Both clip the predicted ``x̂_0`` to [-1, 1] at every step (``clip_sample``, the reference's
default) and the returned chunk to [-1, 1] (the action range).

Determinism. Acting noise comes from this agent's own ``torch.Generator``, seeded with
``noise_seed`` when the agent is built and again whenever every episode begins
(``begin_episodes()`` with no mask: the start of each evaluation, or each episode of one env), so
an evaluation of given weights is reproducible whatever ran before it (a resumed run, a loaded
checkpoint). :meth:`DiffusionPolicyAgent.step_action`, the per-step base action of the residual
agents, is a function of the observation alone: it runs the same sampler with *fixed* noise, one
draw of a generator seeded with ``noise_seed`` on every call, shared by every row of the batch
(so a row's action does not depend on the rest of the batch). With the default DDIM sampling that
is the deterministic DDIM path from a fixed initial noise; with DDPM the per-step noise is fixed
too.

Departures from the reference, and why: an MLP instead of the 1-D conv U-Net (chunks of a few
steps; the brief's "MLP or small 1-D conv"); DrQ-v2's encoder and random shift instead of a
ResNet-18 with random crop (the project's observation path, shared with bc_chunk); the frame
stack instead of two observation steps; no EMA of the weights; padded steps are masked out of
the loss (bc_chunk's, ACT's ``is_pad``) where the reference trains on the repeated last action.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robotrl.agents.base import Batch
from robotrl.agents.bc_chunk import BCChunkAgent, BCChunkConfig
from robotrl.nn.heads import head_input, proprio_fusion, trunk
from robotrl.nn.init import orthogonal_init

#: ``denoise(x_k, k)`` → predicted ε, for a batch ``x_k`` ``[B, K, A]`` and timesteps ``[B]``.
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class DiffusionPolicyConfig(BCChunkConfig):
    """bc_chunk's hyper-parameters plus the diffusion head's (module docstring)."""

    name: str = "diffusion_policy"
    loss: str = "l2"  # on the predicted noise: "l2" (the reference) or "l1"
    num_train_timesteps: int = 100  # T
    inference_steps: int = 10  # network evaluations per chunk: T: DDPM; fewer: DDIM (η = 0)
    clip_sample: bool = True  # clip the predicted x_0 to [-1, 1] at every step
    num_blocks: int = 3  # FiLM residual blocks of the noise-prediction MLP
    timestep_embed_dim: int = 64
    noise_seed: int = 0  # acting noise, and the fixed noise of step_action

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}")
        if not 1 <= self.inference_steps <= self.num_train_timesteps:
            raise ValueError(
                f"inference_steps must be in [1, num_train_timesteps={self.num_train_timesteps}]"
                f", got {self.inference_steps}"
            )
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if self.timestep_embed_dim < 4 or self.timestep_embed_dim % 2:
            raise ValueError(
                f"timestep_embed_dim must be even and >= 4, got {self.timestep_embed_dim}"
            )


# ------------------------------------------------------------------------ the diffusion math


def squared_cosine_betas(num_steps: int, max_beta: float = 0.999) -> np.ndarray:
    """``β_k`` of the squared-cosine schedule (``squaredcos_cap_v2``), float64 ``[T]``."""

    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [
            min(1.0 - alpha_bar((k + 1) / num_steps) / alpha_bar(k / num_steps), max_beta)
            for k in range(num_steps)
        ],
        dtype=np.float64,
    )


class NoiseSchedule:
    """Forward noising and the DDPM/DDIM reverse steps for one schedule (module docstring).

    ``ᾱ`` is computed in float64; the coefficients of a step are Python floats, applied to the
    caller's tensors.
    """

    def __init__(self, num_train_timesteps: int, device: torch.device | str = "cpu") -> None:
        self.num_train_timesteps = num_train_timesteps
        self.betas = squared_cosine_betas(num_train_timesteps)
        self.alphas_cumprod = np.cumprod(1.0 - self.betas)  # ᾱ_k, float64
        # √ᾱ_k and √(1 − ᾱ_k) for the forward noising: computed in float64, kept in float32.
        self._signal = torch.tensor(np.sqrt(self.alphas_cumprod), dtype=torch.float32)
        self._spread = torch.tensor(np.sqrt(1.0 - self.alphas_cumprod), dtype=torch.float32)
        self._signal, self._spread = self._signal.to(device), self._spread.to(device)

    def alpha_bar(self, timestep: int) -> float:
        """``ᾱ_t``, with ``ᾱ_{-1} = 1`` (no noise)."""
        return 1.0 if timestep < 0 else float(self.alphas_cumprod[timestep])

    def add_noise(
        self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """``q(x_k | x_0)``: ``√ᾱ_k x_0 + √(1 − ᾱ_k) ε`` for per-row timesteps ``[B]``."""
        index, shape = timesteps.long(), (-1, *([1] * (x0.dim() - 1)))
        signal = self._signal.to(x0.device)[index].reshape(shape).to(x0.dtype)
        spread = self._spread.to(x0.device)[index].reshape(shape).to(x0.dtype)
        return signal * x0 + spread * noise

    def inference_timesteps(self, steps: int) -> list[int]:
        """``steps`` evenly spaced timesteps, noisiest (``T − 1``) first; all ``T`` for DDPM."""
        total = self.num_train_timesteps
        if not 1 <= steps <= total:
            raise ValueError(f"steps must be in [1, {total}], got {steps}")
        return [total * (steps - i) // steps - 1 for i in range(steps)]

    def predict_x0(
        self, x: torch.Tensor, eps: torch.Tensor, timestep: int, clip: bool
    ) -> torch.Tensor:
        """``x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``, clipped to [-1, 1] with ``clip``."""
        alpha_bar = self.alpha_bar(timestep)
        x0 = (x - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)
        return x0.clamp(-1.0, 1.0) if clip else x0

    def ddim_step(
        self, x: torch.Tensor, eps: torch.Tensor, timestep: int, prev_timestep: int, clip: bool
    ) -> torch.Tensor:
        """Deterministic DDIM (η = 0) from ``t`` to ``t' < t`` (``-1``: to ``x_0``)."""
        x0 = self.predict_x0(x, eps, timestep, clip)
        alpha_bar_prev = self.alpha_bar(prev_timestep)
        return math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1.0 - alpha_bar_prev) * eps

    def ddpm_step(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        timestep: int,
        noise: torch.Tensor | None,
        clip: bool,
    ) -> torch.Tensor:
        """Ancestral DDPM from ``t`` to ``t − 1``: the posterior mean given ``x̂_0`` plus
        ``σ_t z`` (fixed-small variance; none at ``t = 0``)."""
        alpha_bar, alpha_bar_prev = self.alpha_bar(timestep), self.alpha_bar(timestep - 1)
        alpha = alpha_bar / alpha_bar_prev
        beta = 1.0 - alpha
        x0 = self.predict_x0(x, eps, timestep, clip)
        mean = (math.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar)) * x0 + (
            math.sqrt(alpha) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        ) * x
        if timestep == 0 or noise is None:
            return mean
        variance = max((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta, 1e-20)
        return mean + math.sqrt(variance) * noise


@torch.no_grad()
def sample_chunks(
    schedule: NoiseSchedule,
    denoise: Denoiser,
    shape: tuple[int, int, int],
    steps: int,
    generator: torch.Generator,
    *,
    clip_sample: bool = True,
    shared_noise: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Chunks ``shape = [B, K, A]`` from pure noise: DDPM when ``steps`` is the schedule's
    length, DDIM (η = 0) on evenly spaced timesteps otherwise; clipped to [-1, 1].

    ``shared_noise``: every row gets the same noise (one draw of ``[1, K, A]`` per use), so a
    row's result depends on its own conditioning only."""
    batch = shape[0]
    noise_shape = (1, *shape[1:]) if shared_noise else shape

    def draw() -> torch.Tensor:
        noise = torch.randn(noise_shape, generator=generator, device=device)
        return noise.expand(shape)

    timesteps = schedule.inference_timesteps(steps)
    ddpm = steps == schedule.num_train_timesteps
    x = draw()
    for index, timestep in enumerate(timesteps):
        eps = denoise(x, torch.full((batch,), timestep, device=device, dtype=torch.long))
        if ddpm:
            noise = draw() if timestep > 0 else None
            x = schedule.ddpm_step(x, eps, timestep, noise, clip_sample)
        else:
            prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
            x = schedule.ddim_step(x, eps, timestep, prev, clip_sample)
    return x.clamp(-1.0, 1.0)


# ------------------------------------------------------------------------ the networks


class SinusoidalEmbedding(nn.Module):
    """The reference's ``SinusoidalPosEmb``: ``[sin(k ω_i) ‖ cos(k ω_i)]``,
    ``ω_i = 10000^{−i / (d/2 − 1)}``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        frequencies = torch.exp(torch.arange(half) * -(math.log(10000.0) / (half - 1)))
        self.frequencies: torch.Tensor
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        angles = timesteps.float()[:, None] * self.frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FiLMBlock(nn.Module):
    """Residual block with FiLM conditioning (the MLP form of the reference's
    ``ConditionalResidualBlock1D``)."""

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.Mish())
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * dim))
        self.second = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.Mish())

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).chunk(2, dim=-1)
        out: torch.Tensor = x + self.second(scale * self.first(x) + bias)
        return out


class NoiseNet(nn.Module):
    """``ε̂(x_k, k, c)`` for flattened chunks (module docstring)."""

    def __init__(
        self, flat_dim: int, cond_dim: int, hidden_dim: int, num_blocks: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.time = nn.Sequential(
            SinusoidalEmbedding(embed_dim),
            nn.Linear(embed_dim, 4 * embed_dim),
            nn.Mish(),
            nn.Linear(4 * embed_dim, embed_dim),
        )
        self.inp = nn.Linear(flat_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            FiLMBlock(hidden_dim, cond_dim + embed_dim) for _ in range(num_blocks)
        )
        self.out = nn.Linear(hidden_dim, flat_dim)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = torch.cat([cond, self.time(timesteps)], dim=-1)
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, c)
        eps: torch.Tensor = self.out(h).reshape(x.shape)
        return eps


class DiffusionChunkPolicy(nn.Module):
    """Encoder features (‖ proprio) → trunk (+ proprio fusion) = ``c``; ``ε̂(x_k, k, c)``."""

    def __init__(
        self,
        repr_dim: int,
        action_dim: int,
        cfg: DiffusionPolicyConfig,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__()
        self.chunk_size, self.action_dim = cfg.chunk_size, action_dim
        self.trunk = trunk(repr_dim, cfg.feature_dim)
        self.proprio = proprio_fusion(repr_dim, proprio_dim, cfg.feature_dim, cfg.hidden_dim)
        self.trunk.apply(orthogonal_init)  # the observation side as in bc_chunk
        if self.proprio is not None:
            self.proprio.apply(orthogonal_init)
        self.noise = NoiseNet(
            cfg.chunk_size * action_dim,
            cfg.feature_dim,
            cfg.hidden_dim,
            cfg.num_blocks,
            cfg.timestep_embed_dim,
        )

    def condition(self, features: torch.Tensor) -> torch.Tensor:
        """``c``: the trunk's output on the encoder features, proprio fused in."""
        return head_input(self.trunk, self.proprio, features)

    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """Predicted noise ``[B, K, A]`` for noisy chunks ``[B, K, A]`` at ``timesteps`` ``[B]``."""
        eps: torch.Tensor = self.noise(noisy, timesteps, cond)
        return eps


# ------------------------------------------------------------------------ the agent


class DiffusionPolicyAgent(BCChunkAgent):
    """bc_chunk with a denoising-diffusion chunk head; see the module docstring."""

    config_class = DiffusionPolicyConfig

    def __init__(
        self,
        cfg: DiffusionPolicyConfig,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(
            cfg, obs_shape=obs_shape, action_dim=action_dim, device=device, proprio_dim=proprio_dim
        )
        self.cfg: DiffusionPolicyConfig = cfg
        self.schedule = NoiseSchedule(cfg.num_train_timesteps, self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.noise_seed)

    def build_policy(self) -> nn.Module:
        assert isinstance(self.cfg, DiffusionPolicyConfig)
        return DiffusionChunkPolicy(
            self.encoder.repr_dim, self.action_dim, self.cfg, proprio_dim=self.proprio_dim
        )

    @property
    def denoiser(self) -> DiffusionChunkPolicy:
        assert isinstance(self.policy, DiffusionChunkPolicy)
        return self.policy

    # -- sampling ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self, cond: torch.Tensor, generator: torch.Generator, shared_noise: bool = False
    ) -> torch.Tensor:
        """Chunks ``[B, K, A]`` in [-1, 1] for conditioning ``c`` ``[B, F]``."""
        policy = self.denoiser
        return sample_chunks(
            self.schedule,
            lambda noisy, timesteps: policy(noisy, timesteps, cond),
            (len(cond), self.cfg.chunk_size, self.action_dim),
            self.cfg.inference_steps,
            generator,
            clip_sample=self.cfg.clip_sample,
            shared_noise=shared_noise,
            device=self.device,
        )

    @torch.no_grad()
    def predict_chunk(
        self, pixels: np.ndarray | torch.Tensor, proprio: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sampled chunks ``[B, K, A]`` (acting noise from this agent's generator); what both
        inference modes of bc_chunk call."""
        cond = self.denoiser.condition(self._features(self._pixels(pixels).float(), proprio))
        return self.sample(cond, self.generator)

    @torch.no_grad()
    def step_action(self, obs: Mapping[str, np.ndarray]) -> torch.Tensor:
        """``[B, A]``: the first action of the chunk sampled with fixed noise (module docstring),
        a function of each observation alone."""
        features = self._features(self._pixels(obs["pixels"]).float(), obs.get("proprio"))
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.cfg.noise_seed)
        chunk = self.sample(self.denoiser.condition(features), generator, shared_noise=True)
        return chunk[:, 0]

    def begin_episodes(self, mask: np.ndarray | None = None) -> None:
        if mask is None:  # every episode begins: the acting noise starts over (docstring)
            self.generator.manual_seed(self.cfg.noise_seed)
        super().begin_episodes(mask)

    # -- learning ----------------------------------------------------------------------------

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        pixels = self._pixels(batch["obs"]).float()
        cond = self.denoiser.condition(self._features(self.augment(pixels), batch.get("proprio")))
        target = torch.as_tensor(batch["action_seq"], device=self.device).float()
        timesteps = torch.randint(
            0, self.cfg.num_train_timesteps, (len(target),), device=self.device
        )
        noise = torch.randn_like(target)
        noisy = self.schedule.add_noise(target, noise, timesteps)
        predicted = self.denoiser(noisy, timesteps, cond)
        loss = self.masked_chunk_loss(predicted - noise, batch)
        self.step_policy(loss)
        return {"bc_loss": loss.item()}
