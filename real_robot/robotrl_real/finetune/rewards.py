"""Fine-tuning rewards: the success classifier's (HIL-SERL) or a success predicate's (sim twin)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robotrl.rewards.classifier import SuccessClassifier
from robotrl_real.env import RewardFn


@dataclass
class SuccessReward:
    """Sparse terminal reward from a success predicate: 1 on success, else 0 (sim twin)."""

    success: RewardFn  # e.g. ReachReward(target); only its success flag is used

    def __call__(self, obs: Mapping[str, np.ndarray]) -> tuple[float, bool]:
        _, success = self.success(dict(obs))
        return float(success), bool(success)


class ClassifierReward:
    """HIL-SERL's reward: 1 where the success classifier fires on camera ``camera``, else 0."""

    def __init__(self, directory: str | Path, camera: int = 0) -> None:
        self.directory = str(directory)
        self.camera = camera
        self.classifier = SuccessClassifier.load(directory)

    def __call__(self, obs: Mapping[str, np.ndarray]) -> tuple[float, bool]:
        frame = obs["pixels"][self.camera][None]
        proprio = obs["proprio"][None] if self.classifier.config.proprio_dim else None
        success = bool(self.classifier.predict(frame, proprio)[0])
        return float(success), success

    def __reduce__(self) -> tuple[Any, ...]:  # ship the path to Ray processes, not the net
        return (ClassifierReward, (self.directory, self.camera))
