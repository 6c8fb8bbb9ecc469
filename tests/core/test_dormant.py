"""Dormant-ratio diagnostics (DrM's definition, tau = 0.025)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.nn.dormant import (
    AwakenSchedule,
    awaken_stddev,
    dormant_neurons,
    dormant_stats,
    exploitation_weight,
    perturb_factor,
    perturb_linear_layers,
    reset_optimizer_state,
)
from robotrl.schedules import LinearSchedule


@pytest.mark.parametrize("action_dim", [6, 21])
def test_hidden_layers_are_scored_after_their_relu_trunk_and_output_on_their_own_output(
    action_dim,
):
    torch.manual_seed(action_dim)
    agent = DrQV2Agent(DrQV2Config(), obs_shape=(9, 84, 84), action_dim=action_dim, device="cpu")
    obs = torch.randint(0, 256, (64, 9, 84, 84), dtype=torch.uint8)
    features = agent.encode(agent.augment(obs.float())).detach()
    stats = dormant_stats(agent.actor, lambda: agent.actor(features, 0.5))
    assert stats.neurons == {
        "trunk.0": 50,
        "policy.0": 1024,
        "policy.2": 1024,
        "policy.4": action_dim,
    }
    # The same scores by hand, layer by layer, in numpy.
    trunk, policy = agent.actor.trunk, agent.actor.policy
    with torch.no_grad():
        trunk_out = trunk[0](features)
        hidden1 = torch.relu(policy[0](trunk[2](trunk[1](trunk_out))))
        hidden2 = torch.relu(policy[2](hidden1))
        output = policy[4](hidden2)

    def dormant_by_hand(activity: torch.Tensor) -> int:
        score = np.abs(activity.numpy()).mean(axis=0)
        return int((score < 0.025 * score.mean()).sum())

    expected = {
        "trunk.0": dormant_by_hand(trunk_out),
        "policy.0": dormant_by_hand(hidden1),
        "policy.2": dormant_by_hand(hidden2),
        "policy.4": dormant_by_hand(output),
    }
    assert stats.dormant == expected
    assert expected["policy.0"] + expected["policy.2"] > 0  # dead ReLU units exist at init


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
    agent = DrQV2Agent(
        DrQV2Config(hidden_dim=32), obs_shape=(9, 32, 32), action_dim=2, device="cpu"
    )
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


def test_awaken_noise_exploitation_weight_and_perturb_factor_values():
    assert [round(awaken_stddev(b), 4) for b in (0.0, 0.2, 0.3)] == [0.1192, 0.5, 0.7311]
    assert [round(exploitation_weight(b), 4) for b in (0.0, 0.2, 0.3)] == [0.6, 0.3, 0.004]
    assert perturb_factor(0.25, max_perturb=0.9) == pytest.approx(0.5)
    assert perturb_factor(0.0, max_perturb=0.9) == 0.9  # capped by max_perturb
    assert perturb_factor(0.8, max_perturb=0.9) == 0.2  # floored at 0.2


def test_awaken_schedule_restarts_the_linear_schedule_at_awakening():
    schedule = AwakenSchedule(base=LinearSchedule(1.0, 0.1, 1000), earliest_step=100)
    schedule.observe(50, beta=0.1)  # still in the uniform-exploration phase: not yet
    assert schedule.awaken_step is None
    schedule.observe(200, beta=0.3)
    assert schedule(200, beta=0.3) == pytest.approx(0.7311, abs=1e-4)  # dormant: sigmoid noise
    assert schedule.awaken_step is None
    schedule.observe(500, beta=0.1)
    assert schedule.awaken_step == 500
    assert schedule(500, beta=0.1) == pytest.approx(1.0)  # linear schedule from 1.0 again
    assert schedule(1000, beta=0.1) == pytest.approx(0.55)  # halfway through the restart
    assert schedule(5000, beta=0.1) == pytest.approx(max(0.1, awaken_stddev(0.1)))
    assert schedule(6000, beta=0.35) == pytest.approx(awaken_stddev(0.35))  # dormant again
    schedule.observe(7000, beta=0.0)
    assert schedule.awaken_step == 500  # awakening happens once


def _trained_actor_and_optimizer():
    torch.manual_seed(0)
    agent = DrQV2Agent(
        DrQV2Config(hidden_dim=32), obs_shape=(9, 32, 32), action_dim=2, device="cpu"
    )
    with torch.no_grad():  # non-zero biases everywhere, as after training
        for module in agent.actor.modules():
            if isinstance(module, nn.Linear):
                module.bias.uniform_(-0.1, 0.1)
    optimizer = agent.optimizers["actor"]
    loss = agent.actor(torch.randn(8, agent.encoder.repr_dim), 0.5).mean.pow(2).sum()
    loss.backward()
    optimizer.step()
    return agent.actor, optimizer


def test_perturbation_changes_every_linear_parameter_and_no_layernorm():
    actor, optimizer = _trained_actor_and_optimizer()
    before = {name: p.detach().clone() for name, p in actor.named_parameters()}
    perturb_linear_layers(actor, alpha=perturb_factor(0.25, max_perturb=0.9))
    reset_optimizer_state(optimizer)
    for name, param in actor.named_parameters():
        if name.startswith("trunk.1"):  # the LayerNorm
            assert torch.equal(param, before[name]), name
        else:
            assert not torch.equal(param, before[name]), name
    assert len(optimizer.state) == 0


def test_perturbation_is_the_convex_mix_and_alpha_one_is_identity():
    layer = nn.Linear(4, 3)
    before = layer.weight.detach().clone()
    perturb_linear_layers(layer, alpha=1.0)
    assert torch.equal(layer.weight, before)
    torch.manual_seed(5)
    perturb_linear_layers(layer, alpha=0.3)
    torch.manual_seed(5)
    fresh_weight = nn.init.orthogonal_(torch.empty(3, 4))  # the same draw the perturbation made
    torch.testing.assert_close(layer.weight, 0.3 * before + 0.7 * fresh_weight)
