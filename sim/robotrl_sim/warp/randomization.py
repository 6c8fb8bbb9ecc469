"""Per-world domain randomisation of what the batched renderer sees: colours, lights, cameras.

MuJoCo Warp keeps these model fields with a leading batch axis that kernels index as
``world % batch``, so a model built with ``batch_sizes={field: num_worlds}`` holds one copy per
world, and changing a world's copy changes only that world's images. Nothing is recompiled: the
new values are ordinary kernel inputs. Values are redrawn for a world each time it resets, from
that world's own random stream, so they are reproducible from the seed like the initial state.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import torch


@dataclass(frozen=True)
class DomainRandomization:
    """Amplitudes of the per-world visual perturbations; all zero (the default) disables them.

    Each perturbation is uniform in ``[-amplitude, amplitude]``, drawn per world at every reset.
    """

    geom_rgb: float = 0.0  # added to each geom's R, G and B (then clipped to [0, 1])
    light_diffuse: float = 0.0  # relative change of each light's diffuse colour (1 ± a)
    camera_pos: float = 0.0  # metres added to each camera position, per axis

    def __post_init__(self) -> None:
        for name in ("geom_rgb", "light_diffuse", "camera_pos"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"randomization {name} must be a number >= 0, got {value!r}")
        if self.light_diffuse > 1:
            raise ValueError(f"randomization light_diffuse must be <= 1, got {self.light_diffuse}")

    @property
    def enabled(self) -> bool:
        return bool(self.geom_rgb or self.light_diffuse or self.camera_pos)

    def batched_fields(self) -> list[str]:
        """The MuJoCo Warp model fields that need one copy per world."""
        fields = []
        if self.geom_rgb:
            fields.append("geom_rgba")
        if self.light_diffuse:
            fields.append("light_diffuse")
        if self.camera_pos:
            fields.append("cam_pos")
        return fields

    def noise_size(self, model: mujoco.MjModel) -> int:
        """Uniform draws per world per reset."""
        return (
            (3 * model.ngeom if self.geom_rgb else 0)
            + (model.nlight if self.light_diffuse else 0)
            + (3 * model.ncam if self.camera_pos else 0)
        )

    def apply(
        self,
        fields: dict[str, torch.Tensor],
        defaults: dict[str, torch.Tensor],
        uniform: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        """Writes perturbed values for the worlds in ``mask`` into the per-world ``fields``.

        ``fields`` are torch views of the Warp model arrays (``[N, ...]``), ``defaults`` the
        model's own values (``[...]``), ``uniform`` ``[N, noise_size]`` draws in [-1, 1].
        """
        num_worlds = uniform.shape[0]
        offset = 0

        def take(count: int) -> torch.Tensor:
            nonlocal offset
            chunk = uniform[:, offset : offset + count]
            offset += count
            return chunk

        def write(name: str, value: torch.Tensor) -> None:
            view = fields[name]
            view.copy_(torch.where(mask.view(-1, *([1] * (view.dim() - 1))), value, view))

        if self.geom_rgb:
            rgba = defaults["geom_rgba"].expand(num_worlds, -1, -1).clone()
            jitter = take(rgba.shape[1] * 3).view(num_worlds, -1, 3) * self.geom_rgb
            rgba[..., :3] = (rgba[..., :3] + jitter).clamp(0.0, 1.0)
            write("geom_rgba", rgba)
        if self.light_diffuse:
            diffuse = defaults["light_diffuse"]
            scale = 1.0 + take(diffuse.shape[0]) * self.light_diffuse
            write("light_diffuse", diffuse.unsqueeze(0) * scale.unsqueeze(-1))
        if self.camera_pos:
            position = defaults["cam_pos"]
            shift = take(position.shape[0] * 3).view(num_worlds, -1, 3) * self.camera_pos
            write("cam_pos", position.unsqueeze(0) + shift)
