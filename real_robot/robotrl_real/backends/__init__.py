"""Arm backends for the driver node: the sim twin and thin vendor SDK adapters.

Each module imports its SDK only when a backend is built, so ``import robotrl_real.backends``
works on any machine; a missing SDK raises :class:`MissingDependencyError` naming the extra to
install (``pip install 'robotrl-real[ur]'`` and so on).
"""

from __future__ import annotations

from typing import Any

from robotrl_real.driver import ArmBackend

BACKENDS = ("sim", "ur", "franka", "xarm")


class MissingDependencyError(ImportError):
    """A backend's SDK is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"the {what} backend needs the Python module {module!r}, which is not installed; "
            f"install it with: pip install 'robotrl-real[{extra}]'"
        ) from error


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
