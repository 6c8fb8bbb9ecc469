"""Learning-curve plots from a run's eval CSV, optionally against a published reference curve,
and the figures of `robotrl-report` (sample efficiency, performance profiles, per-task curves)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter

from robotrl.logger import FRAME_COLUMN, atomic_write

_BOOTSTRAP_SAMPLES = 2000


def plot_learning_curve(
    eval_csv: Path,
    out_png: Path,
    *,
    metric: str = "episode_return",
    title: str = "",
    reference_csv: Path | None = None,
    reference_task: str | None = None,
) -> Path:
    """Plot `metric` from `eval_csv` (a `Logger` eval file) against environment frames.

    Several rows at one frame (e.g. one per eval episode) are drawn as their mean with a min-max
    band. With `reference_csv` (columns `agent,task,seed,frame,episode_reward`, as in the DrQ-v2
    curves), the reference's mean over seeds is overlaid with a bootstrap 95% confidence band.
    `reference_task` picks the task when the reference file holds several. Both x axes must count
    environment frames (action repeat included) for the comparison to mean anything. The x axis
    spans this run's frames; a longer reference curve is cut there.

    The PNG is written atomically (the Agg renderer; no display needed). Returns `out_png`.
    """
    run = pd.read_csv(eval_csv)
    if metric not in run.columns:
        raise ValueError(f"{eval_csv} has no column {metric!r}; columns: {list(run.columns)}")
    run = run[[FRAME_COLUMN, metric]].dropna()
    if run.empty:
        raise ValueError(f"{eval_csv} has no rows with a value for {metric!r}")

    # Figure without pyplot: no global state, no GUI backend, safe inside a training process.
    figure = Figure(figsize=(6.4, 4.0), dpi=120, layout="constrained")
    axes = figure.add_subplot()

    if reference_csv is not None:
        reference = _load_reference(Path(reference_csv), reference_task)
        agent_name = str(reference["agent"].iloc[0])
        num_seeds = reference["seed"].nunique()
        frames, mean, low, high = _mean_with_bootstrap_ci(reference)
        (line,) = axes.plot(
            frames, mean, color="tab:gray", label=f"{agent_name} (published, {num_seeds} seeds)"
        )
        axes.fill_between(
            frames,
            low,
            high,
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
            label="95% CI of the published mean",
        )

    per_frame = run.groupby(FRAME_COLUMN)[metric].agg(["mean", "min", "max", "count"])
    few_points = len(per_frame) < 20
    (line,) = axes.plot(
        per_frame.index,
        per_frame["mean"],
        color="tab:blue",
        marker="o" if few_points else None,
        label="this run",
    )
    if (per_frame["count"] > 1).any():
        axes.fill_between(
            per_frame.index,
            per_frame["min"],
            per_frame["max"],
            color=line.get_color(),
            alpha=0.25,
            linewidth=0,
            label="min-max over episodes",
        )

    # A published curve runs to millions of frames; the axis stays on this run's frames so an
    # early run is not squeezed into the left edge.
    axes.set_xlim(0, max(float(per_frame.index.max()), 1.0) * 1.02)
    axes.set_xlabel("environment frames")
    axes.set_ylabel(metric.replace("_", " "))
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    if title:
        axes.set_title(title)

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_png) as tmp_path:
        figure.savefig(tmp_path, format="png")
    return out_png


def _load_reference(reference_csv: Path, task: str | None) -> pd.DataFrame:
    # The published files start with an unnamed index column.
    reference = pd.read_csv(reference_csv, index_col=0)
    required = {"agent", "task", "seed", "frame", "episode_reward"}
    missing = required - set(reference.columns)
    if missing:
        raise ValueError(f"{reference_csv} lacks reference columns {sorted(missing)}")
    tasks = sorted(reference["task"].unique())
    if task is None:
        if len(tasks) != 1:
            raise ValueError(f"{reference_csv} holds tasks {tasks}; pass reference_task")
        task = tasks[0]
    selected = reference[reference["task"] == task]
    if selected.empty:
        raise ValueError(f"{reference_csv} has no task {task!r}; it has {tasks}")
    return selected.dropna(subset=["episode_reward"])


def _mean_with_bootstrap_ci(
    reference: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: the mean over seeds and a percentile-bootstrap 95% CI of that mean."""
    rng = np.random.default_rng(0)  # fixed, so the same inputs give the same picture
    frames, means, lows, highs = [], [], [], []
    for frame, group in reference.groupby("frame"):
        returns = group["episode_reward"].to_numpy(dtype=float)
        resampled = rng.choice(returns, size=(_BOOTSTRAP_SAMPLES, len(returns))).mean(axis=1)
        low, high = np.percentile(resampled, [2.5, 97.5])
        frames.append(frame)
        means.append(returns.mean())
        lows.append(low)
        highs.append(high)
    return np.asarray(frames), np.asarray(means), np.asarray(lows), np.asarray(highs)


