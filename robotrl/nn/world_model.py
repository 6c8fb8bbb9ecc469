"""The parts of a DreamerV3 world model (Hafner et al. 2023, "Mastering Diverse Domains through
World Models"), used by ``robotrl.agents.dreamer``.

- ``symlog``/``symexp`` and :class:`TwoHotBins`: the symlog-spaced two-hot distribution that
  reward head and critic predict (255 bins in symlog space ``[-20, 20]``).
- :class:`RSSM`: a recurrent state-space model with a GRU deterministic state ``h`` and
  categorical stochastic latents ``z`` (``groups × classes`` one-hots, straight-through
  gradients, 1% "unimix" of the uniform distribution into prior and posterior probabilities).
  Optionally Gaussian latents instead (:class:`GaussianLatent`: DreamerV1's diagonal Normal
  with reparameterised samples, which the RePo reference uses).
- :class:`ConvEncoder`/:class:`ConvDecoder`: stride-2 4×4 convolutions with channel LayerNorm
  and SiLU, for square images of any size (32, 64, 84, ...): the encoder halves the image until
  it is at most 6 pixels wide; the decoder maps features to the matching small grid, doubles it
  with transposed convolutions and crops (84 → grid 6 → 96 → crop 84).
- :class:`WorldModel`: encoders (one shared CNN over every camera view, embeddings concatenated;
  proprio symlog'd then an MLP), RSSM, decoders (one CNN decoder emitting every view's channels;
  proprio decoded in symlog space), reward head (two-hot, zero-initialised output layer) and
  continue head (Bernoulli; optionally a unit-variance Normal reward head, as DreamerV1 and
  the RePo reference), and :func:`kl_balance` (free bits per step, DreamerV3's dynamics /
  representation split).

Departures from the reference, and why:
- The GRU is a plain LayerNorm GRU cell (update-gate bias -1 as in DreamerV3) on one input
  layer; the 2024 reference splits the GRU into blocks. The paper's model is the one here.
- The initial state is learned (``h0 = tanh(w)``, ``z0`` = mode of the prior at ``h0``), as in
  the reference; the previous action at an episode start is zero.
- One decoder reconstructs all views at once (``V·C`` output channels); the reference has one
  CNN per image key. Views share the encoder CNN, so parameters do not grow with cameras.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)·log(1 + |x|)``: compresses large magnitudes, identity-like near 0."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`: ``sign(x)·(exp(|x|) − 1)``."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


class TwoHotBins(nn.Module):
    """A categorical over ``num_bins`` equally spaced bins in symlog space ``[-limit, limit]``.

    A value is encoded as weights on the two bins around ``symlog(value)`` (their weighted mean
    is exactly ``symlog(value)``); a prediction decodes to ``symexp(E[bin])``.
    """

    bins: torch.Tensor

    def __init__(self, num_bins: int = 255, limit: float = 20.0) -> None:
        super().__init__()
        if num_bins < 2 or num_bins % 2 == 0:
            raise ValueError(f"num_bins must be odd and >= 3 (a bin at 0), got {num_bins}")
        half = torch.linspace(0.0, limit, num_bins // 2 + 1)
        # Built from one half so that the bins are exactly symmetric: uniform logits decode to 0.
        self.register_buffer("bins", torch.cat([-half[1:].flip(0), half]), persistent=False)

    @property
    def num_bins(self) -> int:
        return len(self.bins)

    def encode(self, value: torch.Tensor) -> torch.Tensor:
        """Two-hot targets ``[..., num_bins]`` for ``value`` (clipped to the bin range)."""
        x = symlog(value).clamp(self.bins[0], self.bins[-1])
        below = (torch.searchsorted(self.bins, x.contiguous(), right=True) - 1).clamp(
            0, self.num_bins - 2
        )
        low, high = self.bins[below], self.bins[below + 1]
        weight_high = ((x - low) / (high - low)).clamp(0.0, 1.0)
        target = F.one_hot(below, self.num_bins) * (1 - weight_high)[..., None]
        return target + F.one_hot(below + 1, self.num_bins) * weight_high[..., None]

    def decode_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """``symexp(Σ p·bins)`` for probabilities ``[..., num_bins]``."""
        return symexp((probs * self.bins).sum(-1))

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """The predicted value of logits ``[..., num_bins]``."""
        return self.decode_probs(torch.softmax(logits, -1))

    def loss(self, logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the logits against the two-hot encoding of ``value`` (per element)."""
        target = self.encode(value.detach())
        return -(target * torch.log_softmax(logits, -1)).sum(-1)


