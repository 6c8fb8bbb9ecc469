"""Typed configuration schemas, registered in Hydra's ConfigStore.

The packaged YAML files in ``robotrl/conf`` fill these in; a key that is not in a schema (a typo)
is an error naming the key: OmegaConf's struct mode rejects ``key=value``, and
:func:`check_known_keys` rejects ``+key=value`` (which Hydra adds even to a struct node).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from robotrl.agents.bc_chunk import BCChunkConfig
from robotrl.agents.diffusion_policy import DiffusionPolicyConfig
from robotrl.agents.dreamer import DreamerConfig
from robotrl.agents.drm import DrMConfig
from robotrl.agents.drqv2 import DrQV2Config
from robotrl.agents.mentor import MentorConfig
from robotrl.agents.ppo import PPOConfig
from robotrl.agents.residual import ResidualConfig
from robotrl.agents.rlpd import RLPDConfig
from robotrl.integrations.sb3_config import SB3PPOConfig, SB3SACConfig, SB3TD3Config
from robotrl.rewards.config import RewardConfig


class ConfigError(ValueError):
    """A run's config is wrong: an unknown key or a bad value. The CLIs print it as one line."""


def check_known_keys(node: DictConfig, path: str = "") -> None:
    """Raise :class:`ConfigError` for a key that is not a field of its node's dataclass schema.

    Nodes typed as plain dicts (``task.options``, ``agent_options``) take any key.
    """
    schema = OmegaConf.get_type(node)
    known = [f.name for f in fields(schema)] if is_dataclass(schema) else None
    for key in map(str, node):
        name = f"{path}{key}"
        if known is not None and key not in known:
            raise unknown_key_error(name, known)
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            check_known_keys(child, f"{name}.")
        elif isinstance(child, ListConfig):
            for item in child:
                if isinstance(item, DictConfig):
                    check_known_keys(item, f"{name}.")


def unknown_key_error(full_key: str, known: list[str]) -> ConfigError:
    """The error for ``full_key``, which its schema (fields ``known``) lacks, naming the nearest."""
    parent, _, key = full_key.rpartition(".")
    nearest = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {parent + '.' if parent else ''}{nearest[0]}?" if nearest else ""
    return ConfigError(f"unknown config key {full_key}{hint}")


def check_count(owner: object, name: str, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``owner.name`` is an integer >= ``minimum``."""
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


@dataclass
class TaskConfig:
    """Which task. ``suite`` names a ``robotrl.envs`` entry point; ``options`` go to its factory."""

    suite: str = MISSING
    name: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)
    # A reward model replacing or mixed with the env's reward (robotrl.rewards); None: the env's.
    reward: RewardConfig | None = None


@dataclass
class EnvConfig:
    """Pixel-observation settings shared by every suite."""

    image_size: int = 84
    action_repeat: int = 2
    frame_stack: int = 3

    def __post_init__(self) -> None:
        for name in ("image_size", "action_repeat", "frame_stack"):
            check_count(self, name, 1)


@dataclass
class ReplayConfig:
    capacity: int = 1_000_000
    batch_size: int = 256
    nstep: int = 3

    def __post_init__(self) -> None:
        check_count(self, "capacity", 2)
        check_count(self, "batch_size", 1)
        check_count(self, "nstep", 1)


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
    keep_checkpoints: int = 2  # the newest ones kept; 0: keep every checkpoint
    torch_threads: int = 0  # 0: leave PyTorch's default
    # Vector envs (robotrl.envs.vector): N copies stepped in worker processes, SAME_STEP autoreset.
    num_envs: int = 1  # training collection; 1 = the single-env loop
    eval_num_envs: int = 1  # evaluation episodes played N at a time; 1 = one env
    async_envs: bool = True  # False: step the copies in this process (debugging)
    # Batched suites (robotrl.batched_envs, e.g. task=warp/reach): num_envs worlds in one env.
    sim_device: str = "auto"  # where the worlds run: cpu, cuda, cuda:1; auto: cuda if available
    # Agent updates per agent step (= per env or world step); None: one every
    # agent.update_every_steps steps, as without this field. Fractions are spread evenly.
    utd_ratio: float | None = None

    def __post_init__(self) -> None:
        for name in ("seed", "seed_frames", "keep_checkpoints", "torch_threads"):
            check_count(self, name, 0)
        for name in (
            "frames",
            "eval_every_frames",
            "eval_episodes",
            "checkpoint_every_frames",
            "num_envs",
            "eval_num_envs",
        ):
            check_count(self, name, 1)
        if self.task.reward is not None and max(self.num_envs, self.eval_num_envs) > 1:
            # Vector and batched envs are built without build_env, so they would ignore it.
            raise ConfigError("task.reward works with num_envs=1 and eval_num_envs=1 for now")
        if self.utd_ratio is not None and not self.utd_ratio > 0:
            raise ConfigError(f"utd_ratio must be > 0 (or None), got {self.utd_ratio!r}")


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
    # Override fields of the checkpoint's agent config for acting (robotrl agents only), e.g.
    # +agent_options.act_with=base (a residual agent's base alone) or
    # +agent_options.inference=chunk (a bc_chunk or diffusion_policy policy executing whole
    # chunks).
    agent_options: dict[str, Any] = field(default_factory=dict)
    # Episodes played this many at a time in worker processes (robotrl.envs.vector); the same
    # episodes (episode i resets with seed + i) and results as one env.
    num_envs: int = 1

    def __post_init__(self) -> None:
        if (
            isinstance(self.num_envs, bool)
            or not isinstance(self.num_envs, int)
            or self.num_envs < 1
        ):
            raise ValueError(f"num_envs must be a positive integer, got {self.num_envs!r}")
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
    store.store(group="agent", name="bc_chunk_schema", node=BCChunkConfig)
    store.store(group="agent", name="diffusion_policy_schema", node=DiffusionPolicyConfig)
    store.store(group="agent", name="residual_schema", node=ResidualConfig)
    store.store(group="agent", name="dreamer_schema", node=DreamerConfig)
    store.store(group="agent", name="ppo_schema", node=PPOConfig)
    store.store(group="agent", name="rlpd_schema", node=RLPDConfig)
    # Stable-Baselines3 baselines (robotrl.integrations.sb3_config; training needs the sb3 extra).
    store.store(group="agent", name="sb3_sac_schema", node=SB3SACConfig)
    store.store(group="agent", name="sb3_td3_schema", node=SB3TD3Config)
    store.store(group="agent", name="sb3_ppo_schema", node=SB3PPOConfig)
