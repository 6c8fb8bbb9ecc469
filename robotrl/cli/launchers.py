"""What the console scripts share around Hydra: clear errors for cluster launcher presets whose
optional extras are not installed, config errors in one line, and a quiet console."""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path

from hydra.errors import CompactHydraException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from robotrl.config import unknown_key_error

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


def run_reporting_config_errors(script: str, hydra_main: Callable[[], None]) -> None:
    """Run a ``@hydra.main`` function; an error composing its config exits with one line
    ``<script>: ...`` on stderr and exit code 2."""
    # Hydra then raises its composition errors here instead of printing them over several lines.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (CompactHydraException, OmegaConfBaseException) as err:
        print(f"{script}: {composition_error(err)}", file=sys.stderr)
        raise SystemExit(2) from None


def composition_error(err: Exception) -> str:
    """One line for an error Hydra raised composing the config (a typo, a wrong type)."""
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        return missing_option_error(err.missing_cfg_file) or one_line(str(err))
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    schema = getattr(cause, "object_type", None)
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and is_dataclass(schema):
        return str(unknown_key_error(str(cause.full_key), [f.name for f in fields(schema)]))
    return one_line(f"{err}\n{cause}" if cause is not err else str(err))


def missing_option_error(missing: str) -> str | None:
    """``group=option`` names no config file (``missing`` is ``group/option``): the nearest ones,
    from the packaged configs and the ``./configs`` overlay; None if ``group`` has no files."""
    group, _, option = missing.partition("/")
    roots = [Path(__file__).parents[1] / "conf" / group, Path("configs") / group]
    options = sorted(
        str(path.relative_to(root).with_suffix(""))
        for root in roots
        if root.is_dir()
        for path in root.rglob("*.yaml")
    )
    if not options:
        return None
    nearest = difflib.get_close_matches(option, options, n=3, cutoff=0.5) or options
    listed = ", ".join(f"{group}={name}" for name in nearest)
    return f"{group}={option} is not a config; did you mean {listed}?"


def one_line(message: str) -> str:
    """``message`` with its lines joined by "; "."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())