# -- building blocks ----------------------------------------------------------------------------


def mlp(in_dim: int, hidden_dim: int, layers: int, out_dim: int | None = None) -> nn.Sequential:
    """``layers`` × (Linear → LayerNorm → SiLU), then a Linear to ``out_dim`` if given."""
    blocks: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden_dim, bias=False), nn.LayerNorm(hidden_dim), nn.SiLU()]
        width = hidden_dim
    if out_dim is not None:
        blocks.append(nn.Linear(width, out_dim))
    return nn.Sequential(*blocks)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``[N, C, H, W]`` map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _norm(channels: int, norm: bool) -> nn.Module:
    """Channel LayerNorm (DreamerV3) or nothing (``cnn_norm=false``; convolutions get a bias)."""
    return ChannelNorm(channels) if norm else nn.Identity()


def conv_stages(size: int, max_grid: int = 6) -> int:
    """Stride-2 stages until an image of ``size`` pixels is at most ``max_grid`` wide."""
    stages = 0
    while math.ceil(size / 2**stages) > max_grid:
        stages += 1
    return stages


class ConvEncoder(nn.Module):
    """``[N, C, H, W]`` images in [0, 255] → ``[N, out_dim]`` (module docstring)."""

    def __init__(self, channels: int, size: int, depth: int, norm: bool = True) -> None:
        super().__init__()
        self.stages = conv_stages(size)
        layers: list[nn.Module] = []
        width = channels
        for stage in range(self.stages):
            out = depth * 2**stage
            layers += [nn.Conv2d(width, out, 4, 2, 1, bias=not norm), _norm(out, norm), nn.SiLU()]
            width = out
        self.net = nn.Sequential(*layers, nn.Flatten())
        grid = size
        for _ in range(self.stages):
            grid //= 2  # kernel 4, stride 2, padding 1: floor(n / 2)
        self.out_dim = width * grid * grid

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(pixels.float() / 255.0 - 0.5)
        return out


class ConvDecoder(nn.Module):
    """Features ``[N, in_dim]`` → images ``[N, channels, size, size]`` centred on 0 (``x/255 −
    0.5``): a Linear to a small grid, transposed convolutions that double it, a crop."""

    def __init__(
        self, in_dim: int, channels: int, size: int, depth: int, norm: bool = True
    ) -> None:
        super().__init__()
        self.size = size
        stages = max(conv_stages(size), 1)
        self.grid = math.ceil(size / 2**stages)
        self.width = depth * 2 ** (stages - 1)
        self.project = nn.Linear(in_dim, self.width * self.grid * self.grid)
        layers: list[nn.Module] = []
        width = self.width
        for stage in reversed(range(stages)):
            if stage == 0:
                layers.append(nn.ConvTranspose2d(width, channels, 4, 2, 1))
            else:
                out = depth * 2 ** (stage - 1)
                layers += [
                    nn.ConvTranspose2d(width, out, 4, 2, 1, bias=not norm),
                    _norm(out, norm),
                    nn.SiLU(),
                ]
                width = out
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.project(features).reshape(-1, self.width, self.grid, self.grid)
        out: torch.Tensor = self.net(x)
        return out[..., : self.size, : self.size]


# -- latent state ------------------------------------------------------------------------------


