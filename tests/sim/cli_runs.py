"""Shared pieces of the tests that drive the real CLIs on the built-in reach task: running a
console script, reading its CSVs, scripted demos of the clean task, a training run and the
random policy's return on the trainer's eval episodes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from robotrl.demos import DemoStats, collect_demos
from robotrl.envs import make_batched_env, make_env
from robotrl_sim.builtin.reach import scripted_action

BIN = Path(sys.executable).parent
EVAL_EPISODES = 10
SEED = 1  # the learning tests' seed
#: Demo reset seeds start here, clear of the trainer's evaluation seeds (eval_reset_seed).
DEMO_SEED = 5000


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Runs the venv's console script ``args[0]`` with ``args[1:]``; fails the test on an error."""
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return done


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def eval_rows(run_dir: Path) -> dict[int, dict[str, str]]:
    """A run's ``eval.csv`` by frame."""
    return {int(row["frame"]): row for row in csv_rows(run_dir / "eval.csv")}


def reach_env():
    """``builtin/reach`` as the trainer builds it for these tests (32x32, repeat 2, stack 3)."""
    options = {"render_mode": None}
    return make_env(
        "builtin", "reach", seed=0, image_size=32, action_repeat=2, frame_stack=3, options=options
    )


def reach_demos(directory: Path, episodes: int, seed: int = DEMO_SEED) -> DemoStats:
    """Scripted-expert demos of the clean reach task (DART noise 0.3) written to ``directory``."""
    env = reach_env()
    try:
        return collect_demos(
            env,
            scripted_action,
            episodes=episodes,
            directory=directory,
            frame_stack=3,
            seed=seed,
            action_noise=0.3,
        )
    finally:
        env.close()


def random_policy_return(eval_seed: int) -> float:
    """Mean return of uniform random actions on the trainer's eval episodes (same reset seeds)."""
    env = make_env("builtin", "reach", seed=0, image_size=32, action_repeat=2, frame_stack=3)
    env.action_space.seed(0)
    returns = []
    for index in range(EVAL_EPISODES):
        env.reset(seed=eval_seed + index)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def train_reach(
    tmp_path: Path,
    agent: str,
    frames: int,
    *overrides: str,
    timeout: float = 1500,
    seed: int = SEED,
    exp_name: str = "default",
) -> tuple[Path, dict[int, dict[str, str]]]:
    """One ``robotrl-train`` run of ``agent`` on builtin/reach (evaluated at 0 and ``frames``):
    its run directory and its ``eval.csv`` rows by frame. ``exp_name``: the one the overrides
    set (an ``+experiment`` sets its own), which names the run directory."""
    run(
        "robotrl-train",
        f"agent={agent}",
        f"runs_root={tmp_path}",
        f"seed={seed}",
        f"frames={frames}",
        f"eval_every_frames={frames}",
        f"eval_episodes={EVAL_EPISODES}",
        "logger.progress_bar=false",
        "logger.tensorboard=false",
        *overrides,
        timeout=timeout,
    )
    run_dir = tmp_path / "builtin" / "reach" / agent / exp_name / f"seed{seed}"
    return run_dir, eval_rows(run_dir)


def warp_random_policy_return(eval_seed: int, worlds: int) -> float:
    """Mean return of uniform random actions on the trainer's batched eval episodes: ``worlds``
    worlds reset with ``eval_seed``, one episode each (``run_episodes_batched``)."""
    env = make_batched_env(
        "warp", "reach", num_worlds=worlds, seed=0, image_size=32, action_repeat=2, frame_stack=3
    )
    env.reset(seed=eval_seed)
    generator = torch.Generator().manual_seed(0)
    done = torch.zeros(worlds, dtype=torch.bool)
    while not done.all():
        actions = torch.rand(worlds, 2, generator=generator) * 2 - 1
        _, _, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
    env.close()
    return float(info["episode_return"].mean())
