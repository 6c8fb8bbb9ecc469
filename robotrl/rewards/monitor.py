"""Reward-hacking monitor: proxy return next to the env's truth at every evaluation.

A policy that learns to please the reward model rather than do the task shows up as the proxy
return rising while true success (or, where the task defines none, the true return) falls. The
monitor keeps the per-evaluation means and raises ``hacking_flag`` when, over the last
``window`` evaluations, the proxy rose at every evaluation and the truth fell at every one.

The trainer calls :meth:`HackingMonitor.observe_eval` after each evaluation with its eval env;
when that env has a :class:`~robotrl.rewards.wrappers.RewardWrapper` the returned metrics go
into the eval row (``proxy_return``, ``env_return``, ``env_success``, ``hacking_flag``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from robotrl.rewards.wrappers import EpisodeRewards, find_reward_wrapper


def hacking_suspected(proxy: list[float], truth: list[float], window: int = 3) -> bool:
    """Proxy strictly up and truth strictly down at each of the last ``window`` evaluations."""
    if window < 2 or len(proxy) < window or len(truth) < window:
        return False
    recent_proxy = np.asarray(proxy[-window:], dtype=float)
    recent_truth = np.asarray(truth[-window:], dtype=float)
    if not (np.isfinite(recent_proxy).all() and np.isfinite(recent_truth).all()):
        return False
    return bool((np.diff(recent_proxy) > 0).all() and (np.diff(recent_truth) < 0).all())


@dataclass
class HackingMonitor:
    window: int = 3
    proxy_returns: list[float] = field(default_factory=list)
    truths: list[float] = field(default_factory=list)  # success rate, else true return

    def observe(self, episodes: list[EpisodeRewards]) -> dict[str, float]:
        """Record one evaluation's episodes; its metrics, with the flag (1.0 = suspected)."""
        if not episodes:
            return {}
        proxy = float(np.mean([e.proxy_return for e in episodes]))
        env_return = float(np.mean([e.env_return for e in episodes]))
        successes = [e.success for e in episodes if not math.isnan(e.success)]
        success = float(np.mean(successes)) if successes else float("nan")
        self.proxy_returns.append(proxy)
        self.truths.append(success if successes else env_return)
        flag = hacking_suspected(self.proxy_returns, self.truths, self.window)
        metrics = {"proxy_return": proxy, "env_return": env_return, "hacking_flag": float(flag)}
        if successes:
            metrics["env_success"] = success
        return metrics

    def observe_eval(self, eval_env: gym.Env) -> dict[str, float]:
        """The episodes ``eval_env``'s reward wrapper finished since the last call ({} without
        one)."""
        wrapper = find_reward_wrapper(eval_env)
        if wrapper is None:
            return {}
        episodes = list(wrapper.finished_episodes)
        wrapper.finished_episodes.clear()
        return self.observe(episodes)
