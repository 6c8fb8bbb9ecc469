"""``robotrl-train``: compose the config, build the parts, hand them to the Trainer."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robotrl.builders import (
    build_agent,
    build_env,
    config_record,
    resolve_device,
    run_directory,
    seed_everything,
    to_train_config,
)
from robotrl.checkpoint import CheckpointError
from robotrl.cli.launchers import (
    check_launcher_extras,
    ignore_missing_overlay_warning,
    one_line,
    run_reporting_config_errors,
)
from robotrl.config import ConfigError, TrainConfig, register_configs
from robotrl.integrations.sb3_config import SB3AgentConfig
from robotrl.logger import Logger
from robotrl.offline import demo_replay
from robotrl.replay import EpisodicReplay
from robotrl.trainer import Trainer, TrainResult

log = logging.getLogger("robotrl.train")


#: Our own packages: a module of theirs that cannot be imported is a bug, not a missing extra.
OWN_PACKAGES = ("robotrl", "robotrl_sim", "robotrl_real")


def is_user_error(err: BaseException) -> bool:
    """What a user can fix (a config, a checkpoint, a missing extra): one line and exit code 2.

    A missing third-party module is a missing extra; any other import failure is a bug and keeps
    its traceback.
    """
    if isinstance(err, ConfigError | CheckpointError):
        return True
    if isinstance(err, ModuleNotFoundError) and err.name:
        return err.name.partition(".")[0] not in OWN_PACKAGES
    return False


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def train(cfg: DictConfig) -> None:
    # PyOpenGL logs an INFO line at import; set here so launcher workers (Ray, submitit) get it.
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    hydra_cfg = HydraConfig.get()
    run_dir = run_directory(hydra_cfg.runtime.output_dir)
    fresh = _holds_only_hydra_files(run_dir, hydra_cfg.job.name)
    try:
        result = _train(cfg, run_dir)
    except Exception as err:
        if not is_user_error(err):
            raise
        if fresh:
            _remove_run_directory(run_dir, Path(cfg.runs_root))
        print(f"robotrl-train: {one_line(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None

    # Logged, so that the run's train.log keeps them too.
    if result.resumed_from is not None:
        log.info("(resumed from frame %d)", result.resumed_from)
    log.info("Run directory:  %s", result.run_dir)
    log.info("Final eval:     %s", result.final_eval)
    log.info("Learning curve: %s", result.learning_curve)
    log.info("Eval video:     %s", result.video)
    log.info("Checkpoint:     %s", result.checkpoint)


def _train(cfg: DictConfig, run_dir: Path) -> TrainResult:
    train_cfg = to_train_config(cfg)
    seed_everything(train_cfg.seed)
    if train_cfg.torch_threads > 0:
        torch.set_num_threads(train_cfg.torch_threads)
    device = resolve_device(train_cfg.device)
    render_mode = "rgb_array" if train_cfg.logger.save_video else None
    record = config_record(train_cfg)
    logger = Logger(
        run_dir,
        tensorboard=train_cfg.logger.tensorboard,
        wandb=train_cfg.logger.wandb,
        wandb_project=train_cfg.logger.wandb_project,
        config=record,
    )
    try:
        eval_env = build_env(
            train_cfg.task, train_cfg.env, seed=train_cfg.seed + 10_000, render_mode=render_mode
        )
        try:
            if isinstance(train_cfg.agent, SB3AgentConfig):
                return _train_sb3(train_cfg, run_dir, eval_env, logger, record, device)
            return _train_ours(train_cfg, run_dir, eval_env, logger, record, device)
        finally:
            eval_env.close()
    finally:
        logger.close()


def _holds_only_hydra_files(run_dir: Path, job_name: str) -> bool:
    """True when ``run_dir`` holds nothing but what Hydra wrote on starting this job."""
    return all(path.name in (".hydra", f"{job_name}.log") for path in run_dir.iterdir())


def _remove_run_directory(run_dir: Path, runs_root: Path) -> None:
    """Delete a run directory this job created, and the folders above it left empty, up to (not
    including) ``runs_root``."""
    shutil.rmtree(run_dir, ignore_errors=True)
    root = runs_root.resolve()
    for parent in run_dir.resolve().parents:
        if parent == root or not parent.is_relative_to(root):
            break
        try:
            parent.rmdir()  # only while empty
        except OSError:
            break


def _train_ours(
    cfg: TrainConfig,
    run_dir: Path,
    eval_env: gym.Env,
    logger: Logger,
    record: dict[str, Any],
    device: str,
) -> TrainResult:
    env = build_env(cfg.task, cfg.env, seed=cfg.seed)
    try:
        agent = build_agent(cfg.agent, env, device)
        if agent.offline:
            replay = demo_replay(cfg, agent.obs_shape)
        else:
            replay = EpisodicReplay(
                capacity=cfg.replay.capacity,
                frame_stack=cfg.env.frame_stack,
                nstep=cfg.replay.nstep,
                discount=cfg.agent.discount,
                directory=run_dir / "replay",
                seed=cfg.seed,
            )
        trainer = Trainer(
            cfg,
            run_dir,
            env=env,
            eval_env=eval_env,
            agent=agent,
            replay=replay,
            logger=logger,
            config_record=record,
        )
        return trainer.train()
    finally:
        env.close()


def _train_sb3(
    cfg: TrainConfig,
    run_dir: Path,
    eval_env: gym.Env,
    logger: Logger,
    record: dict[str, Any],
    device: str,
) -> TrainResult:
    """``agent=sb3_*``: Stable-Baselines3's own loop inside our run directory and logging."""
    import robotrl.integrations.sb3  # noqa: F401  (names the extra to install if SB3 is missing)
    from robotrl.integrations.sb3_training import train_sb3

    return train_sb3(
        cfg, run_dir, eval_env=eval_env, logger=logger, config_record=record, device=device
    )


def main() -> None:
    ignore_missing_overlay_warning()
    register_configs()
    check_launcher_extras(sys.argv[1:])
    run_reporting_config_errors("robotrl-train", train)