def unimix_logits(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Log of ``(1 − u)·softmax(logits) + u/K`` over the last axis: every class keeps ≥ u/K."""
    probs = torch.softmax(logits, -1)
    if unimix > 0:
        probs = (1 - unimix) * probs + unimix / logits.shape[-1]
    return torch.log(probs)


def sample_one_hot(logits: torch.Tensor) -> torch.Tensor:
    """One-hot samples of ``[..., K]`` logits with straight-through gradients (value: exact
    one-hot; gradient: that of the probabilities).

    Sampled by inverting the CDF: the class is the first whose cumulative probability reaches a
    uniform draw (scaled by the total, which rounding can leave just below 1). Same law as
    ``torch.multinomial``, ~15x cheaper on CPU for the RSSM's many small groups."""
    probs = torch.softmax(logits, -1)
    cdf = probs.detach().cumsum(-1)
    draw = torch.rand(*cdf.shape[:-1], 1, device=cdf.device, dtype=cdf.dtype) * cdf[..., -1:]
    index = (cdf < draw).sum(-1).clamp(max=probs.shape[-1] - 1)
    one_hot = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
    return one_hot + (probs - probs.detach())  # the value stays an exact one-hot


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) of ``[..., G, K]`` categoricals, summed over the ``G`` groups → ``[...]``."""
    log_p, log_q = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
    return (log_p.exp() * (log_p - log_q)).sum((-2, -1))


def gaussian_kl(params_p: torch.Tensor, params_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) of diagonal Normals given as ``[..., 2S]`` (means, then standard deviations),
    summed over the ``S`` dimensions → ``[...]``."""
    mean_p, std_p = params_p.chunk(2, -1)
    mean_q, std_q = params_q.chunk(2, -1)
    ratio = (std_p / std_q).pow(2)
    kl = 0.5 * (ratio + ((mean_p - mean_q) / std_q).pow(2) - 1.0 - torch.log(ratio))
    return kl.sum(-1)


