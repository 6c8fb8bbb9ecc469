"""MENTOR against its public code: exploration noise over β and the mixture-of-experts actor."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from robotrl.agents.mentor import MentorAgent
from robotrl.builders import to_train_config
from robotrl.config import register_configs
from robotrl.nn.heads import Actor
from robotrl.nn.moe import MoEConfig, gate_entropy
from tests.reference.official import load_official, official_path


def mentor_agent(*overrides: str) -> MentorAgent:
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        cfg = to_train_config(
            compose("train", overrides=["agent=mentor", "agent.hidden_dim=32", *overrides])
        )
    return MentorAgent(cfg.agent, obs_shape=(9, 32, 32), action_dim=2, device="cpu")


@pytest.mark.parametrize("awakened", [False, True])
def test_agent_mentor_noise_is_the_public_dormant_stddev_at_every_beta(awakened):
    """0.8·sigmoid(10(β − 0.2)) whatever the step, before and after β first falls below 0.2."""
    agent = mentor_agent()
    if awakened:
        agent.awaken.awaken_step = 2000
    with official_path("mentor_stddev.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 201
    for row in rows:
        agent.actor_dormant_ratio = float(row["beta"])
        for step in (0, 2_500, 100_000):
            assert agent.stddev(step) == pytest.approx(float(row["stddev"]), abs=1e-12)


def test_drms_awaken_schedule_stays_an_option_for_mentor():
    agent = mentor_agent("agent.stddev_type=awake", "agent.dormant_stddev_scale=1.0")
    agent.actor_dormant_ratio = 0.1
    agent.awaken.awaken_step = 2000
    assert agent.stddev(2000) == pytest.approx(1.0)  # DrQ-v2's schedule restarted at awakening


# Official MENTOR Actor names -> ours (robotrl.nn.heads.Actor with a MoE policy).
RENAMES = {
    "policy1.0.": "policy.0.",
    "policy2.1.": "policy.4.",
    "moe.experts.": "policy.2.experts.",
    "moe.gate.0.": "policy.2.gate.",
}


def our_name(official: str) -> str:
    for old, new in RENAMES.items():
        if official.startswith(old):
            return new + official.removeprefix(old)
    return official


@pytest.fixture(scope="module")
def mentor_actor():
    arrays = load_official("mentor.npz")
    actor = Actor(
        int(arrays["meta/repr_dim"]),
        6,
        int(arrays["meta/feature_dim"]),
        int(arrays["meta/hidden_dim"]),
        MoEConfig(num_experts=16, top_k=4, expert_hidden_dim=256, gate_hidden_dim=256),
    )
    state = {
        our_name(key.removeprefix("in/actor/")): torch.from_numpy(value)
        for key, value in arrays.items()
        if key.startswith("in/actor/")
    }
    actor.load_state_dict(state)  # strict: every tensor named, every shape checked
    return actor.eval(), arrays


def test_moe_actor_routes_and_acts_as_the_public_code(mentor_actor):
    actor, arrays = mentor_actor
    features = torch.from_numpy(arrays["in/features"])
    captured = {}
    handle = actor.policy[2].register_forward_hook(
        lambda _m, inputs, output: captured.update(moe_input=inputs[0].clone(), out=output.clone())
    )
    with torch.no_grad():
        mean = actor(features, float(arrays["in/std"])).mean
    handle.remove()
    moe = actor.policy[2]
    with torch.no_grad():
        probs, top_index, _ = moe.route(captured["moe_input"])
    np.testing.assert_allclose(captured["moe_input"], arrays["out/moe_input"], atol=1e-6)
    np.testing.assert_allclose(probs, arrays["out/gate_probs"], atol=1e-6)
    np.testing.assert_array_equal(top_index, arrays["out/topk_indices"])
    np.testing.assert_allclose(probs.gather(1, top_index), arrays["out/topk_values"], atol=1e-6)
    np.testing.assert_allclose(captured["out"], arrays["out/moe_output"], atol=1e-6)
    np.testing.assert_allclose(mean, arrays["out/action_mean"], atol=1e-6)


def test_moe_gate_entropy_is_the_public_aux_loss_less_its_load_variance():
    """The public aux loss is var(routed load) + gate entropy; we keep its entropy term.

    The variance term (torch's unbiased ``var`` of each expert's top-k count over the batch
    size) is computed here by hand from the official top-k indices.
    """
    arrays = load_official("mentor.npz")
    probs = torch.from_numpy(arrays["out/gate_probs"])
    top_index = arrays["out/topk_indices"]
    batch = top_index.shape[0]
    load = np.bincount(top_index.reshape(-1), minlength=16) / (batch + 1e-9)
    official_entropy = float(arrays["out/moe_aux_loss"]) - np.var(load, ddof=1)
    assert float(gate_entropy(probs)) == pytest.approx(official_entropy, abs=1e-6)
