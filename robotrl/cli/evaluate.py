"""``robotrl-eval``: deterministic evaluation of saved checkpoints.

One checkpoint: ``robotrl-eval checkpoint=PATH episodes=N`` writes a tidy per-episode CSV (algo,
suite, task, seed, step, episode, return, success, length) and an mp4 of the first episode(s)
next to the checkpoint's run, under ``eval/<checkpoint>/``.

A benchmark: ``robotrl-eval runs=[runs/dmc] tasks=[dmc/cheetah_run,dmc/walker_run] seeds=[1,2,3]``
evaluates the newest checkpoint (``checkpoints=all``: every kept one) of each run below the given
folders, on the task × seed grid (see `robotrl.benchmark`), into one tidy ``episodes.csv`` with a
``checkpoint`` column, plus a video per algorithm and task (its lowest seed's newest checkpoint),
under ``out_dir`` (default ``eval_benchmark``). ``robotrl-report`` reads that CSV directly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robotrl.agents import class_path
from robotrl.agents.base import Agent
from robotrl.benchmark import BenchmarkError, RunCheckpoints, algo_name, read_meta, select_runs
from robotrl.builders import agent_config, build_agent, build_env, resolve_device
from robotrl.checkpoint import CheckpointError, load_checkpoint, verify_checksums
from robotrl.cli.launchers import (
    ignore_missing_overlay_warning,
    one_line,
    run_reporting_config_errors,
)
from robotrl.config import EnvConfig, EvalConfig, TaskConfig, register_configs
from robotrl.evaluation import (
    EpisodeResult,
    evaluate_vectorized,
    run_episodes,
    summarize,
    write_episode_csv,
)
from robotrl.integrations.sb3_config import is_sb3_meta
from robotrl.video import VideoRecorder

BENCHMARK_OUT_DIR = "eval_benchmark"


@dataclass
class CheckpointEval:
    """The per-episode rows of one evaluated checkpoint, its video and summary."""

    rows: list[dict[str, object]]
    video: Path | None
    summary: dict[str, float]


def evaluate_one(
    cfg: EvalConfig, checkpoint_path: Path, *, video_dir: Path | None, video_name: str
) -> CheckpointEval:
    """Evaluate one checkpoint (ours or SB3's); records ``video_dir/video_name.mp4`` if set."""
    if Path(checkpoint_path).is_dir():
        verify_checksums(Path(checkpoint_path))  # before anything is read from it
    meta = _meta_if_any(checkpoint_path)
    loader = _load_sb3_agent if is_sb3_meta(meta) else _load_our_agent
    record = meta.get("config") or load_checkpoint(checkpoint_path).meta["config"]
    task = TaskConfig(**{**record["task"], "options": {**record["task"]["options"]}})
    task.options.update(cfg.task_options)
    env_cfg = EnvConfig(**record["env"])
    render_mode = "rgb_array" if video_dir is not None else None
    env = build_env(task, env_cfg, seed=cfg.seed, render_mode=render_mode)
    try:
        if cfg.agent_options and loader is _load_sb3_agent:
            raise CheckpointError("agent_options apply to robotrl agents, not SB3 checkpoints")
        agent, meta = loader(
            Path(checkpoint_path), env, resolve_device(cfg.device), cfg.agent_options
        )
        recorder = VideoRecorder(video_dir) if video_dir is not None else None
        if recorder is not None:
            recorder.start()
        step = int(meta["counters"]["step"])
        if cfg.num_envs > 1:
            results = evaluate_vectorized(
                task,
                env_cfg,
                num_envs=cfg.num_envs,
                agent=agent,
                episodes=cfg.episodes,
                step=step,
                seed=cfg.seed,
                recorder=recorder,
                video_episodes=cfg.video_episodes,
            )
        else:
            results = run_episodes(
                env,
                agent,
                episodes=cfg.episodes,
                step=step,
                seed=cfg.seed,
                recorder=recorder,
                video_episodes=cfg.video_episodes,
            )
    finally:
        env.close()
    return _checkpoint_eval(meta, task, results, recorder, video_name)


def _load_our_agent(
    path: Path, env: gym.Env, device: str, agent_options: dict[str, Any] | None = None
) -> tuple[Agent, dict[str, Any]]:
    """A robotrl agent with the checkpoint's weights (its config updated by ``agent_options``),
    and the checkpoint's meta."""
    checkpoint = load_checkpoint(path)
    raw = {**checkpoint.meta["config"]["agent"], **(agent_options or {})}
    agent = build_agent(agent_config(raw), env, device)
    if checkpoint.meta["agent_class"] != class_path(type(agent)):
        raise CheckpointError(
            f"checkpoint {checkpoint.path} was written by {checkpoint.meta['agent_class']}, "
            f"but its config builds {class_path(type(agent))}"
        )
    try:
        agent.load_state_dict(checkpoint.state["agent"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} does not fit its agent: {err}"
        ) from err
    return agent, checkpoint.meta


def _load_sb3_agent(
    path: Path, env: gym.Env, device: str, agent_options: dict[str, Any] | None = None
) -> tuple[Agent, dict[str, Any]]:
    """A Stable-Baselines3 checkpoint (robotrl.integrations.sb3_training) as an acting agent."""
    import robotrl.integrations.sb3  # noqa: F401  (names the extra to install if SB3 is missing)
    from robotrl.integrations.sb3_training import load_sb3_actor

    return load_sb3_actor(path, env, device)


def _checkpoint_eval(
    meta: dict[str, Any],
    task: TaskConfig,
    results: list[EpisodeResult],
    recorder: VideoRecorder | None,
    video_name: str,
) -> CheckpointEval:
    """The tidy rows (one per episode), the saved video and the summary of one checkpoint."""
    record = meta["config"]
    identity = {
        "algo": algo_name(meta["agent_name"], record.get("exp_name")),
        "suite": task.suite,
        "task": task.name,
        "seed": record["seed"],
        "step": int(meta["counters"]["frame"]),
    }
    rows: list[dict[str, object]] = [
        {
            **identity,
            "episode": r.episode,
            "return": r.episode_return,
            "success": r.success,
            "length": r.length,
        }
        for r in results
    ]
    video = recorder.save(video_name) if recorder is not None else None
    return CheckpointEval(rows, video, summarize(results))


def _meta_if_any(checkpoint_path: Path) -> dict[str, Any]:
    """The checkpoint's meta.json, or {} when it has none (load_checkpoint then says why)."""
    try:
        return read_meta(Path(checkpoint_path))
    except CheckpointError:
        return {}


def evaluate_checkpoint(cfg: EvalConfig) -> tuple[Path, Path | None, dict[str, float]]:
    """Evaluate ``cfg.checkpoint``; returns (csv path, video path or None, summary)."""
    assert cfg.checkpoint is not None
    path = Path(cfg.checkpoint)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else path.parent.parent / "eval"
    out_dir = out_dir / path.name
    result = evaluate_one(cfg, path, video_dir=out_dir if cfg.video else None, video_name="episode")
    csv_path = out_dir / "episodes.csv"
    write_episode_csv(csv_path, result.rows)
    return csv_path, result.video, result.summary


def evaluate_benchmark(cfg: EvalConfig) -> tuple[Path, list[Path], list[RunCheckpoints]]:
    """Evaluate the runs ``cfg`` selects into one CSV; returns (csv, videos, runs evaluated)."""
    runs = select_runs(cfg.runs, tasks=cfg.tasks, seeds=cfg.seeds, which=cfg.checkpoints)
    out_dir = Path(cfg.out_dir or BENCHMARK_OUT_DIR)
    rows: list[dict[str, object]] = []
    videos: list[Path] = []
    filmed: set[tuple[str, str]] = set()  # (algo, task id) with a video already
    for run in runs:  # sorted by algo, task, seed: the first run of a task has its lowest seed
        for checkpoint in run.checkpoints:
            film = (
                cfg.video
                and (run.algo, run.task_id) not in filmed
                and checkpoint == run.checkpoints[-1]
            )
            video_dir = out_dir / "videos" / run.algo / run.suite if film else None
            result = evaluate_one(cfg, checkpoint, video_dir=video_dir, video_name=run.task)
            rows += [{**row, "checkpoint": str(checkpoint)} for row in result.rows]
            if result.video is not None:
                videos.append(result.video)
                filmed.add((run.algo, run.task_id))
            print(
                f"{run.algo} {run.task_id} seed {run.seed} {checkpoint.name}: "
                f"return {result.summary['episode_return']:.1f}, "
                f"success {result.summary['success_rate']:.2f}",
                flush=True,
            )
    csv_path = out_dir / "episodes.csv"
    write_episode_csv(csv_path, rows)
    return csv_path, videos, runs


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def evaluate(cfg: DictConfig) -> None:
    try:
        eval_cfg = OmegaConf.to_object(cfg)
    except (OmegaConfBaseException, ValueError) as err:
        print(f"robotrl-eval: {one_line(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None
    assert isinstance(eval_cfg, EvalConfig)
    try:
        if eval_cfg.checkpoint is not None:
            csv_path, video, summary = evaluate_checkpoint(eval_cfg)
            print(f"Episodes CSV: {csv_path}")
            print(f"Video:        {video}")
            print(f"Summary:      {summary}")
        else:
            csv_path, videos, runs = evaluate_benchmark(eval_cfg)
            print(f"Evaluated {len(runs)} runs. Episodes CSV: {csv_path}")
            for path in videos:
                print(f"Video: {path}")
    except (CheckpointError, BenchmarkError) as err:
        print(f"robotrl-eval: {one_line(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    ignore_missing_overlay_warning()
    register_configs()
    run_reporting_config_errors("robotrl-eval", evaluate)
