"""``robotrl-finetune``: fine-tune on a running driver (argparse; ``--help`` lists the options)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robotrl.agents.rlpd import RLPDConfig
from robotrl_real.env import ReachReward, RewardFn, RobotEnvConfig
from robotrl_real.finetune.actor import ActorConfig, EpisodeSummary
from robotrl_real.finetune.common import DEFAULT_LEARNER_NAME, DEFAULT_RAY_NAMESPACE
from robotrl_real.finetune.gate import ClassifierGateError, gated_classifier_reward
from robotrl_real.finetune.learner import LearnerConfig
from robotrl_real.finetune.orchestration import run_finetune
from robotrl_real.finetune.rewards import SuccessReward

SERL_INIT_TEMPERATURE = 0.01


def main(argv: Sequence[str] | None = None) -> None:
    """``robotrl-finetune``: fine-tune on a running driver (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="robotrl-finetune",
        description="HIL-SERL-style fine-tuning (RLPD actor + learner on Ray) against a running "
        "robotrl-robot driver.",
    )
    parser.add_argument("--namespace", default="robot", help="the driver's namespace")
    parser.add_argument("--domain-id", type=int, default=None, help="default: ROS_DOMAIN_ID or 0")
    parser.add_argument("--loopback", action="store_true", help="DDS on 127.0.0.1 only")
    parser.add_argument("--demos", default=None, help="demo directory (episode_*.npz)")
    parser.add_argument("--classifier", default=None, help="saved success classifier directory")
    parser.add_argument("--held-out", default=None, help="default: <classifier>/held_out.npz")
    parser.add_argument("--max-fpr", type=float, default=0.02)
    parser.add_argument(
        "--reach-target",
        type=float,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="sim twin: sparse success reward within 3 cm of this TCP position, no classifier",
    )
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--max-episode-steps", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--cameras", nargs="+", default=["wrist", "front"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ray-address", default=None, help="join a Ray cluster (default: local)")
    parser.add_argument("--learner-name", default=DEFAULT_LEARNER_NAME)
    parser.add_argument("--no-record", action="store_true", help="skip MCAP recordings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--agent",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="RLPDConfig overrides, e.g. utd=10 num_qs=10 (numbers parsed as such); "
        f"init_temperature defaults to HIL-SERL's {SERL_INIT_TEMPERATURE}",
    )
    args = parser.parse_args(argv)
    if (args.classifier is None) == (args.reach_target is None):
        parser.error("give exactly one reward: --classifier DIR or --reach-target X Y Z")
    # HIL-SERL's initial SAC temperature: RLPD's 1.0 suits its benchmarks' reward scales, but
    # next to 0/1 success rewards it keeps the policy near uniform for thousands of updates.
    overrides: dict[str, Any] = {"init_temperature": SERL_INIT_TEMPERATURE}
    for item in args.agent:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--agent takes KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    agent_config = RLPDConfig(**overrides)
    env_config = RobotEnvConfig(
        namespace=args.namespace,
        cameras=tuple(args.cameras),
        image_size=args.image_size,
        max_episode_steps=args.max_episode_steps,
    )
    run_dir = Path(args.run_dir)
    actor_config = ActorConfig(
        env=env_config,
        domain_id=args.domain_id,
        loopback=args.loopback,
        learner_name=args.learner_name,
        recordings=None if args.no_record else str(run_dir / "recordings"),
        seed=args.seed,
    )
    learner_config = LearnerConfig(
        obs_shape=(len(args.cameras), 3, args.image_size, args.image_size),
        batch_size=args.batch_size,
        seed=args.seed,
    )
    reward_fn: RewardFn | None = None
    if args.reach_target is not None:
        reward_fn = SuccessReward(ReachReward(tuple(args.reach_target)))
    else:  # the gate runs before anything starts
        try:
            reward_fn, metrics = gated_classifier_reward(
                args.classifier, args.held_out, max_fpr=args.max_fpr
            )
        except ClassifierGateError as error:
            raise SystemExit(f"robotrl-finetune: {error}") from None
        print(f"success classifier passed the gate: {metrics}", flush=True)
    import ray

    ray.init(address=args.ray_address, include_dashboard=False, namespace=DEFAULT_RAY_NAMESPACE)

    def report(index: int, summary: EpisodeSummary) -> None:
        print(
            f"episode {index}: steps {summary.steps} return {summary.episode_return:.2f} "
            f"success {summary.success} interventions {summary.interventions} "
            f"policy v{summary.policy_version} queued {summary.queued}",
            flush=True,
        )

    try:
        result = run_finetune(
            agent_config,
            learner_config,
            actor_config,
            episodes=args.episodes,
            run_dir=run_dir,
            demos=args.demos,
            reward_fn=reward_fn,
            on_episode=report,
        )
    finally:
        ray.shutdown()
    successes = np.mean([s.success for s in result.summaries]) if result.summaries else 0.0
    print(f"done: success rate {successes:.2f}; checkpoint {result.checkpoint}")


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        with contextlib.suppress(ValueError):
            return cast(text)
    return {"true": True, "false": False}.get(text.lower(), text)


if __name__ == "__main__":
    main()
