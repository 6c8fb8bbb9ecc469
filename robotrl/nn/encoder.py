"""The DrQ-v2 convolutional pixel encoder."""

from __future__ import annotations

import torch
from torch import nn

from robotrl.nn.init import orthogonal_init


class PixelEncoder(nn.Module):
    """Four 3×3 conv layers of 32 channels (first with stride 2), ReLU after each.

    Takes uint8-valued pixels ``[B, C, H, W]`` (as floats or bytes), scales them to ``[-0.5, 0.5]``
    and returns the flattened feature map. At 84×84 the output has 32·35·35 = 39,200 features.
    """

    def __init__(self, obs_shape: tuple[int, int, int], channels: int = 32) -> None:
        super().__init__()
        in_channels, height, width = obs_shape
        self.convnet = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
        )
        out_height, out_width = (height - 3) // 2 + 1 - 6, (width - 3) // 2 + 1 - 6
        if out_height < 1 or out_width < 1:
            raise ValueError(f"image {height}x{width} is too small for the encoder (min 17x17)")
        self.repr_dim = channels * out_height * out_width
        self.apply(orthogonal_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float() / 255.0 - 0.5
        return self.convnet(obs).flatten(start_dim=1)
