"""The contract every agent follows (docs/design.md, section 2.1 "Agent contract")."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from robotrl.replay import EpisodicReplay

Batch = Mapping[str, np.ndarray]
StateDict = dict[str, Any]


class Agent(ABC):
    """A pixel agent: acts, learns from replay batches, and saves/loads its whole state.

    ``state_dict`` holds everything needed to resume training (networks and optimizers);
    ``get_weights`` holds only what an acting process needs, for actor/learner weight sync.
    """

    #: Modules saved and loaded by ``state_dict``; subclasses fill it in ``__init__``.
    modules: dict[str, nn.Module]
    #: Optimizers saved and loaded by ``state_dict``.
    optimizers: dict[str, torch.optim.Optimizer]
    #: Names in ``modules`` an acting process needs.
    acting_modules: tuple[str, ...]
    #: The dataclass holding this agent's hyper-parameters.
    config_class: type
    #: The trainer calls ``update`` on every n-th agent step.
    update_every_steps: int = 1
    #: K > 0: batches must carry ``action_seq``, ``reward_seq`` and ``obs_horizon`` (t + K).
    replay_horizon: int = 0
    #: True: the agent learns from a fixed demo buffer only; the trainer runs updates and
    #: evaluations without collecting (``robotrl.offline``).
    offline: bool = False
    #: True: the agent learns from its own rollouts (PPO); the trainer runs
    #: ``robotrl.onpolicy.train_on_policy`` instead of a collection loop, without replay.
    on_policy: bool = False
    #: With ``replay_horizon``: sample every step, padding windows past an episode's end
    #: (``action_seq_mask``; ``EpisodicReplay.sample(pad=True)``).
    replay_pad: bool = False
    #: L > 0: batches are windows of L observations (``EpisodicReplay.sample_sequences``), for
    #: recurrent world models; ``replay.batch_size`` then counts windows.
    replay_sequence: int = 0

    def __init__(
        self,
        cfg: Any,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: str,
        proprio_dim: int = 0,
    ) -> None:
        if proprio_dim < 0:
            raise ValueError(f"proprio_dim must be >= 0, got {proprio_dim}")
        self.cfg = cfg
        self.obs_shape = obs_shape
        self.action_dim = action_dim
        self.proprio_dim = proprio_dim  # > 0: observations and batches carry ``proprio``
        self.device = torch.device(device)
        self.modules = {}
        self.optimizers = {}
        # Several cameras ([V, C*stack, H, W]) reach a pixel encoder as one image of V*C*stack
        # channels: ``pixels_shape`` is that image's shape, ``pixels_ndim`` the observation's.
        self.pixels_shape = (
            int(np.prod(obs_shape[:-2])),
            int(obs_shape[-2]),
            int(obs_shape[-1]),
        )
        self.pixels_ndim = len(obs_shape)

    @abstractmethod
    def act(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        """Action in [-1, 1] for one observation."""

    def act_batch(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        """Actions ``[N, A]`` for ``N`` observations stacked on a leading axis (vector envs).

        This default calls :meth:`act` once per observation; agents override it with one batched
        forward pass.
        """
        count = len(next(iter(obs.values())))
        return np.stack(
            [self.act({k: v[i] for k, v in obs.items()}, step, eval_mode) for i in range(count)]
        )

    def sample_batch(self, replay: EpisodicReplay, batch_size: int) -> dict[str, np.ndarray]:
        """The batch :meth:`update` learns from, drawn as ``replay_*`` above ask."""
        if self.replay_sequence:
            return replay.sample_sequences(batch_size, self.replay_sequence)
        return replay.sample(batch_size, horizon=self.replay_horizon, pad=self.replay_pad)

    @abstractmethod
    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """One learning step on a replay batch; returns scalar metrics."""

    def begin_episodes(self, mask: np.ndarray | None = None) -> None:  # noqa: B027 (optional hook)
        """Called after envs reset: new episodes begin in the rows ``mask`` (bool ``[N]``) of the
        observations ``act_batch`` gets next, or in all of them (``None``; also one env's
        ``act``). Agents that keep per-episode acting state (action chunks) clear it here."""

    def observe_episode(self, episode_return: float) -> None:  # noqa: B027 (optional hook)
        """Called by the trainer when a training episode ends (MENTOR keeps snapshots here)."""

    def train(self, training: bool = True) -> None:
        for module in self.modules.values():
            module.train(training)

    def state_dict(self) -> StateDict:
        return {
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: StateDict) -> None:
        _check_names("module", self.modules, state["modules"])
        _check_names("optimizer", self.optimizers, state["optimizers"])
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        """Plain values (numbers, None) besides weights that training must resume with."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what :meth:`extra_state` saved (agents without extra state need nothing)."""

    def get_weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """CPU copies of the acting modules' parameters."""
        return {
            name: {k: v.detach().cpu().clone() for k, v in self.modules[name].state_dict().items()}
            for name in self.acting_modules
        }

    def load_weights(self, weights: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        _check_names("acting module", dict.fromkeys(self.acting_modules), weights)
        for name in self.acting_modules:
            self.modules[name].load_state_dict(weights[name])

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)


def _check_names(kind: str, expected: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    missing, unexpected = set(expected) - set(given), set(given) - set(expected)
    if missing or unexpected:
        raise ValueError(
            f"{kind} names do not match this agent: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
