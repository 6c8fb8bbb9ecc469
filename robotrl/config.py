"""Typed configuration schemas, registered in Hydra's ConfigStore.

The packaged YAML files in ``robotrl/conf`` fill these in; a key that is not in a schema (a typo)
is rejected by OmegaConf's struct mode with an error naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from robotrl.agents.drm import DrMConfig
from robotrl.agents.drqv2 import DrQV2Config
from robotrl.agents.mentor import MentorConfig


@dataclass
class TaskConfig:
    """Which task. ``suite`` names a ``robotrl.envs`` entry point; ``options`` go to its factory."""

    suite: str = MISSING
    name: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnvConfig:
    """Pixel-observation settings shared by every suite."""

    image_size: int = 84
    action_repeat: int = 2
    frame_stack: int = 3

    def __post_init__(self) -> None:
        if self.action_repeat < 1 or self.frame_stack < 1:
            raise ValueError("action_repeat and frame_stack must be >= 1")


@dataclass
class ReplayConfig:
    capacity: int = 1_000_000
    batch_size: int = 256
    nstep: int = 3


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str | None = None
    progress_bar: bool = True
    save_video: bool = True


@dataclass
class TrainConfig:
    """A training run. Counts are in environment frames (agent steps × action repeat)."""

    agent: Any = MISSING
    task: TaskConfig = field(default_factory=TaskConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 1
    exp_name: str = "default"
    runs_root: str = "runs"
    device: str = "auto"
    frames: int = 1_100_000
    seed_frames: int = 4000
    eval_every_frames: int = 10_000
    eval_episodes: int = 10
    checkpoint_every_frames: int = 10_000
    keep_checkpoints: int = 2
    torch_threads: int = 0  # 0: leave PyTorch's default


@dataclass
class EvalConfig:
    """``robotrl-eval``: evaluate one saved checkpoint, or a benchmark of runs (``runs=[...]``)."""

    checkpoint: str | None = None  # one checkpoint directory (step_<frame>)
    # Benchmark mode: folders holding run directories; see robotrl.benchmark.
    runs: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)  # suite/task; empty: every task found
    seeds: list[int] = field(default_factory=list)  # training seeds; empty: every seed found
    checkpoints: str = "latest"  # latest | all: which checkpoints of each run
    episodes: int = 10
    seed: int = 100
    # One checkpoint: default <run dir>/eval/<checkpoint name>; benchmark: default eval_benchmark.
    out_dir: str | None = None
    video: bool = True
    video_episodes: int = 1
    device: str = "auto"
    task_options: dict[str, Any] = field(default_factory=dict)  # e.g. fast_render for DMC

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (not self.runs):
            raise ValueError(
                "robotrl-eval needs either checkpoint=PATH (one checkpoint) or runs=[DIR, ...] "
                "(a benchmark over the runs below those folders), not both or neither"
            )
        if not self.runs and (self.tasks or self.seeds):
            raise ValueError("tasks and seeds select runs: they need runs=[DIR, ...]")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")


def register_configs() -> None:
    """Store the schemas; YAML files extend them through their defaults lists."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="eval_schema", node=EvalConfig)
    store.store(group="agent", name="drqv2_schema", node=DrQV2Config)
    store.store(group="agent", name="drm_schema", node=DrMConfig)
    store.store(group="agent", name="mentor_schema", node=MentorConfig)
