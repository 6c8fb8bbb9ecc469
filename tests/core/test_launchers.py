"""Cluster launcher presets: `hydra/launcher=slurm` (submitit) and `hydra/launcher=ray`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from robotrl.cli.launchers import check_launcher_extras
from robotrl.config import register_configs

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def hydra_conf():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        yield


def test_slurm_preset_extends_the_submitit_slurm_launcher(hydra_conf):
    cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (
        launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    )
    assert (launcher.gpus_per_node, launcher.nodes, launcher.timeout_min) == (1, 1, 4320)
    assert launcher.submitit_folder == "runs/.submitit/%j"  # inside the sweep root


def test_ray_preset_targets_the_ray_launcher_and_reads_ray_address(hydra_conf, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    cfg = compose("train", overrides=["hydra/launcher=ray"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.init.address == "ray://head:10001"
    assert launcher.ray.remote.num_cpus == 2


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None,
    reason="the ray extra is installed here, so its absence cannot be shown",
)
def test_missing_ray_extra_is_a_clear_error():
    with pytest.raises(SystemExit, match=r"pip install 'robotrl\[ray\]'"):
        check_launcher_extras(["-m", "hydra/launcher=ray", "seed=1,2"])
    done = subprocess.run(
        [str(BIN / "robotrl-train"), "-m", "hydra/launcher=ray", "seed=1,2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "needs the 'ray' extra" in done.stderr


def test_a_sweep_runs_through_submitit(tmp_path):
    """The slurm preset's code path (submitit) with its local executor: real jobs, real files."""
    done = subprocess.run(
        [
            str(BIN / "robotrl-train"),
            "-m",
            "hydra/launcher=submitit_local",
            "seed=1,2",
            f"runs_root={tmp_path / 'runs'}",
            "frames=200",
            "seed_frames=100",
            "eval_every_frames=200",
            "eval_episodes=1",
            "logger.save_video=false",
            "logger.progress_bar=false",
            "agent.hidden_dim=16",
            "replay.batch_size=4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for seed in (1, 2):
        run_dir = tmp_path / "runs" / "builtin" / "reach" / "drqv2" / "default" / f"seed{seed}"
        assert (run_dir / "checkpoints" / f"step_{200:012d}" / "meta.json").exists(), seed
    assert list((tmp_path / "runs" / ".submitit").iterdir())
