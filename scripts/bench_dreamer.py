"""Dreamer learner updates/s: eager PyTorch (baseline) vs ``agent.compile=true``, measured in the
same run on the config a task composes to.

One update is a world-model step on a ``[B, T]`` sequence batch and an actor-critic step in
imagination from every posterior state (``robotrl.agents.dreamer``). With ``agent.compile=true``
the RSSM step (GRU and prior), the posterior and the imagination policy step (actor and RSSM
step) go through ``torch.compile``; the Python loops over T and the horizon stay eager. The
first update pays for compilation and is reported on its own; the timed updates come after
``--warmup`` more.

The batches are random pixels, actions and rewards of the shapes the task's env gives (episode
starts at the first step of each sequence): an update's cost does not depend on what the pixels
show. ``agent.pretrain_updates`` is forced to 0, so no update runs the pretraining burst.

    .venv/bin/python scripts/bench_dreamer.py                          # CPU preset, builtin/reach
    .venv/bin/python scripts/bench_dreamer.py --task dmc/walker_walk +experiment=dreamer_paper
    .venv/bin/python scripts/bench_dreamer.py --updates 5 +experiment=repo   # Hydra overrides

The second is the paper's size S at 64x64, on CUDA where there is one (``--device``). Prints a
table and one JSON line. Timings depend on the machine; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch
from hydra import compose, initialize_config_module

from robotrl.agents.dreamer import DreamerAgent
from robotrl.builders import build_agent, build_env, to_train_config
from robotrl.config import TrainConfig, register_configs


def train_config(task: str, overrides: list[str]) -> TrainConfig:
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        composed = compose(
            "train",
            overrides=["agent=dreamer", f"task={task}", *overrides, "agent.pretrain_updates=0"],
        )
    return to_train_config(composed)


def sequence_batch(
    obs_shape: tuple[int, ...], action_dim: int, proprio_dim: int, batch: int, length: int
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    is_first = np.zeros((batch, length), bool)
    is_first[:, 0] = True
    prev_action = rng.uniform(-1, 1, (batch, length, action_dim)).astype(np.float32)
    prev_action[:, 0] = 0.0  # no action before an episode's first step
    data: dict[str, np.ndarray] = {
        "obs": rng.integers(0, 256, (batch, length, *obs_shape), dtype=np.uint8),
        "prev_action": prev_action,
        "reward": rng.uniform(0, 1, (batch, length)).astype(np.float32),
        "is_first": is_first,
        "is_terminal": np.zeros((batch, length), bool),
    }
    if proprio_dim:
        data["proprio"] = rng.normal(size=(batch, length, proprio_dim)).astype(np.float32)
    return data


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(
    cfg: TrainConfig, compiled: bool, device: str, updates: int, warmup: int
) -> dict[str, float]:
    """Seconds of the first update and updates/s after the warm-up, for one agent."""
    torch.manual_seed(0)
    cfg.agent.compile = compiled
    env = build_env(cfg.task, cfg.env, seed=0)
    agent = build_agent(cfg.agent, env, device)
    env.close()
    assert isinstance(agent, DreamerAgent)
    batch = sequence_batch(
        agent.obs_shape,
        agent.action_dim,
        agent.proprio_dim,
        cfg.replay.batch_size,
        agent.replay_sequence,
    )
    start = time.perf_counter()
    agent.update(batch, step=0)
    synchronize(device)
    first = time.perf_counter() - start
    for step in range(warmup):
        agent.update(batch, step=1 + step)
    synchronize(device)
    start = time.perf_counter()
    for step in range(updates):
        agent.update(batch, step=1 + warmup + step)
    synchronize(device)
    return {"first_update_s": first, "updates_per_s": updates / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="builtin/reach")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. +experiment=repo")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = train_config(args.task, args.overrides)
    results: dict[str, Any] = {
        mode: measure(cfg, mode == "compile", args.device, args.updates, args.warmup)
        for mode in ("eager", "compile")
    }
    agent_cfg = cfg.agent
    replayed = cfg.replay.batch_size * agent_cfg.sequence_length
    print(
        f"task={args.task} device={args.device} threads={args.threads} batch="
        f"{cfg.replay.batch_size}x{agent_cfg.sequence_length} GRU {agent_cfg.deter_dim} "
        f"CNN depth {agent_cfg.cnn_depth} image {cfg.env.image_size} horizon "
        f"{agent_cfg.imag_horizon} overrides={args.overrides}"
    )
    print(f"{'measure':<44}{'baseline':>10}{'ours':>10}{'ratio':>8}  (baseline -> ours)")
    eager, compiled = results["eager"], results["compile"]
    rows = [
        ("learner updates/s", eager["updates_per_s"], compiled["updates_per_s"]),
        (
            "replayed steps/s (B x T per update)",
            eager["updates_per_s"] * replayed,
            compiled["updates_per_s"] * replayed,
        ),
        (
            "first update, s (compilation included)",
            eager["first_update_s"],
            compiled["first_update_s"],
        ),
    ]
    for name, base, ours in rows:
        print(f"{name:<44}{base:>10.2f}{ours:>10.2f}{ours / base:>7.2f}x  (eager -> compile)")
    results |= {
        "task": args.task,
        "device": args.device,
        "threads": args.threads,
        "overrides": args.overrides,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
