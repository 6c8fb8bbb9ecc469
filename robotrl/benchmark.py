"""The checkpoints a ``robotrl-eval`` benchmark evaluates: runs on disk, on a task × seed grid.

A benchmark names one or more folders (``runs=[runs/dmc]``); every run directory below them
(a folder with a ``checkpoints/`` subfolder, as ``robotrl-train`` writes) is identified from its
newest checkpoint's ``meta.json``: algorithm (agent name, plus the experiment name unless it is
``default``, as ``robotrl-report`` names runs), suite, task and training seed. ``tasks`` and
``seeds`` narrow the set and must be covered for every algorithm found: a missing (task, seed)
run is an error that lists the gaps, never a silently smaller score matrix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robotrl.checkpoint import META_FILE, CheckpointError, list_checkpoints

CHECKPOINTS_DIR = "checkpoints"
WHICH_CHECKPOINTS = ("latest", "all")


class BenchmarkError(ValueError):
    """The requested benchmark cannot be assembled from the runs on disk."""


@dataclass(frozen=True)
class RunCheckpoints:
    """One training run and the checkpoints of it to evaluate (oldest first)."""

    algo: str
    suite: str
    task: str
    seed: int
    checkpoints: tuple[Path, ...]

    @property
    def task_id(self) -> str:
        return f"{self.suite}/{self.task}"


def algo_name(agent: str, exp_name: str | None) -> str:
    """``drm`` for the default experiment, ``drm/ablation`` otherwise (robotrl-report's names)."""
    return agent if exp_name in (None, "default") else f"{agent}/{exp_name}"


def read_meta(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's ``meta.json`` without loading its tensors."""
    try:
        meta: dict[str, Any] = json.loads((checkpoint / META_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {checkpoint} has no readable {META_FILE}: {err}"
        ) from err
    return meta


def run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Run directories (holding ``checkpoints/step_*``) at or below each root, sorted, unique."""
    found: set[Path] = set()
    for root in roots:
        if not root.exists():
            raise BenchmarkError(f"runs folder {root} does not exist")
        candidates = [root / CHECKPOINTS_DIR, *root.rglob(CHECKPOINTS_DIR)]
        found.update(c.parent.resolve() for c in candidates if list_checkpoints(c))
    return sorted(found)


def identify(run_dir: Path, which: str) -> RunCheckpoints:
    """The run's identity from its newest checkpoint, and the checkpoints ``which`` selects."""
    checkpoints = list_checkpoints(run_dir / CHECKPOINTS_DIR)
    meta = read_meta(checkpoints[-1])
    try:
        config = meta["config"]
        algo = algo_name(str(meta["agent_name"]), config.get("exp_name"))
        suite, task, seed = config["task"]["suite"], config["task"]["name"], int(config["seed"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {checkpoints[-1]} does not say which run it belongs to ({err!r})"
        ) from err
    chosen = checkpoints[-1:] if which == "latest" else checkpoints
    return RunCheckpoints(algo, str(suite), str(task), seed, tuple(chosen))


def select_runs(
    roots: Sequence[str | Path],
    *,
    tasks: Sequence[str] = (),
    seeds: Sequence[int] = (),
    which: str = "latest",
) -> list[RunCheckpoints]:
    """Runs under ``roots`` for ``tasks`` (``suite/task``) × ``seeds``; all found when empty.

    Every algorithm found must have exactly one run per requested (task, seed).
    """
    if which not in WHICH_CHECKPOINTS:
        raise BenchmarkError(f"checkpoints must be one of {WHICH_CHECKPOINTS}, got {which!r}")
    for task in tasks:
        if task.count("/") != 1:
            raise BenchmarkError(f"tasks are named suite/task (e.g. dmc/cheetah_run), got {task!r}")
    dirs = run_dirs(Path(root) for root in roots)
    if not dirs:
        raise BenchmarkError(f"no run with checkpoints under {', '.join(map(str, roots))}")
    runs = [identify(run_dir, which) for run_dir in dirs]
    runs = [
        run
        for run in runs
        if (not tasks or run.task_id in tasks) and (not seeds or run.seed in seeds)
    ]
    if not runs:
        raise BenchmarkError(
            f"no run under {', '.join(map(str, roots))} matches tasks {list(tasks) or 'any'} "
            f"and seeds {list(seeds) or 'any'}"
        )
    _check_grid(runs, tasks, seeds)
    return sorted(runs, key=lambda r: (r.algo, r.task_id, r.seed))


def _check_grid(runs: list[RunCheckpoints], tasks: Sequence[str], seeds: Sequence[int]) -> None:
    wanted_tasks = sorted(set(tasks) or {run.task_id for run in runs})
    wanted_seeds = sorted(set(seeds) or {run.seed for run in runs})
    problems = []
    for algo in sorted({run.algo for run in runs}):
        have: dict[tuple[str, int], int] = {}
        for run in runs:
            if run.algo == algo:
                have[run.task_id, run.seed] = have.get((run.task_id, run.seed), 0) + 1
        missing = [
            f"{t} seed {s}" for t in wanted_tasks for s in wanted_seeds if (t, s) not in have
        ]
        doubled = [f"{t} seed {s}" for (t, s), count in sorted(have.items()) if count > 1]
        if missing:
            problems.append(f"{algo} has no run for {', '.join(missing)}")
        if doubled:
            problems.append(f"{algo} has several runs for {', '.join(doubled)}")
    if problems:
        raise BenchmarkError(
            "the runs do not form a complete task x seed grid: " + "; ".join(problems)
        )
