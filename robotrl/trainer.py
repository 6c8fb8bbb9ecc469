"""The training loop: collect, learn, evaluate, checkpoint, resume.

The Trainer owns the run's parts and its bookkeeping (counters, checkpoints, evaluation, logs);
the collection loops it runs live in ``robotrl.collection``: one env (``num_envs = 1``), a vector
env of worker processes (``num_envs > 1``), or ``num_envs`` batched worlds for a batched suite
(``task=warp/...``, see ``robotrl.envs.batched``), where evaluation also runs on batched worlds.
``utd_ratio`` sets the number of agent updates per agent step for all of them. An ``offline``
agent (behaviour cloning) collects nothing: ``robotrl.offline`` runs its updates on the demo
buffer passed as ``replay``, with the same evaluation, checkpoints and resume.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, cast

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
from robotrl.collection import (
    TrainingDivergedError,
    collect_batched,
    collect_single,
    collect_vectorized,
    train_reset_seeds,
)
from robotrl.config import TrainConfig
from robotrl.envs import BatchedEnv
from robotrl.envs.batched import build_batched_env, is_batched_suite
from robotrl.envs.vector import VectorEnvs, build_vector_env, check_num_envs
from robotrl.evaluation import (
    run_episodes,
    run_episodes_batched,
    run_episodes_vectorized,
    summarize,
)
from robotrl.logger import Logger
from robotrl.offline import train_offline
from robotrl.onpolicy import train_on_policy  # on-policy agents (PPO)
from robotrl.plots import plot_learning_curve
from robotrl.progress import ProgressBar
from robotrl.replay import EpisodicReplay
from robotrl.rewards.monitor import HackingMonitor
from robotrl.rewards.relabel import EpisodeRelabeler, build_relabeler
from robotrl.rewards.wrappers import RewardWrapper, find_reward_wrapper
from robotrl.training_run import Counters, Envs
from robotrl.video import VideoRecorder

__all__ = [
    "Counters",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "eval_reset_seed",
    "train_reset_seeds",
]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path | None
    learning_curve: Path | None
    video: Path | None
    final_eval: dict[str, float]
    resumed_from: int | None


class Trainer:
    """Runs one training job. The CLI builds the parts; tests can build them from fakes.

    With ``cfg.num_envs > 1`` training collects from ``train_envs`` (a ``SAME_STEP`` vector env of
    that many copies) instead of ``env``; with ``cfg.eval_num_envs > 1`` evaluation runs on
    ``eval_envs``. Either one not given is built from ``cfg.task``/``cfg.env`` on first use and
    closed when ``train()`` returns (see :meth:`close`).

    For a batched suite both are batched envs (``robotrl.envs.batched``): ``train_envs`` has
    ``num_envs`` worlds and ``eval_envs`` ``eval_num_envs`` worlds if that is > 1, else
    ``min(eval_episodes, num_envs)``; ``env`` and ``eval_env`` are then not stepped.
    """

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
        train_envs: Envs | None = None,
        eval_envs: Envs | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.env = env
        self.eval_env = eval_env
        self.batched = is_batched_suite(cfg.task.suite)
        self.num_envs = check_num_envs(getattr(cfg, "num_envs", 1))
        self.eval_num_envs = check_num_envs(getattr(cfg, "eval_num_envs", 1), "eval_num_envs")
        if self.batched and self.eval_num_envs == 1:
            self.eval_num_envs = min(int(cfg.eval_episodes), self.num_envs)
        self.train_envs = _checked_vector_env(train_envs, self.num_envs, "train_envs", "num_envs")
        self.eval_envs = _checked_vector_env(
            eval_envs, self.eval_num_envs, "eval_envs", "eval_num_envs"
        )
        self._owned_envs: list[Envs] = []  # built here, so closed here
        self.agent = agent
        self.replay = replay
        self.logger = logger
        self.config_record = config_record
        self.counters = Counters(next_eval_frame=0)
        self.action_repeat = int(cfg.env.action_repeat)
        self.seed_steps = int(cfg.seed_frames) // self.action_repeat
        utd_ratio = getattr(cfg, "utd_ratio", None)
        # Exact, so that fractional ratios never drift from steps × ratio.
        self.utd_ratio = None if utd_ratio is None else Fraction(utd_ratio).limit_denominator(10**6)
        self.checkpoint_dir = run_dir / "checkpoints"
        self.env_rng_restored = False
        self.last_checkpoint: Path | None = None
        self.last_video: Path | None = None
        self.last_eval: dict[str, float] = {}
        # Proxy vs true return at each eval, when the eval env has a reward model (task.reward).
        self.hacking_monitor = HackingMonitor()
        reward_cfg = getattr(cfg.task, "reward", None)
        self.relabeler = None
        if reward_cfg is not None and reward_cfg.relabel and not agent.offline:
            self.relabeler = build_relabeler(reward_cfg)
            self.replay.relabel = self.relabeler

    # -- resume ----------------------------------------------------------------------------

    def resume(self) -> int | None:
        """Continue from the newest intact checkpoint in the run directory, if there is one."""
        checkpoint, skipped = latest_checkpoint(self.checkpoint_dir)
        for note in skipped:
            log.warning("skipping unreadable checkpoint: %s", note)
        if checkpoint is None:
            if skipped:  # starting over would overwrite (and prune) what might be recovered
                raise CheckpointError(
                    f"no intact checkpoint in {self.checkpoint_dir} ({skipped[0]}); move the "
                    "run directory aside to start over"
                )
            return None
        if skipped:
            log.warning("resuming from the newest intact checkpoint, %s", checkpoint.path.name)
        self._restore(checkpoint)
        frame = self.counters.frame
        self.logger.truncate_after(frame)
        # An evaluation due at the checkpoint's frame runs after it is written: it runs again.
        self.logger.truncate_after(self.counters.last_eval_frame, splits=["eval"])
        log.info("resumed from %s at frame %d", checkpoint.path, frame)
        return frame

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
        # Checkpoints from before last_eval_frame was kept: as complete as they were then.
        self.counters = Counters(
            **{"last_eval_frame": meta["counters"]["frame"], **meta["counters"]}
        )
        if not self.agent.offline:  # an offline agent's demo buffer is loaded whole and fixed
            self.replay.restore(int(meta["replay_episodes"]))
        self.replay.set_rng_state(meta["rng"]["replay"])
        reward_state = self._reward_state_owner()
        if reward_state is not None and "reward" in meta:
            reward_state.load_state_dict(meta["reward"])
        torch.set_rng_state(checkpoint.state["rng"]["torch"])
        rng = meta["rng"]
        if "python" in rng:  # checkpoints from before these were kept lack them
            set_global_rng_state(rng["python"], rng["numpy"])
        if rng.get("env") is not None:
            self.env.unwrapped.np_random = _generator(rng["env"])
        self.env_rng_restored = rng.get("env") is not None
        self.last_checkpoint = checkpoint.path

    def _reward_state_owner(self) -> RewardWrapper | EpisodeRelabeler | None:
        """What holds the reward model's normalisation statistics: the relabeler or the wrapper."""
        return self.relabeler if self.relabeler is not None else find_reward_wrapper(self.env)

    def save(self) -> Path:
        """Checkpoint everything a resumed run needs to continue exactly as this one would."""
        self.counters.last_checkpoint_frame = self.counters.frame
        python_state, numpy_state = global_rng_state()
        rng = {
            "replay": self.replay.rng_state(),
            "python": python_state,
            "numpy": numpy_state,
            "env": self._env_rng_state(),
        }
        meta = {
            "robotrl_version": robotrl.__version__,
            "agent_name": self.cfg.agent.name,
            "agent_class": class_path(type(self.agent)),
            "config": self.config_record,
            "counters": vars(self.counters),
            "replay_episodes": self.replay.num_episodes,
            "rng": rng,
        }
        reward_state = self._reward_state_owner()
        if reward_state is not None:  # the reward model's running normalisation statistics
            meta["reward"] = reward_state.state_dict()
        state = {"agent": self.agent.state_dict(), "rng": {"torch": torch.get_rng_state()}}
        path = save_checkpoint(self.checkpoint_dir, self.counters.frame, state, meta)
        prune_checkpoints(self.checkpoint_dir, int(self.cfg.keep_checkpoints))
        self.last_checkpoint = path
        return path

    def _env_rng_state(self) -> dict[str, Any] | None:
        """The single training env's random stream (Gymnasium's ``np_random``), once it has one.

        Vector envs and batched worlds keep theirs in workers or on the sim's device: a resumed
        run reseeds those (:func:`~robotrl.collection.train_reset_seeds`).
        """
        if self.batched or self.num_envs > 1:
            return None
        generator = getattr(self.env.unwrapped, "_np_random", None)  # None until seeded
        return None if generator is None else dict(generator.bit_generator.state)

    def first_reset_seed(self) -> int | None:
        """Seed of the single training env's first reset: None when a resume restored its random
        stream, so the episodes continue as in the interrupted run."""
        if self.env_rng_restored:
            return None
        return train_reset_seeds(int(self.cfg.seed), self.counters.episode, 1)[0]

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        recorder = None
        if self.cfg.logger.save_video:
            recorder = VideoRecorder(self.run_dir / "videos")
            recorder.start()
        if self.batched:
            results = run_episodes_batched(
                cast(BatchedEnv, self.evaluation_envs()),
                self.agent,
                episodes=int(self.cfg.eval_episodes),
                step=self.counters.step,
                seed=eval_reset_seed(int(self.cfg.seed)),
                recorder=recorder,
            )
        elif self.eval_num_envs > 1:
            results = run_episodes_vectorized(
                cast(VectorEnvs, self.evaluation_envs()),
                self.agent,
                episodes=int(self.cfg.eval_episodes),
                step=self.counters.step,
                seed=eval_reset_seed(int(self.cfg.seed)),
                recorder=recorder,
            )
        else:
            results = run_episodes(
                self.eval_env,
                self.agent,
                episodes=int(self.cfg.eval_episodes),
                step=self.counters.step,
                seed=eval_reset_seed(int(self.cfg.seed)),
                recorder=recorder,
            )
        summary = summarize(results)
        summary.update(self.hacking_monitor.observe_eval(self.eval_env))
        if recorder is not None:
            self.last_video = recorder.save(f"eval_{self.counters.frame:09d}")
        self.logger.log("eval", {**summary, "step": self.counters.step}, frame=self.counters.frame)
        self.counters.last_eval_frame = self.counters.frame
        self.last_eval = summary
        return summary

    # -- main loop -------------------------------------------------------------------------

    def train(self) -> TrainResult:
        try:
            resumed_from = self.resume()
            cfg, counters = self.cfg, self.counters
            # Complete once the final evaluation is done (it may have been killed).
            if counters.frame >= cfg.frames and counters.last_eval_frame == counters.frame:
                log.info("run already complete at frame %d; nothing to do", counters.frame)
                return self._result(resumed_from)
            progress = ProgressBar(
                int(cfg.frames), counters.frame, disable=not cfg.logger.progress_bar
            )
            if self.agent.offline:
                train_offline(self, progress)
            elif self.agent.on_policy:  # rollouts and update epochs (robotrl.onpolicy)
                train_on_policy(self, progress)
            elif self.batched:
                collect_batched(self, progress)
            elif self.num_envs == 1:
                collect_single(self, progress)
            else:
                collect_vectorized(self, progress)
            progress.close()
            self.evaluate()
            while counters.next_eval_frame <= counters.frame:  # that one counts as due, too
                counters.next_eval_frame += int(cfg.eval_every_frames)
            self.save()
            return self._result(resumed_from)
        finally:
            self.close()

    def close(self) -> None:
        """Close the vector envs this trainer built (those passed in belong to the caller)."""
        for envs in self._owned_envs:
            envs.close()
        if self.train_envs in self._owned_envs:
            self.train_envs = None  # built again if training continues
        if self.eval_envs in self._owned_envs:
            self.eval_envs = None
        self._owned_envs.clear()

    # -- what the collection loops call (robotrl.collection) ----------------------------------

    def evaluate_if_due(self) -> None:
        if self.counters.frame >= self.counters.next_eval_frame:
            self.evaluate()
            self.counters.next_eval_frame += int(self.cfg.eval_every_frames)

    def updates_at(self, step: int) -> int:
        """How many agent updates agent step ``step`` makes (none before ``seed_frames``).

        Default: one on every ``agent.update_every_steps``-th step. With ``utd_ratio = r``:
        ``floor((k + 1) r) - floor(k r)`` at the ``k``-th step after the seed steps, so any ``k``
        steps make ``k r`` updates, give or take one, and a resumed run continues the pattern.
        """
        if step < self.seed_steps or len(self.replay) == 0:
            return 0
        if self.utd_ratio is None:
            return int(step % self.agent.update_every_steps == 0)
        done = step - self.seed_steps
        return math.floor((done + 1) * self.utd_ratio) - math.floor(done * self.utd_ratio)

    def run_updates(self, step: int, update_metrics: dict[str, list[float]]) -> None:
        """The agent updates due at ``step`` (:meth:`updates_at`), metrics appended."""
        for _ in range(self.updates_at(step)):
            batch = self.agent.sample_batch(self.replay, int(self.cfg.replay.batch_size))
            for name, value in self.agent.update(batch, step).items():
                update_metrics[name].append(value)

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
        counters = self.counters
        counters.episode += 1
        self.agent.observe_episode(episode_return)
        row = metrics | {
            "episode_return": episode_return,
            "episode_length": episode_length,
            "episode": counters.episode,
            "step": counters.step,
            "fps": fps,
            "buffer_size": len(self.replay),
        }
        if success is not None:
            row["success"] = success
        self.logger.log("train", row, frame=counters.frame)
        progress.update(counters.frame, episode_return=episode_return, episode=counters.episode)

    def checkpoint_if_due(self) -> None:
        if (
            self.counters.frame - self.counters.last_checkpoint_frame
            >= self.cfg.checkpoint_every_frames
        ):
            self.save()

    def training_envs(self) -> Envs:
        if self.train_envs is None:
            self.train_envs = self._build_envs(self.num_envs, int(self.cfg.seed), None)
        return self.train_envs

    def evaluation_envs(self) -> Envs:
        if self.eval_envs is None:
            render_mode = "rgb_array" if self.cfg.logger.save_video else None
            # The same factory seed as the CLI's single eval env, for env 0.
            seed = int(self.cfg.seed) + 10_000
            self.eval_envs = self._build_envs(self.eval_num_envs, seed, render_mode)
        return self.eval_envs

    def _build_envs(self, num_envs: int, seed: int, render_mode: str | None) -> Envs:
        envs: Envs
        if self.batched:
            envs = build_batched_env(
                self.cfg.task,
                self.cfg.env,
                seed=seed,
                num_worlds=num_envs,
                device=str(getattr(self.cfg, "sim_device", "auto")),
            )
        else:
            envs = build_vector_env(
                self.cfg.task,
                self.cfg.env,
                seed=seed,
                num_envs=num_envs,
                render_mode=render_mode,
                asynchronous=bool(getattr(self.cfg, "async_envs", True)),
            )
        self._owned_envs.append(envs)
        return envs

    def _result(self, resumed_from: int | None) -> TrainResult:
        return training_result(self, resumed_from)


