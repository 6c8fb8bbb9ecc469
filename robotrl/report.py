"""Benchmark reports with rliable: IQM with stratified-bootstrap CIs, performance profiles,
probability of improvement and sample-efficiency curves, from tidy score tables.

Scores come from `robotrl.scores` (DMC return / 1000, success rate elsewhere) and form one
[runs × tasks] matrix per algo at each frame budget. Every bootstrap is seeded: rliable 1.2.0
draws its resampling indices from NumPy's global generator (its ``random_state`` argument does
not reach them), so each call here seeds that generator with the report seed and restores its
previous state afterwards. Each algo (and each pair) gets its own seeded call, so adding an
algo to a report leaves the others' numbers unchanged.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from robotrl.logger import atomic_write
from robotrl.plots import (
    Curve,
    frames_label,
    plot_performance_profiles,
    plot_sample_efficiency,
    plot_task_curves,
)
from robotrl.reference import PUBLISHED_SUFFIX
from robotrl.scores import (
    ScoreError,
    empty_scores,
    report_tasks,
    score_matrix,
    score_stack,
    scores_at,
)

_RLIABLE_HINT = "robotrl-report needs rliable: pip install rliable==1.2.0 arch==7.2.0"
MAX_CURVE_POINTS = 60
PROFILE_TAUS = np.linspace(0.0, 1.0, 101)


# -- rliable -----------------------------------------------------------------------------------


def load_rliable() -> tuple[ModuleType, ModuleType]:
    """rliable's ``library`` and ``metrics`` modules, with a loud error when it is missing.

    rliable 1.2.0 needs ``arch < 8``. Every such arch decorates a method, at import time, with
    pandas' private ``deprecate_kwarg`` using its pre-pandas-3 signature, which pandas 3 rejects
    (arch 8 fixes that but no longer accepts the ``random_state`` argument rliable passes). So
    arch is imported with a call-compatible ``deprecate_kwarg`` in place, restored right after.
    """
    try:
        _import_arch_bootstrap()
        library = importlib.import_module("rliable.library")
        metrics = importlib.import_module("rliable.metrics")
    except ImportError as err:
        raise ImportError(f"{_RLIABLE_HINT} ({err})") from err
    return library, metrics


def _import_arch_bootstrap() -> None:
    from pandas.util import _decorators

    current = _decorators.deprecate_kwarg
    if next(iter(inspect.signature(current).parameters)) != "klass":
        importlib.import_module("arch.bootstrap")  # pandas < 3: arch imports as it is
        return

    def compatible(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str):  # the old (old_arg_name, new_arg_name, ...) form
            return current(FutureWarning, *args, **kwargs)
        return current(*args, **kwargs)

    _decorators.deprecate_kwarg = compatible
    try:
        importlib.import_module("arch.bootstrap")
    finally:
        _decorators.deprecate_kwarg = current


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (which rliable's bootstrap draws from); restore it after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _bootstrap(
    scores: np.ndarray | list[np.ndarray],
    func: Callable[..., Any],
    *,
    reps: int,
    seed: int,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    library, _ = load_rliable()
    with seeded_numpy(seed):
        points, intervals = library.get_interval_estimates(
            {"scores": scores},
            func,
            reps=reps,
            confidence_interval_size=confidence,
        )
    return np.atleast_1d(points["scores"]), np.reshape(intervals["scores"], (2, -1))


def iqm_with_ci(matrix: np.ndarray, *, reps: int, seed: int) -> Estimate:
    """IQM of a [runs × tasks] matrix with a 95% stratified-bootstrap (percentile) CI."""
    _, metrics = load_rliable()
    point, interval = _bootstrap(
        matrix, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps, seed=seed
    )
    return Estimate(float(point[0]), float(interval[0, 0]), float(interval[1, 0]))


def probability_of_improvement(x: np.ndarray, y: np.ndarray, *, reps: int, seed: int) -> Estimate:
    """P(X > Y), averaged over tasks, with a 95% CI (runs of X and Y resampled independently)."""
    _, metrics = load_rliable()
    point, interval = _bootstrap([x, y], metrics.probability_of_improvement, reps=reps, seed=seed)
    return Estimate(float(point[0]), float(interval[0, 0]), float(interval[1, 0]))


def performance_profile(matrix: np.ndarray, taus: np.ndarray, *, reps: int, seed: int) -> Curve:
    """Fraction of runs (over all tasks) scoring above each tau, with 95% CI bands."""
    library, _ = load_rliable()
    with seeded_numpy(seed):
        profiles, intervals = library.create_performance_profile(
            {"scores": matrix}, taus, reps=reps
        )
    return Curve(taus, profiles["scores"], intervals["scores"][0], intervals["scores"][1])


def iqm_per_frame(stack: np.ndarray) -> np.ndarray:
    """rliable's IQM (the 25%-trimmed mean over runs and tasks) of each [runs × tasks × frames]
    slice, in one vectorised call."""
    import scipy.stats  # rliable's dependency, like everything statistical here

    return np.asarray(scipy.stats.trim_mean(stack.reshape(-1, stack.shape[-1]), 0.25, axis=0))


def iqm_curve(frames: np.ndarray, stack: np.ndarray, *, reps: int, seed: int) -> Curve:
    """IQM against frames from a [runs × tasks × frames] stack, with 95% CI bands."""
    point, interval = _bootstrap(stack, iqm_per_frame, reps=reps, seed=seed)
    return Curve(frames, point, interval[0], interval[1])


# -- the report --------------------------------------------------------------------------------


@dataclass
class Report:
    """What `build_report` computed and wrote."""

    tasks: list[str]
    frames: list[int]
    algos: list[str]
    runs_per_task: dict[str, int]
    iqm: dict[int, dict[str, Estimate]] = field(default_factory=dict)
    improvement: dict[int, dict[tuple[str, str], Estimate]] = field(default_factory=dict)
    task_means: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    reps: int = 0
    curve_reps: int = 0
    seed: int = 0


def build_report(
    scores: pd.DataFrame,
    out_dir: Path,
    *,
    frames: Sequence[int],
    reference: pd.DataFrame | None = None,
    reps: int = 50_000,
    curve_reps: int = 2_000,
    seed: int = 0,
) -> Report:
    """Compute the report on the tasks of `scores` and write it to `out_dir`.

    `reference` (published curves, e.g. `robotrl.reference.load_reference("drqv2")`) joins the
    aggregate comparison when it covers every task of the report, and is otherwise drawn only in
    the per-task curves and table where it has the task. With no `scores`, the report is on the
    reference's own tasks. `reps` bootstrap replications go into each IQM and its CI;
    `curve_reps` into the performance profiles, the sample-efficiency bands and the
    probability-of-improvement CIs (rliable's own default for profiles is 2000).
    """
    if scores.empty and (reference is None or reference.empty):
        raise ScoreError("nothing to report: no runs and no reference curves")
    budgets = sorted({int(f) for f in frames})
    if not budgets or budgets[0] <= 0:
        raise ScoreError(f"frame budgets must be positive; got {list(frames)}")
    tasks = report_tasks(scores if not scores.empty or reference is None else reference)
    aggregated, overlay, notes = _place_reference(scores, reference, tasks)
    algos = _algo_order(aggregated["algo"].unique())
    report = Report(
        tasks, budgets, algos, {}, reps=reps, curve_reps=curve_reps, seed=seed, notes=notes
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_run, profiles = [], {}
    for frame in budgets:
        at_budget = scores_at(aggregated, frame)
        per_run.append(at_budget)
        matrices = {algo: score_matrix(at_budget, algo, tasks) for algo in algos}
        report.runs_per_task = {algo: m.shape[0] for algo, m in matrices.items()}
        report.iqm[frame] = {
            algo: iqm_with_ci(m, reps=reps, seed=seed) for algo, m in matrices.items()
        }
        report.improvement[frame] = {
            (x, y): probability_of_improvement(matrices[x], matrices[y], reps=curve_reps, seed=seed)
            for x, y in itertools.combinations(algos, 2)
        }
        profiles[frame] = {
            algo: performance_profile(m, PROFILE_TAUS, reps=curve_reps, seed=seed)
            for algo, m in matrices.items()
        }
    last = budgets[-1]
    final = per_run[-1]
    if not overlay.empty:
        final = pd.concat([final, scores_at(overlay, last)], ignore_index=True)
    final_means = final.groupby(["suite", "task", "algo"])["score"].mean()
    report.task_means = {f"{suite}/{task}": {} for suite, task, _ in final_means.index}
    for (suite, task, algo), value in final_means.items():
        report.task_means[f"{suite}/{task}"][algo] = float(value)

    curves = {
        algo: iqm_curve(*_curve_stack(aggregated, algo, tasks, last), reps=curve_reps, seed=seed)
        for algo in algos
    }
    published = {a for a in algos + list(overlay["algo"].unique()) if a.endswith(PUBLISHED_SUFFIX)}
    report.files = {
        "sample_efficiency": plot_sample_efficiency(
            curves, out_dir / "sample_efficiency.png", budgets=budgets, published=published
        ),
        "performance_profiles": plot_performance_profiles(
            profiles, out_dir / "performance_profiles.png", published=published
        ),
        "task_curves": plot_task_curves(
            _task_means(
                pd.concat([aggregated, overlay]) if not overlay.empty else aggregated, last
            ),
            out_dir / "task_curves.png",
            budgets=budgets,
            published=published,
        ),
    }
    report.files["scores"] = _write_csv(pd.concat(per_run), out_dir / "scores.csv")
    report.files["aggregates"] = _write_csv(aggregates_table(report), out_dir / "aggregates.csv")
    report.files["markdown"] = out_dir / "report.md"
    with atomic_write(report.files["markdown"]) as tmp:
        tmp.write_text(markdown(report))
    return report


def _place_reference(
    scores: pd.DataFrame, reference: pd.DataFrame | None, tasks: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Split published curves into (scores to aggregate, per-task overlay, notes).

    The reference joins the aggregates only when it has every task of the report; otherwise
    its tasks among the report's are drawn per task.
    """
    if reference is None or reference.empty:
        return scores, empty_scores(), []
    reference = reference[(reference["suite"] + "/" + reference["task"]).isin(tasks)]
    if reference.empty:
        return scores, empty_scores(), ["the reference curves have none of the report's tasks"]
    covered = set(report_tasks(reference))
    if covered == set(tasks):
        return (
            (pd.concat([scores, reference]) if not scores.empty else reference),
            empty_scores(),
            [],
        )
    names = ", ".join(sorted(reference["algo"].unique()))
    note = (
        f"{names} covers {len(covered)} of the {len(tasks)} tasks: shown per task only, "
        "not in the aggregates"
    )
    return scores, reference, [note]


def _algo_order(algos: Iterable[str] | np.ndarray) -> list[str]:
    """This project's algos first (sorted), published references last."""
    return sorted(map(str, algos), key=lambda a: (a.endswith(PUBLISHED_SUFFIX), a))


def _curve_stack(
    scores: pd.DataFrame, algo: str, tasks: Sequence[str], last: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frames and the [runs × tasks × frames] stack of `algo`'s sample-efficiency curve.

    The frames are the algo's evaluation frames up to the last budget, from the first at which
    every run has been evaluated, thinned evenly to at most `MAX_CURVE_POINTS`.
    """
    rows = scores[scores["algo"] == algo]
    firsts = rows.groupby(["suite", "task", "seed"])["frame"].min()
    grid = np.unique(rows["frame"])
    grid = grid[(grid >= firsts.max()) & (grid <= last)]
    if len(grid) > MAX_CURVE_POINTS:
        grid = grid[np.unique(np.linspace(0, len(grid) - 1, MAX_CURVE_POINTS).round().astype(int))]
    return grid, score_stack(scores_at(rows, grid), algo, tasks)


def _task_means(scores: pd.DataFrame, last: int) -> dict[str, dict[str, Curve]]:
    """Per task and algo: the mean score over seeds at each evaluation frame up to `last`."""
    means: dict[str, dict[str, Curve]] = {}
    kept = scores[scores["frame"] <= last]
    for (suite, task, algo), rows in kept.groupby(["suite", "task", "algo"], sort=True):
        by_frame = rows.groupby("frame")["score"]
        mean = by_frame.mean()
        curve = Curve(
            mean.index.to_numpy(),
            mean.to_numpy(),
            by_frame.min().to_numpy(),
            by_frame.max().to_numpy(),
        )
        means.setdefault(f"{suite}/{task}", {})[str(algo)] = curve
    return means


def aggregates_table(report: Report) -> pd.DataFrame:
    """The report's numbers as a tidy table: one row per (metric, algo or pair, frame)."""
    rows: list[dict[str, object]] = []
    for frame, estimates in report.iqm.items():
        for algo, estimate in estimates.items():
            rows.append(_row("iqm", algo, "", frame, estimate, report.runs_per_task[algo]))
    for frame, pairs in report.improvement.items():
        for (x, y), estimate in pairs.items():
            rows.append(_row("probability_of_improvement", x, y, frame, estimate, None))
    return pd.DataFrame(rows)


def _row(
    metric: str, algo: str, versus: str, frame: int, estimate: Estimate, runs: int | None
) -> dict[str, object]:
    return {
        "metric": metric,
        "algo": algo,
        "versus": versus,
        "frame": frame,
        "estimate": estimate.value,
        "ci_low": estimate.low,
        "ci_high": estimate.high,
        "runs_per_task": runs,
    }


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    with atomic_write(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def markdown(report: Report) -> str:
    """The report as markdown: IQM table, probability of improvement, per-task means, figures."""
    budgets = report.frames
    header = " | ".join(f"{frames_label(f)} frames" for f in budgets)
    lines = [
        "# robotrl report",
        "",
        f"{len(report.tasks)} tasks: {', '.join(report.tasks)}.",
        "",
        "Scores: DeepMind Control return / 1000, success rate on other suites; each run scored by "
        "its last evaluation at or before the frame budget. IQM over all runs × tasks with 95% "
        f"stratified-bootstrap percentile CIs (rliable, {report.reps} reps; "
        f"{report.curve_reps} for profiles, curves and probability of improvement; "
        f"seed {report.seed}).",
        "",
    ]
    lines += [f"Note: {note}." for note in report.notes] + ([""] if report.notes else [])
    lines += ["## IQM", "", f"| algo | runs per task | {header} |", _rule(2 + len(budgets))]
    for algo in report.algos:
        cells = " | ".join(str(report.iqm[f][algo]) for f in budgets)
        lines.append(f"| {algo} | {report.runs_per_task[algo]} | {cells} |")
    if len(report.algos) > 1:
        lines += ["", "## Probability of improvement", "", f"| P(X > Y) | {header} |"]
        lines.append(_rule(1 + len(budgets)))
        for pair in report.improvement[budgets[0]]:
            cells = " | ".join(str(report.improvement[f][pair]) for f in budgets)
            lines.append(f"| P({pair[0]} > {pair[1]}) | {cells} |")
    columns = _algo_order({a for means in report.task_means.values() for a in means})
    lines += ["", f"## Mean score per task at {frames_label(budgets[-1])} frames", ""]
    lines += [f"| task | {' | '.join(columns)} |", _rule(1 + len(columns))]
    for task, means in sorted(report.task_means.items()):
        cells = " | ".join(f"{means[a]:.3f}" if a in means else "—" for a in columns)
        lines.append(f"| {task} | {cells} |")
    lines += ["", "## Figures", ""]
    for name in ("sample_efficiency", "performance_profiles", "task_curves"):
        if name in report.files:
            lines.append(f"![{name.replace('_', ' ')}]({report.files[name].name})")
    return "\n".join(lines) + "\n"


def _rule(columns: int) -> str:
    return "|" + "---|" * columns


def describe(report: Report) -> Mapping[str, str]:
    """One line per algo and budget, for the console."""
    return {
        f"{algo} @ {frames_label(frame)}": str(estimates[algo])
        for frame, estimates in report.iqm.items()
        for algo in report.algos
    }
