"""On-policy training: rollouts from N envs, then PPO's update epochs (``Agent.on_policy``).

The trainer runs :func:`train_on_policy` instead of a collection loop for on-policy agents
(``robotrl.agents.ppo``). Each iteration:

1. evaluates if due (``trainer.evaluate_if_due``), and with ``agent.anneal_lr`` sets the learning
   rate to ``lr · (1 − frame / cfg.frames)``;
2. collects ``rollout_steps`` steps from each of the ``num_envs`` envs (:class:`RolloutCollector`)
   — batched worlds (torch tensors that stay on the device: the only host copies per step are the
   ``[N]`` done flags and, for the envs whose episode ended, their returns), a ``SAME_STEP``
   vector env, or the single env (autoreset here, the same way);
3. computes GAE(λ) with ``next_value`` = V of the observation each step really reached (the env's
   ``final_obs`` where an episode ended, never the autoreset observation), updates the agent on
   the flattened rollout, logs a ``train`` row of update metrics and checkpoints if due.

Counters: each env step is N agent steps and N × ``action_repeat`` frames; a finished episode is
logged through ``trainer.log_episode`` like in the other loops. A run may end up to one rollout
past ``cfg.frames``. ``seed_frames``, ``utd_ratio`` and the replay buffer play no part.

Resume. Checkpoints are written only between iterations, so they never hold half a rollout: a
killed run restarts from its last checkpoint (agent, optimizer, counters, torch RNG), the rollout
then in progress is simply lost, and the envs reset with ``train_reset_seeds`` for the restored
episode count, as in ``robotrl.collection``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import numpy as np
import torch

from robotrl.collection import TrainingDivergedError, mean_metrics, train_reset_seeds
from robotrl.envs import BatchedEnv
from robotrl.envs.vector import VectorEnvs, final_info_value
from robotrl.progress import ProgressBar
from robotrl.training_run import TrainingRun

if TYPE_CHECKING:
    from robotrl.agents.ppo import PPOAgent

TensorObs = dict[str, torch.Tensor]


# ------------------------------------------------------------------------ env sources


@dataclass
class EnvStep:
    """One step of N envs as tensors on the agent's device.

    ``obs`` is what to act on next (already the next episode's first observation where an episode
    ended); ``final_obs`` holds, in the rows of envs whose episode ended, the observation the
    step really reached (other rows: anything), or is None when no episode ended.
    ``success`` is the step's success flag per env, or None when the task has none.
    """

    obs: TensorObs
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: TensorObs | None
    success: torch.Tensor | None


def _to_device(obs: Mapping[str, Any], device: torch.device) -> TensorObs:
    """Observations (numpy or torch, any device) as tensors on ``device`` (no copy if there)."""
    return {key: torch.as_tensor(value).to(device) for key, value in obs.items()}


class BatchedSource:
    """Batched worlds (``robotrl.envs.BatchedEnv``): tensors in, tensors out."""

    def __init__(self, envs: BatchedEnv, device: torch.device) -> None:
        self.envs, self.device, self.num_envs = envs, device, envs.num_envs

    def reset(self, seeds: list[int]) -> TensorObs:
        obs, _ = self.envs.reset(seed=seeds[0])  # one seed: each world hashes its own stream
        return _to_device(obs, self.device)

    def step(self, actions: torch.Tensor) -> EnvStep:
        obs, reward, terminated, truncated, info = self.envs.step(actions.to(self.envs.device))
        final_obs = info.get("final_obs")
        success = info.get("success")
        return EnvStep(
            obs=_to_device(obs, self.device),
            reward=torch.as_tensor(reward).to(self.device, torch.float32),
            terminated=torch.as_tensor(terminated).to(self.device, torch.bool),
            truncated=torch.as_tensor(truncated).to(self.device, torch.bool),
            final_obs=None if final_obs is None else _to_device(final_obs, self.device),
            success=None if success is None else torch.as_tensor(success).to(self.device),
        )


class VectorSource:
    """A ``SAME_STEP`` Gymnasium vector env (numpy); ``final_obs`` rows come from the info."""

    def __init__(self, envs: VectorEnvs, device: torch.device) -> None:
        self.envs, self.device, self.num_envs = envs, device, envs.num_envs

    def reset(self, seeds: list[int]) -> TensorObs:
        obs, _ = self.envs.reset(seed=list(seeds))
        return _to_device(obs, self.device)

    def step(self, actions: torch.Tensor) -> EnvStep:
        obs, reward, terminated, truncated, info = self.envs.step(actions.cpu().numpy())
        done = np.logical_or(terminated, truncated)
        final_obs, success = None, None
        if done.any():
            final = {key: np.array(value, copy=True) for key, value in obs.items()}
            for index in np.flatnonzero(done):
                if not info.get("_final_obs", np.zeros(len(done), bool))[index]:
                    raise KeyError(
                        f"env {index} ended an episode but info has no final_obs; build the "
                        "vector env with autoreset_mode=SAME_STEP (robotrl.envs.vector does)"
                    )
                for key, value in info["final_obs"][index].items():
                    final[key][index] = value
            final_obs = _to_device(final, self.device)
            flags = [final_info_value(info, "success", int(i)) for i in range(len(done))]
            if any(flag is not None for flag in flags):
                success = torch.tensor([float(bool(flag)) for flag in flags], device=self.device)
        return EnvStep(
            obs=_to_device(obs, self.device),
            reward=torch.as_tensor(np.asarray(reward, np.float32), device=self.device),
            terminated=torch.as_tensor(np.asarray(terminated, bool), device=self.device),
            truncated=torch.as_tensor(np.asarray(truncated, bool), device=self.device),
            final_obs=final_obs,
            success=success,
        )


class SingleSource:
    """One Gymnasium env as a batch of one, reset here in the step that ends an episode."""

    num_envs = 1

    def __init__(self, env: gym.Env, device: torch.device) -> None:
        self.env, self.device = env, device

    def _batch(self, obs: Mapping[str, Any]) -> TensorObs:
        return _to_device(
            {key: np.expand_dims(value, 0) for key, value in obs.items()}, self.device
        )

    def reset(self, seeds: list[int]) -> TensorObs:
        obs, _ = self.env.reset(seed=seeds[0])
        return self._batch(obs)

    def step(self, actions: torch.Tensor) -> EnvStep:
        obs, reward, terminated, truncated, info = self.env.step(actions[0].cpu().numpy())
        final_obs = None
        if terminated or truncated:
            final_obs = self._batch(obs)
            obs, _ = self.env.reset()
        success = info.get("success")
        return EnvStep(
            obs=self._batch(obs),
            reward=torch.tensor([float(reward)], device=self.device),
            terminated=torch.tensor([bool(terminated)], device=self.device),
            truncated=torch.tensor([bool(truncated)], device=self.device),
            final_obs=final_obs,
            success=None if success is None else torch.tensor([float(success)], device=self.device),
        )


Source = BatchedSource | VectorSource | SingleSource


# ------------------------------------------------------------------------ rollouts


@dataclass
class Rollout:
    """``[T, N, ...]`` tensors of one rollout; ``next_value[t]`` is V of the observation step
    ``t`` reached (``final_obs`` at an episode end)."""

    obs: TensorObs
    action: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    next_value: torch.Tensor

    def flat(self, advantage: torch.Tensor, returns: torch.Tensor) -> dict[str, torch.Tensor]:
        """The update's batch: every tensor with ``T`` and ``N`` merged."""
        batch = {key: value.flatten(0, 1) for key, value in self.obs.items()}
        return batch | {
            "action": self.action.flatten(0, 1),
            "log_prob": self.log_prob.flatten(0, 1),
            "value": self.value.flatten(0, 1),
            "advantage": advantage.flatten(0, 1),
            "return": returns.flatten(0, 1),
        }


