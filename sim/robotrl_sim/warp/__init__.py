"""Batched MuJoCo Warp worlds with batched ray-traced pixels, as torch tensors (suite ``warp``).

Design
    ``BatchedMujocoEnv`` (``batched.py``) steps N copies of one MuJoCo scene together with
    ``mujoco_warp.step`` and renders every world's cameras in one launch of MuJoCo Warp's
    ray-tracing megakernel (``mujoco_warp.render`` over a per-world BVH refitted each step). A task
    (``WarpTask``: ``cartpole.py``, ``reach.py``, ``cell.py``) only supplies its MJCF, initial-state
    distribution (and mocap bodies' positions), reward, termination/success and proprio, all as
    batched torch functions, and optionally its own controller (``cell.py``: the robot cell's
    end-effector delta actions through a batched IK, ``cell_control.py``). The env follows
    Gymnasium's ``VectorEnv`` API with SAME_STEP autoreset and the batched-env contract of
    docs/design.md (section 2.2 "Environment contract"), but its arrays are torch tensors on
    the sim's device.

Device handling
    ``device`` ("cpu", "cuda", "cuda:1") picks the Warp device; everything lives there. Actions go
    in, and observations, rewards and flags come out, as torch tensors on the matching torch
    device: the state, controls and render buffers are Warp arrays that torch sees through
    ``wp.to_torch`` (the same memory, no copy), and the packed renderer output is unpacked into a
    Warp-owned uint8 ``[N, V*3, H, W]`` buffer by a Warp kernel. With ``copy=True`` (default)
    each observation is a device-side clone of that buffer, safe to keep; with ``copy=False``
    the observation *is* the buffer (a view overwritten by the next step). Nothing is copied to
    the host except two scalars per step: "is any action non-finite" and "did any world finish"
    (the second decides whether a second render, of the reset worlds, is needed). On CUDA, Warp
    launches run on torch's current stream so the two libraries stay ordered without syncs.
    The same code path runs on Warp's CPU device, which is what CI tests.

Seeding
    Each world draws its reset noise (and domain-randomisation values) from a counter-based
    generator keyed by (world seed, number of resets of that world, index): world seeds are
    hashed from ``(seed, world)`` (or given one per world), so a world's episodes depend only on
    its seed and on the actions it received, not on the other worlds or when they reset. The
    same seed and actions give bit-identical frames.

Episodes
    Truncated after the task's time limit (``time_limit`` seconds of simulated time, counted in
    agent steps of ``action_repeat`` physics steps); terminated where the task defines it. The
    reward of an agent step is the sum over its physics steps; termination and success are
    judged at the end of the agent step. ``reset(options={"reset_mask": mask})`` restarts only
    some worlds (Gymnasium 1.x's partial reset).

Domain randomisation
    ``randomization={"geom_rgb": a, "light_diffuse": b, "camera_pos": c}`` perturbs colours,
    lights and camera positions per world at each reset (``randomization.py``): MuJoCo Warp
    reads these model fields per world, so it costs one small torch write per reset.

Measured (``scripts/bench_sim.py``, 2-core CPU): step+render world-steps/s for 1, 16 and 64
worlds at 32x32 and 64x64, against single-process MuJoCo + ``mujoco.Renderer`` in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from robotrl_sim._common import UnknownTaskError, parse_options
from robotrl_sim.warp.batched import (
    BatchedEnvOptions,
    BatchedMujocoEnv,
    SimTensors,
    WarpTask,
)
from robotrl_sim.warp.cartpole import CartpoleSwingup
from robotrl_sim.warp.cell import CellPickCube, CellReach
from robotrl_sim.warp.frame_stack import BatchedFrameStack
from robotrl_sim.warp.randomization import DomainRandomization
from robotrl_sim.warp.reach import Reach

TASKS: dict[str, type[WarpTask]] = {
    "cartpole_swingup": CartpoleSwingup,
    "cell_pick_cube": CellPickCube,
    "cell_reach": CellReach,
    "reach": Reach,
}

__all__ = [
    "TASKS",
    "BatchedEnvOptions",
    "BatchedFrameStack",
    "BatchedMujocoEnv",
    "CartpoleSwingup",
    "CellPickCube",
    "CellReach",
    "DomainRandomization",
    "Reach",
    "SimTensors",
    "WarpTask",
    "make_batched_env",
]


def make_batched_env(
    task: str,
    *,
    num_worlds: int,
    seed: int | Sequence[int],
    image_size: int,
    action_repeat: int,
    frame_stack: int = 1,
    device: str | torch.device = "cpu",
    **options: Any,
) -> BatchedMujocoEnv | BatchedFrameStack:
    """Builds ``num_worlds`` worlds of ``warp/<task>`` (the ``robotrl.batched_envs`` factory).

    ``options`` are the fields of ``BatchedEnvOptions`` (cameras, depth, proprio, time_limit,
    copy, randomization). ``frame_stack > 1`` stacks pixel frames on the device.
    """
    if task not in TASKS:
        raise UnknownTaskError(f"warp has no task {task!r}; available: {', '.join(sorted(TASKS))}")
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or frame_stack < 1:
        raise ValueError(f"frame_stack must be a positive integer, got {frame_stack!r}")
    env_options = parse_options(BatchedEnvOptions, options, where=f"warp/{task}")
    env: BatchedMujocoEnv | BatchedFrameStack = BatchedMujocoEnv(
        TASKS[task](),
        num_worlds=num_worlds,
        seed=seed,
        image_size=image_size,
        action_repeat=action_repeat,
        device=device,
        options=env_options,
    )
    if frame_stack > 1:
        env = BatchedFrameStack(env, frame_stack)
    return env
