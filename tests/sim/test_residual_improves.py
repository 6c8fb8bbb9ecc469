"""A residual policy raises the success of a chunked BC policy on a harder variant of
``builtin/reach``, through the real CLIs (``robotrl-train``, ``robotrl-eval``).

1. 20 scripted demos on the clean task (``robotrl_sim.builtin.reach.scripted_action``, DART noise
   0.3), cloned by ``robotrl-train agent=bc_chunk`` (1500 updates). Its own evaluation (temporal
   ensembling) on the clean task: success >= ``BC_CLEAN_SUCCESS``.
2. The harder variant: ``action_bias=(0.7, 0.7)``, a constant actuation offset (an uncalibrated
   actuator, a steady wind; ``robotrl_sim.builtin.reach``). The expert still succeeds (it settles
   4.9 cm from the centre); the clone, whose gain near the target is softer, settles off the disc.
3. Residual PPO (``robotrl-train agent=ppo agent.base_checkpoint=...``, ``robotrl.agents.ppo``) on
   the variant: the PPO policy sees the pixels and the base's action and adds
   ``residual_scale · r`` to it. Its first evaluation (the residual's mean starts at exactly 0) is
   the base's per-step policy on the variant; its last one, after 6144 frames, the combined
   policy's. ``robotrl-eval`` also scores the base per step (the action the residual corrects) on
   the clean task. Every evaluation plays the same 20 episodes (reset seeds
   ``eval_reset_seed(SEED) + i``; the bias changes no start state).

Why PPO and not the off-policy ``agent=residual``: with a fresh critic, DrQ-v2's actor saturates
its tanh within a few hundred updates, in whichever direction the untrained critic's gradient
points. By hand, on ``action_bias=(0.5, 0.5)`` with ``residual_scale=0.5`` and 2000-3000
frames, three seeds went 0.5 → 1.0 (10 episodes), 0.65 → 0.8 and 0.8 → 0.0 (the residual pinned
at +1, the wrong sign); with ``residual_scale=1`` seed 1 pinned at -1, overcorrecting
(0.5 → 0.6). PPO's unbounded mean starts at 0 and follows the advantages.

Recorded (2026-11-30, 2-core CPU shared with other jobs, load average 3-7, torch_threads=1;
success rates over the 20 episodes; demo reset seeds 5000 + 1000 · (seed - 1))::

    seed  BC clean      base clean    base biased   residual biased   gain   wall
          (ensemble)    (per step)    (per step)    (6144 frames)
    1     0.85          0.95          0.05          0.70              +0.65  2.5 min
    2     0.60          0.75          0.15          0.75              +0.60  3.2 min
    3     0.75          0.85          0.30          0.85              +0.55  2.8 min
    4     0.70          0.85          0.15          0.50              +0.35  1.2 min
    5     0.65          0.75          0.00          0.80              +0.80  1.5 min
    6     0.95          0.95          0.40          0.85              +0.45  1.6 min

(returns, seed 1: base biased 69.7, residual 71.8; BC clean 0.60-0.95 ≥ ``BC_CLEAN_SUCCESS``
= 0.5; the bias costs the base 0.55-0.90, ``HARDER_BY`` = 0.3.) ``MARGIN`` = 0.25 is 0.10
(about one standard error of a rate near 0.5 over 20 episodes) below the smallest gain measured.
A broken residual fails it: with ``agent.lr=1e-12`` (the residual never moves) seed 1 ends at
exactly the base (success 0.05, return 69.7 before and after) and the last assert fails
(0.05 >= 0.30); so does ``agent.residual_scale=0.01`` (a correction too small to matter:
success 0.05, return 69.7 after training).

Commands (what the test runs, seed 1; ``$D``: the demos it collects, ``$BC``: the BC run)::

    robotrl-train agent=bc_chunk agent.demos=$D seed=1 frames=3000 eval_every_frames=3000 \
        eval_episodes=20 torch_threads=1
    robotrl-eval checkpoint=$BC/checkpoints/step_000000003000 episodes=20 seed=1001000 \
        +agent_options.inference=chunk +agent_options.execute_steps=1
    robotrl-train agent=ppo agent.base_checkpoint=$BC/checkpoints/step_000000003000 \
        '+task.options.action_bias=[0.7,0.7]' agent.residual_scale=1.0 agent.lr=1e-3 \
        agent.init_log_std=-0.5 agent.rollout_steps=256 agent.num_minibatches=4 \
        agent.channels_last=false num_envs=1 seed=1 frames=6144 eval_every_frames=6144 \
        eval_episodes=20 torch_threads=1
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from robotrl.trainer import eval_reset_seed
from tests.sim.cli_runs import DEMO_SEED, csv_rows, eval_rows, reach_demos, run

SEED = 1
DEMOS = 20
BIAS = "[0.7,0.7]"
BC_FRAMES = 3000  # 1500 updates
RESIDUAL_FRAMES = 6144  # 12 PPO updates of 256 steps (action repeat 2)
EPISODES = 20
BC_CLEAN_SUCCESS = 0.5  # the stated success rate of the clone on the clean task
HARDER_BY = 0.3  # the base loses at least this much success on the variant
MARGIN = 0.25  # the residual beats the base on the variant by at least this much
COMMON = [
    f"seed={SEED}",
    f"eval_episodes={EPISODES}",
    "torch_threads=1",
    "logger.progress_bar=false",
    "logger.tensorboard=false",
    "logger.save_video=false",
]
# Residual PPO from one env: 256-step rollouts in 4 minibatches, a 4x higher learning rate than
# PPO's default and a smaller initial std (0.6) around the base's action; the residual may move
# the action by up to residual_scale = 1 (the bias is 0.7 per axis).
RESIDUAL = [
    "agent=ppo",
    "agent.residual_scale=1.0",
    "agent.lr=1e-3",
    "agent.init_log_std=-0.5",
    "agent.rollout_steps=256",
    "agent.num_minibatches=4",
    "agent.channels_last=false",  # NCHW: faster at 32x32 on CPU
    "num_envs=1",
]


def episode_successes(csv_path: Path) -> list[float]:
    return [float(row["success"]) for row in csv_rows(csv_path)]


@pytest.mark.duration(72)
def test_residual_ppo_raises_the_clones_success_on_the_biased_reach(tmp_path):
    started = time.perf_counter()
    demos = tmp_path / "demos"
    stats = reach_demos(demos, DEMOS, seed=DEMO_SEED)
    assert stats.success_rate == 1.0

    # 1. Chunked BC on the clean task, evaluated by its own run (temporal ensembling).
    runs = tmp_path / "runs"
    run(
        "robotrl-train",
        "agent=bc_chunk",
        f"agent.demos={demos}",
        f"runs_root={runs}",
        f"frames={BC_FRAMES}",
        f"eval_every_frames={BC_FRAMES}",
        *COMMON,
    )
    bc_dir = runs / "builtin" / "reach" / "bc_chunk" / "default" / f"seed{SEED}"
    bc_clean = float(eval_rows(bc_dir)[BC_FRAMES]["success_rate"])
    base = bc_dir / "checkpoints" / f"step_{BC_FRAMES:012d}"

    # The base as the residual queries it (the first action of each predicted chunk), clean.
    out = tmp_path / "eval_base_clean"
    run(
        "robotrl-eval",
        f"checkpoint={base}",
        f"episodes={EPISODES}",
        f"seed={eval_reset_seed(SEED)}",
        "video=false",
        f"out_dir={out}",
        "+agent_options.inference=chunk",
        "+agent_options.execute_steps=1",
    )
    base_clean = float(np.mean(episode_successes(out / base.name / "episodes.csv")))

    # 2-3. Residual PPO on the biased variant; its first evaluation is the base's.
    run(
        "robotrl-train",
        *RESIDUAL,
        f"agent.base_checkpoint={base}",
        f"+task.options.action_bias={BIAS}",
        f"runs_root={runs}",
        f"frames={RESIDUAL_FRAMES}",
        f"eval_every_frames={RESIDUAL_FRAMES}",
        f"checkpoint_every_frames={RESIDUAL_FRAMES}",
        *COMMON,
    )
    by_frame = eval_rows(runs / "builtin" / "reach" / "ppo" / "default" / f"seed{SEED}")
    rows = [by_frame[frame] for frame in sorted(by_frame)]
    base_biased = float(rows[0]["success_rate"])
    residual_biased = float(rows[-1]["success_rate"])
    minutes = (time.perf_counter() - started) / 60
    print(
        f"residual on reach action_bias={BIAS}: BC clean {bc_clean:.2f}, base clean "
        f"{base_clean:.2f}, base biased {base_biased:.2f} (return "
        f"{float(rows[0]['episode_return']):.1f}), residual biased {residual_biased:.2f} (return "
        f"{float(rows[-1]['episode_return']):.1f}) after {rows[-1]['frame']} frames; "
        f"{minutes:.1f} min"
    )
    assert int(rows[0]["frame"]) == 0 and int(rows[-1]["frame"]) >= RESIDUAL_FRAMES
    assert bc_clean >= BC_CLEAN_SUCCESS
    assert base_biased <= base_clean - HARDER_BY, "the variant should be harder for the base"
    assert residual_biased >= base_biased + MARGIN
