"""Dormant neurons (Sokar et al., 2023; used by DrM, Xu et al., 2024).

A neuron of a Linear layer is dormant on a batch when the batch mean of its absolute output is
strictly below ``tau`` times the mean of that quantity over the layer's neurons. The dormant
ratio of a network is the share of dormant neurons among all neurons of all its Linear layers,
measured on pre-activation outputs (the Linear layers' own outputs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

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


def dormant_stats(
    network: nn.Module, forward: Callable[[], Any], tau: float = DORMANT_TAU
) -> DormantStats:
    """Run ``forward()`` (which must call ``network``) and count dormant neurons in ``network``.

    ``forward`` supplies the batch, e.g. ``lambda: actor(features, std)`` on the current
    augmented, encoded training batch. Runs without gradients and leaves the network unchanged.
    """
    dormant: dict[str, int] = {}
    neurons: dict[str, int] = {}
    handles = []

    def hook_for(name: str) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            mask = dormant_neurons(output, tau)
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
