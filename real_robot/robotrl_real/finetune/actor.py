"""The acting process: RobotEnv episodes next to the driver, with the newest weights it got at
an episode boundary (see :mod:`robotrl_real.finetune`)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robotrl.agents.rlpd import RLPDAgent, RLPDConfig
from robotrl_real.env import RewardFn, RobotEnv, RobotEnvConfig
from robotrl_real.finetune.common import (
    ACTION_DIM,
    DEFAULT_LEARNER_NAME,
    DEFAULT_RAY_NAMESPACE,
    PROPRIO_DIM,
    Episode,
    _agent_config,
)
from robotrl_real.finetune.learner import Learner

logger = logging.getLogger(__name__)


@dataclass
class ActorConfig:
    """Where the driver is, who the learner is, and how the actor behaves."""

    env: RobotEnvConfig = field(default_factory=RobotEnvConfig)
    domain_id: int | None = None
    loopback: bool = False  # DDS on 127.0.0.1 only (tests, one-machine setups)
    learner_name: str = DEFAULT_LEARNER_NAME
    ray_namespace: str = DEFAULT_RAY_NAMESPACE
    learner_timeout: float = 5.0  # s per call to the learner
    max_queue: int = 1000  # episodes kept while the learner is away (oldest dropped)
    terminate_on_success: bool = True
    eval_mode: bool = False  # act with the policy mean (no sampling)
    recordings: str | None = None  # directory for MCAP episode recordings
    seed: int = 0


@dataclass
class EpisodeSummary:
    """What :meth:`PolicyActor.run_episode` reports about one episode."""

    steps: int
    episode_return: float
    success: bool
    interventions: int
    policy_version: int
    delivered: int  # episodes delivered to the learner after this one ended
    queued: int  # episodes still waiting for a learner


class PolicyActor:
    """Runs RobotEnv episodes with the newest weights it got at an episode boundary."""

    def __init__(
        self,
        agent_config: RLPDConfig | Mapping[str, Any],
        config: ActorConfig,
        reward_fn: RewardFn | None = None,
        *,
        use_ray: bool = True,
        learner: Learner | None = None,
    ) -> None:
        torch.set_num_threads(1)
        self.config = config
        self.agent_config = _agent_config(agent_config)
        self.reward_fn = reward_fn
        self.use_ray = use_ray
        self._local_learner = learner
        env_cfg = config.env
        dds = None
        if config.loopback:
            from robotrl_real.node import loopback_config

            dds = loopback_config()
        self.env = RobotEnv(
            env_cfg, reward_fn=reward_fn, domain_id=config.domain_id, dds_config=dds
        )
        obs_shape = (len(env_cfg.cameras), 3, env_cfg.image_size, env_cfg.image_size)
        torch.manual_seed(config.seed)
        self.agent = RLPDAgent(
            self.agent_config,
            obs_shape=obs_shape,
            action_dim=ACTION_DIM,
            device="cpu",
            proprio_dim=PROPRIO_DIM,
        )
        self.agent.train(False)
        self.version = -1  # this process's own initial weights, until the learner's arrive
        self.queue: deque[Episode] = deque(maxlen=config.max_queue)
        self.steps = 0
        self.episodes = 0
        self._handle: Any = None
        self.recorder = None
        if config.recordings:
            from robotrl_real.recording import EpisodeRecorder, RecorderConfig

            self.recorder = EpisodeRecorder(
                Path(config.recordings),
                RecorderConfig(namespace=env_cfg.namespace, cameras=env_cfg.cameras),
            )

    # -- the learner, which may be gone ------------------------------------------------------------

    def _learner_call(self, method: str, *args: Any) -> Any:
        """Call the learner; raises ``ConnectionError`` if it is not there or does not answer."""
        if not self.use_ray:
            if self._local_learner is None:
                raise ConnectionError("no learner")
            return getattr(self._local_learner, method)(*args)
        import ray
        from ray import exceptions

        if self._handle is None:
            try:
                self._handle = ray.get_actor(
                    self.config.learner_name, namespace=self.config.ray_namespace
                )
            except ValueError as error:  # no actor by that name (yet, or any more)
                raise ConnectionError(str(error)) from error
        try:
            reference = getattr(self._handle, method).remote(*args)
            return ray.get(reference, timeout=self.config.learner_timeout)
        except (exceptions.RayError, exceptions.GetTimeoutError) as error:
            self._handle = None  # look it up again next time: a new learner may take the name
            raise ConnectionError(f"learner call {method} failed: {error}") from error

    def sync_weights(self) -> bool:
        """Swap in newer learner weights (called between episodes only); True if swapped."""
        try:
            version, weights = self._learner_call("get_weights", self.version)
        except ConnectionError as error:
            logger.warning("learner unreachable, acting with version %d: %s", self.version, error)
            return False
        if weights is None:
            return False
        self.agent.load_weights(weights)
        self.version = int(version)
        return True

    def deliver(self) -> int:
        """Send queued episodes to the learner, oldest first; returns how many went."""
        sent = 0
        while self.queue:
            try:
                self._learner_call("add_episode", self.queue[0])
            except ConnectionError as error:
                logger.warning("%d episodes queued for the learner: %s", len(self.queue), error)
                break
            self.queue.popleft()
            sent += 1
        return sent

    # -- acting -----------------------------------------------------------------------------------

    def run_episode(
        self, seed: int | None = None, *, eval_mode: bool | None = None, sync: bool = True
    ) -> EpisodeSummary:
        """One episode: sync weights (unless ``sync=False``), act (with the policy mean if
        ``eval_mode``; default ``config.eval_mode``), queue and deliver it."""
        if sync:
            self.sync_weights()
        deterministic = self.config.eval_mode if eval_mode is None else eval_mode
        version = self.version  # fixed for the whole episode
        obs, info = self.env.reset(seed=self.config.seed + self.episodes if seed is None else seed)
        pixels, proprio = [obs["pixels"]], [obs["proprio"]]
        actions, rewards, interventions = [], [], []
        success = terminated = False
        if self.recorder is not None:
            self.recorder.start_episode()
            self._record_observation(obs)
        while True:
            action = self.agent.act(obs, self.steps, eval_mode=deterministic)
            obs, reward, _, truncated, info = self.env.step(action)
            self.steps += 1
            success = bool(info.get("success", False))
            terminated = success and self.config.terminate_on_success
            executed = np.asarray(info["executed_action"], np.float32)
            pixels.append(obs["pixels"])
            proprio.append(obs["proprio"])
            actions.append(executed)
            rewards.append(float(reward))
            interventions.append(bool(info["intervention"]))
            if self.recorder is not None:
                self._record_step(
                    executed, float(reward), terminated, truncated, interventions[-1], version
                )
                self._record_observation(obs)
            if terminated or truncated:
                break
        if self.recorder is not None:
            self.recorder.finish_episode()
        self.episodes += 1
        steps = len(actions)
        self.queue.append(
            {
                "pixels": np.stack(pixels),
                "proprio": np.stack(proprio).astype(np.float32),
                "action": np.stack(actions),
                "reward": np.asarray(rewards, np.float32),
                "intervention": np.asarray(interventions, bool),
                "policy_version": np.full(steps, version, np.int64),
                "terminated": np.array(terminated),
            }
        )
        delivered = self.deliver()
        return EpisodeSummary(
            steps=steps,
            episode_return=float(np.sum(rewards)),
            success=success,
            interventions=int(np.sum(interventions)),
            policy_version=version,
            delivered=delivered,
            queued=len(self.queue),
        )

    def _record_observation(self, obs: Mapping[str, np.ndarray]) -> None:
        assert self.recorder is not None
        images = {
            camera: np.ascontiguousarray(obs["pixels"][index].transpose(1, 2, 0))
            for index, camera in enumerate(self.config.env.cameras)
        }
        self.recorder.record_observation(images)

    def _record_step(
        self,
        action: np.ndarray,
        reward: float,
        terminated: bool,
        truncated: bool,
        intervention: bool,
        version: int,
    ) -> None:
        assert self.recorder is not None
        env = self.config.env
        twist = np.concatenate([action[:3] * env.max_step / env.period, np.zeros(3)])
        self.recorder.record_step(
            twist,
            float((action[3] + 1.0) / 2.0),
            reward,
            terminated=terminated,
            truncated=truncated,
            intervention=intervention,
            policy_version=version,
        )

    def get_version(self) -> int:
        return self.version

    def close(self) -> None:
        self.env.close()
