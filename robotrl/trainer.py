"""The training loop: collect, learn, evaluate, checkpoint, resume."""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import robotrl
from robotrl.agents import class_path
from robotrl.agents.base import Agent
from robotrl.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from robotrl.evaluation import run_episodes, summarize
from robotrl.logger import Logger
from robotrl.plots import plot_learning_curve
from robotrl.progress import ProgressBar
from robotrl.replay import EpisodicReplay
from robotrl.video import VideoRecorder

log = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """A loss or metric became NaN/Inf; the last checkpoint on disk is untouched."""


@dataclass
class Counters:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # agent steps (one action each)
    frame: int = 0  # env frames = steps × action repeat
    episode: int = 0  # finished training episodes
    next_eval_frame: int = 0
    last_checkpoint_frame: int = 0


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path | None
    learning_curve: Path | None
    video: Path | None
    final_eval: dict[str, float]
    resumed_from: int | None


class Trainer:
    """Runs one training job. The CLI builds the parts; tests can build them from fakes."""

    def __init__(
        self,
        cfg: Any,
        run_dir: Path,
        *,
        env: gym.Env,
        eval_env: gym.Env,
        agent: Agent,
        replay: EpisodicReplay,
        logger: Logger,
        config_record: dict[str, Any],
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.env = env
        self.eval_env = eval_env
        self.agent = agent
        self.replay = replay
        self.logger = logger
        self.config_record = config_record
        self.counters = Counters(next_eval_frame=0)
        self.action_repeat = int(cfg.env.action_repeat)
        self.checkpoint_dir = run_dir / "checkpoints"
        self.last_checkpoint: Path | None = None
        self.last_video: Path | None = None
        self.last_eval: dict[str, float] = {}

    # -- resume ----------------------------------------------------------------------------

    def resume(self) -> int | None:
        """Continue from the newest intact checkpoint in the run directory, if there is one."""
        checkpoint, skipped = latest_checkpoint(self.checkpoint_dir)
        for note in skipped:
            log.warning("skipping unreadable checkpoint: %s", note)
        if checkpoint is None:
            return None
        self._restore(checkpoint)
        self.logger.truncate_after(self.counters.frame)
        log.info("resumed from %s at frame %d", checkpoint.path, self.counters.frame)
        return self.counters.frame

    def _restore(self, checkpoint: Checkpoint) -> None:
        meta = checkpoint.meta
        expected = class_path(type(self.agent))
        if meta.get("agent_class") != expected:
            raise CheckpointError(
                f"checkpoint {checkpoint.path} was written by {meta.get('agent_class')}, "
                f"not {expected}; use a new run directory (exp_name=...) for a different agent"
            )
        try:
            self.agent.load_state_dict(checkpoint.state["agent"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"checkpoint {checkpoint.path} does not fit this agent: {err}"
            ) from err
        self.counters = Counters(**meta["counters"])
        self.replay.restore(int(meta["replay_episodes"]))
        self.replay.set_rng_state(meta["rng"]["replay"])
        torch.set_rng_state(checkpoint.state["rng"]["torch"])
        self.last_checkpoint = checkpoint.path

    def save(self) -> Path:
        meta = {
            "robotrl_version": robotrl.__version__,
            "agent_name": self.cfg.agent.name,
            "agent_class": class_path(type(self.agent)),
            "config": self.config_record,
            "counters": vars(self.counters),
            "replay_episodes": self.replay.num_episodes,
            "rng": {"replay": self.replay.rng_state()},
        }
        state = {"agent": self.agent.state_dict(), "rng": {"torch": torch.get_rng_state()}}
        path = save_checkpoint(self.checkpoint_dir, self.counters.frame, state, meta)
        prune_checkpoints(self.checkpoint_dir, int(self.cfg.keep_checkpoints))
        self.counters.last_checkpoint_frame = self.counters.frame
        self.last_checkpoint = path
        return path

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        recorder = None
        if self.cfg.logger.save_video:
            recorder = VideoRecorder(self.run_dir / "videos")
            recorder.start()
        results = run_episodes(
            self.eval_env,
            self.agent,
            episodes=int(self.cfg.eval_episodes),
            step=self.counters.step,
            seed=eval_reset_seed(int(self.cfg.seed)),
            recorder=recorder,
        )
        summary = summarize(results)
        if recorder is not None:
            self.last_video = recorder.save(f"eval_{self.counters.frame:09d}")
        self.logger.log("eval", {**summary, "step": self.counters.step}, frame=self.counters.frame)
        self.last_eval = summary
        return summary

    # -- main loop -------------------------------------------------------------------------

    def train(self) -> TrainResult:
        resumed_from = self.resume()
        cfg, counters = self.cfg, self.counters
        if resumed_from is not None and counters.frame >= cfg.frames:
            log.info("run already complete at frame %d; nothing to do", counters.frame)
            return self._result(resumed_from)
        seed_steps = int(cfg.seed_frames) // self.action_repeat
        update_every = self.agent.update_every_steps
        progress = ProgressBar(int(cfg.frames), counters.frame, disable=not cfg.logger.progress_bar)
        update_metrics: dict[str, list[float]] = defaultdict(list)

        obs, _ = self.env.reset(seed=int(cfg.seed) * 100_003 + counters.episode)
        self.replay.start_episode(obs)
        episode_return, episode_length, episode_start = 0.0, 0, time.perf_counter()

        while counters.frame < cfg.frames:
            if counters.frame >= counters.next_eval_frame:
                self.evaluate()
                counters.next_eval_frame += int(cfg.eval_every_frames)

            action = self.agent.act(obs, counters.step, eval_mode=False)
            if not np.all(np.isfinite(action)):
                raise TrainingDivergedError(
                    f"the agent produced a non-finite action {action} at frame {counters.frame}; "
                    "the last checkpoint is intact"
                )
            if (
                counters.step >= seed_steps
                and counters.step % update_every == 0
                and len(self.replay) > 0
            ):
                batch = self.replay.sample(
                    int(cfg.replay.batch_size), horizon=self.agent.replay_horizon
                )
                for name, value in self.agent.update(batch, counters.step).items():
                    update_metrics[name].append(value)
            obs, reward, terminated, truncated, info = self.env.step(action)
            if not math.isfinite(float(reward)):
                raise TrainingDivergedError(
                    f"the env returned a non-finite reward ({reward}) at frame {counters.frame}; "
                    "nothing was stored, the last checkpoint is intact"
                )
            self.replay.add(action, float(reward), obs, bool(terminated), bool(truncated))
            episode_return += float(reward)
            episode_length += 1
            counters.step += 1
            counters.frame += self.action_repeat

            if terminated or truncated:
                counters.episode += 1
                self.agent.observe_episode(episode_return)
                elapsed = time.perf_counter() - episode_start
                metrics = {name: float(np.mean(v)) for name, v in update_metrics.items()}
                _check_finite(metrics, counters.frame)
                metrics |= {
                    "episode_return": episode_return,
                    "episode_length": episode_length,
                    "episode": counters.episode,
                    "step": counters.step,
                    "fps": episode_length * self.action_repeat / max(elapsed, 1e-9),
                    "buffer_size": len(self.replay),
                }
                if "success" in info:
                    metrics["success"] = float(info["success"])
                self.logger.log("train", metrics, frame=counters.frame)
                progress.update(
                    counters.frame, episode_return=episode_return, episode=counters.episode
                )
                update_metrics.clear()
                if counters.frame - counters.last_checkpoint_frame >= cfg.checkpoint_every_frames:
                    self.save()
                obs, _ = self.env.reset()
                self.replay.start_episode(obs)
                episode_return, episode_length, episode_start = 0.0, 0, time.perf_counter()

        progress.close()
        self.evaluate()
        self.save()
        return self._result(resumed_from)

    def _result(self, resumed_from: int | None) -> TrainResult:
        cfg = self.cfg
        curve = plot_learning_curve(
            self.run_dir / "eval.csv",
            self.run_dir / "learning_curve.png",
            title=f"{cfg.agent.name} on {cfg.task.suite}/{cfg.task.name} (seed {cfg.seed})",
        )
        return TrainResult(
            run_dir=self.run_dir,
            checkpoint=self.last_checkpoint,
            learning_curve=curve,
            video=self.last_video,
            final_eval=self.last_eval,
            resumed_from=resumed_from,
        )


def eval_reset_seed(run_seed: int) -> int:
    """First reset seed of the periodic evaluations (episode i uses this + i).

    Every evaluation of a run replays the same start states, so points on the learning curve
    differ by the policy only; the offset keeps them apart from the training episodes' seeds.
    """
    return run_seed * 1000 + 10**6


def _check_finite(metrics: dict[str, float], frame: int) -> None:
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:
        raise TrainingDivergedError(
            f"non-finite training metrics at frame {frame}: {bad}; "
            "the last checkpoint is intact (lower the learning rate or check the rewards)"
        )
