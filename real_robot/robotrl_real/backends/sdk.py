"""Importing a vendor SDK: a missing one raises :class:`MissingDependencyError` naming the extra
that installs it."""

from __future__ import annotations

import importlib
from typing import Any


class MissingDependencyError(ImportError):
    """A backend's SDK is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"the {what} backend needs the Python module {module!r}, which is not installed; "
            f"install it with: pip install 'robotrl-real[{extra}]'"
        ) from error
