"""robotrl-report: score matrices, rliable aggregates, the packaged DrQ-v2 curves, the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from robotrl.cli.report import main as report_main
from robotrl.logger import Logger
from robotrl.plots import frames_label
from robotrl.reference import DRQV2_DMC_GROUPS, TASK_GROUPS, load_reference
from robotrl.report import (
    build_report,
    iqm_per_frame,
    iqm_with_ci,
    load_rliable,
    probability_of_improvement,
    seeded_numpy,
)
from robotrl.scores import (
    ScoreError,
    check_score_matrix,
    first_seeds,
    load_csv,
    load_scores,
    run_identity,
    score_matrix,
    score_stack,
    scores_at,
)

REPO = Path(__file__).resolve().parents[2]
TASKS = ["builtin/reach", "dmc/cheetah_run", "dmc/walker_walk"]  # sorted, as reports order them
SEEDS = 8
EVAL_FRAMES = range(0, 50_001, 10_000)


def known_matrix(low: float, high: float, seed: int) -> np.ndarray:
    """[seeds × tasks] scores that are the evenly spaced quantiles of U(low, high), shuffled:
    their IQM is exactly (low + high) / 2."""
    count = SEEDS * len(TASKS)
    quantiles = low + (high - low) * (np.arange(count) + 0.5) / count
    return np.random.default_rng(seed).permutation(quantiles).reshape(SEEDS, len(TASKS))


# Two fake agents with known final-score distributions: IQM 0.5 and 0.4.
FINAL = {"agent_a": known_matrix(0.0, 1.0, seed=1), "agent_b": known_matrix(0.2, 0.6, seed=2)}


def write_run(root: Path, agent: str, task: str, seed: int, final: float) -> Path:
    """A run directory as robotrl-train leaves it: eval.csv written by the Logger. The score
    rises linearly to `final` at 50k frames; DMC logs returns (score × 1000) and no success,
    the built-in task a success rate (and a return that must not be used)."""
    suite, name = task.split("/")
    run_dir = root / suite / name / agent / "default" / f"seed{seed}"
    logger = Logger(run_dir, tensorboard=False)
    for frame in EVAL_FRAMES:
        score = final * frame / EVAL_FRAMES[-1]
        if suite == "dmc":
            metrics = {"episode_return": 1000 * score, "success_rate": float("nan")}
        else:
            metrics = {"episode_return": 50 + 7 * score, "success_rate": score}
        logger.log("eval", {**metrics, "episode_length": 100.0, "step": frame / 2}, frame=frame)
    logger.close()
    return run_dir


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for agent, matrix in FINAL.items():
        for seed in range(SEEDS):
            for column, task in enumerate(TASKS):
                write_run(root, agent, task, seed + 1, float(matrix[seed, column]))
    return root


def iqm_direct(matrix: np.ndarray, *, reps: int, seed: int) -> tuple[float, np.ndarray]:
    """rliable called directly, seeded the way rliable 1.2.0 needs (NumPy's global RNG)."""
    library, metrics = load_rliable()
    np.random.seed(seed)
    point, interval = library.get_interval_estimates(
        {"x": matrix}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps
    )
    return float(point["x"][0]), interval["x"][:, 0]


# -- aggregates against rliable --------------------------------------------------------------


def test_report_of_two_known_agents_matches_rliable_called_directly(
    fake_runs: Path, tmp_path: Path
) -> None:
    reps, seed = 2000, 3
    report = build_report(
        load_scores([fake_runs]), tmp_path, frames=[50_000], reps=reps, curve_reps=200, seed=seed
    )
    assert report.tasks == TASKS
    assert report.algos == ["agent_a", "agent_b"]
    assert report.runs_per_task == {"agent_a": SEEDS, "agent_b": SEEDS}
    for agent, expected_iqm in [("agent_a", 0.5), ("agent_b", 0.4)]:
        estimate = report.iqm[50_000][agent]
        assert estimate.value == pytest.approx(expected_iqm, abs=1e-9)
        point, interval = iqm_direct(FINAL[agent], reps=reps, seed=seed)
        assert estimate.value == pytest.approx(point, abs=1e-12)
        assert [estimate.low, estimate.high] == pytest.approx(interval, abs=1e-12)
        assert estimate.low < expected_iqm < estimate.high

    library, metrics = load_rliable()
    np.random.seed(seed)
    point, interval = library.get_interval_estimates(
        {"pair": [FINAL["agent_a"], FINAL["agent_b"]]},
        metrics.probability_of_improvement,
        reps=200,
    )
    improvement = report.improvement[50_000][("agent_a", "agent_b")]
    assert improvement.value == pytest.approx(float(point["pair"]), abs=1e-12)
    assert [improvement.low, improvement.high] == pytest.approx(interval["pair"][:, 0], abs=1e-12)
    assert improvement.value > 0.5


def test_bootstrap_is_seeded_and_leaves_the_global_rng_alone() -> None:
    matrix = FINAL["agent_a"]
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = iqm_with_ci(matrix, reps=300, seed=0)
    assert np.array_equal(np.random.get_state()[1], before)
    assert iqm_with_ci(matrix, reps=300, seed=0) == first
    assert iqm_with_ci(matrix, reps=300, seed=1) != first
    with seeded_numpy(5):
        drawn = np.random.rand()
    np.random.seed(5)
    assert np.random.rand() == drawn


def test_rliable_import_restores_pandas() -> None:
    from pandas.util import _decorators

    original = _decorators.deprecate_kwarg
    load_rliable()
    assert _decorators.deprecate_kwarg is original


def test_iqm_curve_function_is_rliable_iqm_per_frame() -> None:
    stack = np.random.default_rng(0).uniform(size=(5, 3, 4))
    _, metrics = load_rliable()
    expected = [metrics.aggregate_iqm(stack[..., i]) for i in range(stack.shape[-1])]
    assert iqm_per_frame(stack) == pytest.approx(expected, abs=1e-12)


def test_probability_of_improvement_is_one_half_against_itself() -> None:
    matrix = FINAL["agent_b"]
    estimate = probability_of_improvement(matrix, matrix, reps=50, seed=0)
    assert estimate.value == 0.5


# -- score matrices and their checks ---------------------------------------------------------


def tidy(rows: list[tuple[str, str, int, int, float]]) -> pd.DataFrame:
    """(algo, task id, seed, frame, score) rows as a tidy score table."""
    table = pd.DataFrame(rows, columns=["algo", "task", "seed", "frame", "score"])
    suite_task = table["task"].str.split("/", expand=True)
    return table.assign(suite=suite_task[0], task=suite_task[1], source="test")


def test_matrix_takes_the_last_eval_at_or_before_the_budget_in_seed_order() -> None:
    scores = tidy(
        [
            ("a", "dmc/x", seed, frame, seed / 10 + frame / 1e6)
            for seed in (3, 1, 2)
            for frame in (0, 20_000, 40_000)
        ]
        + [("a", "dmc/y", seed, 20_000, 0.5 + seed / 10) for seed in (2, 1, 3)]
        + [("a", "dmc/y", seed, 40_000, 0.05) for seed in (2, 1, 3)]
    )
    at = scores_at(scores, 30_000)
    assert set(at["eval_frame"]) == {20_000}
    matrix = score_matrix(at, "a", ["dmc/y", "dmc/x"])
    assert matrix == pytest.approx(np.array([[0.6, 0.12], [0.7, 0.22], [0.8, 0.32]]))
    stack = score_stack(scores_at(scores, [40_000, 30_000, 20_000]), "a", ["dmc/y", "dmc/x"])
    assert stack.shape == (3, 2, 3)
    assert stack[:, :, 1] == pytest.approx(matrix)  # budgets in increasing order


def test_ragged_seeds_are_an_error_naming_the_counts() -> None:
    scores = tidy(
        [("a", "dmc/x", seed, 10, 0.5) for seed in (1, 2, 3)]
        + [("a", "dmc/y", seed, 10, 0.5) for seed in (1, 2)]
    )
    message = (
        "a has a ragged score matrix (tasks need equal numbers of runs): dmc/x: 3 seeds "
        "[1, 2, 3]; dmc/y: 2 seeds [1, 2]. Use --seeds N to take the first N seeds of every task"
    )
    with pytest.raises(ScoreError, match=re.escape(message)):
        score_matrix(scores_at(scores, 10), "a", ["dmc/x", "dmc/y"])
    fixed = first_seeds(scores, 2)
    assert score_matrix(scores_at(fixed, 10), "a", ["dmc/x", "dmc/y"]).shape == (2, 2)
    with pytest.raises(
        ScoreError, match=re.escape("a on dmc/y has 2 seeds [1, 2]; --seeds asks for the first 3")
    ):
        first_seeds(scores, 3)


def test_missing_task_is_an_error(fake_runs: Path, tmp_path: Path) -> None:
    scores = load_scores([fake_runs])
    scores = scores[~((scores["algo"] == "agent_b") & (scores["task"] == "walker_walk"))]
    message = "agent_b has no runs on ['dmc/walker_walk']; use --tasks to report common tasks"
    with pytest.raises(ScoreError, match=re.escape(message)):
        build_report(scores, tmp_path, frames=[50_000], reps=10, curve_reps=10)


def test_runs_must_reach_the_budget() -> None:
    scores = tidy([("a", "dmc/x", 1, frame, 0.5) for frame in (0, 20_000, 40_000)])
    assert scores_at(scores, 60_000)["eval_frame"].tolist() == [40_000]  # within one interval
    message = (
        "a on dmc/x seed 1: evaluations stop at frame 40000, short of the budget 70000 "
        "(evaluated every 20000 frames)"
    )
    with pytest.raises(ScoreError, match=re.escape(message)):
        scores_at(scores, 70_000)
    with pytest.raises(
        ScoreError, match=re.escape("no evaluation at or before frame 5 (first: 10)")
    ):
        scores_at(tidy([("a", "dmc/x", 1, 10, 0.5)]), 5)


def test_matrix_shape_and_value_checks() -> None:
    with pytest.raises(
        ScoreError, match=re.escape("a: a score matrix is [runs × tasks]; got shape (4,)")
    ):
        check_score_matrix("a", np.zeros(4), 4)
    with pytest.raises(
        ScoreError, match=re.escape("a: score matrix has 3 task columns, expected 4")
    ):
        check_score_matrix("a", np.zeros((2, 3)), 4)
    with pytest.raises(ScoreError, match="outside"):
        check_score_matrix("a", np.full((2, 4), 1.5), 4)


def test_scores_outside_dmc_need_a_success_rate(tmp_path: Path) -> None:
    run_dir = tmp_path / "builtin" / "reach" / "drqv2" / "default" / "seed1"
    logger = Logger(run_dir, tensorboard=False)
    logger.log("eval", {"episode_return": 30.0, "success_rate": float("nan")}, frame=0)
    logger.close()
    message = "suite 'builtin' is scored by success rate, but the input has no success values"
    with pytest.raises(ScoreError, match=re.escape(message)):
        load_scores([run_dir])


def test_an_un_normalised_return_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "curve.csv"
    pd.DataFrame(
        {"agent": "x", "task": "walker_walk", "seed": [1], "frame": [0], "episode_reward": [1500.0]}
    ).to_csv(path)
    with pytest.raises(ScoreError, match=r"normalised score 1\.5 at frame 0 is outside \[0, 1\]"):
        load_csv(path)


def test_the_same_run_from_two_inputs_is_an_error(fake_runs: Path, tmp_path: Path) -> None:
    run_dir = fake_runs / "dmc" / "cheetah_run" / "agent_a" / "default" / "seed1"
    load_scores([run_dir, run_dir / "eval.csv"])  # the same file named twice is read once
    copy = tmp_path / "copied_run"
    (copy / ".hydra").mkdir(parents=True)
    (copy / "eval.csv").write_text((run_dir / "eval.csv").read_text())
    config = {"agent": {"name": "agent_a"}, "task": {"suite": "dmc", "name": "cheetah_run"}}
    (copy / ".hydra" / "config.yaml").write_text(yaml.safe_dump({**config, "seed": 1}))
    with pytest.raises(ScoreError, match="agent_a on dmc/cheetah_run seed 1 at frame 0 comes from"):
        load_scores([run_dir, copy])


def test_run_identity_from_the_saved_config_or_the_path(tmp_path: Path) -> None:
    run_dir = tmp_path / "anything"
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "agent": {"name": "drm"},
        "task": {"suite": "dmc", "name": "hopper_hop"},
        "seed": 4,
        "exp_name": "ablation",
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert run_identity(run_dir) == {
        "algo": "drm/ablation",
        "suite": "dmc",
        "task": "hopper_hop",
        "seed": 4,
    }
    by_path = tmp_path / "dmc" / "hopper_hop" / "drm" / "default" / "seed2"
    assert run_identity(by_path) == {"algo": "drm", "suite": "dmc", "task": "hopper_hop", "seed": 2}
    with pytest.raises(ScoreError, match="does not end in <suite>/<task>/<agent>/<exp>/seed<n>"):
        run_identity(tmp_path / "not_a_run")


def test_robotrl_eval_episode_csvs_average_their_episodes(tmp_path: Path) -> None:
    rows = [
        ("drqv2", "dmc", "walker_walk", 1, 30_000, 0, 400.0, float("nan"), 500),
        ("drqv2", "dmc", "walker_walk", 1, 30_000, 1, 600.0, float("nan"), 500),
        ("drqv2", "builtin", "reach", 1, 30_000, 0, 90.0, 1.0, 50),
        ("drqv2", "builtin", "reach", 1, 30_000, 1, 20.0, 0.0, 50),
        ("drqv2", "builtin", "reach", 1, 30_000, 2, 95.0, 1.0, 50),
    ]
    columns = ["algo", "suite", "task", "seed", "step", "episode", "return", "success", "length"]
    path = tmp_path / "episodes.csv"
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    scores = load_csv(path).set_index("task")["score"]
    assert scores["walker_walk"] == pytest.approx(0.5)
    assert scores["reach"] == pytest.approx(2 / 3)


# -- the packaged DrQ-v2 curves --------------------------------------------------------------


def test_drqv2_medium_iqm_at_1m_frames_is_reproduced(tmp_path: Path) -> None:
    """DrQ-v2's 12 medium DMC tasks, first 8 seeds, the evaluation at exactly 1M frames:
    IQM 0.535 [0.50, 0.57] (the CI at --reps 5000 rounds the same as at rliable's 50000)."""
    out = tmp_path / "drqv2"
    args = ["--reference", "drqv2", "--tasks", "dmc-medium", "--seeds", "8", "--frames", "1000000"]
    report_main([*args, "--out", str(out), "--reps", "5000", "--curve-reps", "50"])
    aggregates = pd.read_csv(out / "aggregates.csv")
    iqm = aggregates[aggregates["metric"] == "iqm"].iloc[0]
    assert iqm["algo"] == "DrQ-v2 (published)"
    assert iqm["runs_per_task"] == 8
    assert round(iqm["estimate"], 3) == 0.535
    assert (round(iqm["ci_low"], 2), round(iqm["ci_high"], 2)) == (0.50, 0.57)
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 12 * 8
    assert set(scores["eval_frame"]) == {1_000_000}  # every run has an evaluation at 1M exactly
    assert "| DrQ-v2 (published) | 8 | 0.535 [0.50" in (out / "report.md").read_text()


def test_drqv2_task_groups_agree_with_the_task_configs_and_the_curves() -> None:
    configured = {}
    for path in sorted((REPO / "robotrl" / "conf" / "task" / "dmc").glob("*.yaml")):
        defaults = yaml.safe_load(path.read_text())["defaults"]
        difficulty = next(d["/dmc_difficulty"] for d in defaults if isinstance(d, dict))
        configured[path.stem] = difficulty
    for group, tasks in DRQV2_DMC_GROUPS.items():
        in_config = {task for task, difficulty in configured.items() if difficulty == group}
        assert in_config == set(tasks), group
    assert len(TASK_GROUPS["dmc-medium"]) == 12
    # The published curves run to each group's budget (1M, 3M, 30M frames).
    reference = load_reference("drqv2")
    last = reference.groupby("task")["frame"].max()
    budgets = {"easy": 1_000_000, "medium": 3_000_000, "hard": 30_000_000}
    for group, tasks in DRQV2_DMC_GROUPS.items():
        assert all(budgets[group] - 20_000 <= last[t] <= budgets[group] for t in tasks), group


def test_packaged_reference_matches_the_published_files() -> None:
    reference = load_reference("drqv2")
    assert reference["task"].nunique() == 24
    assert set(reference["algo"]) == {"DrQ-v2 (published)"}
    walker = reference[(reference["task"] == "walker_walk") & (reference["seed"] == 1)]
    assert walker.set_index("frame").loc[0, "score"] == pytest.approx(25.39756235557521 / 1000)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"data/**/*.csv"' in pyproject
    assert 'robotrl-report = "robotrl.cli.report:main"' in pyproject


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_end_to_end_writes_figures_tables_and_csvs(
    fake_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    options = ["--reps", "300", "--curve-reps", "30", "--seed", "1", "--reference", "drqv2"]
    report_main([str(fake_runs), "--frames", "30000", "50000", "--out", str(out), *options])
    printed = capsys.readouterr().out
    assert "agent_a @ 50k: 0.500 [" in printed
    for name in ("sample_efficiency", "performance_profiles", "task_curves"):
        path = out / f"{name}.png"
        assert path.stat().st_size > 10_000
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert min(image.size) >= 200
    markdown = (out / "report.md").read_text()
    assert "| algo | runs per task | 30k frames | 50k frames |" in markdown
    assert re.search(r"\| agent_a \| 8 \| 0\.300 \[[0-9.]+, [0-9.]+\] \| 0\.500 \[", markdown)
    assert "| P(agent_a > agent_b) |" in markdown
    # The DrQ-v2 curves have 2 of the 3 tasks: drawn per task, kept out of the aggregates.
    assert "DrQ-v2 (published) covers 2 of the 3 tasks: shown per task only" in markdown
    assert re.search(r"\| builtin/reach \| [0-9.]+ \| [0-9.]+ \| — \|", markdown)
    aggregates = pd.read_csv(out / "aggregates.csv")
    assert len(aggregates) == 2 * 2 + 2  # IQM per algo and budget, one pair per budget
    assert set(aggregates["algo"]) == {"agent_a", "agent_b"}
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 2 * len(TASKS) * SEEDS * 2
    final = scores[(scores["frame"] == 50_000) & (scores["algo"] == "agent_a")]
    assert sorted(final["score"]) == pytest.approx(sorted(FINAL["agent_a"].ravel()))


def test_cli_errors_are_one_line(fake_runs: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="robotrl-report: --tasks 'hopper_hop' matches no task"):
        report_main([str(fake_runs), "--tasks", "hopper_hop", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="short of the budget 1000000"):
        report_main([str(fake_runs), "--frames", "1000000", "--out", str(tmp_path)])


def test_frames_label() -> None:
    assert [frames_label(f) for f in (1_000_000, 500_000, 1_500_000, 30_000, 999)] == [
        "1M",
        "500k",
        "1.5M",
        "30k",
        "999",
    ]
