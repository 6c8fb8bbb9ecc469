"""Weight initialisation used across agents."""

from __future__ import annotations

from torch import nn


def orthogonal_init(module: nn.Module) -> None:
    """DrQ-v2's initialisation: orthogonal weights, zero biases; ReLU gain for convolutions.

    Apply with ``model.apply(orthogonal_init)``.
    """
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight.data)
        if module.bias is not None:
            module.bias.data.fill_(0.0)
    elif isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.fill_(0.0)
