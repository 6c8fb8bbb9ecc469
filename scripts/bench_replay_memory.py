"""Replay memory per transition and sample() time: EpisodicReplay vs the DrQ-v2 layout.

Both buffers are filled, in this run, with the same synthetic episodes of random 84×84 RGB frames
stacked 3 deep (random pixels: nothing to compress or deduplicate). Memory is measured two ways:

- array bytes: ``nbytes`` of every array the buffer holds (storage plus sample-index cache),
  with capacity set to exactly the frames written, so reserved and touched memory coincide;
- RSS: growth of the process's resident set (``/proc/self/statm``) while the buffer is built,
  filled and sampled once, i.e. the pages the kernel actually committed (Linux only). glibc keeps
  freed heap (the finished episode's staging lists, frame temporaries: a constant ~20 MB, not a
  per-transition cost) unless asked to return it, so we call ``malloc_trim`` before reading RSS.

Usage: python scripts/bench_replay_memory.py [--episodes 20] [--steps 500] [--batch 256]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

from robotrl.replay import EpisodicReplay

FRAME_SHAPE = (3, 84, 84)
STACK, NSTEP, DISCOUNT = 3, 3, 0.99


class StackedObsReplay:
    """Baseline in the DrQ-v2 layout: every step stores its whole stacked observation.

    Like the reference it samples only starts with a full n-step window, so its sample() does
    the same gathers as EpisodicReplay minus the per-frame stack rebuild.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_dim: int) -> None:
        self.obs = np.empty((capacity, *obs_shape), np.uint8)
        self.action = np.empty((capacity, action_dim), np.float32)
        self.reward = np.empty(capacity, np.float32)
        self.cursor, self.starts = 0, np.empty(0, np.int64)
        self.rng = np.random.default_rng(0)

    def add_episode(self, steps: Iterator[tuple[np.ndarray, np.ndarray, float]]) -> None:
        first = self.cursor
        for obs, action, reward in steps:
            self.obs[self.cursor], self.action[self.cursor] = obs, action
            self.reward[self.cursor] = reward
            self.cursor += 1
        last = self.cursor - 1  # slot of the episode's final observation
        self.starts = np.concatenate([self.starts, np.arange(first, last - NSTEP + 1)])

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        idx = self.starts[self.rng.integers(len(self.starts), size=batch_size)]
        rewards = self.reward[idx[:, None] + np.arange(NSTEP)]
        return {
            "obs": self.obs[idx],
            "action": self.action[idx],
            "reward": (rewards * DISCOUNT ** np.arange(NSTEP)).sum(1, keepdims=True),
            "discount": np.full((batch_size, 1), DISCOUNT**NSTEP, np.float32),
            "next_obs": self.obs[idx + NSTEP],
        }

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.obs, self.action, self.reward, self.starts))


Buffer = EpisodicReplay | StackedObsReplay


def episode_stream(
    episode: int, steps: int, action_dim: int
) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """(stacked obs, action taken from it, reward) for each step; the last has no action."""
    rng = np.random.default_rng(episode)
    frames: deque[np.ndarray] = deque(maxlen=STACK)
    first = rng.integers(0, 256, FRAME_SHAPE, np.uint8)
    frames.extend([first] * STACK)  # reset fills the stack, as FrameStack does
    for step in range(steps + 1):
        if step:
            frames.append(rng.integers(0, 256, FRAME_SHAPE, np.uint8))
        action = rng.uniform(-1, 1, action_dim).astype(np.float32)
        yield np.concatenate(frames), action, float(rng.standard_normal())


def resident_bytes() -> int:
    """Resident set size, after asking glibc to give freed heap pages back to the kernel."""
    gc.collect()
    # Not glibc: RSS then also counts freed memory the allocator kept.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill_episodic(episodes: int, steps: int, action_dim: int) -> EpisodicReplay:
    buffer = EpisodicReplay(
        capacity=episodes * (steps + 1), frame_stack=STACK, nstep=NSTEP, discount=DISCOUNT
    )
    for episode in range(episodes):
        stream = episode_stream(episode, steps, action_dim)
        obs, action, reward = next(stream)
        buffer.start_episode({"pixels": obs})
        for step, (next_obs, next_action, next_reward) in enumerate(stream, start=1):
            buffer.add(action, reward, {"pixels": next_obs}, False, step == steps)
            action, reward = next_action, next_reward
    return buffer


def fill_stacked(episodes: int, steps: int, action_dim: int) -> StackedObsReplay:
    buffer = StackedObsReplay(episodes * (steps + 1), (3 * STACK, 84, 84), action_dim)
    for episode in range(episodes):
        buffer.add_episode(episode_stream(episode, steps, action_dim))
    return buffer


def build_and_measure(build: Callable[[], Buffer], batch: int) -> tuple[Buffer, int]:
    """The filled buffer and the resident memory it added (sample caches included)."""
    rss_before = resident_bytes()
    buffer = build()
    buffer.sample(batch)  # builds sample-index caches, so they are counted too
    return buffer, resident_bytes() - rss_before


def median_sample_ms(buffers: list[Buffer], batch: int, repeats: int) -> list[float]:
    """Median sample() time per buffer; calls alternate between buffers so drift hits both."""
    times: list[list[float]] = [[] for _ in buffers]
    for _ in range(repeats):
        for buffer, buffer_times in zip(buffers, times, strict=True):
            start = time.perf_counter()
            buffer.sample(batch)
            buffer_times.append(time.perf_counter() - start)
    return [1000 * float(np.median(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--action-dim", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=100, help="timed sample() calls each")
    args = parser.parse_args()
    transitions = args.episodes * args.steps
    print(f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"{args.episodes} episodes x {args.steps} steps = {transitions} transitions, 84x84 RGB, "
        f"stack {STACK}, action dim {args.action_dim}, sample batch {args.batch}"
    )
    shape = (args.episodes, args.steps, args.action_dim)
    ours, ours_rss = build_and_measure(lambda: fill_episodic(*shape), args.batch)
    base, base_rss = build_and_measure(lambda: fill_stacked(*shape), args.batch)
    ours_ms, base_ms = median_sample_ms([ours, base], args.batch, args.repeats)
    rows = [
        ("EpisodicReplay (frames once)", ours.nbytes, ours_rss, ours_ms),
        ("DrQ-v2 layout (stacked obs)", base.nbytes, base_rss, base_ms),
    ]
    print(f"{'layout':30s} {'array kB/trans':>15s} {'RSS kB/trans':>13s} {'sample ms':>10s}")
    for name, nbytes, rss, ms in rows:
        print(
            f"{name:30s} {nbytes / transitions / 1e3:15.2f} {rss / transitions / 1e3:13.2f} "
            f"{ms:10.2f}"
        )
    summary = {
        "transitions": transitions,
        "batch": args.batch,
        "episodic_bytes_per_transition": round(ours.nbytes / transitions, 1),
        "drqv2_bytes_per_transition": round(base.nbytes / transitions, 1),
        "episodic_rss_bytes_per_transition": round(ours_rss / transitions, 1),
        "drqv2_rss_bytes_per_transition": round(base_rss / transitions, 1),
        "episodic_sample_ms": round(ours_ms, 2),
        "drqv2_sample_ms": round(base_ms, 2),
        "memory_ratio": round(ours.nbytes / base.nbytes, 4),
        "rss_ratio": round(ours_rss / base_rss, 4),
        "sample_time_ratio": round(ours_ms / base_ms, 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
