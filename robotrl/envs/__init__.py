"""Environment construction: suites are found through the ``robotrl.envs`` entry-point group.

A suite package (``robotrl_sim`` for simulators, later ``robotrl_real`` for the arm) registers a
factory under the suite's name::

    [project.entry-points."robotrl.envs"]
    dmc = "robotrl_sim.dmc:make_env"

The factory is called as ``factory(task, seed=..., image_size=..., action_repeat=..., **options)``
and returns a Gymnasium env whose observation is a dict with a single-frame ``pixels`` entry
(uint8, ``[C, H, W]``, or ``[V, C, H, W]`` for V cameras) and optionally ``proprio``. The core
adds frame stacking, so the core never imports a simulator.

Batched suites (many worlds in one env, e.g. MuJoCo Warp on a GPU) register under a second group,
``robotrl.batched_envs``, because they return a different kind of object::

    [project.entry-points."robotrl.batched_envs"]
    warp = "robotrl_sim.warp:make_batched_env"

Their factory is called as ``factory(task, num_worlds=..., seed=..., image_size=...,
action_repeat=..., frame_stack=..., device=..., **options)`` and returns a Gymnasium
``VectorEnv``-like env (``BatchedEnv``) whose observations, rewards and flags are torch tensors
with a leading world axis on the sim's device; it autoresets SAME_STEP and reports
``info["final_obs"]`` for every world with ``info["_final_obs"]`` marking the finished ones. The
suite stacks frames itself, on the device.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Protocol

import gymnasium as gym

from robotrl.envs.wrappers import FrameStack

ENTRY_POINT_GROUP = "robotrl.envs"
BATCHED_ENTRY_POINT_GROUP = "robotrl.batched_envs"

# Which extra provides each suite we know of, for a helpful error when it is missing.
_SUITE_PROVIDERS = {
    "builtin": "robotrl-sim",
    "dmc": "robotrl-sim",
    "metaworld": "robotrl-sim",  # and MetaWorld itself; robotrl_sim.metaworld says how
    "adroit": "robotrl-sim",  # gymnasium-robotics
    "robosuite": "robotrl-sim",
    "warp": "robotrl-sim",  # batched: robotrl.batched_envs
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


class BatchedEnv(Protocol):
    """What the core uses of a batched env (see the module docstring for the contract)."""

    num_envs: int
    device: Any  # torch.device of every tensor the env returns
    metadata: dict[str, Any]  # "autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP
    single_observation_space: gym.spaces.Dict
    single_action_space: gym.spaces.Box

    def reset(
        self, *, seed: Any = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...

    def step(self, actions: Any) -> tuple[dict[str, Any], Any, Any, Any, dict[str, Any]]: ...

    def close(self) -> None: ...


class BatchedEnvFactory(Protocol):
    def __call__(
        self,
        task: str,
        *,
        num_worlds: int,
        seed: int,
        image_size: int,
        action_repeat: int,
        frame_stack: int,
        device: str,
        **options: Any,
    ) -> BatchedEnv: ...


def available_batched_suites() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=BATCHED_ENTRY_POINT_GROUP))


def load_batched_suite(suite: str) -> BatchedEnvFactory:
    matches = [ep for ep in entry_points(group=BATCHED_ENTRY_POINT_GROUP) if ep.name == suite]
    if not matches:
        provider = _SUITE_PROVIDERS.get(suite)
        hint = (
            f" Install it with `pip install {provider}` (or `pip install -e sim` from a checkout)."
            if provider
            else ""
        )
        raise UnknownSuiteError(
            f"No batched environment suite named {suite!r} is installed "
            f"(installed batched suites: {available_batched_suites() or 'none'}).{hint}"
        )
    factory: BatchedEnvFactory = matches[0].load()
    return factory


def make_batched_env(
    suite: str,
    task: str,
    *,
    num_worlds: int,
    seed: int,
    image_size: int,
    action_repeat: int,
    frame_stack: int,
    device: str = "cpu",
    options: dict[str, Any] | None = None,
) -> BatchedEnv:
    """Builds ``num_worlds`` worlds of batched ``suite/task`` with stacked pixel frames."""
    factory = load_batched_suite(suite)
    return factory(
        task,
        num_worlds=num_worlds,
        seed=seed,
        image_size=image_size,
        action_repeat=action_repeat,
        frame_stack=frame_stack,
        device=device,
        **(options or {}),
    )
