"""SB3 baselines through ``robotrl-train`` / ``robotrl-eval``: real Hydra, MuJoCo, files, SIGKILL.

SB3's SAC must learn the built-in reach task from pixels alone (random + 25 on the eval episodes,
as our agents in tests/sim/test_learning.py), its checkpoint must evaluate into the same tidy CSV
as ours, and a killed run must resume with its replay buffer and counters.
"""

from __future__ import annotations

import csv
import json
import time

import pytest

from robotrl.trainer import eval_reset_seed
from tests.sim.cli_runs import EVAL_EPISODES, random_policy_return
from tests.sim.test_train_cli import (
    BIN,
    checkpoint_frames,
    read_frames,
    run_cli,
    start_and_kill_after_checkpoint,
)

SEED = 1
QUIET = ["logger.progress_bar=false", "logger.tensorboard=false", "torch_threads=1"]


def eval_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.duration(225)
def test_sb3_sac_learns_builtin_reach_from_pixels_and_evaluates_like_our_agents(tmp_path):
    frames = 9000  # 4500 agent steps, 3500 SAC updates after 1000 random steps
    started = time.monotonic()
    run_cli(
        [
            str(BIN / "robotrl-train"),
            "agent=sb3_sac",
            f"runs_root={tmp_path / 'runs'}",
            f"seed={SEED}",
            f"frames={frames}",
            f"eval_every_frames={frames}",
            f"eval_episodes={EVAL_EPISODES}",
            f"checkpoint_every_frames={frames}",
            *QUIET,
        ],
        tmp_path,
    )
    minutes = (time.monotonic() - started) / 60
    run_dir = tmp_path / "runs" / "builtin" / "reach" / "sb3_sac" / "default" / f"seed{SEED}"
    rows = {int(row["frame"]): row for row in eval_rows(run_dir / "eval.csv")}
    learned = float(rows[frames]["episode_return"])
    untrained = float(rows[0]["episode_return"])
    random_return = random_policy_return(eval_reset_seed(SEED))
    print(
        f"sb3_sac: random {random_return:.1f}, untrained {untrained:.1f}, learned {learned:.1f} "
        f"(success {rows[frames]['success_rate']}) after {frames} frames in {minutes:.1f} min"
    )
    assert 10.0 < random_return < 45.0
    assert learned > random_return + 25.0
    assert learned > untrained + 25.0
    # Our Logger's columns, our progress/eval artefacts, our checkpoint naming.
    train_columns = eval_rows(run_dir / "train.csv")[0].keys()
    assert {"frame", "episode_return", "episode_length", "episode", "step", "fps"} <= set(
        train_columns
    )
    assert {"buffer_size", "success", "critic_loss", "actor_loss", "ent_coef"} <= set(train_columns)
    assert list(rows[frames]) == [
        "frame",
        "episode_return",
        "episode_length",
        "success_rate",
        "step",
    ]
    assert (run_dir / "learning_curve.png").exists() and (run_dir / "videos").is_dir()
    assert checkpoint_frames(run_dir) == [frames]

    # robotrl-eval: one checkpoint, then benchmark mode over the runs folder.
    checkpoint = run_dir / "checkpoints" / f"step_{frames:012d}"
    run_cli([str(BIN / "robotrl-eval"), f"checkpoint={checkpoint}", "episodes=3"], tmp_path)
    episodes = eval_rows(run_dir / "eval" / checkpoint.name / "episodes.csv")
    assert list(episodes[0]) == [
        "algo", "suite", "task", "seed", "step", "episode", "return", "success", "length"
    ]  # fmt: skip
    assert {k: episodes[0][k] for k in ("algo", "suite", "task", "seed", "step", "length")} == {
        "algo": "sb3_sac",
        "suite": "builtin",
        "task": "reach",
        "seed": str(SEED),
        "step": str(frames),
        "length": "50",
    }
    assert [row["episode"] for row in episodes] == ["0", "1", "2"]
    assert (run_dir / "eval" / checkpoint.name / "episode.mp4").stat().st_size > 1000
    # The checkpoint's policy is the one that learned: its mean return is far above random.
    assert sum(float(r["return"]) for r in episodes) / 3 > random_return + 25.0

    out = tmp_path / "bench"
    run_cli(
        [
            str(BIN / "robotrl-eval"),
            f"runs=[{tmp_path / 'runs'}]",
            "episodes=2",
            "video=false",
            f"out_dir={out}",
        ],
        tmp_path,
    )
    bench = eval_rows(out / "episodes.csv")
    assert [row["algo"] for row in bench] == ["sb3_sac", "sb3_sac"]
    assert list(bench[0])[-1] == "checkpoint" and bench[0]["step"] == str(frames)


