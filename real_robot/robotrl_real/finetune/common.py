"""Constants and small helpers shared by the fine-tuning processes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from robotrl.agents.rlpd import RLPDConfig

Episode = dict[str, np.ndarray]
PROPRIO_DIM = 4
ACTION_DIM = 4
DEFAULT_LEARNER_NAME = "robotrl_learner"
DEFAULT_RAY_NAMESPACE = "robotrl"
#: Learner checkpoints kept in ``run_dir/checkpoints``.
KEEP_CHECKPOINTS = 2


def _agent_config(value: RLPDConfig | Mapping[str, Any]) -> RLPDConfig:
    return value if isinstance(value, RLPDConfig) else RLPDConfig(**dict(value))
