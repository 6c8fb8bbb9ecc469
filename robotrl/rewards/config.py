"""The ``task.reward`` config and the factory that wraps an env with it.

Off by default (``task.reward: null``). Turn it on from the command line with a packaged preset
from the ``reward`` group (``robotrl/conf/reward``) and override its fields, e.g.::

    robotrl-train +reward=clip_goal task.reward.options.model_path=/models/clip-vit-b32 \\
        'task.reward.options.target_prompts=[a ball on a green disc]'
    robotrl-train +reward=success_classifier task.reward.options.path=/runs/classifier \\
        task.reward.weight=10

Any field of :class:`RewardConfig` can be overridden after a preset (``task.reward.mode=add``,
``task.reward.as_potential=true``, ``task.reward.normalize=true``, ...). Assigning a whole
dict to ``task.reward`` from the command line does not work (OmegaConf cannot merge into its
``None``); go through a preset, or a YAML of your own in ``configs/reward/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from omegaconf import MISSING

from robotrl.rewards.base import RewardModel
from robotrl.rewards.wrappers import RewardWrapper

#: Reward kinds: name -> module that defines ``build_reward_model(options) -> RewardModel``.
#: Imported on use, so that e.g. transformers loads only for CLIP rewards.
REWARD_KINDS = {
    "clip_goal": "robotrl.rewards.clip",
    "success_classifier": "robotrl.rewards.classifier",
    "keypoints": "robotrl.rewards.keypoints",
    "staged": "robotrl.rewards.staged",
}


@dataclass
class RewardConfig:
    """A reward model and how the env's reward is replaced by or mixed with it."""

    kind: str = MISSING  # a key of REWARD_KINDS
    mode: str = "replace"  # replace: weight * term; add: env reward + weight * term
    weight: float = 1.0
    as_potential: bool = False  # term = γΦ(o') − Φ(o) with Φ the model's score
    discount: float = 0.99  # γ of the potential; use the agent's discount
    normalize: bool = False  # running mean/std of the scores (std only for potentials)
    clip: float | None = None  # bound on the normalised score
    instruction: str | None = None  # task text for models that read one
    terminate_on_success: bool = False  # end the episode when the model says success
    # KAGI's sparse term: the reward where the model says success, in place of weight * term.
    success_reward: float | None = None
    # Score each finished training episode in one batch as it enters replay, instead of every
    # step online (robotrl.rewards.relabel; needed on batched suites).
    relabel: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # the model's own settings

    def __post_init__(self) -> None:
        if self.kind is not MISSING and self.kind not in REWARD_KINDS:
            raise ValueError(
                f"unknown reward kind {self.kind!r}; known kinds: {', '.join(REWARD_KINDS)}"
            )
        if self.mode not in ("replace", "add"):
            raise ValueError(f"reward mode must be 'replace' or 'add', got {self.mode!r}")
        if self.relabel and self.terminate_on_success:
            raise ValueError(
                "task.reward.relabel and terminate_on_success exclude each other: a relabelled "
                "episode has already ended when it is scored"
            )


def build_reward_model(kind: str, options: dict[str, Any]) -> RewardModel:
    """The reward model of ``kind`` built from its ``options``."""
    if kind not in REWARD_KINDS:
        raise ValueError(f"unknown reward kind {kind!r}; known kinds: {', '.join(REWARD_KINDS)}")
    import importlib

    module = importlib.import_module(REWARD_KINDS[kind])
    model: RewardModel = module.build_reward_model(dict(options))
    return model


def wrap_with_reward(env: gym.Env, cfg: RewardConfig, *, frame_channels: int = 3) -> RewardWrapper:
    """``env`` with its reward replaced by or mixed with ``cfg``'s reward model."""
    model = build_reward_model(cfg.kind, cfg.options)
    return RewardWrapper(
        env,
        model,
        mode="add" if cfg.mode == "add" else "replace",
        weight=cfg.weight,
        as_potential=cfg.as_potential,
        discount=cfg.discount,
        normalize=cfg.normalize,
        clip=cfg.clip,
        instruction=cfg.instruction,
        terminate_on_success=cfg.terminate_on_success,
        success_reward=cfg.success_reward,
        frame_channels=frame_channels,
    )
