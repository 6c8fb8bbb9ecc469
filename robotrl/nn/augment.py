"""Image augmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RandomShift(nn.Module):
    """DrQ-v2's random shift: replicate-pad by ``pad`` pixels, then take a random crop back.

    Done with one bilinear ``grid_sample`` whose sampling grid lands exactly on pixel centres, so
    each image equals an integer crop of its padded copy (up to float rounding), one shift per
    image. Square images only, as in the reference.
    """

    def __init__(self, pad: int = 4) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Shift each image in ``x`` ``[B, C, H, W]``.

        ``shift`` (``[B, 2]`` integers in ``[0, 2*pad]``, as (dx, dy)) fixes the crops for tests;
        by default they are drawn uniformly.
        """
        batch, _, height, width = x.shape
        if height != width:
            raise ValueError(f"RandomShift needs square images, got {height}x{width}")
        x = F.pad(x.float(), (self.pad,) * 4, mode="replicate")
        padded = height + 2 * self.pad
        # Normalised coordinates of the first `height` pixel centres of the padded image.
        eps = 1.0 / padded
        arange = torch.linspace(-1.0 + eps, 1.0 - eps, padded, device=x.device)[:height]
        arange = arange.unsqueeze(0).repeat(height, 1).unsqueeze(2)
        base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2)
        base_grid = base_grid.unsqueeze(0).repeat(batch, 1, 1, 1)
        if shift is None:
            shift = torch.randint(0, 2 * self.pad + 1, size=(batch, 1, 1, 2), device=x.device)
        else:
            shift = shift.reshape(batch, 1, 1, 2).to(x.device)
        grid = base_grid + shift.float() * (2.0 / padded)
        return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
