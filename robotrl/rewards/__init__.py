"""Reward sources for any env and agent: a reward model scores frames, a wrapper applies it.

- :mod:`robotrl.rewards.base`: the :class:`RewardModel` contract, running normalisation;
- :mod:`robotrl.rewards.wrappers`: :class:`RewardWrapper` (replace/add, potential shaping,
  normalisation, clipping; the env's reward kept in ``info["env_reward"]``);
- :mod:`robotrl.rewards.clip`: VLM-RM's CLIP goal reward (needs the ``vlm`` extra);
- :mod:`robotrl.rewards.classifier`: a learned success classifier (also for the real arm);
- :mod:`robotrl.rewards.keypoints`: KAGI-style keypoint rewards (keypoints marked on the first
  frame, lifted to 3D with a camera model; progress of the tracked point along them);
- :mod:`robotrl.rewards.staged`: staged dense rewards from ordered stage predicates;
- :mod:`robotrl.rewards.monitor`: the reward-hacking monitor of evaluations;
- :mod:`robotrl.rewards.config`: ``task.reward`` (Hydra group ``reward``), applied by
  ``robotrl.builders.build_env``.
"""

from robotrl.rewards.base import RewardModel, RunningMeanStd
from robotrl.rewards.config import REWARD_KINDS, RewardConfig, build_reward_model, wrap_with_reward
from robotrl.rewards.monitor import HackingMonitor, hacking_suspected
from robotrl.rewards.wrappers import EpisodeRewards, RewardWrapper, find_reward_wrapper

__all__ = [
    "REWARD_KINDS",
    "EpisodeRewards",
    "HackingMonitor",
    "RewardConfig",
    "RewardModel",
    "RewardWrapper",
    "RunningMeanStd",
    "build_reward_model",
    "find_reward_wrapper",
    "hacking_suspected",
    "wrap_with_reward",
]
