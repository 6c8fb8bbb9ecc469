"""``robotrl-eval checkpoint=PATH episodes=N``: deterministic evaluation of a saved checkpoint.

Writes a tidy per-episode CSV (algo, suite, task, seed, step, episode, return, success, length)
and an mp4 of the first episode(s) next to the checkpoint's run, under ``eval/<checkpoint>/``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from robotrl.agents import class_path
from robotrl.builders import agent_config, build_agent, build_env, resolve_device
from robotrl.checkpoint import CheckpointError, load_checkpoint
from robotrl.config import EnvConfig, EvalConfig, TaskConfig, register_configs
from robotrl.evaluation import run_episodes, summarize, write_episode_csv
from robotrl.video import VideoRecorder


def evaluate_checkpoint(cfg: EvalConfig) -> tuple[Path, Path | None, dict[str, float]]:
    """Run the evaluation; returns (csv path, video path or None, summary)."""
    checkpoint = load_checkpoint(cfg.checkpoint)
    record = checkpoint.meta["config"]
    task = TaskConfig(**{**record["task"], "options": {**record["task"]["options"]}})
    task.options.update(cfg.task_options)
    env_cfg = EnvConfig(**record["env"])
    agent_cfg = agent_config(record["agent"])
    env = build_env(task, env_cfg, seed=cfg.seed, render_mode="rgb_array" if cfg.video else None)
    try:
        agent = build_agent(agent_cfg, env, resolve_device(cfg.device))
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

        out_dir = Path(cfg.out_dir) if cfg.out_dir else checkpoint.path.parent.parent / "eval"
        out_dir = out_dir / checkpoint.path.name
        recorder = VideoRecorder(out_dir) if cfg.video else None
        if recorder is not None:
            recorder.start()
        step = int(checkpoint.meta["counters"]["step"])
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
    identity = {
        "algo": checkpoint.meta["agent_name"],
        "suite": task.suite,
        "task": task.name,
        "seed": record["seed"],
        "step": int(checkpoint.meta["counters"]["frame"]),
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
    csv_path = out_dir / "episodes.csv"
    write_episode_csv(csv_path, rows)
    video = recorder.save("episode") if recorder is not None else None
    return csv_path, video, summarize(results)


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def evaluate(cfg: DictConfig) -> None:
    eval_cfg = OmegaConf.to_object(cfg)
    assert isinstance(eval_cfg, EvalConfig)
    try:
        csv_path, video, summary = evaluate_checkpoint(eval_cfg)
    except CheckpointError as err:
        raise SystemExit(f"robotrl-eval: {err}") from None
    print(f"Episodes CSV: {csv_path}")
    print(f"Video:        {video}")
    print(f"Summary:      {summary}")


def main() -> None:
    register_configs()
    evaluate()
