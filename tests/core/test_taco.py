"""TACO building blocks: InfoNCE, the objective's calibration, learnability and gradient flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from robotrl.agents.taco import ActionEncoder, TacoConfig, TacoObjective, info_nce

REPR_DIM, ACTION_DIM, DISCOUNT = 64, 6, 0.99


def make(cfg: TacoConfig, seed: int = 0) -> tuple[TacoObjective, ActionEncoder]:
    torch.manual_seed(seed)
    latent_dim = cfg.latent_dim(ACTION_DIM)
    encoder = ActionEncoder(ACTION_DIM, latent_dim, cfg.action_hidden_dim)
    objective = TacoObjective(
        cfg, repr_dim=REPR_DIM, action_latent_dim=latent_dim, discount=DISCOUNT
    )
    return objective, encoder


def random_batch(batch_size: int, horizon: int, seed: int) -> dict[str, torch.Tensor]:
    """Encoder-like features (ReLU outputs), actions in [-1, 1], rewards in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)

    def features() -> torch.Tensor:
        return torch.randn(batch_size, REPR_DIM, generator=generator).relu()

    return {
        "features": features(),
        "future_features": features(),
        "other_view_features": features(),
        "actions": torch.rand(batch_size, horizon, ACTION_DIM, generator=generator) * 2 - 1,
        "reward_seq": torch.rand(batch_size, horizon, generator=generator),
    }


