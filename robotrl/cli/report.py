"""``robotrl-report PATH... --frames 100000 500000 1000000 --out DIR``: an rliable report.

PATHs are run directories, directories to search for run directories, or CSV files (a run's
``eval.csv``, a ``robotrl-eval`` per-episode CSV, a published curve). ``--reference drqv2`` adds
the packaged DrQ-v2 curves. Writes ``report.md``, ``aggregates.csv``, ``scores.csv`` and PNGs of
the sample-efficiency curves, performance profiles and per-task curves to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from robotrl.reference import REFERENCES, TASK_GROUPS, load_reference
from robotrl.report import build_report, describe
from robotrl.scores import ScoreError, first_seeds, load_scores, report_tasks, select_tasks


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="robotrl-report",
        description="IQM with 95% stratified-bootstrap CIs, performance profiles, probability "
        "of improvement and sample-efficiency curves (rliable) from runs or eval CSVs.",
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, help="run dirs, dirs holding runs, or eval CSVs"
    )
    parser.add_argument(
        "--frames",
        nargs="+",
        type=int,
        default=[100_000, 500_000, 1_000_000],
        help="frame budgets (environment frames, action repeat included); default: 100k 500k 1M",
    )
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    parser.add_argument(
        "--reference",
        choices=sorted(REFERENCES),
        help="include published curves: in the aggregates if they cover every task, else per task",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help="task names (walker_walk), ids (dmc/walker_walk) or groups "
        f"({', '.join(TASK_GROUPS)})",
    )
    parser.add_argument("--seeds", type=int, help="use the first N seeds of every task")
    parser.add_argument(
        "--reps", type=int, default=50_000, help="bootstrap reps per IQM CI (default 50000)"
    )
    parser.add_argument(
        "--curve-reps",
        type=int,
        default=2_000,
        help="bootstrap reps for profiles, curves and probability of improvement (default 2000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    if not args.paths and not args.reference:
        parser.error("give run directories / eval CSVs, or --reference")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def _reference(name: str, scores: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """The packaged curves `name` on the report's tasks, with the same seed selection."""
    reference = load_reference(name)
    if not scores.empty:
        reference = reference[
            (reference["suite"] + "/" + reference["task"]).isin(report_tasks(scores))
        ]
    elif args.tasks:
        reference = select_tasks(reference, args.tasks, TASK_GROUPS)
    if args.seeds is not None and not reference.empty:
        reference = first_seeds(reference, args.seeds)
    return reference


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        scores = load_scores(args.paths)
        if args.tasks and not scores.empty:
            scores = select_tasks(scores, args.tasks, TASK_GROUPS)
        if args.seeds is not None and not scores.empty:
            scores = first_seeds(scores, args.seeds)
        reference = _reference(args.reference, scores, args) if args.reference else None
        report = build_report(
            scores,
            args.out,
            frames=args.frames,
            reference=reference,
            reps=args.reps,
            curve_reps=args.curve_reps,
            seed=args.seed,
        )
    except ScoreError as err:
        sys.exit(f"robotrl-report: {err}")
    print(f"{len(report.tasks)} tasks; IQM [95% CI]:")
    for name, value in describe(report).items():
        print(f"  {name}: {value}")
    for note in report.notes:
        print(f"  note: {note}")
    print(f"Report: {report.files['markdown']}")
