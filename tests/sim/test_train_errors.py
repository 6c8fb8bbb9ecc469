"""`robotrl-train`'s user errors: one line on stderr, exit code 2, no run directory left."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robotrl.cli.train import is_user_error

BIN = Path(sys.executable).parent
TINY_RUN = [
    "frames=200",
    "seed_frames=100",
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


def run(script: str, cwd: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / script), *overrides], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return run("robotrl-train", tmp_path, f"runs_root={tmp_path / 'runs'}", *overrides)


def assert_one_line_error(
    done: subprocess.CompletedProcess[str], *expected: str, script: str = "robotrl-train"
) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{script}: "), done.stderr[-3000:]
    for text in expected:
        assert text in lines[0]


def assert_no_run_directory(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), sorted(runs.rglob("*"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "+agent.hiden_dim=64",
            ["unknown config key agent.hiden_dim; did you mean agent.hidden_dim"],
        ),
        (
            "agent.hiden_dim=64",
            ["unknown config key agent.hiden_dim; did you mean agent.hidden_dim"],
        ),
        ("frames=lots", ["frames", "lots"]),
        (
            "task=builtin/rech",
            ["task=builtin/rech is not a config; did you mean task=builtin/reach"],
        ),
        ("frames=-5", ["frames must be a positive integer, got -5"]),
        ("logger=wandb", ["wandb", "pip install"]),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_user_errors_are_one_line_exit_2_and_leave_no_run_directory(tmp_path, override, expected):
    assert_one_line_error(train(tmp_path, override), *expected)
    assert_no_run_directory(tmp_path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200-frame run of the default agent and task (one checkpoint, at frame 200)."""
    root = tmp_path_factory.mktemp("finished")
    done = run("robotrl-train", root, f"runs_root={root / 'runs'}", *TINY_RUN)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs" / "builtin" / "reach" / "drqv2" / "default" / "seed1"


def test_eval_refuses_a_checkpoint_with_flipped_bytes_in_one_line(tmp_path, finished_run):
    checkpoint = tmp_path / "step_000000000200"
    shutil.copytree(finished_run / "checkpoints" / checkpoint.name, checkpoint)
    tensors = checkpoint / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 48] = bytes(
        b ^ 0xFF for b in data[len(data) // 2 :][:48]
    )
    tensors.write_bytes(bytes(data))
    done = run("robotrl-eval", tmp_path, f"checkpoint={checkpoint}", "video=false")
    assert_one_line_error(done, "tensors.safetensors", "SHA-256 mismatch", script="robotrl-eval")
    assert not (tmp_path / "eval").exists()


def test_resuming_a_run_with_another_agent_is_one_line_and_keeps_the_run(tmp_path, finished_run):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    done = train(tmp_path, f"hydra.run.dir={run_dir}", "agent=drm", *TINY_RUN, "frames=400")
    assert_one_line_error(done, "was written by robotrl.agents.drqv2:DrQV2Agent")
    assert (run_dir / "checkpoints" / "step_000000000200" / "checksums.json").is_file()


def test_the_run_log_records_where_the_run_is_and_how_it_ended(finished_run):
    text = (finished_run / "train.log").read_text()
    assert f"Run directory:  {finished_run}" in text and "Final eval:" in text


def test_eval_config_errors_are_one_line_too(tmp_path):
    done = run("robotrl-eval", tmp_path, f"checkpoint={tmp_path}", "episods=3")
    assert_one_line_error(
        done, "unknown config key episods; did you mean episodes?", script="robotrl-eval"
    )


def test_only_a_missing_third_party_module_is_a_user_error():
    """A missing extra is one line; a broken import of our own code keeps its traceback."""
    assert is_user_error(ModuleNotFoundError("no wandb", name="wandb"))
    assert not is_user_error(ModuleNotFoundError("no robotrl.x", name="robotrl.agents.x"))
    assert not is_user_error(ImportError("cannot import name 'Thing' from 'robotrl.nn'"))
    assert not is_user_error(RuntimeError("a bug"))
