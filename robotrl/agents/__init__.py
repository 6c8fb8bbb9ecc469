"""Agents and the registry that maps ``agent.name`` in the config to a class."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from robotrl.agents.base import Agent

# name -> "module:Class"; imported lazily so an agent's dependencies load only when it is used.
AGENT_CLASSES: dict[str, str] = {
    "drqv2": "robotrl.agents.drqv2:DrQV2Agent",
    "drm": "robotrl.agents.drm:DrMAgent",
    "mentor": "robotrl.agents.mentor:MentorAgent",
    # TACO is DrQ-v2 with ``aux="taco"`` (robotrl.agents.taco); any agent here can take that.
    "taco": "robotrl.agents.drqv2:DrQV2Agent",
    # Residual RL (ResiP): a chunked BC base policy (MLP or diffusion head), and a residual
    # learned on top of it.
    "bc_chunk": "robotrl.agents.bc_chunk:BCChunkAgent",
    "diffusion_policy": "robotrl.agents.diffusion_policy:DiffusionPolicyAgent",
    "residual": "robotrl.agents.residual:ResidualAgent",
    # DreamerV3 world-model agent (RePo by ``agent.repo=true``); learns from sequence batches.
    "dreamer": "robotrl.agents.dreamer:DreamerAgent",
    # On-policy PPO (residual on a frozen base with ``agent.base_checkpoint``); robotrl.onpolicy.
    "ppo": "robotrl.agents.ppo:PPOAgent",
    "rlpd": "robotrl.agents.rlpd:RLPDAgent",
}


def agent_class(name: str) -> type[Agent]:
    """The class registered for ``name``; a clear error lists the known names."""
    try:
        target = AGENT_CLASSES[name]
    except KeyError:
        raise KeyError(f"unknown agent {name!r}; known agents: {sorted(AGENT_CLASSES)}") from None
    module_name, class_name = target.split(":")
    cls: type[Agent] = getattr(import_module(module_name), class_name)
    return cls


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def make_agent(
    cfg: Any,
    obs_shape: tuple[int, ...],
    action_dim: int,
    device: str = "cpu",
    *,
    proprio_dim: int = 0,
) -> Agent:
    """Build the agent named by ``cfg.name`` for the given observation and action sizes.

    ``proprio_dim`` > 0: observations and batches also carry ``proprio`` of that size.
    """
    cls = agent_class(cfg.name)
    return cls(
        cfg, obs_shape=obs_shape, action_dim=action_dim, device=device, proprio_dim=proprio_dim
    )


__all__ = ["AGENT_CLASSES", "Agent", "agent_class", "class_path", "make_agent"]
