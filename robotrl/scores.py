"""Tidy per-run scores, and [runs × tasks] score matrices at a frame budget.

Every input becomes one table with a row per (algo, suite, task, seed, frame) and a normalised
``score``: the episode return / 1000 on DeepMind Control (whose returns lie in [0, 1000]), the
success rate on every other suite. Several evaluation episodes at one frame are averaged first.

Three inputs are understood, told apart by their columns:

- a run directory ``<suite>/<task>/<agent>/<exp>/seed<n>/`` (or its ``eval.csv``), written by
  ``robotrl-train``: ``frame, episode_return, ..., success_rate``;
- a per-episode CSV written by ``robotrl-eval``: ``algo, suite, task, seed, step, episode, return,
  success, length`` (``step`` counts environment frames);
- a published learning-curve CSV in the DrQ-v2 format: ``agent, task, seed, frame,
  episode_reward`` (DeepMind Control tasks; see `robotrl.reference`).

`score_matrix` picks, for each run, the last evaluation at or before the frame budget; a run
whose evaluations stop more than one evaluation interval before the budget is an error, not a
silently earlier score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

DMC_SUITE = "dmc"
DMC_MAX_RETURN = 1000.0
RUN_EVAL_CSV = "eval.csv"
TIDY_COLUMNS = ["algo", "suite", "task", "seed", "frame", "score", "source"]
RUN_KEY = ["algo", "suite", "task", "seed"]
RUN_FRAME_KEY = [*RUN_KEY, "frame"]

_EPISODE_COLUMNS = {"algo", "suite", "task", "seed", "step", "return", "success"}
_CURVE_COLUMNS = {"agent", "task", "seed", "frame", "episode_reward"}
_SCORE_TOLERANCE = 1e-6


class ScoreError(ValueError):
    """Inputs that cannot be turned into a valid score matrix (the message says why)."""


def task_id(suite: str, task: str) -> str:
    """The name of a task across suites, as used in reports: ``"dmc/walker_walk"``."""
    return f"{suite}/{task}"


def normalised_scores(suite: str, returns: pd.Series, successes: pd.Series | None) -> pd.Series:
    """DMC: return / 1000. Elsewhere: the success rate, which must be there."""
    if suite == DMC_SUITE:
        return returns.astype(float) / DMC_MAX_RETURN
    if successes is None or successes.isna().all():
        raise ScoreError(
            f"suite {suite!r} is scored by success rate, but the input has no success values "
            "(only DeepMind Control is scored by return / 1000)"
        )
    return successes.astype(float)


# -- loading -----------------------------------------------------------------------------------


def find_inputs(paths: Iterable[Path]) -> list[Path]:
    """Expand `paths` into CSV files: a CSV stays itself, a run directory gives its ``eval.csv``,
    any other directory is searched recursively for run directories (``eval.csv`` files).
    Per-episode ``robotrl-eval`` CSVs are read only when named explicitly."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif (path / RUN_EVAL_CSV).is_file():
            found.append(path / RUN_EVAL_CSV)
        elif path.is_dir():
            runs = sorted(path.rglob(RUN_EVAL_CSV))
            if not runs:
                raise ScoreError(f"{path} holds no run directory (no {RUN_EVAL_CSV} below it)")
            found.extend(runs)
        else:
            raise ScoreError(f"{path} does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def load_scores(paths: Iterable[Path]) -> pd.DataFrame:
    """Read every input under `paths` (see `find_inputs`) into one tidy score table."""
    tables = [load_csv(path) for path in find_inputs(paths)]
    if not tables:
        return empty_scores()
    return check_unique(pd.concat(tables, ignore_index=True))


def empty_scores() -> pd.DataFrame:
    """A tidy score table with no rows (and the right column types)."""
    types = {"seed": int, "frame": int, "score": float}
    return pd.DataFrame({c: pd.Series(dtype=types.get(c, str)) for c in TIDY_COLUMNS})


def load_csv(path: Path) -> pd.DataFrame:
    """One input file as a tidy score table; the format is recognised from its columns."""
    path = Path(path)
    columns = set(pd.read_csv(path, nrows=0, index_col=None).columns)
    if "frame" in columns and "episode_return" in columns:
        return load_run_eval_csv(path)
    if columns >= _EPISODE_COLUMNS:
        return load_episode_csv(path)
    if columns >= _CURVE_COLUMNS:
        return load_curve_csv(path)
    raise ScoreError(
        f"{path} is not a run's eval.csv (frame, episode_return, ...), a robotrl-eval episode "
        f"CSV ({', '.join(sorted(_EPISODE_COLUMNS))}) or a published curve "
        f"({', '.join(sorted(_CURVE_COLUMNS))}); its columns are {sorted(columns)}"
    )


def run_identity(run_dir: Path) -> dict[str, str | int]:
    """algo, suite, task and seed of a ``robotrl-train`` run directory.

    Read from the run's saved Hydra config when there is one, else from the path
    ``<suite>/<task>/<agent>/<exp>/seed<n>``. The algo is the agent name, with ``/<exp>``
    appended when the experiment is not ``default``.
    """
    config_path = run_dir / ".hydra" / "config.yaml"
    if config_path.is_file():
        config = OmegaConf.load(config_path)
        agent = OmegaConf.select(config, "agent.name")
        exp = OmegaConf.select(config, "exp_name", default="default")
        suite = OmegaConf.select(config, "task.suite")
        task = OmegaConf.select(config, "task.name")
        seed = OmegaConf.select(config, "seed")
        if None in (agent, suite, task, seed):
            raise ScoreError(f"{config_path} lacks one of agent.name, task.suite/name, seed")
    else:
        parts = run_dir.resolve().parts
        if len(parts) < 5 or not parts[-1].startswith("seed") or not parts[-1][4:].isdigit():
            raise ScoreError(
                f"cannot tell the algo, task and seed of {run_dir}: it has no .hydra/config.yaml "
                "and its path does not end in <suite>/<task>/<agent>/<exp>/seed<n>"
            )
        suite, task, agent, exp, seed = *parts[-5:-1], int(parts[-1][4:])
    algo = str(agent) if exp in (None, "default") else f"{agent}/{exp}"
    return {"algo": algo, "suite": str(suite), "task": str(task), "seed": int(seed)}


def load_run_eval_csv(path: Path) -> pd.DataFrame:
    """A run's ``eval.csv`` (one row per periodic evaluation, already averaged over episodes)."""
    identity = run_identity(path.parent)
    table = pd.read_csv(path).dropna(subset=["frame", "episode_return"])
    success_column = next((c for c in ("success_rate", "success") if c in table.columns), None)
    successes = table[success_column] if success_column else None
    try:
        scores = normalised_scores(str(identity["suite"]), table["episode_return"], successes)
    except ScoreError as err:
        raise ScoreError(f"{path}: {err}") from None
    # A resumed run may log a frame twice; the later row is the one that counts.
    tidy = pd.DataFrame({"frame": table["frame"].astype(int), "score": scores})
    tidy = tidy.drop_duplicates("frame", keep="last")
    return _finish(tidy.assign(**identity), path)


def load_episode_csv(path: Path) -> pd.DataFrame:
    """A ``robotrl-eval`` per-episode CSV: episodes at one (run, step) are averaged."""
    table = pd.read_csv(path)
    parts = []
    for suite, rows in table.groupby("suite", sort=True):
        try:
            scores = normalised_scores(str(suite), rows["return"], rows["success"])
        except ScoreError as err:
            raise ScoreError(f"{path}: {err}") from None
        parts.append(rows.assign(score=scores))
    scored = pd.concat(parts).rename(columns={"step": "frame"})
    tidy = scored.groupby(RUN_FRAME_KEY, as_index=False)["score"].mean()
    return _finish(tidy, path)


def load_curve_csv(path: Path, *, algo_suffix: str = "") -> pd.DataFrame:
    """A DrQ-v2-format learning-curve CSV (DeepMind Control returns per seed and frame)."""
    table = pd.read_csv(path).dropna(subset=["episode_reward"])
    tidy = pd.DataFrame(
        {
            "algo": table["agent"].astype(str) + algo_suffix,
            "suite": DMC_SUITE,
            "task": table["task"].astype(str),
            "seed": table["seed"].astype(int),
            "frame": table["frame"].astype(int),
            "score": normalised_scores(DMC_SUITE, table["episode_reward"], None),
        }
    )
    return _finish(tidy.groupby(RUN_FRAME_KEY, as_index=False)["score"].mean(), path)


def _finish(tidy: pd.DataFrame, source: Path) -> pd.DataFrame:
    tidy = tidy.assign(source=str(source))[TIDY_COLUMNS]
    tidy = tidy.astype({"seed": int, "frame": int, "score": float})
    bad = tidy[~np.isfinite(tidy["score"])]
    if not bad.empty:
        row = bad.iloc[0]
        raise ScoreError(
            f"{source}: non-finite score at frame {row['frame']} "
            f"({row['algo']}, {task_id(row['suite'], row['task'])}, seed {row['seed']})"
        )
    out_of_range = tidy[
        (tidy["score"] < -_SCORE_TOLERANCE) | (tidy["score"] > 1 + _SCORE_TOLERANCE)
    ]
    if not out_of_range.empty:
        row = out_of_range.iloc[0]
        raise ScoreError(
            f"{source}: normalised score {row['score']:.4g} at frame {row['frame']} is outside "
            f"[0, 1] ({task_id(row['suite'], row['task'])}); scores are DMC return / 1000 or a "
            "success rate"
        )
    return tidy


def check_unique(scores: pd.DataFrame) -> pd.DataFrame:
    """Raise if two input files give a score for the same run at the same frame."""
    sources = scores.groupby(RUN_FRAME_KEY)["source"].nunique()
    clashes = sources[sources > 1]
    if not clashes.empty:
        algo, suite, task, seed, frame = clashes.index[0]
        files = sorted(
            scores.loc[
                (scores["algo"] == algo)
                & (scores["suite"] == suite)
                & (scores["task"] == task)
                & (scores["seed"] == seed)
                & (scores["frame"] == frame),
                "source",
            ].unique()
        )
        raise ScoreError(
            f"{algo} on {task_id(suite, task)} seed {seed} at frame {frame} comes from more than "
            f"one input: {files}"
        )
    return scores


# -- selection ---------------------------------------------------------------------------------


def select_tasks(
    scores: pd.DataFrame, selectors: Sequence[str], groups: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """Keep the tasks named by `selectors`: ``walker_walk`` (any suite), ``dmc/walker_walk``, or
    the name of a group in `groups` (which maps a name to task ids)."""
    ids = scores["suite"] + "/" + scores["task"]
    keep = pd.Series(False, index=scores.index)
    for selector in selectors:
        if selector in groups:
            matched = ids.isin(list(groups[selector]))
        elif "/" in selector:
            matched = ids == selector
        else:
            matched = scores["task"] == selector
        if not matched.any():
            known = ", ".join(sorted(ids.unique())) or "none"
            raise ScoreError(f"--tasks {selector!r} matches no task in the inputs (tasks: {known})")
        keep |= matched
    return scores[keep]


def first_seeds(scores: pd.DataFrame, count: int) -> pd.DataFrame:
    """Keep the `count` lowest-numbered seeds of every (algo, task); fewer is an error."""
    kept = []
    for (algo, suite, task), rows in scores.groupby(["algo", "suite", "task"], sort=True):
        seeds = sorted(rows["seed"].unique())
        if len(seeds) < count:
            raise ScoreError(
                f"{algo} on {task_id(suite, task)} has {len(seeds)} seeds {seeds}; "
                f"--seeds asks for the first {count}"
            )
        kept.append(rows[rows["seed"].isin(seeds[:count])])
    return pd.concat(kept) if kept else scores


# -- matrices ----------------------------------------------------------------------------------


def scores_at(scores: pd.DataFrame, frames: int | Sequence[int]) -> pd.DataFrame:
    """One row per run and frame budget: the score of the run's last evaluation at or before it.

    Columns: algo, suite, task, seed, frame (the budget), eval_frame (the evaluation used),
    score. A run with no evaluation at or before a budget, or whose evaluations stop more than
    one of its evaluation intervals before it (it had not reached the budget), is an error.
    """
    budgets = np.sort(np.atleast_1d(np.asarray(frames, dtype=np.int64)))
    parts = []
    for (algo, suite, task, seed), run in scores.groupby(RUN_KEY, sort=True):
        run = run.sort_values("frame")
        evals, values = run["frame"].to_numpy(), run["score"].to_numpy()
        chosen = np.searchsorted(evals, budgets, side="right") - 1
        where = f"{algo} on {task_id(suite, task)} seed {seed}"
        if chosen[0] < 0:
            raise ScoreError(
                f"{where}: no evaluation at or before frame {budgets[0]} (first: {evals[0]})"
            )
        shortfall = budgets - evals[chosen]
        if len(evals) == 1 and shortfall.max() > 0:
            raise ScoreError(f"{where}: its only evaluation is at frame {evals[0]}, not {budgets}")
        interval = float(np.median(np.diff(evals))) if len(evals) > 1 else 0.0
        if shortfall.max() > interval:
            raise ScoreError(
                f"{where}: evaluations stop at frame {evals[-1]}, short of the budget "
                f"{budgets[-1]} (evaluated every {interval:g} frames)"
            )
        parts.append(
            pd.DataFrame(
                {
                    "algo": algo,
                    "suite": suite,
                    "task": task,
                    "seed": seed,
                    "frame": budgets,
                    "eval_frame": evals[chosen],
                    "score": values[chosen],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=[*RUN_FRAME_KEY, "eval_frame", "score"])
    return pd.concat(parts, ignore_index=True)


def score_matrix(at_budget: pd.DataFrame, algo: str, tasks: Sequence[str]) -> np.ndarray:
    """The [runs × tasks] matrix of `algo` from a `scores_at` table at one budget, columns in
    `tasks` order. See `score_stack` for the checks."""
    budgets = at_budget.loc[at_budget["algo"] == algo, "frame"].unique()
    if len(budgets) > 1:
        raise ScoreError(f"{algo}: one budget per score matrix; got frames {sorted(budgets)}")
    return score_stack(at_budget, algo, tasks)[:, :, 0]


def score_stack(at_budgets: pd.DataFrame, algo: str, tasks: Sequence[str]) -> np.ndarray:
    """The [runs × tasks × budgets] scores of `algo` from a `scores_at` table.

    Every task of `tasks` must have runs, and no others, and every task the same number of runs
    (rliable's stratified bootstrap resamples runs within each task column); run ``i`` of a
    task is its ``i``-th lowest seed. Budgets are in increasing order.
    """
    rows = at_budgets[at_budgets["algo"] == algo]
    rows = rows.assign(id=rows["suite"] + "/" + rows["task"])
    present = set(rows["id"])
    missing = [t for t in tasks if t not in present]
    if missing:
        raise ScoreError(f"{algo} has no runs on {missing}; use --tasks to report common tasks")
    extra = sorted(present - set(tasks))
    if extra:
        raise ScoreError(f"{algo} has runs on tasks outside the report: {extra}")
    seeds = rows.groupby("id")["seed"].unique()
    counts = {t: len(seeds[t]) for t in tasks}
    if len(set(counts.values())) != 1:
        detail = "; ".join(f"{t}: {counts[t]} seeds {sorted(seeds[t])}" for t in tasks)
        raise ScoreError(
            f"{algo} has a ragged score matrix (tasks need equal numbers of runs): {detail}. "
            "Use --seeds N to take the first N seeds of every task"
        )
    table = rows.pivot(index=["id", "seed"], columns="frame", values="score")
    runs, budgets = counts[tasks[0]], table.shape[1]
    stack = table.loc[list(tasks)].to_numpy().reshape(len(tasks), runs, budgets)
    stack = stack.transpose(1, 0, 2)
    for index, frame in enumerate(table.columns):
        check_score_matrix(f"{algo} at frame {frame}", stack[:, :, index], len(tasks))
    return stack


def check_score_matrix(algo: str, matrix: np.ndarray, num_tasks: int) -> None:
    """A score matrix is 2-D [runs × tasks], non-empty, finite, and in [0, 1]."""
    if matrix.ndim != 2:
        raise ScoreError(f"{algo}: a score matrix is [runs × tasks]; got shape {matrix.shape}")
    runs, tasks = matrix.shape
    if tasks != num_tasks:
        raise ScoreError(f"{algo}: score matrix has {tasks} task columns, expected {num_tasks}")
    if runs < 1:
        raise ScoreError(f"{algo}: score matrix has no runs")
    if not np.isfinite(matrix).all():
        raise ScoreError(f"{algo}: score matrix has non-finite entries")
    if matrix.min() < -_SCORE_TOLERANCE or matrix.max() > 1 + _SCORE_TOLERANCE:
        raise ScoreError(f"{algo}: scores outside [0, 1] (min {matrix.min()}, max {matrix.max()})")


def report_tasks(scores: pd.DataFrame) -> list[str]:
    """Sorted task ids present in `scores`."""
    return sorted(set(scores["suite"] + "/" + scores["task"]))
