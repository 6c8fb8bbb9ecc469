"""DreamerV3 world-model parts (robotrl.nn.world_model): symlog, two-hot bins, KL balancing
with free bits, categorical latents with unimix, Gaussian latents, image sizes, and overfitting
one batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robotrl.nn.world_model import (
    ConvDecoder,
    ConvEncoder,
    GaussianLatent,
    TwoHotBins,
    WorldModel,
    categorical_kl,
    gaussian_kl,
    kl_balance,
    sample_one_hot,
    symexp,
    symlog,
    unimix_logits,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_symlog_symexp_round_trip(dtype: torch.dtype) -> None:
    x = torch.cat([torch.logspace(-6, 6, 2001, dtype=dtype), torch.tensor([0.0], dtype=dtype)])
    x = torch.cat([x, -x])
    back = symexp(symlog(x))
    rel = (back - x).abs() / x.abs().clamp(min=1e-12)
    assert rel.max().item() <= 1e-5
    assert back[x == 0].abs().max() == 0
    # Independent values: symlog(e - 1) = 1, symlog(-(e^3 - 1)) = -3.
    expected = torch.tensor([1.0, -3.0], dtype=torch.float64)
    given = torch.tensor([np.e - 1, -(np.e**3 - 1)], dtype=torch.float64)
    assert torch.allclose(symlog(given), expected)


def test_twohot_round_trip_and_uniform_logits() -> None:
    twohot = TwoHotBins(255, 20.0)
    assert len(twohot.bins) == 255 and twohot.bins[0] == -20 and twohot.bins[-1] == 20
    assert torch.allclose(twohot.bins[1:] - twohot.bins[:-1], torch.tensor(40 / 254), atol=1e-5)
    values = torch.tensor([0.0, 0.3, -1.7, 12.5, -450.0, 3e4, 1e6])
    target = twohot.encode(values)
    assert torch.allclose(target.sum(-1), torch.ones(len(values)))
    assert int((target > 0).sum(-1).max()) <= 2  # at most two bins carry weight
    assert torch.allclose(twohot.decode_probs(target), values, rtol=1e-4, atol=1e-5)
    assert twohot.decode(torch.zeros(3, 255)).abs().max().item() < 1e-6
    # The loss is minimal (equals the target's entropy) when the logits match the target.
    logits = torch.log(target.clamp(min=1e-30))
    entropy = -(target * torch.log(target.clamp(min=1e-30))).sum(-1)
    assert torch.allclose(twohot.loss(logits, values), entropy, atol=1e-4)


def test_kl_balance_at_equal_distributions_is_free_bits_with_zero_gradient() -> None:
    logits = torch.randn(5, 4, 6)
    post = logits.clone().requires_grad_(True)
    prior = logits.clone().requires_grad_(True)
    dyn, rep = kl_balance(post, prior, free_nats=1.0)
    assert torch.allclose(dyn, torch.ones(5)) and torch.allclose(rep, torch.ones(5))
    (dyn + rep).sum().backward()
    assert post.grad is not None and prior.grad is not None
    assert post.grad.abs().max() == 0 and prior.grad.abs().max() == 0


def assert_each_term_trains_its_own_side(
    dyn: torch.Tensor, rep: torch.Tensor, post: torch.Tensor, prior: torch.Tensor
) -> None:
    """``dyn`` sends gradient to the prior only, ``rep`` to the posterior only."""
    dyn_post, dyn_prior = torch.autograd.grad(dyn.sum(), [post, prior], allow_unused=True)
    assert dyn_post is None or dyn_post.abs().max() == 0
    assert dyn_prior is not None and dyn_prior.abs().max() > 0
    rep_post, rep_prior = torch.autograd.grad(rep.sum(), [post, prior], allow_unused=True)
    assert rep_prior is None or rep_prior.abs().max() == 0
    assert rep_post is not None and rep_post.abs().max() > 0


def test_kl_balance_gradients_reach_the_right_side() -> None:
    torch.manual_seed(0)
    post = (3 * torch.randn(5, 4, 6)).requires_grad_(True)
    prior = (3 * torch.randn(5, 4, 6)).requires_grad_(True)
    dyn, rep = kl_balance(post, prior, free_nats=1.0)
    assert (dyn > 1.0).all() and (rep > 1.0).all()  # above the free bits
    # Independent KL: numpy on the probabilities.
    p = torch.softmax(post, -1).detach().numpy()
    q = torch.softmax(prior, -1).detach().numpy()
    kl = (p * (np.log(p) - np.log(q))).sum((-2, -1))
    assert np.allclose(dyn.detach().numpy(), kl, rtol=1e-4)
    assert_each_term_trains_its_own_side(dyn, rep, post, prior)


def test_latent_samples_are_one_hot_and_unimix_floors_probabilities() -> None:
    torch.manual_seed(0)
    raw = torch.tensor([[[30.0, -30.0, -30.0, -30.0]]]).repeat(2, 3, 1)  # near one-hot
    unimix, classes = 0.01, 4
    probs = unimix_logits(raw, unimix).exp()
    assert torch.allclose(probs.sum(-1), torch.ones(2, 3))
    assert probs.min().item() >= unimix / classes - 1e-7
    assert torch.allclose(probs[..., 1:], torch.tensor(unimix / classes), atol=1e-7)
    logits = unimix_logits(torch.randn(64, 8, 5, requires_grad=True), unimix)
    sample = sample_one_hot(logits)
    values = sample.detach()
    assert set(values.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(values.sum(-1), torch.ones(64, 8))
    # Straight-through: the sample carries the probabilities' gradient.
    (sample * torch.randn_like(sample)).sum().backward()
    assert categorical_kl(logits, logits).abs().max() < 1e-6


def test_latent_samples_follow_the_categorical_probabilities() -> None:
    """Class frequencies of 200k one-hot samples match the probabilities (4 sigma)."""
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = torch.log(probs).expand(20_000, 10, 5)
    counts = sample_one_hot(logits).detach().sum((0, 1))
    draws = 200_000
    sigma = torch.sqrt(draws * probs * (1 - probs))
    assert torch.all((counts - draws * probs).abs() <= 4 * sigma + 1e-9), counts
    assert counts[-1] == 0  # a class of probability 0 is never drawn


def test_gaussian_kl_matches_torch_distributions_and_balances_like_the_categorical() -> None:
    torch.manual_seed(0)
    latent = GaussianLatent(size=6, min_std=0.1)
    post = latent.params(3 * torch.randn(5, 12)).requires_grad_(True)
    prior = latent.params(3 * torch.randn(5, 12)).requires_grad_(True)
    assert post.chunk(2, -1)[1].min() >= 0.1  # std = softplus(raw) + min_std
    mean_p, std_p = post.detach().double().chunk(2, -1)
    mean_q, std_q = prior.detach().double().chunk(2, -1)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean_p, std_p), torch.distributions.Normal(mean_q, std_q)
    ).sum(-1)
    assert torch.allclose(gaussian_kl(post, prior).double(), expected, rtol=1e-4)
    assert gaussian_kl(post, post).abs().max() < 1e-5
    dyn, rep = kl_balance(post, prior, free_nats=1.0, kl=latent.kl)
    assert (dyn > 1.0).all() and torch.allclose(dyn, rep)
    assert_each_term_trains_its_own_side(dyn, rep, post, prior)


def test_gaussian_samples_are_reparameterised_with_the_right_moments() -> None:
    torch.manual_seed(0)
    latent = GaussianLatent(size=3, min_std=0.1)
    mean = torch.tensor([1.0, -2.0, 0.5])
    std = torch.tensor([0.1, 0.5, 2.0])
    params = torch.cat([mean, std]).expand(100_000, 6).clone().requires_grad_(True)
    sample = latent.sample(params)
    assert sample.shape == (100_000, 3)
    # 4 sigma of the sample mean; the sample std within 1%.
    assert torch.all((sample.mean(0) - mean).abs() <= 4 * std / 100_000**0.5)
    assert torch.allclose(sample.std(0), std, rtol=0.01)
    # Reparameterised: d sample / d mean = 1, d sample / d std = the standard-normal draw.
    sample.sum().backward()
    assert params.grad is not None
    assert torch.allclose(params.grad[:, :3], torch.ones(100_000, 3))
    noise = (sample.detach() - mean) / std
    assert torch.allclose(params.grad[:, 3:], noise, atol=1e-4)
    assert torch.equal(latent.mode(params.detach()), mean.expand(100_000, 3))


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("size", [32, 64, 84])
def test_encoder_decoder_sizes(size: int, norm: bool) -> None:
    encoder = ConvEncoder(3, size, depth=4, norm=norm)
    out = encoder(torch.randint(0, 255, (2, 3, size, size), dtype=torch.uint8))
    assert out.shape == (2, encoder.out_dim)
    decoder = ConvDecoder(10, 6, size, depth=4, norm=norm)
    assert decoder(torch.randn(2, 10)).shape == (2, 6, size, size)
    norms = [m for m in [*encoder.modules(), *decoder.modules()] if isinstance(m, nn.LayerNorm)]
    assert bool(norms) == norm  # cnn_norm=false: no channel LayerNorm anywhere in the CNNs


def moving_square_batch(
    batch: int = 4, length: int = 8, size: int = 32, views: int = 0
) -> dict[str, torch.Tensor]:
    """A square drifting by the action each step; reward = its x position (a known function)."""
    rng = np.random.default_rng(0)
    shape = (batch, length, 3, size, size)
    pixels = np.zeros(shape, np.uint8)
    action = rng.uniform(-1, 1, (batch, length, 2)).astype(np.float32)
    action[:, 0] = 0
    reward = np.zeros((batch, length), np.float32)
    for b in range(batch):
        pos = rng.integers(6, size - 12, 2).astype(float)
        for t in range(length):
            pos = np.clip(pos + 3 * action[b, t], 0, size - 6)
            y, x = pos.astype(int)
            pixels[b, t, :, y : y + 6, x : x + 6] = 255
            reward[b, t] = 0.0 if t == 0 else x / size
    is_first = np.zeros((batch, length), bool)
    is_first[:, 0] = True
    out = {
        "pixels": torch.as_tensor(pixels),
        "prev_action": torch.as_tensor(action),
        "reward": torch.as_tensor(reward),
        "is_first": torch.as_tensor(is_first),
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }
    if views:
        out["pixels"] = out["pixels"][:, :, None].repeat(1, 1, views, 1, 1, 1)
    return out


@pytest.mark.parametrize(
    ("latent", "reward_dist"), [("categorical", "twohot"), ("gaussian", "normal")]
)
def test_world_model_overfits_one_batch(latent: str, reward_dist: str) -> None:
    """DreamerV3's world model, and the RePo reference's (Gaussian, default-init Normal head)."""
    torch.manual_seed(0)
    data = moving_square_batch()
    model = WorldModel(
        (3, 32, 32), 2, deter_dim=64, hidden_dim=64, groups=4, classes=4, cnn_depth=8,
        mlp_layers=1, latent=latent, gaussian_size=8, reward_dist=reward_dist,
        reward_zero_init=reward_dist == "twohot",
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        terms = model.losses(
            data["pixels"],
            None,
            data["prev_action"],
            data["reward"],
            data["is_first"],
            data["is_terminal"],
            free_nats=1.0,
        )
        total = terms.image + terms.reward + terms.cont + 0.5 * terms.dyn + 0.1 * terms.rep
        return total.mean()

    first = loss().item()
    for _ in range(200):
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    last = loss().item()
    # The free bits (0.6 nats) are a floor no model can go under; everything else must fall.
    assert last - 0.6 <= 0.1 * (first - 0.6), (first, last)


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_multi_view_and_proprio_shapes(latent: str) -> None:
    model = WorldModel(
        (2, 3, 32, 32), 2, proprio_dim=5, deter_dim=16, hidden_dim=16, groups=2, classes=3,
        cnn_depth=4, mlp_layers=1, latent=latent, gaussian_size=4,
    )  # fmt: skip
    data = moving_square_batch(batch=2, length=3, views=2)
    data["is_first"][1, 1] = True  # a second episode starts inside the sequence
    proprio = torch.randn(2, 3, 5)
    terms = model.losses(
        data["pixels"], proprio, data["prev_action"], data["reward"], data["is_first"],
        data["is_terminal"], free_nats=1.0,
    )  # fmt: skip
    assert terms.image.shape == (2, 3) and terms.proprio.shape == (2, 3)
    assert (terms.proprio > 0).all()
    assert model.decode_image(terms.states.features()).shape == (2, 3, 2, 3, 32, 32)
    stoch_shape = (4,) if latent == "gaussian" else (2, 3)
    assert terms.states.stoch.shape == (2, 3, *stoch_shape)
    assert terms.states.features().shape == (2, 3, model.rssm.feature_dim)
    with pytest.raises(KeyError, match="proprio"):
        model.embed(data["pixels"], None)
    with pytest.raises(ValueError, match="H == W"):
        WorldModel((3, 32, 16), 2)


def test_normal_reward_head_is_half_the_squared_error() -> None:
    torch.manual_seed(0)
    model = WorldModel(
        (3, 32, 32), 2, deter_dim=8, hidden_dim=8, groups=2, classes=3, cnn_depth=4,
        mlp_layers=1, reward_dist="normal", reward_zero_init=False,
    )  # fmt: skip
    features = torch.randn(4, 5, model.rssm.feature_dim)
    reward = torch.randn(4, 5)
    predicted = model.reward(features)
    assert predicted.shape == (4, 5) and predicted.abs().max() > 0  # not zero-initialised
    with torch.no_grad():
        weight, bias = model.reward_head[-1].weight, model.reward_head[-1].bias
        by_hand = model.reward_head[:-1](features) @ weight[0] + bias[0]
    assert torch.allclose(predicted, by_hand, atol=1e-6)
    loss = model.reward_loss(features, reward)
    assert torch.allclose(loss, 0.5 * (by_hand - reward) ** 2, atol=1e-5)


@pytest.mark.parametrize("reward_dist", ["twohot", "normal"])
@pytest.mark.parametrize("zero_init", [True, False])
def test_reward_head_zero_init_predicts_zero_until_trained(reward_dist: str, zero_init: bool):
    torch.manual_seed(0)
    model = WorldModel(
        (3, 32, 32), 2, deter_dim=8, hidden_dim=8, groups=2, classes=3, cnn_depth=4,
        mlp_layers=1, reward_dist=reward_dist, reward_zero_init=zero_init,
    )  # fmt: skip
    predicted = model.reward(torch.randn(6, model.rssm.feature_dim))
    if zero_init:
        assert predicted.abs().max().item() < 1e-6
    else:  # default initialisation: predictions differ from row to row
        assert predicted.std().item() > 1e-3
    model.reward_loss(torch.randn(6, model.rssm.feature_dim), torch.ones(6)).mean().backward()
    assert model.reward_head[-1].weight.grad.abs().max() > 0  # the zeroed layer still learns


def test_unknown_latent_or_reward_distribution_raises() -> None:
    with pytest.raises(ValueError, match="reward_dist must be 'twohot' or 'normal'"):
        WorldModel((3, 32, 32), 2, reward_dist="mse")
    with pytest.raises(ValueError, match="latent must be 'categorical' or 'gaussian'"):
        WorldModel((3, 32, 32), 2, latent="normal")
