"""Environment construction: suites are found through the ``robotrl.envs`` entry-point group.

A suite package (``robotrl_sim`` for simulators, later ``robotrl_real`` for the arm) registers a
factory under the suite's name::

    [project.entry-points."robotrl.envs"]
    dmc = "robotrl_sim.dmc:make_env"

The factory is called as ``factory(task, seed=..., image_size=..., action_repeat=..., **options)``
and returns a Gymnasium env whose observation is a dict with a single-frame ``pixels`` entry
(uint8, ``[C, H, W]``, or ``[V, C, H, W]`` for V cameras) and optionally ``proprio``. The core
adds frame stacking, so the core never imports a simulator.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Protocol

import gymnasium as gym

from robotrl.envs.wrappers import FrameStack

ENTRY_POINT_GROUP = "robotrl.envs"

# Which extra provides each suite we know of, for a helpful error when it is missing.
_SUITE_PROVIDERS = {
    "builtin": "robotrl-sim",
    "dmc": "robotrl-sim",
    "metaworld": "robotrl-sim",  # and MetaWorld itself; robotrl_sim.metaworld says how
    "adroit": "robotrl-sim",  # gymnasium-robotics
    "robosuite": "robotrl-sim",
}


class EnvFactory(Protocol):
    def __call__(
        self, task: str, *, seed: int, image_size: int, action_repeat: int, **options: Any
    ) -> gym.Env: ...


class UnknownSuiteError(LookupError):
    """No installed package provides the requested environment suite."""


def available_suites() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_suite(suite: str) -> EnvFactory:
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == suite]
    if not matches:
        provider = _SUITE_PROVIDERS.get(suite)
        hint = (
            f" Install it with `pip install {provider}` (or `pip install -e sim` from a checkout)."
            if provider
            else ""
        )
        raise UnknownSuiteError(
            f"No environment suite named {suite!r} is installed "
            f"(installed suites: {available_suites() or 'none'}).{hint}"
        )
    factory: EnvFactory = matches[0].load()
    return factory


def make_env(
    suite: str,
    task: str,
    *,
    seed: int,
    image_size: int,
    action_repeat: int,
    frame_stack: int,
    options: dict[str, Any] | None = None,
) -> gym.Env:
    """Build ``suite/task`` and stack its pixel frames, as every pixel agent expects."""
    factory = load_suite(suite)
    env = factory(
        task, seed=seed, image_size=image_size, action_repeat=action_repeat, **(options or {})
    )
    if frame_stack > 1:
        env = FrameStack(env, frame_stack)
    return env
