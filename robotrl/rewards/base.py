"""The reward-source contract: frames (+ proprio, + task text) in, one float per frame out.

Every learned or model-based reward in ``robotrl.rewards`` is a :class:`RewardModel`. The
wrapper in :mod:`robotrl.rewards.wrappers` applies one online, per env step; relabelling a
finished episode in replay (the VLM-RM pattern) calls the same ``score`` on the episode's frames.

Stateful rewards use ``reset_episode``: the keypoint reward
(:mod:`robotrl.rewards.keypoints`) proposes its waypoints on the first frame there. The staged
reward (:mod:`robotrl.rewards.staged`) combines other models' ``is_success`` as stage predicates.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch


class RewardModel(ABC):
    """Maps frames to per-frame rewards (or potentials).

    ``frames``: uint8 ``[B, C, H, W]`` (one camera, newest frame, RGB); ``proprio``: float
    ``[B, P]`` or None; ``instruction``: the task text, if the model reads one. Returns a float32
    tensor ``[B]`` on the CPU. Scores must not depend on the batch they arrive in.
    """

    @abstractmethod
    def score(
        self,
        frames: torch.Tensor,
        proprio: torch.Tensor | None = None,
        instruction: str | None = None,
    ) -> torch.Tensor: ...

    def is_success(self, scores: torch.Tensor) -> torch.Tensor | None:
        """Which scores mean the task is done (for ``terminate_on_success``); None: never said."""
        return None

    def check_judges_success(self, why: str) -> None:
        """Raises unless this model says which scores are successes (``why`` needs it)."""
        if self.is_success(torch.zeros(1)) is None:
            raise ValueError(
                f"{why} needs a reward model that judges success; {type(self).__name__} does not"
            )

    def reset_episode(self, frames: torch.Tensor, proprio: torch.Tensor | None = None) -> None:  # noqa: B027 (optional hook, empty on purpose)
        """Called with the first observation of each episode (stateful rewards use it)."""


@dataclass
class RunningMeanStd:
    """Running mean and variance of a stream of scalars (Chan et al.'s parallel update)."""

    mean: float = 0.0
    var: float = 1.0
    count: float = 0.0

    def update(self, values: np.ndarray | float) -> None:
        batch = np.asarray(values, dtype=np.float64).reshape(-1)
        if batch.size == 0:
            return
        batch_mean, batch_var, batch_count = float(batch.mean()), float(batch.var()), batch.size
        if self.count == 0:
            self.mean, self.var, self.count = batch_mean, batch_var, float(batch_count)
            return
        total = self.count + batch_count
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * batch_count
        m2 += delta**2 * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.var + 1e-8)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = (
            float(state["mean"]),
            float(state["var"]),
            float(state["count"]),
        )


def frames_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Frames as a uint8 ``[B, C, H, W]`` tensor (a single ``[C, H, W]`` frame gets B = 1)."""
    tensor = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8, got {tensor.dtype}")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4:
        raise ValueError(f"frames must be [B, C, H, W] or [C, H, W], got {tuple(tensor.shape)}")
    return tensor
