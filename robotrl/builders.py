"""Build the parts of a run (env, agent, replay, logger) from a typed config."""

from __future__ import annotations

import random
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robotrl.agents import agent_class, make_agent
from robotrl.agents.base import Agent
from robotrl.config import ConfigError, TaskConfig, TrainConfig, check_known_keys
from robotrl.envs import make_env
from robotrl.envs.batched import SingleWorldEnv, build_batched_env, is_batched_suite
from robotrl.rewards.config import wrap_with_reward


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for, but PyTorch sees no CUDA device")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """Turn the composed Hydra config into typed dataclasses (running their validation).

    Raises :class:`~robotrl.config.ConfigError` for an unknown key or a bad value.
    """
    check_known_keys(cfg)
    try:
        train_cfg = OmegaConf.to_object(cfg)
        if not isinstance(train_cfg, TrainConfig):
            raise TypeError(f"expected a TrainConfig, got {type(train_cfg).__name__}")
        train_cfg.agent = agent_config(train_cfg.agent)
    except (ValueError, OmegaConfBaseException) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err).splitlines()[0]) from err
    return train_cfg


def agent_config(raw: Any) -> Any:
    """Typed hyper-parameters of the agent ``raw.name`` (from a dict, DictConfig or dataclass)."""
    if is_dataclass(raw) and not isinstance(raw, type):
        return raw
    name = raw["name"]
    schema = OmegaConf.structured(agent_class(name).config_class)
    return OmegaConf.to_object(OmegaConf.merge(schema, raw))


def config_record(cfg: TrainConfig) -> dict[str, Any]:
    """A JSON-ready copy of the whole run config, stored in every checkpoint."""
    record = asdict(cfg)
    return record


def build_env(
    task: TaskConfig, env_cfg: Any, seed: int, *, render_mode: str | None = None, **extra: Any
) -> gym.Env:
    """One env of ``task`` with stacked frames; for a batched suite, one world on the CPU
    (:class:`~robotrl.envs.batched.SingleWorldEnv`: what builds the agent and ``robotrl-eval``
    use; training and its evaluation build their own worlds).

    ``task.reward`` (off by default) wraps the env in a
    :class:`~robotrl.rewards.wrappers.RewardWrapper` with that reward model, unless
    ``task.reward.relabel`` asks the trainer to relabel finished episodes in replay instead."""
    reward = getattr(task, "reward", None)
    if reward is not None and reward.relabel:
        reward = None  # the trainer's replay scores whole episodes (robotrl.rewards.relabel)
    if is_batched_suite(task.suite):
        if reward is not None:
            raise ValueError(
                f"task.reward on the batched suite {task.suite!r} needs task.reward.relabel=true: "
                "its worlds step together on the sim's device, so rewards are scored per "
                "finished episode in replay, not per step in a wrapper"
            )
        one_world = TaskConfig(task.suite, task.name, {**task.options, **extra})
        batched = build_batched_env(one_world, env_cfg, seed=seed, num_worlds=1, device="cpu")
        return SingleWorldEnv(batched, render_mode=render_mode)
    options = {**task.options, **extra}
    if render_mode is not None:
        options["render_mode"] = render_mode
    env = make_env(
        task.suite,
        task.name,
        seed=seed,
        image_size=int(env_cfg.image_size),
        action_repeat=int(env_cfg.action_repeat),
        frame_stack=int(env_cfg.frame_stack),
        options=options,
    )
    if reward is not None:
        env = wrap_with_reward(env, reward)
    return env


def build_agent(agent_cfg: Any, env: gym.Env, device: str) -> Agent:
    """The agent for ``env``'s pixel observations (and ``proprio``, if it has one) and actions."""
    obs_space = env.observation_space
    assert isinstance(obs_space, gym.spaces.Dict)
    pixels_shape = obs_space["pixels"].shape
    action_space = env.action_space
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise TypeError(f"pixel agents need a 1-D Box action space, got {action_space}")
    if not (np.all(action_space.low == -1.0) and np.all(action_space.high == 1.0)):
        raise ValueError("pixel agents act in [-1, 1]; the env adapter must rescale its actions")
    assert pixels_shape is not None
    proprio_dim = 0
    if "proprio" in obs_space.spaces:
        proprio_shape = obs_space["proprio"].shape
        if proprio_shape is None or len(proprio_shape) != 1:
            raise TypeError(f"proprio must be a 1-D Box, got {obs_space['proprio']}")
        proprio_dim = int(proprio_shape[0])
    return make_agent(
        agent_cfg,
        tuple(pixels_shape),
        action_space.shape[0],
        device,
        proprio_dim=proprio_dim,
    )


def run_directory(output_dir: str | Path) -> Path:
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path
