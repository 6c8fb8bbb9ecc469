"""Relabelling finished episodes in replay (VLM-RM pattern) gives the wrapper's online rewards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robotrl.checkpoint import list_checkpoints, load_checkpoint
from robotrl.config import RewardConfig
from robotrl.envs.wrappers import FrameStack
from robotrl.replay import load_episode
from robotrl.rewards.base import RewardModel
from robotrl.rewards.classifier import ClassifierConfig, SuccessClassifier
from robotrl.rewards.relabel import EpisodeRelabeler, build_relabeler
from robotrl.rewards.wrappers import RewardWrapper
from tests.core.fakes import DotEnv
from tests.core.test_batched_training import (  # noqa: F401 (batched_suite is a fixture)
    SIZE,
    batched_cfg,
    batched_suite,
    batched_trainer,
)
from tests.core.test_trainer import make_cfg, make_trainer


class ColumnReward(RewardModel):
    """Where the dot's column is, in [0, 1]: a score that differs at every step."""

    def score(self, frames, proprio=None, instruction=None):
        weights = torch.arange(frames.shape[-1], dtype=torch.float32)
        profile = frames.float().mean(dim=(1, 2))  # [B, W]
        return (profile * weights).sum(1) / profile.sum(1) / (frames.shape[-1] - 1)


class JudgedColumnReward(ColumnReward):
    """Success when the dot is near the right edge."""

    def is_success(self, scores):
        return scores > 0.9


class TerminatingDotEnv(DotEnv):
    """Ends by termination, so the potential's absorbing state is exercised."""

    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, truncated, False, info


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "replace"},
        {"mode": "add", "weight": 0.5, "clip": 0.4},
        {"mode": "replace", "as_potential": True, "discount": 0.9},
        {"mode": "replace", "as_potential": True, "success_reward": 2.0},
    ],
    ids=["replace", "add-clip", "potential", "potential-success"],
)
@pytest.mark.parametrize("env_cls", [DotEnv, TerminatingDotEnv], ids=["truncated", "terminated"])
def test_relabelled_rewards_equal_the_wrappers_online_rewards(settings, env_cls) -> None:
    online = RewardWrapper(
        FrameStack(env_cls(episode_steps=12), 3), JudgedColumnReward(), **settings
    )
    obs, _ = online.reset(seed=4)
    frames, env_rewards, online_rewards, done = [obs["pixels"][-3:]], [], [], False
    rng = np.random.default_rng(0)
    while not done:
        obs, reward, terminated, truncated, info = online.step(rng.uniform(-1, 1, 1))
        frames.append(obs["pixels"][-3:])
        env_rewards.append(info["env_reward"])
        online_rewards.append(reward)
        done = terminated or truncated
    episode = {
        "frames": np.stack(frames),
        "reward": np.array(env_rewards, np.float32),
        "action": np.zeros((len(env_rewards), 1), np.float32),
        "terminated": np.array(terminated),
    }
    relabelled = EpisodeRelabeler(JudgedColumnReward(), **settings)(episode)
    np.testing.assert_allclose(relabelled, online_rewards, atol=1e-6)
    assert np.ptp(relabelled) > 0.05  # the check is not between two constant sequences


def test_trainer_stores_relabelled_rewards_and_checkpoints_their_statistics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    classifier_dir = SuccessClassifier(ClassifierConfig(image_size=24)).save(tmp_path / "clf")
    cfg = make_cfg(frames=60)
    cfg.task.reward = RewardConfig(
        kind="success_classifier",
        weight=2.0,
        relabel=True,
        normalize=True,
        options={"path": str(classifier_dir)},
    )
    trainer = make_trainer(cfg, tmp_path / "run")
    trainer.train()
    trainer.logger.close()
    classifier = SuccessClassifier.load(classifier_dir)
    files = sorted((tmp_path / "run" / "replay").glob("episode_*.npz"))
    assert len(files) >= 5
    all_scores = []
    for path in files:
        episode = load_episode(path)
        scores = classifier.score(torch.as_tensor(episode["frames"][1:])).double().numpy()
        all_scores.append(scores)
        assert episode["reward"].shape == scores.shape
    # Normalised with statistics of all episodes so far: the last episode's stored rewards are
    # 2 * (s - mean) / std with the mean and std of every score seen up to then.
    seen = np.concatenate(
        [
            classifier.score(torch.as_tensor(load_episode(p)["frames"])).double().numpy()
            for p in files
        ]
    )
    last = load_episode(files[-1])
    expected = 2.0 * (all_scores[-1] - seen.mean()) / np.sqrt(seen.var() + 1e-8)
    np.testing.assert_allclose(last["reward"], expected, atol=1e-4)
    meta = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1]).meta
    assert meta["reward"]["stats"]["count"] == pytest.approx(trainer.relabeler.stats.count)
    assert meta["reward"]["stats"]["count"] == len(seen)  # every score of every stored episode


def test_relabel_refuses_terminate_on_success() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        RewardConfig(kind="staged", relabel=True, terminate_on_success=True)
    cfg = RewardConfig(kind="staged", terminate_on_success=True)
    with pytest.raises(ValueError, match="cannot end an episode"):
        build_relabeler(cfg)


@pytest.mark.usefixtures("batched_suite")
def test_batched_worlds_get_relabelled_rewards(tmp_path: Path) -> None:
    """On a batched suite (no per-step wrapper possible) each world's episodes are relabelled."""
    torch.manual_seed(0)
    classifier_dir = SuccessClassifier(ClassifierConfig(image_size=SIZE)).save(tmp_path / "clf")
    cfg = batched_cfg(frames=80, num_worlds=4)
    cfg.task.reward = RewardConfig(
        kind="success_classifier", weight=3.0, relabel=True, options={"path": str(classifier_dir)}
    )
    trainer = batched_trainer(cfg, tmp_path / "run", eval_worlds=2)
    trainer.train()
    trainer.logger.close()
    classifier = SuccessClassifier.load(classifier_dir)
    files = sorted((tmp_path / "run" / "replay").glob("episode_*.npz"))
    assert len(files) >= 4
    for path in files:
        episode = load_episode(path)
        expected = 3.0 * classifier.score(torch.as_tensor(episode["frames"][1:])).numpy()
        np.testing.assert_allclose(episode["reward"], expected, atol=1e-6)
