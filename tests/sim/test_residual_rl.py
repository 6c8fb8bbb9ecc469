"""Demos, chunked BC and the residual agent on the built-in reach task, through the real CLIs.

Scripted demos (``robotrl_sim.builtin.reach.scripted_action``, return ~97, success 1.0) are
written in the replay's episode format; ``robotrl-train agent=bc_chunk`` clones them offline;
``robotrl-train agent=residual`` starts from that checkpoint, and ``robotrl-eval`` evaluates the
combined policy and the base alone (``agent_options.act_with=base``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from robotrl.demos import load_demos
from robotrl.replay import load_episode
from robotrl.trainer import eval_reset_seed
from tests.sim.cli_runs import csv_rows, eval_rows, random_policy_return, reach_demos, run

SEED = 1
DEMOS = 20
BC_FRAMES = 3000  # 1500 updates (one update = one agent step = action_repeat frames)
COMMON = ["logger.progress_bar=false", "logger.tensorboard=false", "eval_episodes=10"]


episode_rows = csv_rows


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("demos")
    stats = reach_demos(directory, DEMOS)
    assert stats.episodes == DEMOS and stats.transitions == DEMOS * 50
    assert stats.success_rate == 1.0 and stats.mean_return > 90.0
    return directory


def test_demos_are_replay_episodes_and_load_back(demos):
    files = sorted(demos.glob("episode_*.npz"))
    assert len(files) == DEMOS
    episode = load_episode(files[0])
    assert episode["frames"].shape == (51, 3, 32, 32) and episode["action"].shape == (50, 2)
    # The recorded actions are the clean expert's (DART: only the executed ones were noisy).
    assert np.abs(episode["action"]).max() <= 1.0
    replay = load_demos(demos, frame_stack=3, pixels_shape=(9, 32, 32))
    assert len(replay) == DEMOS * 50 and replay.num_episodes == DEMOS
    batch = replay.sample(32, horizon=8, pad=True)
    assert batch["obs"].shape == (32, 9, 32, 32) and batch["action_seq"].shape == (32, 8, 2)
    with pytest.raises(ValueError, match="stack to pixels"):
        load_demos(demos, frame_stack=3, pixels_shape=(9, 64, 64))


@pytest.fixture(scope="module")
def bc_run(demos, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run(
        "robotrl-train",
        "agent=bc_chunk",
        f"agent.demos={demos}",
        f"runs_root={runs}",
        f"seed={SEED}",
        f"frames={BC_FRAMES}",
        f"eval_every_frames={BC_FRAMES}",
        *COMMON,
    )
    return runs / "builtin" / "reach" / "bc_chunk" / "default" / f"seed{SEED}"


def test_bc_chunk_clones_the_scripted_expert_well_above_random(bc_run):
    """Recorded (20 demos, 1500 updates of batch 64, temporal ensembling): return 90-95 and
    success 0.7 on the 10 eval episodes, vs random ~30 and the untrained policy ~44; 1000
    updates gave 82, 2000 gave 95.5 (success 0.7)."""
    rows = eval_rows(bc_run)
    untrained, learned = rows[0], rows[BC_FRAMES]
    random_return = random_policy_return(eval_reset_seed(SEED))
    print(f"bc_chunk: random {random_return:.1f}, untrained {untrained}, learned {learned}")
    assert float(learned["episode_return"]) > random_return + 35.0
    assert float(learned["episode_return"]) > float(untrained["episode_return"]) + 25.0
    assert float(learned["success_rate"]) >= 0.5
    assert float(learned["step"]) == BC_FRAMES // 2  # offline: one step per update
    with open(bc_run / "train.csv") as handle:
        train = list(csv.DictReader(handle))
    assert float(train[-1]["bc_loss"]) < 0.8 * float(train[0]["bc_loss"])  # rows: 100-update means
    assert not (bc_run / "replay").exists(), "offline runs collect nothing"


def test_bc_chunk_resumes_and_evaluates_with_either_inference(bc_run, demos):
    runs_root = bc_run.parents[4]
    done = run(
        "robotrl-train",
        "agent=bc_chunk",
        f"agent.demos={demos}",
        f"runs_root={runs_root}",
        f"seed={SEED}",
        f"frames={BC_FRAMES + 200}",
        f"eval_every_frames={BC_FRAMES}",
        *COMMON,
    )
    assert f"resumed from frame {BC_FRAMES}" in done.stdout
    assert max(eval_rows(bc_run)) == BC_FRAMES + 200
    checkpoint = bc_run / "checkpoints" / f"step_{BC_FRAMES + 200:012d}"
    returns = {}
    for inference in ("ensemble", "chunk"):
        out = bc_run / f"eval_{inference}"
        run(
            "robotrl-eval",
            f"checkpoint={checkpoint}",
            "episodes=5",
            "video=false",
            f"out_dir={out}",
            f"+agent_options.inference={inference}",
        )
        rows = episode_rows(out / checkpoint.name / "episodes.csv")
        returns[inference] = np.mean([float(row["return"]) for row in rows])
    print(f"bc_chunk eval returns by inference: {returns}")
    assert min(returns.values()) > 55.0


def test_residual_starts_at_the_base_and_trains_through_the_cli(bc_run, tmp_path):
    base = sorted((bc_run / "checkpoints").glob("step_*"))[-1]
    frames = 600
    run(
        "robotrl-train",
        "agent=residual",
        f"agent.base_checkpoint={base}",
        f"runs_root={tmp_path}",
        f"seed={SEED}",
        f"frames={frames}",
        "seed_frames=200",
        f"eval_every_frames={frames}",
        "replay.batch_size=32",
        *COMMON,
    )
    run_dir = tmp_path / "builtin" / "reach" / "residual" / "default" / f"seed{SEED}"
    rows = eval_rows(run_dir)
    checkpoint = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    # The base alone (per-step), from the residual's checkpoint, on the trainer's eval episodes.
    out = tmp_path / "eval_base"
    run(
        "robotrl-eval",
        f"checkpoint={checkpoint}",
        "episodes=10",
        "video=false",
        f"out_dir={out}",
        f"seed={eval_reset_seed(SEED)}",
        "+agent_options.act_with=base",
    )
    base_rows = episode_rows(out / checkpoint.name / "episodes.csv")
    base_return = np.mean([float(row["return"]) for row in base_rows])
    print(
        f"residual: untrained {rows[0]}, after {frames} frames {rows[frames]}; base {base_return}"
    )
    # Untrained, the combined policy is the base: the same return on the same episodes.
    assert float(rows[0]["episode_return"]) == pytest.approx(base_return, rel=1e-9)
    assert np.isfinite(float(rows[frames]["episode_return"]))