def taco_loss(
    objective: TacoObjective, encoder: ActionEncoder, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    return objective.loss(
        batch["features"],
        batch["future_features"],
        encoder(batch["actions"]),
        reward_seq=batch["reward_seq"],
        other_view_features=batch["other_view_features"],
    )


def test_info_nce_matches_numpy_log_softmax() -> None:
    anchors = np.array([[1.0, 0.0], [0.5, -1.0], [2.0, 1.0]])
    positives = np.array([[0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    W = np.array([[1.0, 2.0], [-0.5, 0.3]])
    logits = anchors @ W @ positives.T
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -np.mean(np.diag(log_softmax))
    got = info_nce(*(torch.tensor(x, dtype=torch.float64) for x in (anchors, positives, W)))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_info_nce_is_near_zero_when_positives_are_identifiable_and_large_when_not() -> None:
    generator = torch.Generator().manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(64, 32, generator=generator), dim=1) * 10
    identity = torch.eye(32)
    assert info_nce(anchors, anchors, identity).item() < 0.05
    # Mismatched positives (a cyclic shift) make the diagonal the worst guess, not the best.
    assert info_nce(anchors, anchors.roll(1, dims=0), identity).item() > 10
    # Huge logits stay finite thanks to the per-row shift.
    assert torch.isfinite(info_nce(anchors * 100, anchors * 100, identity))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contrastive_loss_at_init_is_near_chance(seed: int) -> None:
    objective, encoder = make(TacoConfig(), seed)
    _, metrics = taco_loss(objective, encoder, random_batch(256, 3, seed))
    assert math.isfinite(metrics["taco_contrastive_loss"])
    assert math.log(256) <= metrics["taco_contrastive_loss"] <= math.log(256) + 1


def test_a_few_hundred_adam_steps_on_a_fixed_batch_drive_the_loss_to_zero() -> None:
    cfg = TacoConfig(projection_hidden_dim=256, curl=True, reward_prediction=True)
    objective, encoder = make(cfg)
    batch = random_batch(128, cfg.horizon, seed=3)
    parameters = [*objective.parameters(), *encoder.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    for _ in range(400):
        loss, metrics = taco_loss(objective, encoder, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert metrics["taco_contrastive_loss"] < 0.05
    assert metrics["taco_curl_loss"] < 0.05
    assert metrics["taco_reward_loss"] < 0.01


def test_gradient_reaches_the_encoders_and_heads_but_not_the_future() -> None:
    cfg = TacoConfig(curl=True, reward_prediction=True)
    objective, encoder = make(cfg)
    batch = random_batch(32, cfg.horizon, seed=4)
    for key in ("features", "future_features", "other_view_features"):
        batch[key].requires_grad_(True)
    loss, _ = taco_loss(objective, encoder, batch)
    loss.backward()

    assert batch["future_features"].grad is None
    assert batch["other_view_features"].grad is None
    features_grad = batch["features"].grad
    assert features_grad is not None and features_grad.abs().sum() > 0
    for name, module in {"action encoder": encoder, "objective": objective}.items():
        for param_name, param in module.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, (name, param_name)


def test_future_side_adds_no_gradient_to_the_shared_state_projection() -> None:
    objective, encoder = make(TacoConfig())
    batch = random_batch(32, 3, seed=5)
    loss, _ = objective.loss(batch["features"], batch["future_features"], encoder(batch["actions"]))
    loss.backward()
    via_loss = objective.state_projection[0].weight.grad
    assert via_loss is not None
    via_loss = via_loss.clone()

    # The same loss with z_{t+K} a constant: the projection gradient must be identical.
    objective.zero_grad()
    z_future = objective.project_state(batch["future_features"]).detach()
    z = objective.project_state(batch["features"])
    code = objective.encode_sequence(encoder(batch["actions"]))
    anchors = objective.state_action_projection(torch.cat([z, code], dim=-1))
    info_nce(anchors, z_future, objective.W).backward()
    assert objective.state_projection[0].weight.grad is not None
    torch.testing.assert_close(objective.state_projection[0].weight.grad, via_loss)


def test_reward_target_is_the_discounted_sum_of_the_window() -> None:
    cfg = TacoConfig(reward_prediction=True)
    objective, encoder = make(cfg)
    batch = random_batch(16, cfg.horizon, seed=6)
    _, metrics = taco_loss(objective, encoder, batch)
    with torch.no_grad():
        z = objective.project_state(batch["features"])
        code = objective.encode_sequence(encoder(batch["actions"]))
        assert objective.reward_head is not None
        prediction = objective.reward_head(torch.cat([z, code], dim=-1))[:, 0]
        rewards = batch["reward_seq"]
        target = rewards[:, 0] + DISCOUNT * rewards[:, 1] + DISCOUNT**2 * rewards[:, 2]
        expected = ((prediction - target) ** 2).mean().item()
    assert metrics["taco_reward_loss"] == pytest.approx(expected, rel=1e-5)


def test_curl_scores_two_views_of_o_t_with_the_shared_W() -> None:
    objective, encoder = make(TacoConfig(curl=True))
    batch = random_batch(16, 3, seed=7)
    _, metrics = taco_loss(objective, encoder, batch)
    with torch.no_grad():
        z = objective.project_state(batch["features"])
        z_other = objective.project_state(batch["other_view_features"])
        expected = info_nce(z, z_other, objective.W).item()
    assert metrics["taco_curl_loss"] == pytest.approx(expected, rel=1e-6)
    total = metrics["taco_contrastive_loss"] + metrics["taco_curl_loss"]
    assert metrics["taco_loss"] == pytest.approx(total, rel=1e-6)


def test_optional_terms_are_off_by_default_and_need_their_inputs_when_on() -> None:
    objective, encoder = make(TacoConfig())
    batch = random_batch(8, 3, seed=8)
    _, metrics = objective.loss(
        batch["features"], batch["future_features"], encoder(batch["actions"])
    )
    assert set(metrics) == {"taco_contrastive_loss", "taco_loss"}
    assert objective.reward_head is None
    for cfg, missing in (
        (TacoConfig(curl=True), "other_view"),
        (TacoConfig(reward_prediction=True), "reward_seq"),
    ):
        objective, encoder = make(cfg)
        with pytest.raises(ValueError, match=missing):
            objective.loss(batch["features"], batch["future_features"], encoder(batch["actions"]))


def test_action_encoder_shapes_and_latent_dim() -> None:
    cfg = TacoConfig()
    assert cfg.latent_dim(6) == 8 and cfg.latent_dim(1) == 2 and cfg.latent_dim(38) == 48
    assert TacoConfig(action_latent_dim=16).latent_dim(6) == 16
    encoder = ActionEncoder(6, 8)
    assert encoder(torch.zeros(5, 6)).shape == (5, 8)
    assert encoder(torch.zeros(5, 3, 6)).shape == (5, 3, 8)
    objective, _ = make(cfg)
    with pytest.raises(ValueError, match=r"\[B, 3, latent\]"):
        objective.encode_sequence(torch.zeros(5, 2, 8))


@pytest.mark.parametrize(
    "overrides",
    [
        {"horizon": 0},
        {"action_latent_dim": -1},
        {"projection_dim": 0},
        {"curl_weight": -1.0},
        {"lr": 0.0},
    ],
)
def test_config_rejects_invalid_values(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TacoConfig(**overrides)  # type: ignore[arg-type]


def test_config_round_trips_through_omegaconf() -> None:
    schema = OmegaConf.structured(TacoConfig)
    merged = OmegaConf.merge(schema, {"horizon": 5, "curl": True, "lr": 3e-4})
    cfg = OmegaConf.to_object(merged)
    assert cfg == TacoConfig(horizon=5, curl=True, lr=3e-4)
    with pytest.raises(ValueError, match="horizon"):
        OmegaConf.to_object(OmegaConf.merge(schema, {"horizon": 0}))