class RunState(Protocol):
    """What a finished run reports: the Trainer's and SB3Trainer's bookkeeping."""

    cfg: TrainConfig
    run_dir: Path
    last_checkpoint: Path | None
    last_video: Path | None
    last_eval: dict[str, float]


def training_result(run: RunState, resumed_from: int | None) -> TrainResult:
    """The run's learning-curve PNG (drawn from its eval.csv) and where its outputs are."""
    cfg = run.cfg
    curve = plot_learning_curve(
        run.run_dir / "eval.csv",
        run.run_dir / "learning_curve.png",
        title=f"{cfg.agent.name} on {cfg.task.suite}/{cfg.task.name} (seed {cfg.seed})",
    )
    return TrainResult(
        run_dir=run.run_dir,
        checkpoint=run.last_checkpoint,
        learning_curve=curve,
        video=run.last_video,
        final_eval=run.last_eval,
        resumed_from=resumed_from,
    )


def eval_reset_seed(run_seed: int) -> int:
    """First reset seed of the periodic evaluations (episode i uses this + i).

    Every evaluation of a run replays the same start states, so points on the learning curve
    differ by the policy only; the offset keeps them apart from the training episodes' seeds.
    """
    return run_seed * 1000 + 10**6


def global_rng_state() -> tuple[Any, dict[str, Any]]:
    """Python's and NumPy's global random states, as JSON (PyTorch's is a tensor)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    return random.getstate(), numpy_state


def set_global_rng_state(python_state: Any, numpy_state: dict[str, Any]) -> None:
    """Inverse of :func:`global_rng_state` (from its JSON)."""
    version, internal, gauss = python_state
    random.setstate((version, tuple(internal), gauss))
    key = np.asarray(numpy_state["state"]["key"], np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})


def _generator(state: dict[str, Any]) -> np.random.Generator:
    """A NumPy generator in the bit-generator ``state`` saved by :meth:`Trainer.save`."""
    generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
    generator.bit_generator.state = state
    return generator


def _checked_vector_env(envs: Envs | None, num_envs: int, argument: str, field: str) -> Envs | None:
    if envs is not None and envs.num_envs != num_envs:
        raise ValueError(
            f"{argument} has {envs.num_envs} envs but the config's {field} is {num_envs}"
        )
    return envs
