"""Action distributions."""

from __future__ import annotations

import torch
from torch import distributions as pyd


class TruncatedNormal(pyd.Normal):
    """A Normal whose samples are kept inside ``[low, high]`` with straight-through gradients.

    ``sample(clip=c)`` first clips the noise to ``[-c, c]`` (DrQ-v2 uses c = 0.3 for the targets
    and the actor loss), then clamps into the action box; the clamp passes gradients through as
    if it were the identity, so the actor still gets a signal at the bounds.
    """

    def __init__(
        self, loc: torch.Tensor, scale: torch.Tensor, low: float = -1.0, high: float = 1.0
    ) -> None:
        super().__init__(loc, scale, validate_args=False)
        self.low = low
        self.high = high
        self.eps = 1e-6

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        clamped = torch.clamp(x, self.low + self.eps, self.high - self.eps)
        return x - x.detach() + clamped.detach()

    def sample(
        self,
        sample_shape: torch.Size | list[int] | tuple[int, ...] = (),
        clip: float | None = None,
    ) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device) * self.scale
        if clip is not None:
            noise = torch.clamp(noise, -clip, clip)
        return self._clamp(self.loc + noise)
