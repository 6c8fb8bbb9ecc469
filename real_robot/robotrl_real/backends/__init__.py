"""Arm backends for the driver node: the sim twin and thin vendor SDK adapters.

Each module imports its SDK only when a backend is built, so ``import robotrl_real.backends``
works on any machine; a missing SDK raises :class:`MissingDependencyError` naming the extra to
install (``pip install 'robotrl-real[ur]'`` and so on).
"""

from __future__ import annotations

from typing import Any

from robotrl_real.arm import ArmBackend
from robotrl_real.backends.sdk import MissingDependencyError, require

__all__ = ["BACKENDS", "MissingDependencyError", "make_backend", "require"]

BACKENDS = ("sim", "ur", "franka", "xarm")


def make_backend(name: str, **options: Any) -> ArmBackend:
    """Build backend ``name`` (one of :data:`BACKENDS`) with keyword ``options``."""
    if name == "sim":
        from robotrl_real.backends.sim import SimBackend

        return SimBackend(**options)
    if name == "ur":
        from robotrl_real.backends.ur import URBackend

        return URBackend(**options)
    if name == "franka":
        from robotrl_real.backends.franka import FrankaBackend

        return FrankaBackend(**options)
    if name == "xarm":
        from robotrl_real.backends.xarm import XArmBackend

        return XArmBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
