"""MENTOR: the mixture-of-experts actor and the task-oriented perturbation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.agents.mentor import MentorAgent, MentorConfig, linear_parameters
from robotrl.builders import to_train_config
from robotrl.checkpoint import load_checkpoint, save_checkpoint
from robotrl.config import register_configs
from robotrl.nn.heads import Actor
from robotrl.nn.moe import MixtureOfExperts, MoEConfig, gate_entropy, load_balance_loss
from tests.core.fakes import pixel_batch as batch


def make_agent(**overrides) -> MentorAgent:
    moe = MoEConfig(num_experts=4, top_k=2, expert_hidden_dim=8, gate_hidden_dim=8)
    cfg = MentorConfig(hidden_dim=32, feature_dim=16, moe=moe, **overrides)
    return MentorAgent(cfg, obs_shape=(9, 32, 32), action_dim=2, device="cpu")


# -- mixture of experts ----------------------------------------------------------------------


def test_gate_mixes_exactly_the_top_k_experts_with_renormalised_weights():
    torch.manual_seed(0)
    moe = MixtureOfExperts(6, 5, MoEConfig(num_experts=8, top_k=3, gate_dropout=0.0))
    x = torch.randn(32, 6)
    out = moe(x)

    probs = torch.softmax(moe.gate(x), dim=-1).detach().numpy()
    expert_out = np.stack([expert(x).detach().numpy() for expert in moe.experts], axis=1)
    expected = np.zeros((32, 5))
    for row in range(32):
        chosen = np.argsort(-probs[row])[:3]  # independent top-k
        weights = probs[row, chosen] / probs[row, chosen].sum()
        expected[row] = (weights[:, None] * expert_out[row, chosen]).sum(axis=0)
        _, index, mix = moe.route(x[row : row + 1])
        assert sorted(index[0].tolist()) == sorted(chosen.tolist())
        assert mix.sum().item() == pytest.approx(1.0)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(moe.aux_loss)


def test_aux_loss_terms_take_their_known_values():
    uniform = torch.full((10, 4), 0.25)
    one_hot_gates = torch.eye(4).repeat(3, 1)[:10]  # each sample certain of one expert
    assert load_balance_loss(uniform, torch.ones(10, 4)).item() == pytest.approx(1.0)
    one_expert = torch.zeros(10, 4)
    one_expert[:, 0] = 1.0
    assert load_balance_loss(one_expert, one_expert).item() == pytest.approx(4.0)
    assert gate_entropy(uniform).item() == pytest.approx(math.log(4))
    assert gate_entropy(one_hot_gates).item() == pytest.approx(0.0, abs=1e-9)


def test_aux_loss_gradient_reaches_the_gate():
    torch.manual_seed(0)
    moe = MixtureOfExperts(6, 5, MoEConfig(num_experts=8, top_k=2))
    moe(torch.randn(64, 6))
    moe.aux_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in moe.gate.parameters())


def test_moe_actor_parameter_count_at_dmc_sizes():
    # trunk 39200*50+50 + LayerNorm 100; Linear 50->1024; 16 experts of 1024->256->1024;
    # gate 1024->256->16; head 1024->6.
    trunk = 39200 * 50 + 50 + 100
    first = 50 * 1024 + 1024
    experts = 16 * ((1024 * 256 + 256) + (256 * 1024 + 1024))
    gate = (1024 * 256 + 256) + (256 * 16 + 16)
    head = 1024 * 6 + 6
    expected = trunk + first + experts + gate + head
    assert expected == 10_694_124  # stated in docs/agents.md; the MLP actor has 3,068,124
    actor = Actor(39200, 6, 50, 1024, MoEConfig())
    assert sum(p.numel() for p in actor.parameters()) == expected


def test_drqv2_with_the_moe_actor_trains_the_experts_through_the_actor_loss():
    torch.manual_seed(0)
    moe = MoEConfig(num_experts=4, top_k=2, expert_hidden_dim=8, gate_hidden_dim=8)
    cfg = DrQV2Config(hidden_dim=32, feature_dim=16, actor="moe", moe=moe, num_expl_steps=0)
    agent = DrQV2Agent(cfg, obs_shape=(9, 32, 32), action_dim=2, device="cpu")
    assert agent.actor.moe is not None
    before = [p.detach().clone() for p in agent.actor.moe.parameters()]
    metrics = agent.update(batch(), step=10)
    assert math.isfinite(metrics["moe_aux_loss"])
    assert 0.0 <= metrics["actor_dormant_ratio"] <= 1.0
    params = agent.actor.moe.parameters()
    changed = [not torch.equal(b, p) for b, p in zip(before, params, strict=True)]
    assert all(changed)
    with pytest.raises(ValueError, match="actor must be"):
        DrQV2Config(actor="transformer")


# -- task-oriented perturbation ----------------------------------------------------------------


def test_snapshot_set_keeps_the_best_returns():
    torch.manual_seed(0)
    agent = make_agent(snapshots=2)
    weights_at = {}
    for episode_return in (5.0, 1.0, 7.0, 3.0):
        with torch.no_grad():
            agent.actor.policy[0].weight.add_(1.0)  # a different actor after every episode
        weights_at[episode_return] = agent.actor.policy[0].weight.detach().clone()
        agent.observe_episode(episode_return)
    assert sorted(agent.snapshot_returns) == [5.0, 7.0]
    for episode_return, snapshot in zip(agent.snapshot_returns, agent.snapshots, strict=True):
        assert torch.equal(snapshot["actor/policy.0.weight"], weights_at[episode_return])


@pytest.mark.parametrize("count", [1, 2, 10])
def test_perturbation_runs_and_moves_toward_the_snapshots(count):
    torch.manual_seed(0)
    agent = make_agent(snapshots=count)
    agent.update(batch(), step=10)
    for index in range(count):
        with torch.no_grad():
            for param in linear_parameters(agent.actor).values():
                param.add_(0.01 * (index + 1))
        agent.observe_episode(float(index))
    assert len(agent.snapshots) == count
    before = {
        name: {k: v.detach().clone() for k, v in linear_parameters(net).items()}
        for name, net in agent.perturbed_networks.items()
    }
    layernorm = agent.actor.trunk[1].weight.detach().clone()
    agent.actor_dormant_ratio = 0.25
    assert agent.perturb() == pytest.approx(0.5)

    for name, network in agent.perturbed_networks.items():
        for key, param in linear_parameters(network).items():
            assert torch.isfinite(param).all()
            if count == 1:  # θ̃ is the one snapshot: exactly halfway to it
                expected = 0.5 * before[name][key] + 0.5 * agent.snapshots[0][f"{name}/{key}"]
                torch.testing.assert_close(param.detach(), expected)
            elif name == "actor":  # the snapshots differ here, so θ̃ is a random draw
                assert not torch.equal(param, before[name][key])
    assert torch.equal(agent.actor.trunk[1].weight, layernorm)
    assert all(len(opt.state) == 0 for opt in agent.optimizers.values())


def test_draws_follow_the_per_entry_gaussian_of_the_snapshots():
    torch.manual_seed(0)
    agent = make_agent(snapshots=10)
    base = {k: v.detach().clone() for k, v in linear_parameters(agent.actor).items()}
    for index in range(10):  # snapshot i = base + i * 0.1: mean base + 0.45, std 0.1 * 3.0277
        with torch.no_grad():
            for key, param in linear_parameters(agent.actor).items():
                param.copy_(base[key] + 0.1 * index)
        agent.observe_episode(float(index))
    with torch.no_grad():
        for key, param in linear_parameters(agent.actor).items():
            param.copy_(base[key])
    agent.actor_dormant_ratio = 0.6  # alpha = min_perturb 0.2
    agent.perturb()
    std = 0.1 * np.std(np.arange(10), ddof=1)
    z_scores = []
    for key, param in linear_parameters(agent.actor).items():
        target = (param.detach() - 0.2 * base[key]) / 0.8  # undo the shrink
        z_scores.append(((target - base[key] - 0.45) / std).flatten().numpy())
    z = np.concatenate(z_scores)
    assert z.size > 1000
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.05


def test_without_snapshots_the_perturbation_is_drms():
    torch.manual_seed(0)
    agent = make_agent()
    before = agent.critic.q1[0].weight.detach().clone()
    agent.actor_dormant_ratio = 0.0
    assert agent.perturb() == pytest.approx(0.9)
    assert not torch.equal(agent.critic.q1[0].weight, before)


def test_checkpoint_round_trip_keeps_snapshots_and_the_next_perturbation(tmp_path):
    torch.manual_seed(0)
    agent = make_agent(num_expl_steps=0, snapshots=3)
    for step in range(2, 10, 2):
        agent.update(batch(step), step)
        agent.observe_episode(float(step))
    path = save_checkpoint(tmp_path, 10, {"agent": agent.state_dict()}, {"counters": {"frame": 10}})
    restored = make_agent(num_expl_steps=0, snapshots=3)
    restored.load_state_dict(load_checkpoint(path).state["agent"])
    assert restored.snapshot_returns == agent.snapshot_returns
    assert sorted(agent.snapshot_returns) == [4.0, 6.0, 8.0]
    obs = {"pixels": np.random.default_rng(1).integers(0, 256, (9, 32, 32), dtype=np.uint8)}
    np.testing.assert_array_equal(
        restored.act(obs, 10, eval_mode=True), agent.act(obs, 10, eval_mode=True)
    )
    agent.perturb()
    restored.perturb()
    for a, b in zip(agent.actor.parameters(), restored.actor.parameters(), strict=True):
        assert torch.equal(a, b)


def test_mentor_config_composes_with_drms_per_task_values():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        cfg = to_train_config(compose("train", overrides=["agent=mentor", "task=dmc/humanoid_run"]))
        assert isinstance(cfg.agent, MentorConfig)
        assert (cfg.agent.actor, cfg.agent.moe.num_experts, cfg.agent.moe.top_k) == ("moe", 16, 4)
        assert (cfg.agent.max_perturb, cfg.agent.perturb_every_steps) == (0.6, 20_000)
        moe_drqv2 = to_train_config(compose("train", overrides=["agent=drqv2", "agent.actor=moe"]))
        assert type(moe_drqv2.agent) is DrQV2Config and moe_drqv2.agent.actor == "moe"
        with pytest.raises(ValueError, match="top_k"):
            to_train_config(compose("train", overrides=["agent=mentor", "agent.moe.top_k=20"]))


def test_snapshot_size_at_dmc_sizes_is_the_one_docs_state():
    agent = MentorAgent(MentorConfig(), obs_shape=(9, 84, 84), action_dim=6, device="cpu")
    snapshot = agent.take_snapshot()
    assert sum(t.numel() for t in snapshot.values()) == 22_112_995  # docs/agents.md: ~22.1M
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in snapshot.values())


@pytest.mark.parametrize("clip", [1e-3, None])
def test_actor_gradient_is_clipped_to_the_public_codes_norm(clip):
    """MENTOR's public code clips the actor's gradient to a global norm of 1e-3 before its step."""
    agent = make_agent(actor_grad_clip_norm=clip)
    agent.update(batch(0), step=10)
    norm = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in agent.actor.parameters() if p.grad is not None])
    )
    if clip is None:
        assert norm > 1e-2  # the unclipped gradient is far larger than the clip
    else:
        assert norm == pytest.approx(clip, rel=1e-4)


def test_mentor_clips_the_actor_gradient_and_drm_does_not():
    assert MentorConfig().actor_grad_clip_norm == 1e-3
    assert DrQV2Config().actor_grad_clip_norm is None
