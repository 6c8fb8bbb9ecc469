"""Throughput: env+render agent-steps/s (default vs fast visuals) and learner updates/s.

Every figure is printed beside a baseline measured in the same run, as a ratio:
- env: DMC with default visuals (baseline) vs ``fast_render`` (shadows, reflections, skybox off);
- learner: DrQ-v2 updates at batch 256 with a contiguous (NCHW) encoder (baseline) vs
  ``channels_last``.

    .venv/bin/python scripts/bench_throughput.py [--task cheetah_run] [--steps 200] [--updates 5]

Prints a table and one JSON line. Timings depend on the machine; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.envs import make_env


def env_steps_per_second(task: str, steps: int, fast_render: bool) -> float:
    env = make_env(
        "dmc",
        task,
        seed=0,
        image_size=84,
        action_repeat=2,
        frame_stack=3,
        options={"fast_render": fast_render},
    )
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
    args = parser.parse_args()

    env_default = env_steps_per_second(args.task, args.steps, fast_render=False)
    env_fast = env_steps_per_second(args.task, args.steps, fast_render=True)
    learn_base = updates_per_second(args.batch_size, args.updates, False, args.device)
    learn_cl = updates_per_second(args.batch_size, args.updates, True, args.device)

    rows = [
        (
            f"env agent-steps/s (dmc/{args.task}, 84x84, repeat 2)",
            env_default,
            env_fast,
            "default visuals",
            "fast_render",
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
    print(f"{'measure':<48} {'baseline':>10} {'ours':>10} {'ratio':>7}  (baseline -> ours)")
    for name, base, ours, base_name, ours_name in rows:
        print(
            f"{name:<48} {base:>10.2f} {ours:>10.2f} {ours / base:>6.2f}x"
            f"  ({base_name} -> {ours_name})"
        )
    print(
        json.dumps(
            {
                "task": args.task,
                "device": args.device,
                "env_steps_per_s": {
                    "default_visuals": env_default,
                    "fast_render": env_fast,
                    "ratio": env_fast / env_default,
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