def test_sb3_sac_sigkill_then_same_command_resumes_with_replay_and_counters(tmp_path):
    total = 1600
    args = [
        str(BIN / "robotrl-train"),
        "agent=sb3_sac",
        f"runs_root={tmp_path / 'runs'}",
        f"frames={total}",
        "seed_frames=200",
        "checkpoint_every_frames=200",
        "eval_every_frames=800",
        "eval_episodes=1",
        "logger.save_video=false",
        "agent.hidden_dim=32",
        "agent.feature_dim=16",
        "agent.batch_size=8",
        *QUIET,
    ]
    run_dir = tmp_path / "runs" / "builtin" / "reach" / "sb3_sac" / "default" / "seed1"
    killed_at = start_and_kill_after_checkpoint(args, tmp_path, run_dir, wanted=600)
    checkpoint = run_dir / "checkpoints" / f"step_{killed_at:012d}"
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["format"] == "sb3" and meta["agent_name"] == "sb3_sac"
    assert meta["counters"]["frame"] == killed_at and meta["counters"]["step"] == killed_at // 2
    assert meta["replay_size"] == killed_at // 2  # every step so far, none lost
    assert meta["counters"]["episode"] == killed_at // 100  # 50 agent steps x action repeat 2
    files = {p.name for p in checkpoint.iterdir()}
    assert files == {"checksums.json", "meta.json", "model.zip", "replay_buffer.npz"}
    assert len(checkpoint_frames(run_dir)) <= 2  # keep_checkpoints

    done = run_cli(args, tmp_path)
    assert f"resumed from frame {killed_at}" in done.stdout
    final = json.loads((run_dir / "checkpoints" / f"step_{total:012d}" / "meta.json").read_text())
    assert final["counters"]["frame"] == total and final["counters"]["step"] == total // 2
    assert final["counters"]["episode"] == total // 100
    assert final["replay_size"] == total // 2  # the restored buffer, then the new steps
    # SAC updated every step after the 100 random ones, before and after the kill
    assert final["n_updates"] == total // 2 - 100
    assert read_frames(run_dir / "train.csv") == list(range(100, total + 1, 100))
    assert read_frames(run_dir / "eval.csv") == [0, 800, total]


def test_sb3_ppo_and_td3_smoke_and_nature_cnn(tmp_path):
    common = [
        str(BIN / "robotrl-train"),
        f"runs_root={tmp_path / 'runs'}",
        "frames=400",
        "seed_frames=100",
        "eval_every_frames=400",
        "eval_episodes=1",
        "checkpoint_every_frames=200",
        "logger.save_video=false",
        "agent.hidden_dim=32",
        "agent.feature_dim=16",
        *QUIET,
    ]
    run_cli([*common, "agent=sb3_td3", "agent.batch_size=8"], tmp_path)
    # PPO collects whole rollouts: n_steps divides the 200 agent steps, so it stops at 400 frames
    run_cli([*common, "agent=sb3_ppo", "agent.n_steps=50", "agent.batch_size=25"], tmp_path)
    run_cli(
        [
            *common,
            "agent=sb3_ppo",
            "exp_name=nature",
            "agent.features_extractor=nature_cnn",
            "env.image_size=40",
            "agent.n_steps=100",
            "agent.batch_size=50",
        ],
        tmp_path,
    )
    for agent, exp in (("sb3_td3", "default"), ("sb3_ppo", "default"), ("sb3_ppo", "nature")):
        run_dir = tmp_path / "runs" / "builtin" / "reach" / agent / exp / "seed1"
        assert checkpoint_frames(run_dir)[-1] == 400, agent
        assert read_frames(run_dir / "train.csv") == [100, 200, 300, 400], agent
        assert read_frames(run_dir / "eval.csv") == [0, 400], agent
        files = {p.name for p in (run_dir / "checkpoints" / f"step_{400:012d}").iterdir()}
        assert ("replay_buffer.npz" in files) == (agent == "sb3_td3")
    columns = eval_rows(tmp_path / "runs/builtin/reach/sb3_ppo/default/seed1/train.csv")[-1]
    assert "value_loss" in columns and "buffer_size" not in columns


def test_a_wrong_sb3_config_key_fails_before_training(tmp_path):
    import subprocess

    from tests.sim.test_train_cli import env_vars

    done = subprocess.run(
        [str(BIN / "robotrl-train"), "agent=sb3_ppo", "agent.nsteps=8", f"runs_root={tmp_path}"],
        cwd=tmp_path,
        env=env_vars(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "unknown config key agent.nsteps; did you mean agent.n_steps?" in done.stderr
    assert not (tmp_path / "builtin").exists() or not list(tmp_path.rglob("checkpoints"))
