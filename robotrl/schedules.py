"""Typed schedules (no strings parsed into schedules)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LinearSchedule:
    """Linear interpolation from ``initial`` to ``final`` over ``duration`` agent steps, then flat.

    DrQ-v2's exploration noise uses ``LinearSchedule(1.0, 0.1, 500_000)`` on medium DMC tasks.
    """

    initial: float = 1.0
    final: float = 0.1
    duration: int = 500_000

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ValueError(f"LinearSchedule.duration must be positive, got {self.duration}")

    def __call__(self, step: int) -> float:
        mix = min(max(step / self.duration, 0.0), 1.0)
        return (1.0 - mix) * self.initial + mix * self.final
