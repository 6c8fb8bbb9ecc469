"""End to end through the console scripts: real Hydra, real MuJoCo, real files, real SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
TINY_AGENT = [
    "agent.hidden_dim=32",
    "agent.feature_dim=16",
    "replay.batch_size=8",
    "logger.progress_bar=false",
    "logger.tensorboard=false",
]


def env_vars() -> dict[str, str]:
    return {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONUNBUFFERED": "1"}


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=env_vars(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def checkpoint_frames(run_dir: Path) -> list[int]:
    found = sorted((run_dir / "checkpoints").glob("step_*"))
    return [int(p.name.removeprefix("step_")) for p in found if (p / "meta.json").exists()]


def start_and_kill_after_checkpoint(args: list[str], cwd: Path, run_dir: Path, wanted: int) -> int:
    """Start training; SIGKILL it once a checkpoint at frame >= `wanted` exists; return it."""
    process = subprocess.Popen(
        args, cwd=cwd, env=env_vars(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            frames = checkpoint_frames(run_dir)
            if frames and frames[-1] >= wanted:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                return frames[-1]
            if process.poll() is not None:
                out = process.stdout.read() if process.stdout else ""
                pytest.fail(f"training ended before it could be killed:\n{out[-5000:]}")
            time.sleep(0.2)
        pytest.fail("no checkpoint appeared in time")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    raise AssertionError("unreachable")


def read_frames(path: Path) -> list[int]:
    with open(path) as handle:
        return [int(row["frame"]) for row in csv.DictReader(handle)]


def test_sigkill_then_same_command_resumes_with_replay_and_counters(tmp_path):
    total = 1600
    args = [
        str(BIN / "robotrl-train"),
        f"runs_root={tmp_path / 'runs'}",
        f"frames={total}",
        "seed_frames=200",
        "checkpoint_every_frames=200",
        "eval_every_frames=800",
        "eval_episodes=1",
        "env.image_size=32",
        "logger.save_video=false",
        *TINY_AGENT,
    ]
    run_dir = tmp_path / "runs" / "builtin" / "reach" / "drqv2" / "default" / "seed1"
    killed_at = start_and_kill_after_checkpoint(args, tmp_path, run_dir, wanted=600)
    meta = json.loads(
        (run_dir / "checkpoints" / f"step_{killed_at:012d}" / "meta.json").read_text()
    )
    assert meta["counters"]["frame"] == killed_at
    episodes_at_checkpoint = meta["replay_episodes"]
    assert episodes_at_checkpoint == killed_at // 100  # 50 agent steps x action repeat 2
    episodes_on_disk = len(list((run_dir / "replay").glob("*.npz")))
    assert episodes_on_disk >= episodes_at_checkpoint

    done = run_cli(args, tmp_path)
    assert f"resumed from frame {killed_at}" in done.stdout
    final = json.loads((run_dir / "checkpoints" / f"step_{total:012d}" / "meta.json").read_text())
    assert final["counters"]["frame"] == total and final["counters"]["step"] == total // 2
    assert final["counters"]["episode"] == total // 100 == final["replay_episodes"]
    # episodes finished after the checkpoint were set aside, not mixed in or deleted
    aside = list((run_dir / "replay" / "after_checkpoint").glob("*.npz"))
    assert len(aside) == episodes_on_disk - episodes_at_checkpoint
    assert len(list((run_dir / "replay").glob("*.npz"))) == total // 100
    train_frames = read_frames(run_dir / "train.csv")
    assert train_frames == list(range(100, total + 1, 100))  # each episode logged exactly once


@pytest.mark.duration(138)
def test_dmc_smoke_train_kill_resume_eval(tmp_path):
    args = [
        str(BIN / "robotrl-train"),
        "task=dmc/cartpole_swingup",
        "+experiment=smoke",
        "task.options.fast_render=true",
        f"runs_root={tmp_path / 'runs'}",
        "logger.progress_bar=false",
    ]
    run_dir = tmp_path / "runs" / "dmc" / "cartpole_swingup" / "drqv2" / "smoke" / "seed1"
    killed_at = start_and_kill_after_checkpoint(args, tmp_path, run_dir, wanted=2000)
    assert killed_at == 2000
    done = run_cli(args, tmp_path)
    assert "resumed from frame 2000" in done.stdout
    assert checkpoint_frames(run_dir)[-1] == 4000
    assert (run_dir / "learning_curve.png").stat().st_size > 0
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))

    checkpoint = run_dir / "checkpoints" / f"step_{4000:012d}"
    evaluated = run_cli(
        [str(BIN / "robotrl-eval"), f"checkpoint={checkpoint}", "episodes=2", "video_episodes=1"],
        tmp_path,
    )
    out_dir = run_dir / "eval" / checkpoint.name
    with open(out_dir / "episodes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["episode"] for r in rows] == ["0", "1"]
    assert {k: rows[0][k] for k in ("algo", "suite", "task", "seed", "step", "length")} == {
        "algo": "drqv2/smoke",  # agent/experiment, as robotrl-report names the run
        "suite": "dmc",
        "task": "cartpole_swingup",
        "seed": "1",
        "step": "4000",
        "length": "500",
    }
    assert "success" in rows[0] and float(rows[0]["return"]) >= 0
    assert (out_dir / "episode.mp4").stat().st_size > 1000
    assert "Episodes CSV" in evaluated.stdout


def test_eval_of_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    broken = tmp_path / "step_000000000100"
    broken.mkdir()
    (broken / "meta.json").write_text("{}")
    (broken / "tensors.safetensors").write_bytes(b"not a safetensors file")
    done = subprocess.run(
        [str(BIN / "robotrl-eval"), f"checkpoint={broken}"],
        cwd=tmp_path,
        env=env_vars(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "robotrl-eval: checkpoint" in done.stderr and "format version" in done.stderr


def test_seed_sweep_with_the_basic_launcher(tmp_path):
    args = [
        str(BIN / "robotrl-train"),
        "-m",
        "seed=1,2",
        f"runs_root={tmp_path / 'runs'}",
        "frames=200",
        "seed_frames=100",
        "eval_every_frames=200",
        "eval_episodes=1",
        "env.image_size=32",
        "logger.save_video=false",
        *TINY_AGENT,
    ]
    run_cli(args, tmp_path)
    for seed in (1, 2):
        run_dir = tmp_path / "runs" / "builtin" / "reach" / "drqv2" / "default" / f"seed{seed}"
        assert checkpoint_frames(run_dir) == [200], seed
        assert (run_dir / ".hydra" / "config.yaml").exists()
