"""The Trainer's collection loops: one env, a vector env of worker processes, batched worlds.

Each loop acts, updates the agent, stores transitions and logs finished episodes until
``cfg.frames``, calling back into the run (:class:`~robotrl.training_run.TrainingRun`, which the
trainer is) for evaluation, updates, logging and checkpoints, so the three differ only in how
they step envs and store data.

Vectorised collection (``cfg.num_envs = N > 1``, :func:`collect_vectorized`). The agent acts for
N envs at once (``act_batch``) and each env's transitions go to its own replay stream, so episodes
are finished, stored and logged one by one, and an episode's last ``next_obs`` is the env's
``final_obs`` (``SAME_STEP`` autoreset, see ``robotrl.envs.vector``). One vector step is N agent
steps: the counters advance by N steps and N × action-repeat frames, and the agent updates for each
of those N steps as :meth:`~robotrl.trainer.Trainer.updates_at` says, so the update-to-data ratio
is the same as with one env. A run may end up to N - 1 steps past ``cfg.frames``. ``num_envs = 1``
runs the single-env loop (:func:`collect_single`).

Batched worlds (a batched suite such as ``warp``, :func:`collect_batched`). The same bookkeeping
as the vectorised loop, but the env is one ``BatchedEnv`` of ``num_envs`` worlds returning torch
tensors: observations are copied to numpy once per step for the agent (``act_batch``) and stored
with one batched insert (``EpisodicReplay.add_batch``, world ``i`` in stream ``i``), using the
env's full-batch ``final_obs`` for the worlds whose episode ended. The training worlds reset
with one seed (``train_reset_seeds(seed, episodes, 1)[0]``): each world's stream is hashed from
it and its index, so a resumed run starts from new states.

Where a zero-copy device path would go: ``to_numpy`` below is the only host copy of pixels. With
the sim on a GPU, an agent method taking torch observations (``act_batch`` on tensors, no
``as_tensor`` inside) and a replay that keeps frames on the device (``add_batch`` of tensors into a
preallocated CUDA ring, sampled there) would remove it; the loop would not change otherwise.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import cast

import numpy as np
import torch

from robotrl.envs import BatchedEnv
from robotrl.envs.batched import to_numpy
from robotrl.envs.vector import (
    ENV_SEED_STRIDE,
    VectorEnvs,
    final_info_value,
    step_observation,
    unbatch,
)
from robotrl.progress import ProgressBar
from robotrl.training_run import TrainingRun


class TrainingDivergedError(RuntimeError):
    """A loss or metric became NaN/Inf; the last checkpoint on disk is untouched."""


def collect_single(trainer: TrainingRun, progress: ProgressBar) -> None:
    """Act, learn and store transitions with one env until ``cfg.frames``."""
    cfg, counters, env, replay = trainer.cfg, trainer.counters, trainer.env, trainer.replay
    update_metrics: dict[str, list[float]] = defaultdict(list)

    obs, _ = env.reset(seed=trainer.first_reset_seed())
    replay.start_episode(obs)
    trainer.agent.begin_episodes()
    episode_return, episode_length, episode_start = 0.0, 0, time.perf_counter()

    while counters.frame < cfg.frames:
        trainer.evaluate_if_due()
        action = trainer.agent.act(obs, counters.step, eval_mode=False)
        check_actions(action, counters.frame)
        trainer.run_updates(counters.step, update_metrics)
        obs, reward, terminated, truncated, info = env.step(action)
        check_rewards(np.asarray([reward], np.float64), counters.frame)
        replay.add(action, float(reward), obs, bool(terminated), bool(truncated))
        episode_return += float(reward)
        episode_length += 1
        counters.step += 1
        counters.frame += trainer.action_repeat
        progress.update(counters.frame)

        if terminated or truncated:
            elapsed = time.perf_counter() - episode_start
            metrics = mean_metrics(update_metrics, counters.frame)
            success = float(info["success"]) if "success" in info else None
            fps = episode_length * trainer.action_repeat / max(elapsed, 1e-9)
            trainer.log_episode(metrics, episode_return, episode_length, fps, success, progress)
            update_metrics.clear()
            trainer.checkpoint_if_due()
            obs, _ = env.reset()
            replay.start_episode(obs)
            trainer.agent.begin_episodes()
            episode_return, episode_length, episode_start = 0.0, 0, time.perf_counter()


def collect_vectorized(trainer: TrainingRun, progress: ProgressBar) -> None:
    """Act, learn and store transitions with ``num_envs`` envs (module docstring)."""
    cfg, counters, replay = trainer.cfg, trainer.counters, trainer.replay
    update_metrics: dict[str, list[float]] = defaultdict(list)
    envs, num_envs = cast(VectorEnvs, trainer.training_envs()), trainer.num_envs

    seeds: list[int | None] = [*train_reset_seeds(int(cfg.seed), counters.episode, num_envs)]
    obs, _ = envs.reset(seed=seeds)
    for index in range(num_envs):
        replay.start_episode(unbatch(obs, index), stream=index)
    trainer.agent.begin_episodes()
    episode_returns = [0.0] * num_envs
    episode_lengths = [0] * num_envs
    episode_starts = [time.perf_counter()] * num_envs

    while counters.frame < cfg.frames:
        trainer.evaluate_if_due()
        actions = trainer.agent.act_batch(obs, counters.step, eval_mode=False)
        check_actions(actions, counters.frame)
        # This vector step is agent steps step .. step + N - 1: update for each one due.
        for step in range(counters.step, counters.step + num_envs):
            trainer.run_updates(step, update_metrics)
        obs, rewards, terminated, truncated, info = envs.step(actions)
        check_rewards(np.asarray(rewards, np.float64), counters.frame)
        done = np.logical_or(terminated, truncated)
        for index in range(num_envs):
            replay.add(
                actions[index],
                float(rewards[index]),
                step_observation(obs, info, bool(done[index]), index),
                bool(terminated[index]),
                bool(truncated[index]),
                stream=index,
            )
            episode_returns[index] += float(rewards[index])
            episode_lengths[index] += 1
        counters.step += num_envs
        counters.frame += num_envs * trainer.action_repeat
        progress.update(counters.frame)

        if done.any():
            metrics = mean_metrics(update_metrics, counters.frame)
            for index in np.flatnonzero(done):
                elapsed = time.perf_counter() - episode_starts[index]
                # All N envs stepped while this one played its episode.
                frames = episode_lengths[index] * trainer.action_repeat * num_envs
                success = final_info_value(info, "success", index)
                trainer.log_episode(
                    metrics,
                    episode_returns[index],
                    episode_lengths[index],
                    frames / max(elapsed, 1e-9),
                    None if success is None else float(success),
                    progress,
                )
                # SAME_STEP autoreset: obs[index] is already the next episode's first obs.
                replay.start_episode(unbatch(obs, index), stream=index)
                episode_returns[index], episode_lengths[index] = 0.0, 0
                episode_starts[index] = time.perf_counter()
            trainer.agent.begin_episodes(done)
            update_metrics.clear()
            trainer.checkpoint_if_due()


def collect_batched(trainer: TrainingRun, progress: ProgressBar) -> None:
    """Act, learn and store transitions with ``num_envs`` batched worlds (module docstring)."""
    cfg, counters, replay = trainer.cfg, trainer.counters, trainer.replay
    update_metrics: dict[str, list[float]] = defaultdict(list)
    envs, num_worlds = cast(BatchedEnv, trainer.training_envs()), trainer.num_envs

    tensors, _ = envs.reset(seed=train_reset_seeds(int(cfg.seed), counters.episode, 1)[0])
    obs = to_numpy(tensors)
    replay.start_episodes(obs)
    trainer.agent.begin_episodes()
    episode_starts = np.full(num_worlds, time.perf_counter())

    while counters.frame < cfg.frames:
        trainer.evaluate_if_due()
        actions = trainer.agent.act_batch(obs, counters.step, eval_mode=False)
        check_actions(actions, counters.frame)
        for step in range(counters.step, counters.step + num_worlds):
            trainer.run_updates(step, update_metrics)
        tensors, rewards_t, terminated_t, truncated_t, info = envs.step(
            torch.as_tensor(actions, device=envs.device)
        )
        rewards = to_numpy(rewards_t)
        check_rewards(rewards.astype(np.float64), counters.frame)
        terminated, truncated = to_numpy(terminated_t), to_numpy(truncated_t)
        done = terminated | truncated
        obs = to_numpy(tensors)
        # Rows of worlds that did not finish equal obs; the others are their episodes' last.
        reached = to_numpy(info["final_obs"]) if done.any() else obs
        replay.add_batch(actions, rewards, reached, terminated, truncated)
        counters.step += num_worlds
        counters.frame += num_worlds * trainer.action_repeat
        progress.update(counters.frame)

        if done.any():
            metrics = mean_metrics(update_metrics, counters.frame)
            returns = to_numpy(info["episode_return"])
            lengths = to_numpy(info["episode_length"])
            success = to_numpy(info["success"]) if "success" in info else None
            now = time.perf_counter()
            for index in np.flatnonzero(done):
                frames = lengths[index] * trainer.action_repeat * num_worlds
                trainer.log_episode(
                    metrics,
                    float(returns[index]),
                    int(lengths[index]),
                    frames / max(now - episode_starts[index], 1e-9),
                    None if success is None else float(success[index]),
                    progress,
                )
            # SAME_STEP autoreset: their rows of obs are already the next episodes' first obs.
            replay.start_episodes(obs, mask=done)
            trainer.agent.begin_episodes(done)
            episode_starts[done] = now
            update_metrics.clear()
            trainer.checkpoint_if_due()


def train_reset_seeds(run_seed: int, episode: int, num_envs: int) -> list[int]:
    """Reset seeds of the training envs when collection (re)starts after ``episode`` episodes.

    Env ``i`` gets ``run_seed * 100_003 + episode + ENV_SEED_STRIDE * i``: with one env this is
    the single-env loop's seed, and a resumed run starts from new states. Later episodes reset
    without a seed and continue each env's own random stream.
    """
    base = run_seed * 100_003 + episode
    return [base + ENV_SEED_STRIDE * index for index in range(num_envs)]


def mean_metrics(update_metrics: dict[str, list[float]], frame: int) -> dict[str, float]:
    """Mean of each update metric since the last episode, checked to be finite."""
    metrics = {name: float(np.mean(values)) for name, values in update_metrics.items()}
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:
        raise TrainingDivergedError(
            f"non-finite training metrics at frame {frame}: {bad}; "
            "the last checkpoint is intact (lower the learning rate or check the rewards)"
        )
    return metrics


def check_actions(actions: np.ndarray, frame: int) -> None:
    if not np.all(np.isfinite(actions)):
        raise TrainingDivergedError(
            f"the agent produced a non-finite action {actions} at frame {frame}; "
            "the last checkpoint is intact"
        )


def check_rewards(rewards: np.ndarray, frame: int) -> None:
    if not np.all(np.isfinite(rewards)):
        bad = rewards[~np.isfinite(rewards)][0]
        where = (
            "" if len(rewards) == 1 else f" by env {int(np.flatnonzero(~np.isfinite(rewards))[0])}"
        )
        raise TrainingDivergedError(
            f"the env returned a non-finite reward ({bad}){where} at frame {frame}; "
            "nothing was stored, the last checkpoint is intact"
        )
