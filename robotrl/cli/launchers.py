"""What the console scripts share before Hydra starts: clear errors for cluster launcher presets
whose optional extras are not installed, and a quiet console."""

from __future__ import annotations

import importlib.util
import sys
import warnings

# preset name (hydra/launcher=<name>) -> (plugin module, extra to install)
LAUNCHER_EXTRAS = {
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
}


def check_launcher_extras(args: list[str]) -> None:
    """Exit with a message naming the extra when a launcher preset's plugin is missing."""
    for arg in args:
        if not arg.startswith("hydra/launcher="):
            continue
        preset = arg.split("=", 1)[1]
        if preset not in LAUNCHER_EXTRAS:
            continue
        module, extra = LAUNCHER_EXTRAS[preset]
        if importlib.util.find_spec(module.split(".")[0]) is None or _missing(module):
            sys.exit(
                f"hydra/launcher={preset} needs the '{extra}' extra: "
                f"pip install 'robotrl[{extra}]' (or pip install -e '.[{extra}]' in a checkout)"
            )


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def ignore_missing_overlay_warning() -> None:
    """Hydra warns on every run where ``./configs`` (the optional user overlay) does not exist."""
    warnings.filterwarnings("ignore", message=r"provider=hydra\.searchpath in main, path=configs")