@dataclass
class FinishedEpisodes:
    """Episodes that ended in one env step (host values, one entry per env that finished)."""

    envs: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    success: np.ndarray | None


class RolloutCollector:
    """Steps a source with the agent's policy, ``steps`` at a time, keeping the current
    observations and each env's running episode return and length between rollouts."""

    def __init__(self, source: Source, agent: PPOAgent, steps: int) -> None:
        self.source, self.agent, self.steps = source, agent, steps
        self.device = agent.device
        self.num_envs = source.num_envs
        self.obs: TensorObs = {}
        self.episode_return = torch.zeros(self.num_envs, device=self.device)
        self.episode_length = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)

    def start(self, seeds: list[int]) -> None:
        self.obs = self.source.reset(seeds)
        self.episode_return.zero_()
        self.episode_length.zero_()

    def collect(self, on_step: Callable[[FinishedEpisodes | None], None]) -> Rollout:
        """One rollout; ``on_step`` is called after every env step with the episodes it ended."""
        steps, n = self.steps, self.num_envs
        obs_store = {
            key: torch.empty((steps, *batch.shape), dtype=batch.dtype, device=self.device)
            for key, batch in self.obs.items()
        }
        scalars = torch.zeros((5, steps, n), device=self.device)
        log_prob, value, reward, next_value, final_value = scalars
        terminated = torch.zeros((steps, n), dtype=torch.bool, device=self.device)
        truncated = torch.zeros_like(terminated)
        ended = torch.zeros_like(terminated)
        actions: torch.Tensor | None = None
        for t in range(steps):
            for key, store in obs_store.items():
                store[t].copy_(self.obs[key])
            policy = self.agent.explore(self.obs)
            if actions is None:
                actions = torch.empty((steps, *policy.action.shape), device=self.device)
            actions[t] = policy.action
            log_prob[t], value[t] = policy.log_prob, policy.value
            result = self.source.step(policy.env_action)
            reward[t], terminated[t], truncated[t] = (
                result.reward,
                result.terminated,
                result.truncated,
            )
            done = result.terminated | result.truncated
            self.episode_return += result.reward
            self.episode_length += 1
            done_rows = done.nonzero().squeeze(-1)
            finished = None
            if len(done_rows):  # the step's one host sync: how many episodes ended
                if result.final_obs is None:
                    raise KeyError(
                        "an episode ended but the env gave no final_obs (SAME_STEP autoreset "
                        "with info['final_obs'] is required)"
                    )
                reached = {key: rows[done_rows] for key, rows in result.final_obs.items()}
                final_value[t, done_rows] = self.agent.value(reached)
                ended[t] = done
                finished = FinishedEpisodes(
                    envs=done_rows.cpu().numpy(),
                    returns=self.episode_return[done_rows].cpu().numpy(),
                    lengths=self.episode_length[done_rows].cpu().numpy(),
                    success=None
                    if result.success is None
                    else result.success[done_rows].float().cpu().numpy(),
                )
                self.episode_return[done_rows] = 0.0
                self.episode_length[done_rows] = 0
            self.obs = result.obs
            on_step(finished)
        assert actions is not None
        next_value[:-1] = value[1:]
        next_value[-1] = self.agent.value(self.obs)
        next_value = torch.where(ended, final_value, next_value)
        return Rollout(
            obs=obs_store,
            action=actions,
            log_prob=log_prob,
            value=value,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            next_value=next_value,
        )


