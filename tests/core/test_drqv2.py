"""DrQ-v2's architecture and formulas, checked against numbers computed independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config, soft_update
from robotrl.nn.augment import RandomShift
from robotrl.nn.distributions import TruncatedNormal
from robotrl.nn.encoder import PixelEncoder
from robotrl.schedules import LinearSchedule


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_agent(action_dim: int = 6, obs_shape=(9, 84, 84), **overrides) -> DrQV2Agent:
    return DrQV2Agent(
        DrQV2Config(**overrides), obs_shape=obs_shape, action_dim=action_dim, device="cpu"
    )


def test_parameter_counts_match_the_reference_architecture():
    agent = make_agent(action_dim=6)
    assert agent.encoder.repr_dim == 32 * 35 * 35 == 39_200
    assert n_params(agent.encoder) == 30_368
    assert n_params(agent.actor) == 3_068_124
    assert n_params(agent.critic) == 4_178_136
    assert n_params(agent.critic_target) == 4_178_136


def test_trunks_are_linear_layernorm_tanh_and_critic_is_twin():
    agent = make_agent(action_dim=2, obs_shape=(9, 32, 32), hidden_dim=32)
    kinds = [type(m).__name__ for m in agent.actor.trunk]
    assert kinds == ["Linear", "LayerNorm", "Tanh"]
    assert [type(m).__name__ for m in agent.critic.trunk] == kinds
    features = torch.randn(5, agent.encoder.repr_dim)
    q1, q2 = agent.critic(features, torch.zeros(5, 2))
    assert q1.shape == q2.shape == (5, 1)
    assert not torch.allclose(q1, q2)  # independently initialised heads


def test_orthogonal_init_and_zero_biases():
    encoder = PixelEncoder((9, 84, 84))
    conv = encoder.convnet[0]
    weight = conv.weight.reshape(conv.weight.shape[0], -1)
    gain = torch.nn.init.calculate_gain("relu")
    # 32 rows of length 81: orthogonal rows scaled by the ReLU gain.
    torch.testing.assert_close(weight @ weight.T, gain**2 * torch.eye(32), atol=1e-4, rtol=0)
    assert torch.all(conv.bias == 0)


@pytest.mark.parametrize("size", [84, 64])
def test_random_shift_equals_integer_crop_of_padded_image(size):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 9, size, size)).float()
    shifts = torch.randint(0, 9, (6, 2))
    out = RandomShift(pad=4)(images, shift=shifts)
    padded = F.pad(images, (4, 4, 4, 4), mode="replicate")
    for i, (dx, dy) in enumerate(shifts.tolist()):
        crop = padded[i, :, dy : dy + size, dx : dx + size]
        assert (out[i] - crop).abs().max().item() <= 0.01


def test_random_shift_draws_all_shifts_and_keeps_shape():
    torch.manual_seed(1)
    image = torch.arange(16 * 16, dtype=torch.float32).reshape(1, 1, 16, 16).repeat(2000, 1, 1, 1)
    out = RandomShift(pad=4)(image)
    assert out.shape == image.shape
    # pixel (4, 4) of the output is image[dy, dx]: all 81 shifts show up in 2000 draws
    # (P(one is missed) < 81 * (80/81)^2000 ~ 1e-9), and nothing else does.
    corner_values = {round(v) for v in out[:, 0, 4, 4].tolist()}
    assert corner_values == {dy * 16 + dx for dy in range(9) for dx in range(9)}


def test_linear_schedule_values():
    schedule = LinearSchedule(1.0, 0.1, 500_000)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(250_000) == pytest.approx(0.55)
    assert schedule(500_000) == pytest.approx(0.1)
    assert schedule(2_000_000) == pytest.approx(0.1)
    assert LinearSchedule(1.0, 0.1, 100_000)(25_000) == pytest.approx(0.775)
    with pytest.raises(ValueError, match="duration"):
        LinearSchedule(1.0, 0.1, 0)


def test_truncated_normal_clips_noise_and_bounds_with_straight_through_gradient():
    torch.manual_seed(0)
    loc = torch.full((10_000, 1), 0.5, requires_grad=True)
    dist = TruncatedNormal(loc, torch.full((10_000, 1), 1.0))
    sample = dist.sample(clip=0.3)
    assert sample.min() >= 0.2 - 1e-6 and sample.max() <= 0.8 + 1e-6
    unclipped = TruncatedNormal(loc, torch.full((10_000, 1), 5.0)).sample()
    assert unclipped.min() > -1.0 and unclipped.max() < 1.0
    unclipped.sum().backward()
    assert loc.grad is not None and torch.all(loc.grad == 1.0)


def test_polyak_update_with_tau():
    net, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = target.weight.detach().clone()
    soft_update(net, target, 0.01)
    torch.testing.assert_close(target.weight, 0.01 * net.weight + 0.99 * before)


def test_critic_target_is_n_step_bootstrap_with_clipped_double_q():
    torch.manual_seed(0)
    agent = make_agent(action_dim=2, obs_shape=(3, 32, 32), hidden_dim=16, stddev_clip=0.0)
    features = torch.randn(4, agent.encoder.repr_dim)
    next_features = torch.randn(4, agent.encoder.repr_dim)
    reward, discount = torch.rand(4, 1), torch.full((4, 1), 0.970299)
    with torch.no_grad():  # noise clipped to 0: the target action is the mean
        mean_action = agent.actor(next_features, 0.5).mean
        t1, t2 = agent.critic_target(next_features, mean_action)
        expected = reward + discount * torch.min(t1, t2)
        q1, q2 = agent.critic(features, torch.zeros(4, 2))
        expected_loss = F.mse_loss(q1, expected) + F.mse_loss(q2, expected)
    metrics = agent.update_critic(features, torch.zeros(4, 2), reward, discount, next_features, 0)
    assert metrics["critic_target_q"] == pytest.approx(expected.mean().item(), rel=1e-5)
    assert metrics["critic_loss"] == pytest.approx(expected_loss.item(), rel=1e-5)


def test_encoder_is_trained_by_the_critic_only():
    torch.manual_seed(0)
    agent = make_agent(action_dim=2, obs_shape=(9, 32, 32), hidden_dim=16)
    batch = {
        "obs": np.random.randint(0, 255, (8, 9, 32, 32), dtype=np.uint8),
        "next_obs": np.random.randint(0, 255, (8, 9, 32, 32), dtype=np.uint8),
        "action": np.random.uniform(-1, 1, (8, 2)).astype(np.float32),
        "reward": np.ones((8, 1), np.float32),
        "discount": np.full((8, 1), 0.97, np.float32),
    }
    encoder_before = [p.detach().clone() for p in agent.encoder.parameters()]
    features = agent.encode(torch.as_tensor(batch["obs"]).float())
    agent.update_actor(features.detach(), step=0)
    assert all(
        torch.equal(a, b) for a, b in zip(encoder_before, agent.encoder.parameters(), strict=True)
    )
    metrics = agent.update(batch, step=0)
    assert not all(
        torch.equal(a, b) for a, b in zip(encoder_before, agent.encoder.parameters(), strict=True)
    )
    assert all(np.isfinite(v) for v in metrics.values())


def test_act_explores_uniformly_then_follows_policy_and_is_deterministic_in_eval():
    torch.manual_seed(0)
    agent = make_agent(action_dim=3, obs_shape=(9, 32, 32), hidden_dim=16, num_expl_steps=10)
    obs = {"pixels": np.random.randint(0, 255, (9, 32, 32), dtype=np.uint8)}
    early = np.stack([agent.act(obs, step=0, eval_mode=False) for _ in range(300)])
    assert early.std(axis=0) == pytest.approx(np.full(3, 2 / np.sqrt(12)), rel=0.15)  # U(-1, 1)
    first, second = agent.act(obs, 10**6, eval_mode=True), agent.act(obs, 10**6, eval_mode=True)
    np.testing.assert_array_equal(first, second)
    late = np.stack([agent.act(obs, step=10**6, eval_mode=False) for _ in range(300)])
    assert late.std(axis=0) == pytest.approx(np.full(3, 0.1), rel=0.25)  # final scheduled std
    assert early.dtype == np.float32 and np.all(np.abs(late) <= 1.0)


def test_weights_sync_between_agents():
    learner = make_agent(action_dim=2, obs_shape=(9, 32, 32), hidden_dim=16)
    actor = make_agent(action_dim=2, obs_shape=(9, 32, 32), hidden_dim=16)
    actor.load_weights(learner.get_weights())
    obs = {"pixels": np.random.randint(0, 255, (9, 32, 32), dtype=np.uint8)}
    np.testing.assert_array_equal(actor.act(obs, 0, True), learner.act(obs, 0, True))
    assert set(learner.get_weights()) == {"encoder", "actor"}