def kl_balance(
    post: torch.Tensor,
    prior: torch.Tensor,
    free_nats: float,
    kl: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = categorical_kl,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DreamerV3's two KL terms per step, each clipped below at ``free_nats``:
    ``dyn = max(free, KL(sg(post) ‖ prior))`` trains the prior, ``rep = max(free, KL(post ‖
    sg(prior)))`` trains the posterior (the representation). ``post``/``prior`` are the
    distribution parameters ``kl`` reads (categorical logits by default)."""
    dyn = kl(post.detach(), prior).clamp(min=free_nats)
    rep = kl(post, prior.detach()).clamp(min=free_nats)
    return dyn, rep


class CategoricalLatent:
    """DreamerV3's latent: ``groups`` one-hots of ``classes`` classes, straight-through samples,
    ``unimix`` of the uniform distribution in every probability. Parameters: logits
    ``[..., G, K]``; a sample is ``[..., G, K]``."""

    def __init__(self, groups: int, classes: int, unimix: float) -> None:
        self.groups, self.classes, self.unimix = groups, classes, unimix
        self.raw_dim = self.flat_dim = groups * classes

    def params(self, raw: torch.Tensor) -> torch.Tensor:
        return unimix_logits(raw.reshape(*raw.shape[:-1], self.groups, self.classes), self.unimix)

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        return sample_one_hot(params)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return F.one_hot(params.argmax(-1), self.classes).to(params.dtype)

    def kl(self, params_p: torch.Tensor, params_q: torch.Tensor) -> torch.Tensor:
        return categorical_kl(params_p, params_q)


class GaussianLatent:
    """DreamerV1's (and RePo's) latent: a diagonal Normal of ``size`` dimensions, reparameterised
    samples, ``std = softplus(raw) + min_std``. Parameters: ``[..., 2·size]`` (means, then
    standard deviations); a sample is ``[..., size]``."""

    def __init__(self, size: int, min_std: float) -> None:
        self.size, self.min_std = size, min_std
        self.raw_dim, self.flat_dim = 2 * size, size

    def params(self, raw: torch.Tensor) -> torch.Tensor:
        mean, std = raw.chunk(2, -1)
        return torch.cat([mean, F.softplus(std) + self.min_std], -1)

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        mean, std = params.chunk(2, -1)
        return mean + std * torch.randn_like(std)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.chunk(2, -1)[0]

    def kl(self, params_p: torch.Tensor, params_q: torch.Tensor) -> torch.Tensor:
        return gaussian_kl(params_p, params_q)


Latent = CategoricalLatent | GaussianLatent


@dataclass
class LatentState:
    """The RSSM's state: ``deter`` ``h`` ``[N, D]`` and ``stoch`` ``z`` (``[N, G, K]``
    one-hots or ``[N, S]`` Gaussian samples)."""

    deter: torch.Tensor
    stoch: torch.Tensor

    def features(self) -> torch.Tensor:
        """``[h, flatten(z)]``: what heads, actor and critic read."""
        return torch.cat([self.deter, self.stoch.reshape(*self.deter.shape[:-1], -1)], -1)


class RSSM(nn.Module):
    """GRU deterministic path + stochastic latents, categorical or Gaussian (``latent``; module
    docstring)."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        deter_dim: int,
        hidden_dim: int,
        latent: Latent,
    ) -> None:
        super().__init__()
        self.deter_dim, self.latent = deter_dim, latent
        self.feature_dim = deter_dim + latent.flat_dim
        self.initial = nn.Parameter(torch.zeros(deter_dim))
        self.img_in = mlp(latent.flat_dim + action_dim, hidden_dim, 1)
        # LayerNorm GRU: one Linear for the reset, candidate and update gates.
        self.gru = nn.Linear(hidden_dim + deter_dim, 3 * deter_dim, bias=False)
        self.gru_norm = nn.LayerNorm(3 * deter_dim)
        self.prior_net = mlp(deter_dim, hidden_dim, 1, latent.raw_dim)
        self.post_net = mlp(deter_dim + embed_dim, hidden_dim, 1, latent.raw_dim)

    def initial_state(self, batch: int) -> LatentState:
        deter = torch.tanh(self.initial).expand(batch, -1)
        # The mode of the prior at h0 (deterministic; differentiable w.r.t. h0 only through h0
        # itself for categorical latents).
        stoch = self.latent.mode(self.latent.params(self.prior_net(deter)))
        return LatentState(deter, stoch)

    def img_step(
        self, state: LatentState, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1})`` and the prior's parameters at h_t."""
        x = self.img_in(torch.cat([state.stoch.reshape(len(action), -1), action], -1))
        gates = self.gru_norm(self.gru(torch.cat([x, state.deter], -1)))
        reset, candidate, update = gates.chunk(3, -1)
        candidate = torch.tanh(torch.sigmoid(reset) * candidate)
        update = torch.sigmoid(update - 1.0)
        deter = update * candidate + (1 - update) * state.deter
        return deter, self.latent.params(self.prior_net(deter))

    def posterior(self, deter: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        """The posterior's parameters at ``h_t`` given the observation's embedding."""
        return self.latent.params(self.post_net(torch.cat([deter, embed], -1)))

    def kl_terms(
        self, post: torch.Tensor, prior: torch.Tensor, free_nats: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`kl_balance` for this RSSM's latent."""
        return kl_balance(post, prior, free_nats, self.latent.kl)

    def reset_where(
        self, state: LatentState, action: torch.Tensor, is_first: torch.Tensor
    ) -> tuple[LatentState, torch.Tensor]:
        """Rows where ``is_first`` get the initial state and a zero previous action."""
        if not bool(is_first.any()):
            return state, action
        init = self.initial_state(len(is_first))
        keep = (~is_first).to(action.dtype)
        deter = torch.where(is_first[:, None], init.deter, state.deter)
        rows = is_first.reshape(-1, *[1] * (state.stoch.dim() - 1))
        stoch = torch.where(rows, init.stoch, state.stoch)
        return LatentState(deter, stoch), action * keep[:, None]

    def observe(
        self,
        embed: torch.Tensor,
        prev_action: torch.Tensor,
        is_first: torch.Tensor,
        state: LatentState | None = None,
    ) -> tuple[LatentState, torch.Tensor, torch.Tensor, LatentState]:
        """Filter a ``[B, T]`` sequence: posterior states ``[B, T, ...]``, prior and posterior
        parameters ``[B, T, ...]``, and the last state (to continue from)."""
        batch, length = embed.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        deters, stochs, priors, posts = [], [], [], []
        for t in range(length):
            state, action = self.reset_where(state, prev_action[:, t], is_first[:, t])
            deter, prior = self.img_step(state, action)
            post = self.posterior(deter, embed[:, t])
            state = LatentState(deter, self.latent.sample(post))
            deters.append(deter)
            stochs.append(state.stoch)
            priors.append(prior)
            posts.append(post)
        states = LatentState(torch.stack(deters, 1), torch.stack(stochs, 1))
        return states, torch.stack(priors, 1), torch.stack(posts, 1), state

    def imagine_step(self, state: LatentState, action: torch.Tensor) -> LatentState:
        deter, prior = self.img_step(state, action)
        return LatentState(deter, self.latent.sample(prior))


# -- the world model -------------------------------------------------------------------------


@dataclass
class WorldModelLosses:
    """Per-step loss terms ``[B, T]`` and the posterior states they came from."""

    image: torch.Tensor
    proprio: torch.Tensor
    reward: torch.Tensor
    cont: torch.Tensor
    dyn: torch.Tensor  # with free bits
    rep: torch.Tensor  # with free bits
    kl: torch.Tensor  # KL(post ‖ prior), no free bits, no stop-gradient
    prior: torch.Tensor  # distribution parameters [B, T, ...] (RSSM.latent)
    post: torch.Tensor
    states: LatentState
    last_state: LatentState


class WorldModel(nn.Module):
    """Encoders, RSSM, decoders, reward and continue heads (module docstring).

    ``pixels_shape`` is ``[C, H, W]`` or ``[V, C, H, W]`` (square images); ``proprio_dim`` 0:
    no proprio. ``latent``: ``"categorical"`` (``groups × classes`` one-hots) or ``"gaussian"``
    (:class:`GaussianLatent` of ``gaussian_size`` dimensions, standard deviations ≥
    ``min_std``). ``reward_dist``: the reward head's distribution, ``"twohot"`` (DreamerV3) or
    ``"normal"`` (unit variance: DreamerV1 and the RePo reference). ``reward_zero_init``: zero
    the head's output layer, so it predicts 0 at first (DreamerV3; DreamerV1 and the RePo
    reference keep the default initialisation, which RePo needs: docs/benchmarks.md, RePo).
    """

    def __init__(
        self,
        pixels_shape: tuple[int, ...],
        action_dim: int,
        *,
        proprio_dim: int = 0,
        deter_dim: int = 512,
        hidden_dim: int = 512,
        groups: int = 32,
        classes: int = 32,
        cnn_depth: int = 32,
        mlp_layers: int = 2,
        unimix: float = 0.01,
        num_bins: int = 255,
        cnn_norm: bool = True,
        latent: str = "categorical",
        gaussian_size: int = 30,
        min_std: float = 0.1,
        reward_dist: str = "twohot",
        reward_zero_init: bool = True,
    ) -> None:
        super().__init__()
        if latent not in ("categorical", "gaussian"):
            raise ValueError(f"latent must be 'categorical' or 'gaussian', got {latent!r}")
        if reward_dist not in ("twohot", "normal"):
            raise ValueError(f"reward_dist must be 'twohot' or 'normal', got {reward_dist!r}")
        if len(pixels_shape) not in (3, 4) or pixels_shape[-1] != pixels_shape[-2]:
            raise ValueError(
                f"pixels must be [C, H, W] or [V, C, H, W] with H == W, got {pixels_shape}"
            )
        self.pixels_shape = tuple(pixels_shape)
        self.views = pixels_shape[0] if len(pixels_shape) == 4 else 1
        channels, size = pixels_shape[-3], pixels_shape[-1]
        self.proprio_dim = proprio_dim
        self.encoder = ConvEncoder(channels, size, cnn_depth, cnn_norm)
        embed_dim = self.views * self.encoder.out_dim
        if proprio_dim:
            self.proprio_encoder = mlp(proprio_dim, hidden_dim, mlp_layers)
            embed_dim += hidden_dim
        stoch: Latent = (
            GaussianLatent(gaussian_size, min_std)
            if latent == "gaussian"
            else CategoricalLatent(groups, classes, unimix)
        )
        self.rssm = RSSM(embed_dim, action_dim, deter_dim, hidden_dim, stoch)
        feature_dim = self.rssm.feature_dim
        self.decoder = ConvDecoder(feature_dim, self.views * channels, size, cnn_depth, cnn_norm)
        if proprio_dim:
            self.proprio_decoder = mlp(feature_dim, hidden_dim, mlp_layers, proprio_dim)
        self.twohot = TwoHotBins(num_bins)
        self.reward_dist = reward_dist
        self.reward_head = mlp(
            feature_dim, hidden_dim, mlp_layers, num_bins if reward_dist == "twohot" else 1
        )
        if reward_zero_init:
            final = self.reward_head[-1]
            assert isinstance(final, nn.Linear)
            nn.init.zeros_(final.weight)  # DreamerV3: predicts 0 at first, no early reward noise
            nn.init.zeros_(final.bias)
        self.cont_head = mlp(feature_dim, hidden_dim, mlp_layers, 1)

    def embed(self, pixels: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        """``pixels`` ``[..., (V,) C, H, W]`` (+ ``proprio`` ``[..., P]``) → ``[..., E]``."""
        lead = pixels.shape[: pixels.dim() - len(self.pixels_shape)]
        images = pixels.reshape(-1, *self.pixels_shape[-3:])
        out = self.encoder(images).reshape(*lead, -1)  # views concatenated
        if self.proprio_dim:
            if proprio is None:
                raise KeyError(f"this world model expects {self.proprio_dim} proprio values")
            out = torch.cat([out, self.proprio_encoder(symlog(proprio.float()))], -1)
        return out

    def decode_image(self, features: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``[..., (V,) C, H, W]`` (in ``pixels/255 − 0.5`` units)."""
        lead = features.shape[:-1]
        out = self.decoder(features.reshape(-1, features.shape[-1]))
        return out.reshape(*lead, *self.pixels_shape)

    def reward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.reward_head(features)
        return self.twohot.decode(out) if self.reward_dist == "twohot" else out.squeeze(-1)

    def reward_loss(self, features: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        """Per step: two-hot cross-entropy, or the unit-variance Normal's negative
        log-likelihood ``(r̂ − r)²/2`` (constant dropped) for ``reward_dist="normal"``."""
        out = self.reward_head(features)
        if self.reward_dist == "twohot":
            return self.twohot.loss(out, reward)
        return 0.5 * (out.squeeze(-1) - reward).pow(2)

    def cont_logit(self, features: torch.Tensor) -> torch.Tensor:
        logit: torch.Tensor = self.cont_head(features).squeeze(-1)
        return logit

    def losses(
        self,
        pixels: torch.Tensor,
        proprio: torch.Tensor | None,
        prev_action: torch.Tensor,
        reward: torch.Tensor,
        is_first: torch.Tensor,
        is_terminal: torch.Tensor,
        *,
        free_nats: float,
        decoder_on_detached: bool = False,
        reconstruct: bool = True,
        state: LatentState | None = None,
    ) -> WorldModelLosses:
        """Every per-step term of the world-model loss on a ``[B, T]`` sequence batch.

        ``decoder_on_detached``: the decoders see stop-gradient features (RePo's probe), so
        reconstruction trains only the decoders, never the representation. ``reconstruct``
        False: no decoding at all (image and proprio terms are zeros).
        """
        embed = self.embed(pixels, proprio)
        states, prior, post, last = self.rssm.observe(embed, prev_action, is_first, state)
        features = states.features()
        decoder_in = features.detach() if decoder_on_detached else features
        zeros = torch.zeros(features.shape[:2], device=features.device, dtype=features.dtype)
        image = zeros
        if reconstruct:
            target = pixels.float() / 255.0 - 0.5
            image = (self.decode_image(decoder_in) - target).pow(2).flatten(2).sum(-1)
        if reconstruct and self.proprio_dim and proprio is not None:
            proprio_error = self.proprio_decoder(decoder_in) - symlog(proprio.float())
            proprio_loss = proprio_error.pow(2).sum(-1)
        else:
            proprio_loss = zeros
        reward_loss = self.reward_loss(features, reward)
        cont_target = (~is_terminal).to(features.dtype)
        cont_loss = F.binary_cross_entropy_with_logits(
            self.cont_logit(features), cont_target, reduction="none"
        )
        dyn, rep = self.rssm.kl_terms(post, prior, free_nats)
        return WorldModelLosses(
            image=image,
            proprio=proprio_loss,
            reward=reward_loss,
            cont=cont_loss,
            dyn=dyn,
            rep=rep,
            kl=self.rssm.latent.kl(post, prior),
            prior=prior,
            post=post,
            states=states,
            last_state=last,
        )
