"""A run SIGKILLed at several points and resumed equals an uninterrupted one (CPU, one thread).

Four processes train one run: killed during collection, during an update and while a checkpoint
is written (``tests/sim/killed_train.py``), then resumed to the end. Their ``train.csv`` (but its
wall-clock ``fps`` column), ``eval.csv``, checkpoints and final weights, optimizer and RNG states
must equal those of one uninterrupted run with the same seed, bit for bit.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robotrl.checkpoint import flatten_state, list_checkpoints, load_checkpoint

BIN = Path(sys.executable).parent
KILLED_TRAIN = Path(__file__).with_name("killed_train.py")
# 600 frames: 6 episodes of 50 agent steps (action repeat 2), updates from frame 200 on,
# an evaluation and a checkpoint every 200 frames.
ARGS = [
    "frames=600",
    "seed_frames=200",
    "eval_every_frames=200",
    "eval_episodes=1",
    "checkpoint_every_frames=200",
    "agent.hidden_dim=32",
    "agent.feature_dim=16",
    "replay.batch_size=8",
    "logger.progress_bar=false",
    "logger.tensorboard=false",
    "logger.save_video=false",
]
RUN = Path("builtin", "reach", "drqv2", "default", "seed1")


def train(root: Path, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    command = (
        [str(BIN / "robotrl-train")] if kill_at is None else [sys.executable, str(KILLED_TRAIN)]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"KILL_AT": kill_at} if kill_at else {})}
    return subprocess.run(
        [*command, f"runs_root={root / 'runs'}", *ARGS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def train_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "train.csv") as handle:
        return [{k: v for k, v in row.items() if k != "fps"} for row in csv.DictReader(handle)]


def final_state(run_dir: Path) -> tuple[dict, dict[str, torch.Tensor], object]:
    checkpoint = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])
    tensors, skeleton = flatten_state(checkpoint.state)
    return checkpoint.meta["counters"], tensors, (skeleton, checkpoint.meta["rng"])


@pytest.mark.duration(45)
def test_a_run_killed_three_times_and_resumed_equals_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert train(whole).returncode == 0
    # collection at agent step 129 (checkpoint at frame 200 = step 100); the 60th update after
    # resuming at step 100 (step 218, past the checkpoint at 400); the checkpoint at 600.
    for kill_at in ("collection:130", "update:60", "checkpoint:1"):
        done = train(killed, kill_at)
        assert done.returncode == -signal.SIGKILL, (kill_at, done.stderr[-3000:])
    done = train(killed)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from frame 400" in done.stdout

    expected, resumed = whole / "runs" / RUN, killed / "runs" / RUN
    assert train_rows(resumed) == train_rows(expected)
    assert (resumed / "eval.csv").read_text() == (expected / "eval.csv").read_text()
    assert [p.name for p in list_checkpoints(resumed / "checkpoints")] == [
        p.name for p in list_checkpoints(expected / "checkpoints")
    ]
    counters, tensors, rest = final_state(resumed)
    expected_counters, expected_tensors, expected_rest = final_state(expected)
    assert counters == expected_counters and counters["last_checkpoint_frame"] == 600
    assert rest == expected_rest
    assert tensors.keys() == expected_tensors.keys()
    differ = [name for name in tensors if not torch.equal(tensors[name], expected_tensors[name])]
    assert not differ, differ
