"""Dormant neurons (Sokar et al., 2023; used by DrM, Xu et al., 2024).

Every output unit of every ``nn.Linear`` in a network is a neuron. Its score is the batch mean
of its absolute activity, and it is dormant when that score is strictly below ``tau`` times the
mean score over its layer's neurons. The dormant ratio of a network is the share of dormant
neurons among all neurons of all its Linear layers.

The activity of a neuron is what its layer hands on (ReDo's definition on activations):

- a Linear directly followed by a ``ReLU`` in its ``nn.Sequential`` (every hidden layer of the
  actor, critic, value net, proprio fusion and MoE experts and gate) is scored after the ReLU;
- any other Linear (the trunk's, which a LayerNorm follows, and output layers) is scored on its
  own output.

This is what DrM's and MENTOR's public ``cal_dormant_ratio`` measure in effect: they keep each
Linear's output tensor, which the in-place ReLU after a hidden layer then overwrites. A dead
ReLU unit scores exactly 0, so an untrained network already has a few dormant neurons (β ≈ 0.06
for DrM's actor at initialisation), where pre-activation outputs are almost never dormant.
``after_relu=False`` scores every Linear on its own output instead.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robotrl.nn.init import orthogonal_init
from robotrl.schedules import LinearSchedule

DORMANT_TAU = 0.025


@dataclass
class DormantStats:
    """Dormant neurons per Linear layer (by module name) and over the whole network."""

    dormant: dict[str, int]
    neurons: dict[str, int]

    @property
    def ratio(self) -> float:
        total = sum(self.neurons.values())
        return sum(self.dormant.values()) / total if total else 0.0


def dormant_neurons(output: torch.Tensor, tau: float = DORMANT_TAU) -> torch.Tensor:
    """Boolean mask over the last axis of a Linear layer's batched output."""
    activity = output.detach().abs().reshape(-1, output.shape[-1]).mean(dim=0)
    return activity < tau * activity.mean()


def linears_followed_by_relu(network: nn.Module) -> set[nn.Module]:
    """The Linear layers whose next module in their ``nn.Sequential`` is a ReLU."""
    followed: set[nn.Module] = set()
    for sequential in network.modules():
        if isinstance(sequential, nn.Sequential):
            layers = list(sequential)
            for layer, after in itertools.pairwise(layers):
                if isinstance(layer, nn.Linear) and isinstance(after, nn.ReLU):
                    followed.add(layer)
    return followed


def dormant_stats(
    network: nn.Module,
    forward: Callable[[], Any],
    tau: float = DORMANT_TAU,
    *,
    after_relu: bool = True,
) -> DormantStats:
    """Run ``forward()`` (which must call ``network``) and count dormant neurons in ``network``.

    ``forward`` supplies the batch, e.g. ``lambda: actor(features, std)`` on the current
    augmented, encoded training batch. Runs without gradients and leaves the network unchanged.
    Hidden layers are scored after their ReLU (see the module docstring) unless ``after_relu``
    is false.
    """
    dormant: dict[str, int] = {}
    neurons: dict[str, int] = {}
    handles = []
    rectified = linears_followed_by_relu(network) if after_relu else set()

    def hook_for(name: str) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            activity = torch.relu(output) if module in rectified else output
            mask = dormant_neurons(activity, tau)
            dormant[name] = dormant.get(name, 0) + int(mask.sum())
            neurons[name] = neurons.get(name, 0) + mask.numel()

        return hook

    for name, module in network.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    if not neurons:
        raise ValueError("forward() did not run any Linear layer of the network")
    return DormantStats(dormant=dormant, neurons=neurons)


# ---------------------------------------------------------------------------------------------
# DrM's dormant-ratio-guided schedules (Xu et al., 2024, "DrM: Mastering Visual Reinforcement
# Learning through Dormant Ratio Minimization"). β is the actor's dormant ratio.

DORMANT_THRESHOLD = 0.2  # β below this counts as awake (the paper's β threshold)


def awaken_stddev(
    beta: float, threshold: float = DORMANT_THRESHOLD, slope: float = 10.0, scale: float = 1.0
) -> float:
    """Exploration noise from β: scale · sigmoid(slope · (β − threshold)).

    DrM's public code uses scale 1 (until awake), MENTOR's 0.8 (always).
    """
    return scale / (1.0 + math.exp(-slope * (beta - threshold)))


def exploitation_weight(
    beta: float, max_weight: float = 0.6, threshold: float = DORMANT_THRESHOLD, slope: float = 50.0
) -> float:
    """λ(β) = max_weight / (1 + exp(slope · (β − threshold))): trust the value net once awake."""
    return max_weight / (1.0 + math.exp(slope * (beta - threshold)))


def perturb_factor(
    beta: float, max_perturb: float, min_perturb: float = 0.2, k: float = 2.0
) -> float:
    """α = clip(1 − k·β, min_perturb, max_perturb): how much of the old weights a reset keeps."""
    return min(max(1.0 - k * beta, min_perturb), max_perturb)


@dataclass
class AwakenSchedule:
    """DrM's awaken exploration.

    Until the agent is awake the noise is :func:`awaken_stddev`; once awake it is the larger of
    that and the base linear schedule restarted at the awaken step. The agent is awake from the
    first :meth:`observe` (called on each update) after ``earliest_step`` with β below the
    threshold. ``awaken_step`` is state to checkpoint.
    """

    base: LinearSchedule
    threshold: float = DORMANT_THRESHOLD
    slope: float = 10.0
    scale: float = 1.0
    earliest_step: int = 0
    awaken_step: int | None = None

    def observe(self, step: int, beta: float) -> None:
        if self.awaken_step is None and step > self.earliest_step and beta < self.threshold:
            self.awaken_step = step

    def __call__(self, step: int, beta: float) -> float:
        dormant_noise = awaken_stddev(beta, self.threshold, self.slope, self.scale)
        if self.awaken_step is None:
            return dormant_noise
        return max(dormant_noise, self.base(step - self.awaken_step))


def perturb_linear_layers(
    network: nn.Module, alpha: float, init: Callable[[nn.Module], None] = orthogonal_init
) -> None:
    """θ ← α·θ + (1 − α)·θ_fresh for every Linear layer (LayerNorm and others untouched).

    ``θ_fresh`` comes from re-initialising a copy of each layer with ``init`` (the network's own
    initialisation), so α = 1 leaves the weights exactly as they were.
    """
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Linear):
                fresh = copy.deepcopy(module)
                init(fresh)
                for param, fresh_param in zip(module.parameters(), fresh.parameters(), strict=True):
                    param.mul_(alpha).add_(fresh_param, alpha=1.0 - alpha)


def reset_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Drop Adam's moments and step counts (after a perturbation, the old ones are stale)."""
    optimizer.state.clear()
