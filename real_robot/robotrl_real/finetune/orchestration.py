"""The learner and the actor as Ray processes, and a whole fine-tuning run behind the gate."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robotrl.agents.rlpd import RLPDConfig
from robotrl_real.env import RewardFn
from robotrl_real.finetune.actor import ActorConfig, EpisodeSummary, PolicyActor
from robotrl_real.finetune.common import DEFAULT_LEARNER_NAME, DEFAULT_RAY_NAMESPACE
from robotrl_real.finetune.gate import gated_classifier_reward
from robotrl_real.finetune.learner import Learner, LearnerConfig


def start_learner(
    agent_config: RLPDConfig | Mapping[str, Any],
    config: LearnerConfig,
    *,
    demos: str | Path | None = None,
    run_dir: str | Path | None = None,
    name: str = DEFAULT_LEARNER_NAME,
    namespace: str = DEFAULT_RAY_NAMESPACE,
    train: bool = True,
) -> Any:
    """A named Ray learner process (threaded, so requests are served while it trains)."""
    import ray

    remote = ray.remote(num_cpus=0, max_concurrency=4)(Learner)  # type: ignore[call-overload]
    handle = remote.options(name=name, namespace=namespace).remote(
        agent_config, config, demos=demos, run_dir=run_dir
    )
    ray.get(handle.stats.remote())  # wait until it is constructed (errors surface here)
    if train:
        handle.start.remote()
    return handle


def start_actor(
    agent_config: RLPDConfig | Mapping[str, Any],
    config: ActorConfig,
    reward_fn: RewardFn | None = None,
) -> Any:
    """A Ray acting process (the robot PC's side)."""
    import ray

    remote = ray.remote(num_cpus=0, max_concurrency=2)(PolicyActor)  # type: ignore[call-overload]
    handle = remote.remote(agent_config, config, reward_fn)
    ray.get(handle.get_version.remote())
    return handle


@dataclass
class FinetuneResult:
    summaries: list[EpisodeSummary]
    learner_stats: dict[str, Any]
    checkpoint: Path | None
    classifier_metrics: dict[str, float] | None


def run_finetune(
    agent_config: RLPDConfig,
    learner_config: LearnerConfig,
    actor_config: ActorConfig,
    *,
    episodes: int,
    run_dir: str | Path,
    demos: str | Path | None,
    reward_fn: RewardFn | None = None,
    classifier_dir: str | Path | None = None,
    held_out: str | Path | None = None,
    max_fpr: float = 0.02,
    on_episode: Callable[[int, EpisodeSummary], None] | None = None,
) -> FinetuneResult:
    """The gate, then a learner and an actor on Ray for ``episodes`` episodes; ray must be
    initialised. With ``classifier_dir`` the reward is the classifier's (after the gate)."""
    import ray

    metrics = None
    if classifier_dir is not None:
        reward_fn, metrics = gated_classifier_reward(classifier_dir, held_out, max_fpr=max_fpr)
    if reward_fn is None:
        raise ValueError("fine-tuning needs a reward: a classifier directory or a reward_fn")
    run_dir = Path(run_dir)
    learner = start_learner(
        agent_config,
        learner_config,
        demos=demos,
        run_dir=run_dir,
        name=actor_config.learner_name,
        namespace=actor_config.ray_namespace,
    )
    actor = start_actor(agent_config, actor_config, reward_fn)
    summaries = []
    try:
        for index in range(episodes):
            summary = ray.get(actor.run_episode.remote())
            summaries.append(summary)
            if on_episode is not None:
                on_episode(index, summary)
        checkpoint = ray.get(learner.save.remote())
        stats = ray.get(learner.stats.remote())
    finally:
        for handle, method in ((learner, "stop"), (actor, "close")):
            with contextlib.suppress(ray.exceptions.RayError):  # it may be dead already
                ray.get(getattr(handle, method).remote(), timeout=30)
            ray.kill(handle)
    return FinetuneResult(summaries, stats, checkpoint, metrics)
