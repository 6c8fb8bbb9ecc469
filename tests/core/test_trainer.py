"""The training loop on a fake pixel env: counters, logs, checkpoints and in-process resume."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.agents.mentor import MentorAgent, MentorConfig
from robotrl.agents.taco import TacoConfig
from robotrl.checkpoint import TENSORS_FILE, CheckpointError, list_checkpoints, load_checkpoint
from robotrl.config import EnvConfig, LoggerConfig, ReplayConfig, TaskConfig, TrainConfig
from robotrl.envs.vector import VectorEnvs
from robotrl.envs.wrappers import FrameStack
from robotrl.logger import Logger
from robotrl.nn.moe import MoEConfig
from robotrl.progress import ProgressBar
from robotrl.replay import EpisodicReplay
from robotrl.schedules import LinearSchedule
from robotrl.trainer import (
    Trainer,
    TrainingDivergedError,
    global_rng_state,
    set_global_rng_state,
)
from tests.core.fakes import DotEnv


def make_cfg(frames: int, **agent_overrides) -> TrainConfig:
    agent = DrQV2Config(
        hidden_dim=16,
        feature_dim=8,
        num_expl_steps=20,
        stddev_schedule=LinearSchedule(1.0, 0.1, 200),
        **agent_overrides,
    )
    return TrainConfig(
        agent=agent,
        task=TaskConfig(suite="fake", name="dot"),
        env=EnvConfig(image_size=24, action_repeat=1, frame_stack=3),
        replay=ReplayConfig(capacity=10_000, batch_size=8, nstep=3),
        logger=LoggerConfig(tensorboard=False, progress_bar=False, save_video=True),
        frames=frames,
        seed_frames=20,
        eval_every_frames=50,
        eval_episodes=2,
        checkpoint_every_frames=30,
        keep_checkpoints=2,
    )


def make_trainer(
    cfg: TrainConfig,
    run_dir: Path,
    agent_cls=DrQV2Agent,
    nan_reward: bool = False,
    train_envs: VectorEnvs | None = None,
    eval_envs: VectorEnvs | None = None,
) -> Trainer:
    torch.manual_seed(0)
    env = FrameStack(DotEnv(nan_reward=nan_reward), 3)
    eval_env = FrameStack(DotEnv(render_mode="rgb_array"), 3)
    agent = agent_cls(cfg.agent, obs_shape=(9, 24, 24), action_dim=1, device="cpu")
    replay = EpisodicReplay(
        capacity=cfg.replay.capacity,
        frame_stack=3,
        nstep=cfg.replay.nstep,
        discount=cfg.agent.discount,
        directory=run_dir / "replay",
        seed=cfg.seed,
    )
    logger = Logger(run_dir, tensorboard=False)
    return Trainer(
        cfg,
        run_dir,
        env=env,
        eval_env=eval_env,
        agent=agent,
        replay=replay,
        logger=logger,
        config_record={"note": "test"},
        train_envs=train_envs,
        eval_envs=eval_envs,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_training_run_writes_logs_checkpoints_video_and_curve(tmp_path):
    trainer = make_trainer(make_cfg(frames=100), tmp_path)
    result = trainer.train()
    trainer.logger.close()
    assert trainer.counters.frame == 100 and trainer.counters.step == 100
    assert trainer.counters.episode == 10 and trainer.replay.num_episodes == 10
    train_rows = read_csv(tmp_path / "train.csv")
    assert [int(r["frame"]) for r in train_rows] == list(range(10, 101, 10))
    assert "critic_loss" in train_rows[-1] and float(train_rows[-1]["buffer_size"]) == 100
    eval_rows = read_csv(tmp_path / "eval.csv")
    assert [int(r["frame"]) for r in eval_rows] == [0, 50, 100]  # on schedule, then final
    assert result.learning_curve is not None and result.learning_curve.stat().st_size > 1000
    assert result.video is not None and result.video.suffix == ".mp4"
    assert len(list((tmp_path / "replay").glob("*.npz"))) == 10
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert len(checkpoints) == 2 and load_checkpoint(checkpoints[-1]).frame == 100


def test_resume_continues_counters_replay_and_logs(tmp_path):
    first = make_trainer(make_cfg(frames=60), tmp_path)
    first.train()
    first.logger.close()
    second = make_trainer(make_cfg(frames=120), tmp_path)
    result = second.train()
    second.logger.close()
    assert result.resumed_from == 60
    assert (second.counters.frame, second.counters.episode) == (120, 12)
    assert second.replay.num_episodes == 12 and len(second.replay) == 120
    frames = [int(r["frame"]) for r in read_csv(tmp_path / "train.csv")]
    assert frames == list(range(10, 121, 10))  # no duplicated or missing rows


def test_extending_a_finished_run_does_not_evaluate_its_last_frame_again(tmp_path):
    """The final evaluation of a run counts as the one due at that frame: a run extended from
    100 to 150 frames (eval every 50) evaluates at 150 next, not at 100 again."""
    first = make_trainer(make_cfg(frames=100), tmp_path)
    first.train()
    first.logger.close()
    second = make_trainer(make_cfg(frames=150), tmp_path)
    second.train()
    second.logger.close()
    assert [int(r["frame"]) for r in read_csv(tmp_path / "eval.csv")] == [0, 50, 100, 150]


def test_rerunning_a_finished_run_changes_nothing(tmp_path):
    first = make_trainer(make_cfg(frames=40), tmp_path)
    first.train()
    first.logger.close()
    eval_before = (tmp_path / "eval.csv").read_text()
    again = make_trainer(make_cfg(frames=40), tmp_path)
    result = again.train()
    again.logger.close()
    assert result.resumed_from == 40 and again.counters.frame == 40
    assert (tmp_path / "eval.csv").read_text() == eval_before


def test_resume_into_a_different_agent_class_is_a_clear_error(tmp_path):
    make_trainer(make_cfg(frames=30), tmp_path).train()

    class OtherAgent(DrQV2Agent):
        """Same networks, different class: the checkpoint must still refuse it."""

    with pytest.raises(CheckpointError, match=r"was written by robotrl\.agents\.drqv2:DrQV2Agent"):
        make_trainer(make_cfg(frames=60), tmp_path, agent_cls=OtherAgent).train()


def test_nan_reward_stops_training_with_a_clear_error_before_it_is_stored(tmp_path):
    trainer = make_trainer(make_cfg(frames=200), tmp_path, nan_reward=True)
    with pytest.raises(TrainingDivergedError, match=r"non-finite reward \(nan\) at frame 0"):
        trainer.train()
    assert trainer.replay.num_episodes == 0


def test_diverging_update_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    trainer = make_trainer(make_cfg(frames=200), tmp_path)
    original_update = trainer.agent.update

    def update_that_diverges(batch, step):
        metrics = original_update(batch, step)
        return metrics | ({"critic_loss": float("inf")} if step >= 60 else {})

    trainer.agent.update = update_that_diverges  # type: ignore[method-assign]
    with pytest.raises(
        TrainingDivergedError, match=r"non-finite training metrics at frame \d+: \['critic_loss'\]"
    ):
        trainer.train()
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert checkpoints and load_checkpoint(checkpoints[-1]).frame <= 60


def test_trainer_reports_every_finished_episode_to_the_agent(tmp_path):
    cfg = make_cfg(frames=60)
    moe = MoEConfig(num_experts=4, top_k=2, expert_hidden_dim=8, gate_hidden_dim=8)
    cfg.agent = MentorConfig(hidden_dim=16, feature_dim=8, num_expl_steps=20, snapshots=3, moe=moe)
    trainer = make_trainer(cfg, tmp_path, agent_cls=MentorAgent)
    trainer.train()
    trainer.logger.close()
    returns = [float(row["episode_return"]) for row in read_csv(tmp_path / "train.csv")]
    assert len(returns) == 6
    assert sorted(trainer.agent.snapshot_returns) == sorted(returns)[-3:]


def test_trainer_samples_the_horizon_the_agent_asks_for(tmp_path):
    taco = TacoConfig(horizon=3, projection_dim=8, projection_hidden_dim=16)
    trainer = make_trainer(make_cfg(frames=60, aux="taco", taco=taco), tmp_path)
    assert trainer.agent.replay_horizon == 3
    trainer.train()
    trainer.logger.close()
    rows = read_csv(tmp_path / "train.csv")
    assert all(float(row["taco_contrastive_loss"]) > 0 for row in rows if row["critic_loss"])


def test_training_collection_tells_the_agent_when_episodes_begin(tmp_path):
    """Agents with per-episode acting state (Dreamer's latent, action chunks) must hear of
    every training reset: ``begin_episodes`` once before each episode's first action."""
    cfg = make_cfg(frames=45)
    cfg.eval_every_frames = 10**6  # evaluations only at the start and the end
    trainer = make_trainer(cfg, tmp_path)
    calls: list[int] = []
    acted: list[int] = []
    original_act = trainer.agent.act
    trainer.agent.begin_episodes = lambda mask=None: calls.append(len(acted))  # type: ignore[method-assign]

    def act(obs, step, eval_mode):
        if not eval_mode:
            acted.append(step)
        return original_act(obs, step, eval_mode)

    trainer.agent.act = act  # type: ignore[method-assign]
    trainer.train()
    trainer.logger.close()
    # DotEnv episodes are 10 steps: training episodes begin before actions 0, 10, 20, 30, 40;
    # the evaluations (before action 0 and after the last, 45) begin their own.
    assert set(calls) == {0, 10, 20, 30, 40, 45}


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_says_so(tmp_path, caplog):
    first = make_trainer(make_cfg(frames=60), tmp_path)
    first.train()
    first.logger.close()
    newest = list_checkpoints(tmp_path / "checkpoints")[-1]
    assert newest.name == "step_000000000060"
    data = bytearray((newest / TENSORS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (newest / TENSORS_FILE).write_bytes(bytes(data))
    second = make_trainer(make_cfg(frames=60), tmp_path)
    with caplog.at_level("WARNING", logger="robotrl.trainer"):
        result = second.train()
    second.logger.close()
    assert result.resumed_from == 30
    assert "step_000000000060 is corrupt" in caplog.text
    assert "resuming from the newest intact checkpoint, step_000000000030" in caplog.text
    assert load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1]).frame == 60
    for checkpoint in list_checkpoints(tmp_path / "checkpoints"):
        (checkpoint / TENSORS_FILE).write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*; move the run"):
        make_trainer(make_cfg(frames=90), tmp_path).train()


def test_a_run_stopped_in_its_final_evaluation_finishes_it_on_resume(tmp_path):
    first = make_trainer(make_cfg(frames=60), tmp_path)
    original_evaluate = first.evaluate

    def evaluate_then_stop_at_the_end():
        if first.counters.frame == 60:
            raise KeyboardInterrupt  # as if killed: the checkpoint at frame 60 is already on disk
        return original_evaluate()

    first.evaluate = evaluate_then_stop_at_the_end  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        first.train()
    first.logger.close()
    second = make_trainer(make_cfg(frames=60), tmp_path)
    assert second.train().resumed_from == 60
    second.logger.close()
    assert [int(r["frame"]) for r in read_csv(tmp_path / "eval.csv")] == [0, 50, 60]


def test_the_progress_bar_follows_frames_not_episode_ends(tmp_path, monkeypatch):
    frames_shown: list[int] = []

    class RecordingBar(ProgressBar):
        def update(self, frame: int, **stats: float) -> None:
            frames_shown.append(frame)
            super().update(frame, **stats)

    monkeypatch.setattr("robotrl.trainer.ProgressBar", RecordingBar)
    trainer = make_trainer(make_cfg(frames=25), tmp_path)  # DotEnv episodes are 10 frames
    trainer.train()
    trainer.logger.close()
    assert sorted(set(frames_shown)) == list(range(1, 26))


def test_global_rng_state_round_trips_through_json():
    saved = json.loads(json.dumps(global_rng_state()))
    expected = (random.random(), np.random.rand())
    random.seed(123), np.random.seed(123)
    set_global_rng_state(*saved)
    assert (random.random(), np.random.rand()) == expected
