"""Step+render throughput of batched MuJoCo Warp worlds vs single-process MuJoCo + Renderer.

For each number of worlds (default 1, 16, 64) and image size (default 32, 64), measures
world-steps/s of ``warp/cartpole_swingup`` (one physics step, one ray-traced RGB frame per world
per step, torch tensors out), and beside it the baseline measured in the same run: the same MJCF in
one ``mujoco.MjData`` stepped by ``mujoco.mj_step`` and rendered by ``mujoco.Renderer`` (OpenGL;
EGL/llvmpipe on a CPU machine), once with MuJoCo's default visuals (shadows on, as dm_control
renders) and once with shadows/reflections/skybox off (``fast_render``). Ratios are batched over
baseline at the same image size.

``--task cell_reach`` measures the robot cell instead: ``warp/cell_reach`` (one agent step = one
10 Hz control step: the batched IK, 50 physics steps, front and wrist RGB frames per world)
against the single-process CPU env ``cell/reach`` (``CellSim``'s IK, ``mujoco.mj_step``,
``mujoco.Renderer`` for both cameras) measured in the same run.

    .venv/bin/python scripts/bench_sim.py [--worlds 1 16 64] [--sizes 32 64] [--seconds 3]
                                          [--device cpu|cuda] [--task cartpole_swingup|cell_reach]

Prints a table and one JSON line. Timings depend on the machine and its load; compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np
import torch
import warp as wp

from robotrl_sim._mujoco import disable_slow_visuals
from robotrl_sim.cell import make_env as make_cell_env
from robotrl_sim.warp import BatchedMujocoEnv, make_batched_env


def rate(step: Callable[[], None], seconds: float, min_steps: int = 5) -> float:
    """Calls of ``step`` per second, over at least ``seconds`` and ``min_steps`` calls."""
    step()  # warm-up: compiles kernels, allocates buffers
    calls, start = 0, time.perf_counter()
    while calls < min_steps or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls / (time.perf_counter() - start)


def batched_world_steps_per_second(
    worlds: int, size: int, seconds: float, device: str, task: str = "cartpole_swingup"
) -> float:
    env = make_batched_env(
        task,
        num_worlds=worlds,
        seed=0,
        image_size=size,
        action_repeat=1,
        device=device,
    )
    assert isinstance(env, BatchedMujocoEnv)
    env.reset(seed=0)
    generator = torch.Generator(device=env.device).manual_seed(0)
    action_size = env.single_action_space.shape[0]

    def step() -> None:
        action = torch.rand(worlds, action_size, generator=generator, device=env.device) * 2 - 1
        obs, *_ = env.step(action)
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)
        del obs

    steps_per_second = rate(step, seconds)
    env.close()
    return worlds * steps_per_second


def mujoco_steps_per_second(size: int, seconds: float, fast_visuals: bool) -> float:
    env = make_batched_env(
        "cartpole_swingup", num_worlds=1, seed=0, image_size=size, action_repeat=1
    )
    assert isinstance(env, BatchedMujocoEnv)
    model = env.mj_model
    episode_steps = env.max_episode_steps
    env.close()
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, size, size)
    if fast_visuals:
        disable_slow_visuals(renderer.scene)
    rng = np.random.default_rng(0)
    elapsed = [0]

    def step() -> None:
        # What a dm_control-style pixel env does per agent step: step, render, copy the frame.
        data.ctrl[:] = rng.uniform(-1, 1, model.nu)
        mujoco.mj_step(model, data)
        renderer.update_scene(data, camera="fixed")
        frame = np.ascontiguousarray(renderer.render().transpose(2, 0, 1))
        del frame
        elapsed[0] += 1
        if elapsed[0] == episode_steps:
            mujoco.mj_resetData(model, data)
            elapsed[0] = 0

    steps_per_second = rate(step, seconds)
    renderer.close()
    return steps_per_second


def cell_env_steps_per_second(size: int, seconds: float) -> float:
    """Agent steps/s of the single-process CPU ``cell/reach`` (front and wrist cameras)."""
    env = make_cell_env("reach", seed=0, image_size=size, action_repeat=1)
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if terminated or truncated:
            env.reset()

    steps_per_second = rate(step, seconds)
    env.close()
    return steps_per_second


def cell_main(args: argparse.Namespace) -> None:
    """The robot cell: ``warp/cell_reach`` against ``cell/reach``, both with two cameras."""
    baseline = {size: cell_env_steps_per_second(size, args.seconds) for size in args.sizes}
    rows = []
    for size in args.sizes:
        for worlds in args.worlds:
            ours = batched_world_steps_per_second(
                worlds, size, args.seconds, args.device, task="cell_reach"
            )
            rows.append(
                {
                    "worlds": worlds,
                    "size": size,
                    "batched_world_steps_per_s": ours,
                    "cell_env_steps_per_s": baseline[size],
                    "ratio": ours / baseline[size],
                }
            )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, warp {wp.__version__}, "
        f"mujoco {mujoco.__version__}, batched device {args.device}, "
        f"MUJOCO_GL={os.environ['MUJOCO_GL']}"
    )
    print("task warp/cell_reach vs cell/reach: 1 control step (50 physics steps) + front and")
    print("wrist RGB frames per world per step")
    print(f"{'worlds':>6} {'size':>5} {'batched':>10} {'cell/reach':>11} {'ratio':>7}   [steps/s]")
    for row in rows:
        print(
            f"{row['worlds']:>6} {row['size']:>5} {row['batched_world_steps_per_s']:>10.2f}"
            f" {row['cell_env_steps_per_s']:>11.2f} {row['ratio']:>6.2f}x"
        )
    print(json.dumps({"device": args.device, "task": "cell_reach", "rows": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--device", default="cpu", help="Warp device of the batched worlds")
    parser.add_argument(
        "--task", default="cartpole_swingup", choices=["cartpole_swingup", "cell_reach"]
    )
    args = parser.parse_args()
    if args.task == "cell_reach":
        cell_main(args)
        return

    baseline = {
        size: {
            "default": mujoco_steps_per_second(size, args.seconds, fast_visuals=False),
            "fast": mujoco_steps_per_second(size, args.seconds, fast_visuals=True),
        }
        for size in args.sizes
    }
    rows = []
    for size in args.sizes:
        for worlds in args.worlds:
            ours = batched_world_steps_per_second(worlds, size, args.seconds, args.device)
            rows.append(
                {
                    "worlds": worlds,
                    "size": size,
                    "batched_world_steps_per_s": ours,
                    "mujoco_renderer_steps_per_s": baseline[size]["default"],
                    "mujoco_renderer_fast_steps_per_s": baseline[size]["fast"],
                    "ratio": ours / baseline[size]["default"],
                    "ratio_fast": ours / baseline[size]["fast"],
                }
            )

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, warp {wp.__version__}, "
        f"mujoco {mujoco.__version__}, batched device {args.device}, "
        f"MUJOCO_GL={os.environ['MUJOCO_GL']}"
    )
    print("task warp/cartpole_swingup, 1 physics step + 1 RGB frame per world per step")
    print(
        f"{'worlds':>6} {'size':>5} {'batched':>10} {'MuJoCo+Renderer':>16} {'(fast)':>8}"
        f" {'ratio':>7} {'(fast)':>7}   [world-steps/s]"
    )
    for row in rows:
        print(
            f"{row['worlds']:>6} {row['size']:>5} {row['batched_world_steps_per_s']:>10.0f}"
            f" {row['mujoco_renderer_steps_per_s']:>16.0f}"
            f" {row['mujoco_renderer_fast_steps_per_s']:>8.0f}"
            f" {row['ratio']:>6.2f}x {row['ratio_fast']:>6.2f}x"
        )
    print(json.dumps({"device": args.device, "rows": rows}))


if __name__ == "__main__":
    main()
