"""Choosing a benchmark's checkpoints: run discovery, identity from meta.json, the task x seed grid.

The run directories here hold only ``meta.json`` files (no tensors): selection reads nothing
else. Evaluating real checkpoints is tested in tests/sim/test_benchmark_eval.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robotrl.benchmark import BenchmarkError, algo_name, select_runs
from robotrl.checkpoint import CheckpointError, checkpoint_name
from robotrl.config import EvalConfig


def write_run(
    root: Path, task: str, seed: int, *, agent: str = "drqv2", exp: str = "default", frames=(2000,)
) -> Path:
    suite, name = task.split("/")
    run_dir = root / suite / name / agent / exp / f"seed{seed}"
    for frame in frames:
        checkpoint = run_dir / "checkpoints" / checkpoint_name(frame)
        checkpoint.mkdir(parents=True)
        meta = {
            "agent_name": agent,
            "config": {"task": {"suite": suite, "name": name}, "seed": seed, "exp_name": exp},
            "counters": {"frame": frame},
        }
        (checkpoint / "meta.json").write_text(json.dumps(meta))
    return run_dir


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    for task in ("dmc/cheetah_run", "metaworld/reach"):
        for seed in (1, 2):
            write_run(tmp_path, task, seed, frames=(2000, 4000))
    return tmp_path


def test_finds_every_run_and_its_newest_checkpoint(grid: Path) -> None:
    runs = select_runs([grid])
    assert [(r.algo, r.task_id, r.seed) for r in runs] == [
        ("drqv2", "dmc/cheetah_run", 1),
        ("drqv2", "dmc/cheetah_run", 2),
        ("drqv2", "metaworld/reach", 1),
        ("drqv2", "metaworld/reach", 2),
    ]
    assert all([c.name for c in r.checkpoints] == [checkpoint_name(4000)] for r in runs)


def test_all_checkpoints_oldest_first(grid: Path) -> None:
    runs = select_runs([grid / "dmc"], which="all")
    assert [[c.name for c in r.checkpoints] for r in runs] == [
        [checkpoint_name(2000), checkpoint_name(4000)]
    ] * 2


def test_tasks_and_seeds_narrow_the_selection(grid: Path) -> None:
    runs = select_runs([grid], tasks=["metaworld/reach"], seeds=[2])
    assert [(r.task_id, r.seed) for r in runs] == [("metaworld/reach", 2)]
    # A run directory itself is a valid root too.
    one = select_runs([grid / "dmc" / "cheetah_run" / "drqv2" / "default" / "seed1"])
    assert [(r.task_id, r.seed) for r in one] == [("dmc/cheetah_run", 1)]


def test_an_incomplete_grid_names_the_missing_runs(grid: Path) -> None:
    write_run(grid, "dmc/cheetah_run", 3, agent="drm")
    with pytest.raises(BenchmarkError) as caught:
        select_runs([grid], tasks=["dmc/cheetah_run", "metaworld/reach"], seeds=[1, 2, 3])
    message = str(caught.value)
    assert "drm has no run for dmc/cheetah_run seed 1, dmc/cheetah_run seed 2, metaworld/reach" in (
        message
    )
    assert "drqv2 has no run for dmc/cheetah_run seed 3, metaworld/reach seed 3" in message


def test_two_runs_of_one_grid_cell_are_an_error(grid: Path, tmp_path_factory) -> None:
    other = tmp_path_factory.mktemp("elsewhere")
    write_run(other, "dmc/cheetah_run", 1)
    with pytest.raises(BenchmarkError, match="several runs for dmc/cheetah_run seed 1"):
        select_runs([grid, other], tasks=["dmc/cheetah_run"])


def test_experiments_are_separate_algorithms(tmp_path: Path) -> None:
    write_run(tmp_path, "dmc/cheetah_run", 1)
    write_run(tmp_path, "dmc/cheetah_run", 1, exp="ablation")
    assert [r.algo for r in select_runs([tmp_path])] == ["drqv2", "drqv2/ablation"]
    assert algo_name("drm", "default") == "drm" and algo_name("drm", None) == "drm"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": ["cheetah_run"]}, "tasks are named suite/task"),
        ({"which": "best"}, "checkpoints must be one of"),
        ({"seeds": [7]}, "no run under"),
    ],
)
def test_bad_selections_are_clear_errors(grid: Path, kwargs, message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        select_runs([grid], **kwargs)


def test_missing_folder_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="does not exist"):
        select_runs([tmp_path / "nope"])
    with pytest.raises(BenchmarkError, match="no run with checkpoints"):
        select_runs([tmp_path])


def test_a_meta_without_identity_is_a_checkpoint_error(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "dmc/cheetah_run", 1)
    (run_dir / "checkpoints" / checkpoint_name(2000) / "meta.json").write_text('{"config": {}}')
    with pytest.raises(CheckpointError, match="does not say which run"):
        select_runs([tmp_path])
    (run_dir / "checkpoints" / checkpoint_name(2000) / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"no readable meta\.json"):
        select_runs([tmp_path])


def test_eval_config_needs_one_mode() -> None:
    with pytest.raises(ValueError, match="either checkpoint=PATH"):
        EvalConfig()
    with pytest.raises(ValueError, match="not both"):
        EvalConfig(checkpoint="x", runs=["runs"])
    with pytest.raises(ValueError, match="need runs="):
        EvalConfig(checkpoint="x", seeds=[1])
    assert EvalConfig(runs=["runs"], tasks=["dmc/cheetah_run"]).checkpoints == "latest"
