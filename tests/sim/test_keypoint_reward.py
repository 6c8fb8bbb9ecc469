"""The keypoint reward on the built-in reach task: real MuJoCo renders, the packaged preset.

The scripted proposer finds the green target disc in the first rendered frame, the top camera's
model (built from MuJoCo's camera) lifts it to the floor, and progress is read from proprio."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from hydra import compose, initialize_config_module

from robotrl.builders import build_env, to_train_config
from robotrl.config import register_configs
from robotrl.rewards.keypoints import KeypointReward
from robotrl.rewards.wrappers import RewardWrapper, find_reward_wrapper
from robotrl_sim.builtin.reach import ReachEnv, scripted_action
from robotrl_sim.cameras import camera_model

SIZE = 64


def reward_env(seed: int, *overrides: str) -> tuple[RewardWrapper, ReachEnv]:
    register_configs()
    preset = ["+reward=keypoints_builtin_reach", f"env.image_size={SIZE}"]
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        cfg = to_train_config(compose("train", overrides=[*preset, *overrides]))
    env = build_env(cfg.task, cfg.env, seed)
    wrapper = find_reward_wrapper(env)
    assert wrapper is not None and isinstance(wrapper.model, KeypointReward)
    return wrapper, env.unwrapped  # type: ignore[return-value]


def test_preset_camera_equals_mujocos_top_camera_and_finds_the_target() -> None:
    wrapper, reach = reward_env(seed=3)
    wrapper.reset(seed=3)
    model = wrapper.model
    assert isinstance(model, KeypointReward) and model.path is not None
    mujoco_camera = camera_model(reach._model, reach._data, "top", height=SIZE, width=SIZE)
    np.testing.assert_allclose(
        np.array(mujoco_camera.rotation), np.array(model.camera.rotation), atol=1e-9
    )
    np.testing.assert_allclose(mujoco_camera.position, model.camera.position, atol=1e-9)
    assert mujoco_camera.orthographic and mujoco_camera.fovy == model.camera.fovy
    # The waypoint lifted from the rendered green blob is the target's true position.
    assert model.path.shape == (1, 2)
    np.testing.assert_allclose(model.path[0], reach.target_position, atol=0.01)


def rollout(seed: int) -> tuple[RewardWrapper, list[float], list[np.ndarray]]:
    wrapper, reach = reward_env(seed)
    obs, _ = wrapper.reset(seed=seed)
    scores, proprios = [float(wrapper.raw_score(obs))], [obs["proprio"]]
    for _ in range(25):
        obs, *_ = wrapper.step(scripted_action(reach))
        scores.append(float(wrapper.raw_score(obs)))
        proprios.append(obs["proprio"])
    return wrapper, scores, proprios


def test_progress_rises_monotonically_along_a_scripted_rollout_and_not_a_shuffled_one() -> None:
    for seed in (0, 1, 2):
        wrapper, scores, proprios = rollout(seed)
        steps = np.diff(scores)
        assert steps.min() > -1e-3, f"seed {seed}: progress fell by {-steps.min():.4f}"
        assert scores[0] < -0.05 and scores[-1] == 0.0  # from -L to the target disc
        # The same states in shuffled order: scored in one batch (what relabelling does).
        order = np.random.default_rng(seed).permutation(len(proprios))
        shuffled = wrapper.model.score(
            torch.zeros(len(order), 3, SIZE, SIZE, dtype=torch.uint8),
            torch.as_tensor(np.stack(proprios)[order]),
        ).numpy()
        np.testing.assert_allclose(np.sort(shuffled), np.sort(scores), atol=1e-6)
        assert np.diff(shuffled).min() < -0.05


def test_the_shaped_reward_telescopes_to_the_progress_gained() -> None:
    _, scores, _ = rollout(seed=5)
    wrapper2, reach = reward_env(5, "task.reward.success_reward=null")
    assert wrapper2.as_potential and wrapper2.weight == 10.0
    wrapper2.reset(seed=5)
    total, discount = 0.0, 1.0
    for _ in range(25):
        _, reward, *_ = wrapper2.step(scripted_action(reach))
        total += discount * float(reward)
        discount *= wrapper2.discount
    # Σ γ^t (γ Φ(o_{t+1}) − Φ(o_t)) = γ^T Φ(o_T) − Φ(o_0), times the weight.
    expected = wrapper2.weight * (discount * scores[-1] - scores[0])
    assert abs(total - expected) < 1e-4


def test_the_preset_pays_the_success_reward_on_the_disc_and_the_gain_elsewhere() -> None:
    """The preset's reward, step by step, from the raw scores of the same rollout: 1 on the
    disc (score 0), else 10 × (γ Φ(o') − Φ(o))."""
    _, scores, _ = rollout(seed=5)
    wrapper, reach = reward_env(5)
    wrapper.reset(seed=5)
    rewards = [float(wrapper.step(scripted_action(reach))[1]) for _ in range(25)]
    gamma = wrapper.discount
    expected = [
        1.0 if after == 0.0 else 10.0 * (gamma * after - before)
        for before, after in itertools.pairwise(scores)
    ]
    np.testing.assert_allclose(rewards, expected, atol=1e-5)
    assert 0 < expected.count(1.0) < 25  # the rollout is scored both ways
