"""Relabel a finished episode's rewards with a reward model, in replay (the VLM-RM pattern).

With ``task.reward.relabel=true`` the env is not wrapped: training episodes are collected with
the env's reward, and when an episode ends, before it is stored (and written to disk), its
frames are scored in one batch and its rewards replaced. This is what VLM-RM does with CLIP
(scoring big batches is far cheaper than one frame per env step), and it is how reward models
run on batched GPU worlds, which step all worlds in one call.

The rewards are those :class:`~robotrl.rewards.wrappers.RewardWrapper` would give online, with
one difference: with ``normalize=true`` the running statistics take in the whole episode's
scores before any of them is normalised, where the wrapper updates them one step at a time.
``terminate_on_success`` cannot apply (the episode has already happened) and is refused. The
hacking monitor reads evaluation episodes through a wrapper, so it is silent in this mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robotrl.rewards.base import RewardModel, RunningMeanStd, frames_tensor
from robotrl.rewards.wrappers import transform_scores

Episode = dict[str, np.ndarray]
#: Frames scored per ``RewardModel.score`` call, to bound memory on long episodes.
SCORE_CHUNK = 256


class EpisodeRelabeler:
    """Rewards ``[T]`` for a finished episode: ``EpisodicReplay``'s dict of newest ``frames``
    ``[T+1, (V,) C, H, W]``, ``reward [T]``, ``terminated`` and extras (``proprio [T+1, P]``)."""

    def __init__(
        self,
        model: RewardModel,
        *,
        mode: str = "replace",
        weight: float = 1.0,
        as_potential: bool = False,
        discount: float = 0.99,
        normalize: bool = False,
        clip: float | None = None,
        instruction: str | None = None,
        success_reward: float | None = None,
        view: int = 0,
    ) -> None:
        if mode not in ("replace", "add"):
            raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")
        self.model, self.mode, self.weight = model, mode, float(weight)
        self.as_potential, self.discount = as_potential, float(discount)
        self.normalize, self.clip, self.instruction = normalize, clip, instruction
        if success_reward is not None:
            model.check_judges_success("success_reward")
        self.success_reward = success_reward
        self.view = view
        self.stats = RunningMeanStd()

    def scores(self, episode: Episode) -> np.ndarray:
        """The model's raw score of every observation, ``[T+1]``."""
        frames = np.asarray(episode["frames"])
        if frames.ndim == 5:  # [T+1, V, C, H, W]: the configured camera
            frames = frames[:, self.view]
        proprio = episode.get("proprio")
        proprio_tensor = None
        if proprio is not None:
            proprio_tensor = torch.as_tensor(proprio).reshape(len(frames), -1)
        with torch.no_grad():
            self.model.reset_episode(
                frames_tensor(frames[:1]), None if proprio_tensor is None else proprio_tensor[:1]
            )
            chunks = [
                self.model.score(
                    frames_tensor(frames[i : i + SCORE_CHUNK]),
                    None if proprio_tensor is None else proprio_tensor[i : i + SCORE_CHUNK],
                    self.instruction,
                )
                for i in range(0, len(frames), SCORE_CHUNK)
            ]
        return torch.cat(chunks).double().numpy()

    def __call__(self, episode: Episode) -> np.ndarray:
        raw = self.scores(episode)
        if self.normalize:
            self.stats.update(raw)
        values = transform_scores(raw, self.stats, self.normalize, self.as_potential, self.clip)
        if self.as_potential:
            potential = values.copy()
            if bool(episode["terminated"]):
                potential[-1] = 0.0  # the absorbing state after a termination
            term = self.discount * potential[1:] - potential[:-1]
        else:
            term = values[1:]
        proxy = self.weight * term
        if self.success_reward is not None:
            success = self.model.is_success(torch.as_tensor(raw[1:], dtype=torch.float32))
            assert success is not None  # checked when built
            proxy = np.where(success.numpy(), self.success_reward, proxy)
        env_reward = np.asarray(episode["reward"], dtype=np.float64)
        rewards = proxy if self.mode == "replace" else env_reward + proxy
        return rewards.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])


def build_relabeler(cfg: Any) -> EpisodeRelabeler:
    """The relabeler of a ``task.reward`` config (:class:`~robotrl.rewards.config.RewardConfig`)."""
    from robotrl.rewards.config import build_reward_model

    if cfg.terminate_on_success:
        raise ValueError(
            "task.reward.terminate_on_success needs the reward online: it cannot end an episode "
            "that is relabelled after it ended (set task.reward.relabel=false)"
        )
    return EpisodeRelabeler(
        build_reward_model(cfg.kind, dict(cfg.options)),
        mode=cfg.mode,
        weight=cfg.weight,
        as_potential=cfg.as_potential,
        discount=cfg.discount,
        normalize=cfg.normalize,
        clip=cfg.clip,
        instruction=cfg.instruction,
        success_reward=cfg.success_reward,
    )
