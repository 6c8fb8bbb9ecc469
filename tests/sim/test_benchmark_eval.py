"""``robotrl-eval`` benchmark mode on real runs: two tasks x two seeds trained by ``robotrl-train``.

The runs are tiny (a few hundred frames, no learning): what is checked is that every checkpoint of
the grid is evaluated into one tidy CSV that ``robotrl-report`` reads, that its rows equal a
single-checkpoint evaluation of the same checkpoint, and that each task gets a video.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from robotrl.cli.evaluate import evaluate_benchmark, evaluate_checkpoint
from robotrl.config import EvalConfig
from robotrl.scores import load_scores, score_matrix, scores_at
from tests.sim.test_train_cli import BIN, TINY_AGENT, env_vars, run_cli

SHORT_RUN = [
    *TINY_AGENT,
    "frames=400",
    "seed_frames=200",
    "eval_every_frames=100000",
    "eval_episodes=1",
    "checkpoint_every_frames=200",
    "logger.save_video=false",
]
TASKS = {
    "builtin/reach": ["task=builtin/reach"],
    "dmc/cartpole_swingup": [
        "task=dmc/cartpole_swingup",
        "env.image_size=32",
        "task.options.fast_render=true",
    ],
}


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    for overrides in TASKS.values():
        run_cli(
            [
                str(BIN / "robotrl-train"),
                "-m",
                *overrides,
                *SHORT_RUN,
                "seed=1,2",
                f"runs_root={root / 'runs'}",
            ],
            root,
        )
    return root / "runs"


def test_benchmark_evaluates_the_grid_into_one_csv(runs_root: Path, tmp_path: Path) -> None:
    cfg = EvalConfig(
        runs=[str(runs_root)], tasks=list(TASKS), seeds=[1, 2], episodes=2, out_dir=str(tmp_path)
    )
    csv_path, videos, runs = evaluate_benchmark(cfg)
    table = pd.read_csv(csv_path)
    assert len(runs) == 4 and len(table) == 4 * 2
    assert set(zip(table["suite"] + "/" + table["task"], table["seed"], strict=True)) == {
        (task, seed) for task in TASKS for seed in (1, 2)
    }
    assert (table["step"] == 400).all() and (table["algo"] == "drqv2").all()
    assert table.groupby(["task", "seed"]).size().eq(2).all()
    defines_success = table["suite"] == "builtin"  # DMC tasks define no success: NaN
    assert table["success"].notna().eq(defines_success).all()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in videos) == [
        "videos/drqv2/builtin/reach.mp4",
        "videos/drqv2/dmc/cartpole_swingup.mp4",
    ]
    assert all(p.stat().st_size > 1000 for p in videos)

    # The same checkpoint evaluated alone gives the same episodes.
    first = Path(table["checkpoint"].iloc[0])
    single_csv, _, _ = evaluate_checkpoint(
        EvalConfig(checkpoint=str(first), episodes=2, video=False, out_dir=str(tmp_path / "one"))
    )
    single = pd.read_csv(single_csv)
    columns = ["algo", "suite", "task", "seed", "step", "episode", "return", "success", "length"]
    pd.testing.assert_frame_equal(
        table[table["checkpoint"] == str(first)][columns], single[columns]
    )
    # Played two at a time in worker processes: the same episodes, the same results.
    vector_csv, _, _ = evaluate_checkpoint(
        EvalConfig(
            checkpoint=str(first),
            episodes=2,
            video=False,
            num_envs=2,
            out_dir=str(tmp_path / "two"),
        )
    )
    vectorised = pd.read_csv(vector_csv)
    pd.testing.assert_frame_equal(vectorised[columns], single[columns], atol=1e-4)

    # robotrl-report reads it as a [seeds x tasks] score matrix.
    scores = load_scores([csv_path])
    matrix = score_matrix(scores_at(scores, 400), "drqv2", sorted(TASKS))
    assert matrix.shape == (2, 2)


def test_all_checkpoints_and_the_cli(runs_root: Path, tmp_path: Path) -> None:
    done = run_cli(
        [
            str(BIN / "robotrl-eval"),
            f"runs=[{runs_root / 'builtin'}]",
            "checkpoints=all",
            "episodes=1",
            "video=false",
            f"out_dir={tmp_path}",
        ],
        tmp_path,
    )
    assert "Evaluated 2 runs" in done.stdout
    table = pd.read_csv(tmp_path / "episodes.csv")
    assert sorted(zip(table["seed"], table["step"], strict=True)) == [
        (1, 200),
        (1, 400),
        (2, 200),
        (2, 400),
    ]
    assert not (tmp_path / "videos").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seeds=[1,2,3]"], "drqv2 has no run for builtin/reach seed 3"),
        (["checkpoint=/nowhere"], "not both or neither"),
        ([], None),  # filled in below: neither a checkpoint nor runs
    ],
)
def test_cli_errors_are_clear(runs_root: Path, tmp_path: Path, args, message) -> None:
    if message is None:
        argv, message = [], "either checkpoint=PATH"
    else:
        argv = [f"runs=[{runs_root / 'builtin'}]", *args]
    done = subprocess.run(
        [str(BIN / "robotrl-eval"), *argv],
        cwd=tmp_path,
        env=env_vars(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "robotrl-eval:" in done.stderr and message in done.stderr
