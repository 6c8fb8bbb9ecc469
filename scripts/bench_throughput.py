"""Throughput per suite: env+render agent-steps/s (default vs fast visuals, one env vs several
processes) and learner updates/s.

Every figure is printed beside a baseline measured in the same run, as a ratio:
- env, for each suite that has ``fast_render``: default visuals (baseline) vs ``fast_render``
  (shadows, reflections, skybox off), one env in this process;
- collection, for each suite: one env in this process (baseline) vs ``--num-envs`` copies in
  worker processes (``robotrl.envs.vector``, shared memory, SAME_STEP autoreset), agent-steps/s
  summed over envs, with fast visuals where the suite has them (to keep the run short);
- learner: DrQ-v2 updates at batch 256 with a contiguous (NCHW) encoder (baseline) vs
  ``channels_last``.

All at 84x84, action repeat 2, frame stack 3, random actions. Suites: builtin/reach,
dmc/<--task>, metaworld/reach, adroit/door, robosuite/lift (its default two cameras); pick others
with ``--suites suite/task ...``.

    .venv/bin/python scripts/bench_throughput.py [--task cheetah_run] [--steps 200] [--updates 5]
        [--num-envs 2] [--suites builtin/reach dmc/cheetah_run ...]

Prints a table and one JSON line. Timings depend on the machine; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import numpy as np
import torch

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.envs import make_env
from robotrl.envs.vector import make_vector_env

# The suites without a fast_render option (their frames are already cheap).
NO_FAST_RENDER = {"builtin"}
SEED, IMAGE_SIZE, ACTION_REPEAT, FRAME_STACK = 0, 84, 2, 3


def visual_options(suite: str, fast_render: bool) -> dict[str, bool]:
    return {} if suite in NO_FAST_RENDER else {"fast_render": fast_render}


def env_steps_per_second(suite: str, task: str, steps: int, fast_render: bool) -> float:
    options = visual_options(suite, fast_render)
    return env_steps_per_second_of(
        make_env(
            suite,
            task,
            seed=SEED,
            image_size=IMAGE_SIZE,
            action_repeat=ACTION_REPEAT,
            frame_stack=FRAME_STACK,
            options=options,
        ),
        steps,
    )


def collection_steps_per_second(suite: str, task: str, steps: int, num_envs: int) -> float:
    """Agent steps/s of ``num_envs`` worker processes (0: one env in this process), all envs."""
    if num_envs == 0:
        return env_steps_per_second(suite, task, steps, fast_render=True)
    options = visual_options(suite, True)
    envs = make_vector_env(
        suite,
        task,
        num_envs=num_envs,
        seed=SEED,
        image_size=IMAGE_SIZE,
        action_repeat=ACTION_REPEAT,
        frame_stack=FRAME_STACK,
        options=options,
    )
    envs.reset(seed=0)
    envs.step(envs.action_space.sample())  # workers started and renderers warm
    start = time.perf_counter()
    for _ in range(steps // num_envs):  # the same number of agent steps as the baseline
        envs.step(envs.action_space.sample())  # SAME_STEP: ended episodes reset themselves
    elapsed = time.perf_counter() - start
    envs.close()
    return (steps // num_envs) * num_envs / elapsed


def env_steps_per_second_of(env: gym.Env, steps: int) -> float:
    env.reset(seed=0)
    env.step(env.action_space.sample())  # warm the renderer up
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def updates_per_second(batch_size: int, updates: int, channels_last: bool, device: str) -> float:
    torch.manual_seed(0)
    agent = DrQV2Agent(
        DrQV2Config(channels_last=channels_last), obs_shape=(9, 84, 84), action_dim=6, device=device
    )
    rng = np.random.default_rng(0)
    batch: dict[str, np.ndarray] = {
        "obs": rng.integers(0, 256, (batch_size, 9, 84, 84), dtype=np.uint8),
        "next_obs": rng.integers(0, 256, (batch_size, 9, 84, 84), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (batch_size, 6)).astype(np.float32),
        "reward": rng.uniform(0, 1, (batch_size, 1)).astype(np.float32),
        "discount": np.full((batch_size, 1), 0.99**3, np.float32),
    }
    agent.update(batch, step=10_000)  # warm-up (allocator, kernels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(updates):
        agent.update(batch, step=10_000)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cheetah_run")
    parser.add_argument("--steps", type=int, default=200, help="agent steps per env measurement")
    parser.add_argument("--updates", type=int, default=5, help="updates per learner measurement")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--num-envs", type=int, default=2, help="worker processes for the vectorised collection row"
    )
    parser.add_argument("--suites", nargs="+", help="suite/task pairs (default: one per suite)")
    args = parser.parse_args()
    if args.num_envs < 1:
        parser.error(f"--num-envs must be >= 1, got {args.num_envs}")
    names = args.suites or [
        "builtin/reach",
        f"dmc/{args.task}",
        "metaworld/reach",
        "adroit/door",
        "robosuite/lift",
    ]
    if any(name.count("/") != 1 for name in names):
        parser.error(f"--suites takes suite/task pairs, got {names}")
    suites = [tuple(name.split("/")) for name in names]

    visuals = {
        (suite, task): (
            env_steps_per_second(suite, task, args.steps, fast_render=False),
            env_steps_per_second(suite, task, args.steps, fast_render=True),
        )
        for suite, task in suites
        if suite not in NO_FAST_RENDER
    }
    collection = {
        (suite, task): (
            collection_steps_per_second(suite, task, args.steps, 0),
            collection_steps_per_second(suite, task, args.steps, args.num_envs),
        )
        for suite, task in suites
    }
    learn_base = updates_per_second(args.batch_size, args.updates, False, args.device)
    learn_cl = updates_per_second(args.batch_size, args.updates, True, args.device)

    rows = [
        *(
            (
                f"env agent-steps/s ({suite}/{task})",
                default,
                fast,
                "default visuals",
                "fast_render",
            )
            for (suite, task), (default, fast) in visuals.items()
        ),
        *(
            (
                f"collection agent-steps/s ({suite}/{task})",
                single,
                vectorised,
                "1 env in-process",
                f"{args.num_envs} env processes",
            )
            for (suite, task), (single, vectorised) in collection.items()
        ),
        (
            f"learner updates/s (batch {args.batch_size}, 9x84x84)",
            learn_base,
            learn_cl,
            "NCHW encoder",
            "channels_last",
        ),
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print("84x84 pixels, action repeat 2, frame stack 3; collection rows use fast visuals")
    print(f"{'measure':<48} {'baseline':>10} {'ours':>10} {'ratio':>7}  (baseline -> ours)")
    for name, base, ours, base_name, ours_name in rows:
        print(
            f"{name:<48} {base:>10.2f} {ours:>10.2f} {ours / base:>6.2f}x"
            f"  ({base_name} -> {ours_name})"
        )
    print(
        json.dumps(
            {
                "device": args.device,
                "env_steps_per_s": {
                    f"{suite}/{task}": {
                        "default_visuals": default,
                        "fast_render": fast,
                        "ratio": fast / default,
                    }
                    for (suite, task), (default, fast) in visuals.items()
                },
                "collection_steps_per_s": {
                    f"{suite}/{task}": {
                        "single": single,
                        "vectorised": vectorised,
                        "num_envs": args.num_envs,
                        "ratio": vectorised / single,
                    }
                    for (suite, task), (single, vectorised) in collection.items()
                },
                "updates_per_s": {
                    "nchw": learn_base,
                    "channels_last": learn_cl,
                    "ratio": learn_cl / learn_base,
                    "batch_size": args.batch_size,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
