"""DrM: the dormant-ratio-driven parts on top of DrQ-v2 (formulas are in test_dormant.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from robotrl.agents.drm import DrMAgent, DrMConfig, expectile_loss
from robotrl.builders import to_train_config
from robotrl.checkpoint import load_checkpoint, save_checkpoint
from robotrl.config import register_configs
from robotrl.nn.dormant import awaken_stddev, exploitation_weight
from tests.core.fakes import pixel_batch as batch


def make_agent(**overrides) -> DrMAgent:
    cfg = DrMConfig(hidden_dim=32, feature_dim=16, **overrides)
    return DrMAgent(cfg, obs_shape=(9, 32, 32), action_dim=2, device="cpu")


def test_expectile_loss_weights_under_and_over_estimates():
    error = torch.tensor([-1.0, 2.0])  # V below target by 1, above by 2
    assert expectile_loss(error, 0.9).item() == pytest.approx((0.9 * 1 + 0.1 * 4) / 2)
    assert expectile_loss(error, 0.7).item() == pytest.approx((0.7 * 1 + 0.3 * 4) / 2)


def test_noise_starts_dormant_and_follows_the_measured_ratio():
    torch.manual_seed(0)
    agent = make_agent(num_expl_steps=0)
    assert agent.stddev(0) == pytest.approx(awaken_stddev(1.0))  # unmeasured: fully dormant
    metrics = agent.update(batch(), step=10)
    beta = metrics["actor_dormant_ratio"]
    assert beta == agent.actor_dormant_ratio < 0.2  # a fresh actor is awake...
    assert agent.awaken.awaken_step == 10  # ...so awakening happens at this update
    assert agent.stddev(10) == pytest.approx(1.0)  # and the linear schedule restarts
    assert metrics["exploitation_lambda"] == pytest.approx(exploitation_weight(beta))


def test_critic_target_blends_value_net_and_clipped_double_q():
    torch.manual_seed(0)
    agent = make_agent(stddev_clip=0.0)
    agent.actor_dormant_ratio = 0.2  # lambda = 0.3
    next_features = torch.randn(5, agent.encoder.repr_dim)
    with torch.no_grad():
        action = agent.actor(next_features, agent.stddev(0)).mean
        explore = torch.min(*agent.critic_target(next_features, action))
        expected = 0.3 * agent.value_net(next_features) + 0.7 * explore
        torch.testing.assert_close(agent.target_value(next_features, 0), expected)
    constant = make_agent(exploitation="constant", target_lambda=0.25)
    constant.actor_dormant_ratio = 0.9
    assert constant.exploitation_lambda() == 0.25


def test_perturbation_fires_at_the_first_update_after_each_interval():
    torch.manual_seed(0)
    agent = make_agent(perturb_every_steps=4, num_expl_steps=0)
    fired = []
    for step in (2, 4, 6, 9, 10, 12):
        before = agent.actor.policy[0].weight.detach().clone()
        metrics = agent.update(batch(step), step)
        if "perturb_alpha" in metrics:
            fired.append(step)
            assert 0.2 <= metrics["perturb_alpha"] <= 0.9
            assert not torch.allclose(agent.actor.policy[0].weight, before)
    assert fired == [4, 9, 12]
    assert agent.next_perturb_step == 16


def test_perturb_resets_every_optimizer_and_spares_layernorm():
    torch.manual_seed(0)
    agent = make_agent()
    agent.update(batch(), step=10)
    layernorm = agent.critic.trunk[1].weight.detach().clone()
    agent.actor_dormant_ratio = 0.25
    assert agent.perturb() == pytest.approx(0.5)
    assert all(len(opt.state) == 0 for opt in agent.optimizers.values())
    assert torch.equal(agent.critic.trunk[1].weight, layernorm)


def test_checkpoint_round_trip_gives_identical_actions_and_drm_state(tmp_path):
    torch.manual_seed(0)
    agent = make_agent(num_expl_steps=0, perturb_every_steps=100)
    for step in range(2, 12, 2):
        agent.update(batch(step), step)
    path = save_checkpoint(tmp_path, 12, {"agent": agent.state_dict()}, {"counters": {"frame": 12}})
    restored = make_agent(num_expl_steps=0, perturb_every_steps=100)
    restored.load_state_dict(load_checkpoint(path).state["agent"])
    assert restored.extra_state() == agent.extra_state()
    obs = {"pixels": np.random.default_rng(1).integers(0, 256, (9, 32, 32), dtype=np.uint8)}
    np.testing.assert_array_equal(
        restored.act(obs, 12, eval_mode=True), agent.act(obs, 12, eval_mode=True)
    )
    assert restored.stddev(12) == agent.stddev(12)
    torch.manual_seed(3)
    next_a = agent.update(batch(99), 12)
    torch.manual_seed(3)
    next_b = restored.update(batch(99), 12)
    assert next_a == pytest.approx(next_b)  # optimizers and value net restored too


def test_drm_configs_compose_with_per_task_specialisations():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        hard = to_train_config(compose("train", overrides=["agent=drm", "task=dmc/reacher_hard"]))
        assert isinstance(hard.agent, DrMConfig)
        assert (hard.agent.max_perturb, hard.agent.target_lambda) == (1.0, 0.6)
        humanoid = to_train_config(
            compose("train", overrides=["agent=drm", "task=dmc/humanoid_run"])
        )
        assert (humanoid.agent.max_perturb, humanoid.agent.lr, humanoid.agent.feature_dim) == (
            0.6,
            8e-5,
            100,
        )
        walker = to_train_config(compose("train", overrides=["agent=drm", "task=dmc/walker_run"]))
        assert (walker.replay.nstep, walker.replay.batch_size) == (3, 512)
        default = to_train_config(compose("train", overrides=["agent=drm", "task=dmc/walker_walk"]))
        assert (default.agent.max_perturb, default.agent.perturb_every_steps) == (0.9, 100_000)
        with pytest.raises(ValueError, match="exploitation"):
            to_train_config(compose("train", overrides=["agent=drm", "agent.exploitation=greedy"]))
