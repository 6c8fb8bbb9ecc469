"""Dormant-ratio diagnostics (DrM's definition, tau = 0.025)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.nn.dormant import dormant_neurons, dormant_stats


@pytest.mark.parametrize("action_dim", [6, 12, 21, 38])
def test_fresh_drqv2_actor_has_no_dormant_neurons(action_dim):
    torch.manual_seed(action_dim)
    agent = DrQV2Agent(DrQV2Config(), obs_shape=(9, 84, 84), action_dim=action_dim, device="cpu")
    obs = torch.randint(0, 256, (64, 9, 84, 84), dtype=torch.uint8)
    features = agent.encode(agent.augment(obs.float()))
    stats = dormant_stats(agent.actor, lambda: agent.actor(features, 0.5))
    assert stats.ratio == 0.0
    assert stats.neurons == {"trunk.0": 50, "policy.0": 1024, "policy.2": 1024, "policy.4": action_dim}


def test_planted_dead_units_report_exactly_their_share():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 60))
    with torch.no_grad():
        net[0].weight[:10] = 0.0  # 10 units of the first layer output exactly 0
        net[0].bias[:10] = 0.0
        net[2].weight[:6] *= 1e-4  # 6 units of the second layer far below 2.5% of the mean
        net[2].bias[:6] = 0.0
    stats = dormant_stats(net, lambda: net(torch.randn(512, 8)))
    assert stats.dormant == {"0": 10, "2": 6}
    assert stats.ratio == pytest.approx(16 / 100)


def test_threshold_is_strictly_below_tau_times_the_layer_mean():
    # mean |output| per unit: [1, 1, 1, 0.1] -> layer mean 0.775; tau=0.129... puts 0.1 on the edge
    output = torch.tensor([[1.0, -1.0, 1.0, 0.1], [-1.0, 1.0, -1.0, -0.1]])
    edge = 0.1 / 0.775
    assert dormant_neurons(output, tau=edge).sum() == 0  # equal is not dormant
    assert dormant_neurons(output, tau=edge * 1.0001).tolist() == [False, False, False, True]


def test_every_drqv2_update_logs_actor_and_critic_dormant_ratios():
    agent = DrQV2Agent(DrQV2Config(hidden_dim=32), obs_shape=(9, 32, 32), action_dim=2, device="cpu")
    rng = np.random.default_rng(0)
    batch = {
        "obs": rng.integers(0, 256, (16, 9, 32, 32), dtype=np.uint8),
        "next_obs": rng.integers(0, 256, (16, 9, 32, 32), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (16, 2)).astype(np.float32),
        "reward": np.ones((16, 1), np.float32),
        "discount": np.full((16, 1), 0.97, np.float32),
    }
    metrics = agent.update(batch, step=0)
    assert 0.0 <= metrics["actor_dormant_ratio"] <= 1.0
    assert 0.0 <= metrics["critic_dormant_ratio"] <= 1.0
