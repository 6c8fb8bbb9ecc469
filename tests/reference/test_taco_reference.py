"""TACO against the public TACO code: its losses on its weights, batch and crop shifts."""

from __future__ import annotations

import pytest
import torch

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.agents.taco import TacoConfig
from tests.reference.official import load_official

# Official ``TACO`` module names -> (our module, its parameter name prefix).
RENAMES = {
    "encoder.": ("encoder", ""),
    "act_tok.action_tokenizer.": ("action_encoder", "net."),
    "act_tok.action_seq_tokenizer.": ("taco", "sequence_mixer."),
    "proj_s.": ("taco", "state_projection."),
    "proj_sa.": ("taco", "state_action_projection."),
    "reward.": ("taco", "reward_head."),
    "W": ("taco", "W"),
}
# Relative tolerance. Measured on a 2-core CPU, one thread: contrastive 2.0e-7 and reward 2.4e-7
# absolute, CURL 5.2e-6 on 4.74 (its logits are unscaled, so float rounding grows with them).
TOLERANCE = 1e-5


def taco_agent(arrays) -> DrQV2Agent:
    cfg = DrQV2Config(
        hidden_dim=int(arrays["meta/hidden_dim"]),
        channels_last=False,
        aux="taco",
        taco=TacoConfig(
            horizon=int(arrays["meta/multistep"]),
            curl=True,
            reward_prediction=True,
            projection_hidden_dim=256,
        ),
    )
    agent = DrQV2Agent(cfg, obs_shape=(9, 84, 84), action_dim=6, device="cpu")
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in arrays.items():
        if not key.startswith("in/TACO/"):
            continue
        name = key.removeprefix("in/TACO/")
        old = next(prefix for prefix in RENAMES if name.startswith(prefix))
        module, new = RENAMES[old]
        states.setdefault(module, {})[new + name.removeprefix(old)] = torch.from_numpy(value)
    agent.encoder.load_state_dict(states["encoder"])
    agent.action_encoder.load_state_dict(states["action_encoder"])
    agent.taco.load_state_dict(states["taco"])  # strict: every TACO tensor named once
    return agent


def test_taco_curl_and_reward_losses_match_the_public_code():
    arrays = load_official("taco_loss.npz")
    agent = taco_agent(arrays)
    obs = torch.from_numpy(arrays["in/batch/obs"]).float()
    horizon = torch.from_numpy(arrays["in/batch/obs_horizon"]).float()

    def features(images, role):
        shift = torch.from_numpy(arrays[f"in/shift_{role}"])
        return agent.encode(agent.augment(images, shift=shift))

    # The reference's reward input is already the K-step return: put it in the first slot.
    reward = torch.from_numpy(arrays["in/batch/reward"])
    reward_seq = torch.cat([reward, torch.zeros(len(reward), 2)], dim=1)
    with torch.no_grad():
        _, metrics = agent.taco.loss(
            features(obs, "anchor"),
            features(horizon, "future"),
            agent.action_encoder(torch.from_numpy(arrays["in/batch/action_seq"])),
            reward_seq=reward_seq,
            other_view_features=features(obs, "pos"),
        )
    assert metrics["taco_contrastive_loss"] == pytest.approx(
        float(arrays["out/taco_loss"]), rel=TOLERANCE
    )
    assert metrics["taco_curl_loss"] == pytest.approx(float(arrays["out/curl_loss"]), rel=TOLERANCE)
    assert metrics["taco_reward_loss"] == pytest.approx(
        float(arrays["out/reward_loss"]), rel=TOLERANCE
    )
