"""`robotrl-train`'s user errors: one line on stderr, exit code 2, no run directory left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "robotrl-train"), f"runs_root={tmp_path / 'runs'}", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("robotrl-train: "), done.stderr[-3000:]
    for text in expected:
        assert text in lines[0]


def assert_no_run_directory(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), sorted(runs.rglob("*"))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["+agent.hiden_dim=64"], ["agent.hiden_dim", "agent.hidden_dim"]),
        (["frames=-5"], ["frames", "-5"]),
        (["eval_episodes=0"], ["eval_episodes", "0"]),
        (["replay.batch_size=0"], ["batch_size", "0"]),
        (["logger=wandb"], ["wandb", "pip install"]),
    ],
)
def test_user_errors_are_one_line_exit_2_and_leave_no_run_directory(tmp_path, overrides, expected):
    assert_one_line_error(train(tmp_path, *overrides), *expected)
    assert_no_run_directory(tmp_path)
