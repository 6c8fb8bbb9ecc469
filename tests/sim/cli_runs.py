"""Shared pieces of the tests that drive the real CLIs on the built-in reach task: running a
console script, reading its CSVs, and scripted demos of the clean task."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from robotrl.demos import DemoStats, collect_demos
from robotrl.envs import make_env
from robotrl_sim.builtin.reach import scripted_action

BIN = Path(sys.executable).parent
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
