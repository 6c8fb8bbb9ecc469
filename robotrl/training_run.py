"""What a training loop (``robotrl.collection``, ``robotrl.offline``, ``robotrl.onpolicy``) needs
from the run that drives it: the run's counters and parts, and its bookkeeping calls.

:class:`robotrl.trainer.Trainer` is the run; the loops are typed against :class:`TrainingRun`,
so they never import the trainer that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym

from robotrl.agents.base import Agent
from robotrl.config import TrainConfig
from robotrl.envs import BatchedEnv
from robotrl.envs.vector import VectorEnvs
from robotrl.logger import Logger
from robotrl.progress import ProgressBar
from robotrl.replay import EpisodicReplay
from robotrl.rewards.relabel import EpisodeRelabeler

#: What trains on: a vector env of processes, or a batched env of worlds.
Envs = VectorEnvs | BatchedEnv


@dataclass
class Counters:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # agent steps (one action each)
    frame: int = 0  # env frames = steps × action repeat
    episode: int = 0  # finished training episodes
    next_eval_frame: int = 0
    last_checkpoint_frame: int = 0
    last_eval_frame: int = -1  # -1: no evaluation yet


class TrainingRun(Protocol):
    """The run a training loop advances: its parts and its bookkeeping."""

    cfg: TrainConfig
    agent: Agent
    env: gym.Env
    replay: EpisodicReplay
    logger: Logger
    counters: Counters
    action_repeat: int
    num_envs: int
    batched: bool
    relabeler: EpisodeRelabeler | None

    def first_reset_seed(self) -> int | None:
        """The seed of the first training reset (None: the env's own stream, after a resume)."""
        ...

    def training_envs(self) -> Envs:
        """The vector or batched env that training collects from (built on first use)."""
        ...

    def run_updates(self, step: int, update_metrics: dict[str, list[float]]) -> None:
        """The agent updates due at agent step ``step``, their metrics appended."""
        ...

    def log_episode(
        self,
        metrics: dict[str, float],
        episode_return: float,
        episode_length: int,
        fps: float,
        success: float | None,
        progress: ProgressBar,
    ) -> None:
        """Count a finished training episode and write its row of ``train.csv``."""
        ...

    def evaluate_if_due(self) -> None:
        """Evaluate when the frame counter has reached the next evaluation frame."""
        ...

    def checkpoint_if_due(self) -> None:
        """Checkpoint when ``checkpoint_every_frames`` have passed since the last one."""
        ...
