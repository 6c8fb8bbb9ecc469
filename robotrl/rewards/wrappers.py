"""Apply a :class:`~robotrl.rewards.base.RewardModel` online, one env step at a time.

The reward the agent sees is built from the model's score ``s`` of the newest frame:

- ``mode="replace"``: ``r' = weight * term``; ``mode="add"``: ``r' = r_env + weight * term``;
- ``term = s(o')``, or with ``as_potential=True`` the shaping term ``γ Φ(o') − Φ(o)`` with
  ``Φ = s`` (Ng et al. 1999): policy-invariant, and ``Φ = 0`` for the absorbing state after a
  termination, while a truncated episode keeps ``Φ(o')`` (the state goes on, only time ran out);
- with ``success_reward``, KAGI's (Lee et al. 2024) sparse term takes over where it is non-zero:
  when the model says ``o'`` is a success (``is_success``) the model's part of the reward is
  ``success_reward`` instead of ``weight * term``. A dense distance-to-go (always ≤ 0) then
  guides the agent, and the sparse reward pays for arriving and staying.

Normalisation (``normalize=True``) keeps running statistics of the raw scores: plain rewards are
standardised (``(s − mean) / std``); potentials are only divided by ``std``, because shifting Φ
by a mean would add a constant ``(γ − 1)·mean`` per step, which changes the task when episode
lengths vary. ``clip`` then bounds the normalised score to ``[−clip, clip]``. The statistics are
part of :meth:`RewardWrapper.state_dict` for checkpoints.

The env's own reward and success stay visible: ``info["env_reward"]``, ``info["proxy_reward"]``
(the model's contribution to the reward) and the env's ``info["success"]`` untouched; at the
end of an episode the wrapper appends its totals to ``finished_episodes`` for the hacking
monitor (:mod:`robotrl.rewards.monitor`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
import torch

from robotrl.rewards.base import RewardModel, RunningMeanStd, frames_tensor

Obs = dict[str, np.ndarray]
Mode = Literal["replace", "add"]


@dataclass
class EpisodeRewards:
    """Totals of one finished episode, proxy next to the env's truth."""

    proxy_return: float  # what the agent was given
    env_return: float  # the env's own reward
    success: float  # the env's info["success"] at the last step (NaN if it has none)
    length: int


class RewardWrapper(gym.Wrapper[Obs, np.ndarray, Obs, np.ndarray]):
    """Replaces or mixes the env reward with a reward model's score (see the module docstring).

    ``frame_channels`` is the channel count of one frame (3 for RGB): the newest frame is the
    last ``frame_channels`` channels of a frame-stacked ``pixels``. For multi-camera pixels
    ``[V, C*stack, H, W]`` the model sees camera ``view``.
    """

    def __init__(
        self,
        env: gym.Env[Obs, np.ndarray],
        model: RewardModel,
        *,
        mode: Mode = "replace",
        weight: float = 1.0,
        as_potential: bool = False,
        discount: float = 0.99,
        normalize: bool = False,
        clip: float | None = None,
        instruction: str | None = None,
        terminate_on_success: bool = False,
        success_reward: float | None = None,
        frame_channels: int = 3,
        view: int = 0,
    ) -> None:
        super().__init__(env)
        if mode not in ("replace", "add"):
            raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {discount}")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be > 0 (or None), got {clip}")
        self.model = model
        self.mode = mode
        self.weight = float(weight)
        self.as_potential = as_potential
        self.discount = float(discount)
        self.normalize = normalize
        self.clip = clip
        self.instruction = instruction
        self.terminate_on_success = terminate_on_success
        if success_reward is not None:
            model.check_judges_success("success_reward")
        self.success_reward = success_reward
        self.frame_channels = frame_channels
        self.view = view
        self.stats = RunningMeanStd()
        # Bounded: a training env finishes episodes for the whole run and nobody drains them.
        self.finished_episodes: deque[EpisodeRewards] = deque(maxlen=10_000)
        self._potential = 0.0  # Φ(o) of the current observation
        self._proxy_return = 0.0
        self._env_return = 0.0
        self._length = 0

    # -- scoring ------------------------------------------------------------------------------

    def newest_frame(self, obs: Obs) -> torch.Tensor:
        pixels = np.asarray(obs["pixels"])
        if pixels.ndim == 4:
            pixels = pixels[self.view]
        return frames_tensor(pixels[-self.frame_channels :])

    def raw_score(self, obs: Obs) -> torch.Tensor:
        """The model's score of ``obs`` as a one-element tensor."""
        proprio = obs.get("proprio")
        proprio_tensor = None if proprio is None else torch.as_tensor(proprio).reshape(1, -1)
        with torch.no_grad():
            return self.model.score(self.newest_frame(obs), proprio_tensor, self.instruction)

    def transform(self, score: float) -> float:
        """Normalised and clipped score (statistics as they stand)."""
        return float(
            transform_scores(
                np.array(score, np.float64),
                self.stats,
                self.normalize,
                self.as_potential,
                self.clip,
            )
        )

    def _observe(self, obs: Obs) -> tuple[float, bool]:
        raw = self.raw_score(obs)
        success = self.model.is_success(raw)
        value = float(raw.reshape(-1)[0])
        if self.normalize:
            self.stats.update(value)
        return value, bool(success is not None and bool(success.reshape(-1)[0]))

    # -- gym API --------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        proprio = obs.get("proprio")
        self.model.reset_episode(
            self.newest_frame(obs),
            None if proprio is None else torch.as_tensor(proprio).reshape(1, -1),
        )
        self._proxy_return = self._env_return = 0.0
        self._length = 0
        if self.as_potential:
            raw, _ = self._observe(obs)
            self._potential = self.transform(raw)
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Obs, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        raw, model_success = self._observe(obs)
        if self.terminate_on_success and model_success:
            terminated = True
        if self.as_potential:
            # Termination enters the absorbing state, whose potential is 0; truncation does not.
            next_potential = 0.0 if terminated else self.transform(raw)
            term = self.discount * next_potential - self._potential
            self._potential = next_potential
        else:
            term = self.transform(raw)
        proxy = self.weight * term
        if self.success_reward is not None and model_success:
            proxy = self.success_reward
        reward = proxy if self.mode == "replace" else float(env_reward) + proxy
        info = {
            **info,
            "env_reward": float(env_reward),
            "proxy_reward": proxy,
            "reward_model_score": raw,
            "reward_model_success": model_success,
        }
        self._proxy_return += reward
        self._env_return += float(env_reward)
        self._length += 1
        if terminated or truncated:
            success = float(info["success"]) if "success" in info else float("nan")
            self.finished_episodes.append(
                EpisodeRewards(self._proxy_return, self._env_return, success, self._length)
            )
        return obs, reward, terminated, truncated, info

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The running statistics (JSON-ready), for the run's checkpoint."""
        return {"stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])


def transform_scores(
    scores: np.ndarray,
    stats: RunningMeanStd,
    normalize: bool,
    as_potential: bool,
    clip: float | None,
) -> np.ndarray:
    """Scores normalised by ``stats`` (potentials only scaled) and clipped (module docstring)."""
    if normalize:
        scores = scores / stats.std if as_potential else (scores - stats.mean) / stats.std
    if clip is not None:
        scores = np.clip(scores, -clip, clip)
    return scores


def find_reward_wrapper(env: gym.Env) -> RewardWrapper | None:
    """The :class:`RewardWrapper` in ``env``'s wrapper chain, if there is one."""
    current: Any = env
    while current is not None:
        if isinstance(current, RewardWrapper):
            return current
        current = getattr(current, "env", None)
    return None
