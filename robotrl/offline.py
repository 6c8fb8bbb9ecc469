"""Offline training: agents that learn from a fixed demo buffer (``Agent.offline``, e.g. BC).

The trainer runs :func:`train_offline` instead of a collection loop: no env is stepped for
training, each iteration is one agent update on a batch of the demo buffer, counted as one agent
step and ``action_repeat`` frames (so ``frames``, ``eval_every_frames`` and
``checkpoint_every_frames`` schedule an offline run as they do an online one). Evaluation,
checkpoints, logs and resume are the trainer's own. The demo buffer is read-only: a checkpoint
records only its sampling RNG, and a resumed run reloads the demos from their directory.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from robotrl.collection import mean_metrics
from robotrl.demos import load_demos
from robotrl.progress import ProgressBar
from robotrl.replay import EpisodicReplay
from robotrl.training_run import TrainingRun

#: A row of ``train.csv`` (mean update metrics) every this many updates.
LOG_EVERY_UPDATES = 100


def demo_replay(cfg: Any, pixels_shape: tuple[int, ...]) -> EpisodicReplay:
    """The demo buffer of an offline run: every episode in ``cfg.agent.demos``."""
    demos = getattr(cfg.agent, "demos", None)
    if not demos:
        raise ValueError(
            f"agent={cfg.agent.name} learns from demonstrations: set agent.demos=PATH "
            "(a directory of episode_*.npz written by robotrl.demos.collect_demos)"
        )
    return load_demos(
        Path(demos),
        frame_stack=int(cfg.env.frame_stack),
        nstep=int(cfg.replay.nstep),
        discount=float(cfg.agent.discount),
        seed=int(cfg.seed),
        pixels_shape=pixels_shape,
    )


def train_offline(trainer: TrainingRun, progress: ProgressBar) -> None:
    """Update the agent on demo batches until ``cfg.frames`` (module docstring)."""
    cfg, counters, agent, replay = trainer.cfg, trainer.counters, trainer.agent, trainer.replay
    update_metrics: dict[str, list[float]] = defaultdict(list)
    batch_size = int(cfg.replay.batch_size)
    while counters.frame < cfg.frames:
        trainer.evaluate_if_due()
        batch = agent.sample_batch(replay, batch_size)
        for name, value in agent.update(batch, counters.step).items():
            update_metrics[name].append(value)
        counters.step += 1
        counters.frame += trainer.action_repeat
        if counters.step % LOG_EVERY_UPDATES == 0 or counters.frame >= cfg.frames:
            metrics = mean_metrics(update_metrics, counters.frame)
            trainer.logger.log("train", metrics | {"step": counters.step}, frame=counters.frame)
            progress.update(counters.frame, **metrics)
            update_metrics.clear()
            trainer.checkpoint_if_due()