# -- report figures (robotrl-report) ------------------------------------------------------------


class Curve(NamedTuple):
    """y against x with a band (a CI, or a min-max range) around it."""

    x: np.ndarray
    y: np.ndarray
    low: np.ndarray
    high: np.ndarray


def frames_label(frames: float) -> str:
    """1000000 -> "1M", 500000 -> "500k", 12345 -> "12345"."""
    for scale, suffix in ((1_000_000, "M"), (1_000, "k")):
        if frames >= scale and (frames * 1000) % scale == 0:
            return f"{frames / scale:.10g}{suffix}"
    return f"{frames:g}"


def _styles(algos: Sequence[str], published: Collection[str]) -> dict[str, dict[str, Any]]:
    """One colour per algo, the same in every figure; published references grey and dashed."""
    colours = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"])
    greys = iter(["tab:gray", "black", "tab:olive", "tab:cyan"])
    styles = {}
    for algo in algos:
        if algo in published:
            styles[algo] = {"color": next(greys, None), "linestyle": "--"}
        else:
            styles[algo] = {"color": next(colours, None), "linestyle": "-"}
    return styles


def _save(figure: Figure, out_png: Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_png) as tmp_path:
        figure.savefig(tmp_path, format="png")
    return out_png


def _band(axes: Axes, curve: Curve, label: str, style: dict[str, Any]) -> None:
    (line,) = axes.plot(curve.x, curve.y, label=label, **style)
    axes.fill_between(curve.x, curve.low, curve.high, color=line.get_color(), alpha=0.2, lw=0)


def plot_sample_efficiency(
    curves: Mapping[str, Curve],
    out_png: Path,
    *,
    budgets: Sequence[int] = (),
    published: Collection[str] = (),
) -> Path:
    """IQM score against environment frames per algo, with 95% CI bands; budgets dotted."""
    figure = Figure(figsize=(6.4, 4.2), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    styles = _styles(list(curves), published)
    for algo, curve in curves.items():
        _band(axes, curve, algo, styles[algo])
    for budget in budgets:
        axes.axvline(budget, color="black", linestyle=":", linewidth=0.8, alpha=0.6)
    axes.set_xlabel("environment frames")
    axes.set_ylabel("IQM normalised score")
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    axes.set_title("Sample efficiency (IQM, 95% stratified-bootstrap CI)")
    return _save(figure, out_png)


def plot_performance_profiles(
    profiles: Mapping[int, Mapping[str, Curve]],
    out_png: Path,
    *,
    published: Collection[str] = (),
) -> Path:
    """Score distributions (fraction of runs above tau) at each frame budget, side by side."""
    count = len(profiles)
    figure = Figure(figsize=(4.2 * count, 3.8), dpi=120, layout="constrained")
    all_axes = figure.subplots(1, count, squeeze=False, sharey=True)[0]
    for axes, (frame, per_algo) in zip(all_axes, profiles.items(), strict=True):
        styles = _styles(list(per_algo), published)
        for algo, curve in per_algo.items():
            _band(axes, curve, algo, styles[algo])
        axes.set_title(f"{frames_label(frame)} frames")
        axes.set_xlabel(r"normalised score $\tau$")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
    all_axes[0].set_ylabel(r"fraction of runs with score > $\tau$")
    all_axes[0].legend(loc="lower left", fontsize="small")
    return _save(figure, out_png)


def plot_task_curves(
    curves: Mapping[str, Mapping[str, Curve]],
    out_png: Path,
    *,
    budgets: Sequence[int] = (),
    published: Collection[str] = (),
) -> Path:
    """One panel per task: mean score over seeds against frames per algo (min-max band), with
    published reference curves drawn where they have the task."""
    tasks = sorted(curves)
    columns = min(4, len(tasks))
    rows = -(-len(tasks) // columns)
    figure = Figure(figsize=(3.4 * columns, 2.6 * rows + 0.8), dpi=100, layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    algos = sorted(
        {a for per_algo in curves.values() for a in per_algo}, key=lambda a: a in published
    )
    styles = _styles(algos, published)
    for axes, task in zip(grid.flat, tasks, strict=False):
        for algo, curve in curves[task].items():
            _band(axes, curve, algo, styles[algo])
        for budget in budgets:
            axes.axvline(budget, color="black", linestyle=":", linewidth=0.6, alpha=0.5)
        axes.set_title(task, fontsize="small")
        axes.set_ylim(-0.02, 1.02)
        axes.xaxis.set_major_formatter(EngFormatter(sep=""))
        axes.tick_params(labelsize="x-small")
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(tasks) :]:
        axes.set_visible(False)
    handles = [Line2D([], [], label=algo, **styles[algo]) for algo in algos]
    figure.legend(handles=handles, loc="outside upper center", ncols=min(4, len(algos)))
    figure.supxlabel("environment frames", fontsize="small")
    figure.supylabel("mean score (band: min-max over seeds)", fontsize="small")
    return _save(figure, out_png)
