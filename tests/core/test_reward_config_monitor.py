"""``task.reward`` through Hydra and build_env, the hacking monitor, and the trainer hook."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from robotrl.builders import build_env, to_train_config
from robotrl.checkpoint import list_checkpoints, load_checkpoint
from robotrl.config import EnvConfig, TaskConfig, register_configs
from robotrl.envs.wrappers import FrameStack
from robotrl.rewards import (
    EpisodeRewards,
    HackingMonitor,
    RewardConfig,
    RewardModel,
    RewardWrapper,
    hacking_suspected,
)
from robotrl.rewards.classifier import ClassifierConfig, SuccessClassifier
from tests.core.fakes import DotEnv
from tests.core.test_trainer import make_cfg, make_trainer


@pytest.fixture()
def saved_classifier(tmp_path):
    torch.manual_seed(0)
    return SuccessClassifier(ClassifierConfig(image_size=32)).save(tmp_path / "clf")


def test_reward_group_composes_and_build_env_applies_it(saved_classifier):
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        default = to_train_config(compose("train"))
        with_reward = to_train_config(
            compose(
                "train",
                overrides=[
                    "+reward=success_classifier",
                    f"task.reward.options.path={saved_classifier}",
                    "task.reward.weight=2.0",
                ],
            )
        )
        by_fields = to_train_config(
            compose(
                "train",
                overrides=[
                    "+reward=clip_goal",
                    "task.reward.mode=add",
                    "task.reward.options.model_path=/nowhere",
                    "task.reward.options.target_prompts=[a ball on a disc]",
                ],
            )
        )
    assert default.task.reward is None
    reward = with_reward.task.reward
    assert isinstance(reward, RewardConfig)
    assert (reward.kind, reward.mode, reward.weight, reward.terminate_on_success) == (
        "success_classifier",
        "replace",
        2.0,
        True,
    )
    assert by_fields.task.reward is not None and by_fields.task.reward.mode == "add"

    plain = build_env(default.task, default.env, seed=0)
    assert isinstance(plain, FrameStack)  # default behaviour unchanged
    wrapped = build_env(with_reward.task, with_reward.env, seed=0)
    assert isinstance(wrapped, RewardWrapper) and isinstance(wrapped.env, FrameStack)
    assert isinstance(wrapped.model, SuccessClassifier) and wrapped.weight == 2.0
    wrapped.reset(seed=0)
    _, reward_value, _, _, info = wrapped.step(np.zeros(2, np.float32))
    assert float(reward_value) in (0.0, 2.0) and "env_reward" in info and "success" in info
    plain.close()
    wrapped.close()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_env(by_fields.task, by_fields.env, seed=0)


def test_bad_reward_configs_are_rejected():
    with pytest.raises(ValueError, match="unknown reward kind"):
        RewardConfig(kind="magic")
    with pytest.raises(ValueError, match="mode"):
        RewardConfig(kind="clip_goal", mode="multiply")
    with pytest.raises(ValueError, match=r"needs task\.reward\.relabel=true"):
        build_env(
            TaskConfig("warp", "reach", reward=RewardConfig(kind="clip_goal")), EnvConfig(), 0
        )


def episodes(proxy: float, success_rate: float, count: int = 10) -> list[EpisodeRewards]:
    successes = round(success_rate * count)
    return [EpisodeRewards(proxy, 5.0, float(index < successes), 50) for index in range(count)]


def test_hacked_run_raises_the_flag_and_healthy_runs_do_not():
    hacked = HackingMonitor()
    flags = [
        hacked.observe(episodes(p, s))["hacking_flag"]
        for p, s in [(10, 0.5), (20, 0.8), (30, 0.6), (40, 0.3)]
    ]
    assert flags == [0.0, 0.0, 0.0, 1.0]  # proxy up 20→30→40 while success 0.8→0.6→0.3
    row = hacked.observe(episodes(50, 0.3))
    assert row["hacking_flag"] == 0.0  # success stopped falling
    assert row["proxy_return"] == 50 and row["env_success"] == 0.3 and row["env_return"] == 5.0

    healthy = HackingMonitor()
    flags = [
        healthy.observe(episodes(p, s))["hacking_flag"]
        for p, s in [(10, 0.1), (20, 0.3), (30, 0.5), (40, 0.9)]
    ]
    assert flags == [0.0] * 4
    stalled = HackingMonitor()  # proxy falls with success: a weak policy, not hacking
    assert [
        stalled.observe(episodes(p, s))["hacking_flag"]
        for p, s in [(40, 0.9), (30, 0.5), (20, 0.3)]
    ] == [0.0] * 3
    # Without success, the true return is the truth.
    assert hacking_suspected([1, 2, 3], [3, 2, 1]) and not hacking_suspected([1, 2, 3], [1, 2, 3])
    assert not hacking_suspected([1, 2], [2, 1])  # too few evaluations


class Brightness(RewardModel):
    def score(self, frames, proprio=None, instruction=None):
        return frames.float().mean(dim=(1, 2, 3)) / 255.0


def test_trainer_logs_proxy_next_to_truth_and_checkpoints_the_statistics(tmp_path):
    cfg = make_cfg(frames=100)
    trainer = make_trainer(cfg, tmp_path)
    trainer.env = RewardWrapper(trainer.env, Brightness(), normalize=True)
    trainer.eval_env = RewardWrapper(trainer.eval_env, Brightness(), mode="add", weight=0.5)
    trainer.train()
    trainer.logger.close()
    with open(tmp_path / "eval.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 3
    for row in rows:
        proxy, env_return = float(row["proxy_return"]), float(row["env_return"])
        assert float(row["episode_return"]) == pytest.approx(proxy, rel=1e-4)
        assert proxy > env_return  # add mode: the env's return plus a positive brightness
        assert row["hacking_flag"] in ("0.0", "1.0", "0", "1")
    checkpoint = load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1])
    saved = checkpoint.meta["reward"]["stats"]
    assert saved["count"] > 50 and saved == trainer.env.state_dict()["stats"]

    resumed = make_trainer(make_cfg(frames=100), tmp_path)
    resumed.env = RewardWrapper(resumed.env, Brightness(), normalize=True)
    resumed.resume()
    assert resumed.env.stats.state_dict() == saved
    resumed.logger.close()
    assert DotEnv  # the fake env the trainer helpers use


def test_reward_with_vector_envs_is_refused_rather_than_ignored():
    cfg = make_cfg(frames=100)
    cfg.task.reward = RewardConfig(kind="clip_goal")
    cfg.num_envs = 2
    with pytest.raises(ValueError, match="num_envs=1"):
        cfg.__post_init__()
