"""BC → residual on one MetaWorld task, through the real CLIs: success before and after.

1. ``--demos`` episodes of MetaWorld's scripted expert (``metaworld.policies.ENV_POLICY_MAP``, from
   the privileged state) on ``metaworld/<task>``, written as a demo directory
   (``robotrl.demos.collect_demos``; the env executes the expert's action plus Gaussian noise of
   ``--demo-noise``, DART-style, and the demo records the clean action).
2. ``robotrl-train agent=bc_chunk`` clones them (``--bc-frames``); its last evaluation is the
   chunked BC policy's success (temporal ensembling).
3. ``robotrl-train agent=ppo agent.base_checkpoint=...`` trains residual PPO on that base
   (``--residual-frames``; the settings of ``tests/sim/test_residual_improves.py``). Its first
   evaluation is the base acting per step (the residual's mean starts at 0), its last one the
   base plus the residual.

All three evaluations play the same ``--episodes`` episodes (the trainer's evaluation seeds for
``--seed``). The defaults are CPU-sized: 64x64 pixels with fast visuals (no shadows, reflections
or skybox: not comparable with published MetaWorld numbers), proprio on, 100-step episodes
(200 MetaWorld steps), one torch thread. Prints one line per stage and a JSON summary::

    MUJOCO_GL=egl .venv/bin/python scripts/bench_residual_metaworld.py --task reach --out /tmp/mw

``--base CHECKPOINT`` starts from an earlier run's BC checkpoint (same task options): only step 3.

Figures and the command that produced them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

from robotrl.demos import collect_demos
from robotrl.envs import make_env
from robotrl_sim.metaworld import MetaWorldEnv, load_metaworld

BIN = Path(sys.executable).parent
RESIDUAL = [  # as tests/sim/test_residual_improves.py
    "agent=ppo",
    "agent.lr=1e-3",
    "agent.init_log_std=-0.5",
    "agent.rollout_steps=256",
    "agent.num_minibatches=4",
    "agent.channels_last=false",
    "num_envs=1",
]


def expert_for(task: str) -> Any:
    """``expert(env) -> action`` from MetaWorld's scripted policy for ``task``, reading the
    privileged state (MetaWorld's 39 numbers) without disturbing the env's own frame stacking."""
    load_metaworld()  # applies the compatibility shim first
    from metaworld.policies import ENV_POLICY_MAP

    # MetaWorld's experts are P-controllers whose raw actions may exceed [-1, 1]: clipped here.
    warnings.filterwarnings("ignore", "Constant.s. may be too high", UserWarning)
    policy_class: Any = ENV_POLICY_MAP[f"{task}-v3"]  # a concrete Policy subclass
    policy = policy_class()

    def expert(env: MetaWorldEnv) -> np.ndarray:
        inner = env.metaworld_env
        state = np.hstack(
            (inner._get_curr_obs_combined_no_goal(), inner._prev_obs, inner._get_pos_goal())
        )
        return np.clip(policy.get_action(state), -1.0, 1.0).astype(np.float32)

    return expert


def run(*args: str) -> float:
    """Runs a CLI; returns its wall time in seconds (raises with its stderr on failure)."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{done.stderr[-5000:]}")
    return time.perf_counter() - started


def eval_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "eval.csv") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="reach")
    parser.add_argument("--out", type=Path, required=True, help="a new or empty directory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--demos", type=int, default=10)
    parser.add_argument("--demo-noise", type=float, default=0.1)
    parser.add_argument("--bc-frames", type=int, default=3000)
    parser.add_argument("--residual-frames", type=int, default=10240)
    parser.add_argument("--residual-scale", type=float, default=0.5)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--episode-steps", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--base",
        type=Path,
        help="a bc_chunk checkpoint of an earlier run (same task options): skip demos and BC",
    )
    args = parser.parse_args()

    options = {"fast_render": True, "proprio": True, "episode_steps": args.episode_steps}
    common = [
        f"task=metaworld/{args.task}",
        "task.options.fast_render=true",
        "+task.options.proprio=true",
        f"+task.options.episode_steps={args.episode_steps}",
        f"env.image_size={args.image_size}",
        f"runs_root={args.out / 'runs'}",
        f"seed={args.seed}",
        f"eval_episodes={args.episodes}",
        "torch_threads=1",
        "logger.progress_bar=false",
        "logger.tensorboard=false",
        "logger.save_video=false",
    ]
    summary: dict[str, Any] = {"task": f"metaworld/{args.task}", **vars(args)}
    summary |= {"out": str(args.out), "base": None if args.base is None else str(args.base)}
    started = time.perf_counter()
    base = args.base if args.base is not None else demos_and_bc(args, options, common, summary)

    residual_seconds = run(
        "robotrl-train",
        *RESIDUAL,
        f"agent.base_checkpoint={base}",
        f"agent.residual_scale={args.residual_scale}",
        f"frames={args.residual_frames}",
        f"eval_every_frames={max(args.residual_frames // 2, 1)}",
        f"checkpoint_every_frames={args.residual_frames}",
        *common,
    )
    task_dir = args.out / "runs" / "metaworld" / args.task
    rows = eval_rows(task_dir / "ppo" / "default" / f"seed{args.seed}")
    summary |= {
        "base_per_step_success": float(rows[0]["success_rate"]),
        "residual_success": float(rows[-1]["success_rate"]),
        "residual_curve": [(int(r["frame"]), float(r["success_rate"])) for r in rows],
        "residual_seconds": residual_seconds,
        "total_minutes": (time.perf_counter() - started) / 60,
    }
    print(
        f"residual PPO: success by frame {summary['residual_curve']} (frame 0: the base per step)"
    )
    print(json.dumps(summary))


def demos_and_bc(
    args: argparse.Namespace, options: dict[str, Any], common: list[str], summary: dict[str, Any]
) -> Path:
    """Steps 1-2 (module docstring); returns the BC checkpoint, records figures in ``summary``."""
    started = time.perf_counter()
    env = make_env(
        "metaworld",
        args.task,
        seed=0,
        image_size=args.image_size,
        action_repeat=2,
        frame_stack=3,
        options={**options, "render_mode": None},
    )
    # Demo reset seeds 5000+ stay clear of the trainer's evaluation seeds.
    stats = collect_demos(
        env,
        expert_for(args.task),
        episodes=args.demos,
        directory=args.out / "demos",
        frame_stack=3,
        seed=5000,
        action_noise=args.demo_noise,
    )
    env.close()
    summary["demo_success"] = stats.success_rate
    summary["demo_seconds"] = time.perf_counter() - started
    print(f"demos: {stats}, {summary['demo_seconds']:.0f} s", flush=True)

    bc_seconds = run(
        "robotrl-train",
        "agent=bc_chunk",
        f"agent.demos={args.out / 'demos'}",
        f"frames={args.bc_frames}",
        f"eval_every_frames={args.bc_frames}",
        f"checkpoint_every_frames={args.bc_frames}",
        *common,
    )
    bc_dir = args.out / "runs" / "metaworld" / args.task / "bc_chunk" / "default"
    bc_dir = bc_dir / f"seed{args.seed}"
    bc = eval_rows(bc_dir)[-1]
    summary |= {"bc_success": float(bc["success_rate"]), "bc_seconds": bc_seconds}
    print(f"bc_chunk: success {bc['success_rate']}, return {bc['episode_return']}", flush=True)
    return bc_dir / "checkpoints" / f"step_{args.bc_frames:012d}"


if __name__ == "__main__":
    main()
