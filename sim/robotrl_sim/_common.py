"""Option parsing, input checks and spaces shared by every adapter in ``robotrl_sim``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

OptionsT = TypeVar("OptionsT", bound="DataclassInstance")

Obs = dict[str, np.ndarray]


class UnknownTaskError(LookupError):
    """The suite has no task of the requested name."""


def parse_options(options_type: type[OptionsT], options: Mapping[str, Any], where: str) -> OptionsT:
    """Builds ``options_type`` from keyword options, naming any key it does not know."""
    valid = [field.name for field in dataclasses.fields(options_type)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"{where} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid options are {', '.join(valid)}"
        )
    return options_type(**options)


def check_common_arguments(*, image_size: int, action_repeat: int, render_size: int) -> None:
    """Rejects sizes and repeats that cannot work, before any simulator is built."""
    for name, value in (
        ("image_size", image_size),
        ("action_repeat", action_repeat),
        ("render_size", render_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_render_mode(render_mode: str | None) -> None:
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")


def check_action(action: Any, size: int) -> np.ndarray:
    """Returns ``action`` as a float64 vector clipped to [-1, 1].

    Wrong shapes and NaN/Inf raise instead of being clipped: they are bugs upstream, and MuJoCo
    would otherwise propagate a NaN control into the whole state.
    """
    array = np.asarray(action, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"action must have shape ({size},), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"action must be finite, got {array.tolist()}")
    return np.clip(array, -1.0, 1.0)


def observation_space(image_size: int, proprio_size: int | None) -> spaces.Dict:
    """Single-frame channels-first ``pixels`` plus, when asked for, a float32 ``proprio``."""
    entries: dict[str, spaces.Space[Any]] = {
        "pixels": spaces.Box(0, 255, (3, image_size, image_size), np.uint8)
    }
    if proprio_size is not None:
        entries["proprio"] = spaces.Box(-np.inf, np.inf, (proprio_size,), np.float32)
    return spaces.Dict(entries)


def action_space(size: int, seed: int) -> spaces.Box:
    space = spaces.Box(-1.0, 1.0, (size,), np.float32)
    space.seed(seed)
    return space


def channels_first(frame: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` → a fresh contiguous ``[3, H, W]`` array (never a view of a render buffer)."""
    return np.ascontiguousarray(frame.transpose(2, 0, 1))


def reset_seed(seed: int | None, factory_seed: int, seeded: bool) -> int | None:
    """The seed for ``gym.Env.reset``: the factory's seed drives the first episode unless
    ``reset()`` is given its own, so ``make_env(seed=s)`` starts like ``reset(seed=s)``."""
    return factory_seed if seed is None and not seeded else seed