def rollout_source(trainer: TrainingRun, device: torch.device) -> Source:
    """What the trainer collects from: its batched worlds, vector env, or single env."""
    if trainer.batched:
        return BatchedSource(cast(BatchedEnv, trainer.training_envs()), device)
    if trainer.num_envs > 1:
        return VectorSource(cast(VectorEnvs, trainer.training_envs()), device)
    return SingleSource(trainer.env, device)


# ------------------------------------------------------------------------ the loop


def train_on_policy(trainer: TrainingRun, progress: ProgressBar) -> None:
    """Collect rollouts and update the agent until ``cfg.frames`` (module docstring)."""
    from robotrl.agents.ppo import PPOAgent, generalized_advantages

    cfg, counters = trainer.cfg, trainer.counters
    agent = trainer.agent
    if not isinstance(agent, PPOAgent):
        raise TypeError(f"train_on_policy runs PPOAgent, got {type(agent).__name__}")
    if getattr(cfg, "utd_ratio", None) is not None:
        raise ValueError(
            "utd_ratio does not apply to on-policy agents (PPO updates once per rollout); "
            "leave it unset and set agent.update_epochs / agent.num_minibatches instead"
        )
    if trainer.relabeler is not None:
        raise ValueError(
            "task.reward.relabel scores episodes in replay, which on-policy agents do not use; "
            "set task.reward.relabel=false"
        )
    agent_cfg = agent.cfg
    source = rollout_source(trainer, agent.device)
    num_envs = source.num_envs
    batch_size = agent_cfg.rollout_steps * num_envs
    if batch_size < 2 * agent_cfg.num_minibatches:
        raise ValueError(
            f"rollout_steps × num_envs = {agent_cfg.rollout_steps} × {num_envs} = {batch_size} "
            f"transitions cannot fill num_minibatches={agent_cfg.num_minibatches} minibatches "
            "of at least 2; collect more or split less"
        )
    collector = RolloutCollector(source, agent, agent_cfg.rollout_steps)
    collector.start(train_reset_seeds(int(cfg.seed), counters.episode, num_envs))
    episode_starts = np.full(num_envs, time.perf_counter())

    def on_step(finished: FinishedEpisodes | None) -> None:
        counters.step += num_envs
        counters.frame += num_envs * trainer.action_repeat
        if finished is None:
            return
        now = time.perf_counter()
        for row, env_index in enumerate(finished.envs):
            length = int(finished.lengths[row])
            frames = length * trainer.action_repeat * num_envs  # all N envs stepped meanwhile
            trainer.log_episode(
                {},
                float(finished.returns[row]),
                length,
                frames / max(now - episode_starts[env_index], 1e-9),
                None if finished.success is None else float(finished.success[row]),
                progress,
            )
            episode_starts[env_index] = now

    while counters.frame < cfg.frames:
        trainer.evaluate_if_due()
        if agent_cfg.anneal_lr:
            agent.set_lr_fraction(1.0 - counters.frame / cfg.frames)
        start_frame, started = counters.frame, time.perf_counter()
        rollout = collector.collect(on_step)
        check_rollout(rollout, start_frame)
        advantage, returns = generalized_advantages(
            rollout.reward,
            rollout.value,
            rollout.next_value,
            rollout.terminated,
            rollout.truncated,
            agent_cfg.discount,
            agent_cfg.gae_lambda,
        )
        metrics = agent.update_rollout(rollout.flat(advantage, returns))
        metrics = mean_metrics({name: [value] for name, value in metrics.items()}, counters.frame)
        metrics["fps"] = (counters.frame - start_frame) / max(time.perf_counter() - started, 1e-9)
        metrics["rollout_reward"] = rollout.reward.mean().item()
        trainer.logger.log("train", metrics | {"step": counters.step}, frame=counters.frame)
        progress.update(counters.frame, policy_loss=metrics["policy_loss"])
        trainer.checkpoint_if_due()


def check_rollout(rollout: Rollout, frame: int) -> None:
    """One device-side check per rollout (not per step) that actions and rewards are finite."""
    if not bool(torch.isfinite(rollout.action).all()):
        raise TrainingDivergedError(
            f"the agent produced a non-finite action in the rollout from frame {frame}; "
            "the last checkpoint is intact"
        )
    if not bool(torch.isfinite(rollout.reward).all()):
        raise TrainingDivergedError(
            f"the env returned a non-finite reward in the rollout from frame {frame}; "
            "nothing was learned from it, the last checkpoint is intact"
        )
