"""Episodic replay for pixel RL: frames stored once, stacks and n-step returns built when sampled.

Layout. The env stacks frames (``pixels`` is ``[..., C*stack, H, W]``), but consecutive stacks
share all but one frame, so the buffer keeps only the newest ``C`` channels of each observation,
in one preallocated ``[capacity, ..., C, H, W]`` uint8 array. Each finished episode of ``T``
transitions occupies ``T + 1`` contiguous slots of a ring (slot ``t`` holds observation ``t`` and
the action/reward taken from it), so a stack is rebuilt by gathering slots ``t-stack+1 .. t``,
clamped at the episode's first slot: exactly the stack the env built by repeating its reset frame.
Per-slot index arrays (episode start, last slot, terminated) make sampling one vectorised gather.

n-step. For a transition at step ``t`` of an episode with ``T`` transitions, ``n' = min(n, T - t)``,
``reward = sum_{i<n'} discount^i r_{t+i}``, ``discount = discount^n'`` (zero when the episode
terminated and ``t + n' == T``; truncation bootstraps) and ``next_obs`` is observation ``t + n'``.
Every transition is sampleable. The DrQ-v2 reference only samples starts with a full n-step
window; we keep the shortened windows so an episode's last steps are trained on too, which is the
n-step definition of the paper (a return truncated at the episode end).

Horizon (TACO). ``sample(batch_size, horizon=K)`` draws only steps ``t`` with ``t + K <= T``, so
``o_{t+K}`` exists in the same episode, and adds ``action_seq`` ``[B, K, A]`` (``a_t..a_{t+K-1}``),
``reward_seq`` ``[B, K]`` (``r_t..r_{t+K-1}``, undiscounted, one column per step) and
``obs_horizon`` (the stack of observation ``t + K``, like ``obs``). The n-step keys keep their
meaning; an episode with fewer than ``K`` transitions contributes nothing.

Padded horizon (action chunking, ``robotrl.agents.bc_chunk``). ``sample(..., horizon=K,
pad=True)`` draws every step, as without a horizon, and pads the windows that run past the
episode's end: ``action_seq`` repeats the episode's last action (as Diffusion Policy pads),
``reward_seq`` is 0 there, ``obs_horizon`` is the episode's last observation, and
``action_seq_mask`` ``[B, K]`` (bool) is True on the real steps ``t + k < T`` only (ACT's
``is_pad``, negated), so a loss can ignore the padding.

Sequences (world models, ``robotrl.agents.dreamer``). ``sample_sequences(batch_size, length=L)``
draws windows of ``L`` consecutive observations of one episode (slots ``s .. s+L-1``, the
episode's last observation included) and returns them in the world-model convention, where
everything at index ``t`` describes how observation ``t`` was reached: ``obs`` ``[B, L, ...]``
(stacks as in ``sample``), extras ``[B, L, ...]``, ``prev_action`` ``[B, L, A]`` (the action
taken from observation ``t - 1``; zeros where ``is_first``), ``reward`` ``[B, L]`` (the reward
of that action; 0 where ``is_first``), ``is_first`` (observation ``t`` begins its episode) and
``is_terminal`` (it ends its episode by termination; truncation is not terminal). Windows never
span two episodes, so ``is_first`` can only be True at ``t = 0``; DreamerV3's replay lets
chunks run on into the next episode, which only matters for episodes shorter than ``L``: here
those are not sampled, and a buffer without an episode of ``L`` observations is an error.

Extensions this layout is meant to take without a rewrite:
- RLPD (50/50 demo/online batches): a small wrapper samples ``B/2`` from two ``EpisodicReplay``
  instances and concatenates the dicts; both return the same keys and dtypes.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Obs = dict[str, np.ndarray]
Episode = dict[str, np.ndarray]

EPISODE_FILE = re.compile(r"^episode_(\d+)_len(\d+)\.npz$")
AFTER_CHECKPOINT_DIR = "after_checkpoint"
_RESERVED_KEYS = frozenset({"frames", "action", "reward", "terminated"})


def episode_filename(index: int, length: int) -> str:
    """Disk name of finished episode ``index`` with ``length`` transitions."""
    return f"episode_{index:06d}_len{length}.npz"


@dataclass(frozen=True)
class _Placement:
    """Where an episode lives in the ring: its ``length + 1`` frames fill ``[start, end)``."""

    index: int
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length + 1


@dataclass
class _Storage:
    """Per-slot arrays. Allocated with ``np.empty`` so untouched capacity costs no memory."""

    frames: np.ndarray  # [capacity, ..., C, H, W] uint8: newest frame of each observation
    action: np.ndarray  # [capacity, A] float32: action taken from this slot's observation
    reward: np.ndarray  # [capacity] float32
    episode_start: np.ndarray  # [capacity] int64: slot of the episode's first observation
    episode_last: np.ndarray  # [capacity] int64: slot of its last observation (start + T)
    terminated: np.ndarray  # [capacity] bool: the slot's episode ended by termination
    extras: dict[str, np.ndarray]  # non-pixel observations per slot, e.g. proprio [capacity, P]

    @classmethod
    def allocate(cls, capacity: int, episode: Episode) -> _Storage:
        extras = {
            key: np.empty((capacity, *value.shape[1:]), value.dtype)
            for key, value in episode.items()
            if key not in _RESERVED_KEYS
        }
        return cls(
            frames=np.empty((capacity, *episode["frames"].shape[1:]), np.uint8),
            action=np.empty((capacity, *episode["action"].shape[1:]), np.float32),
            reward=np.empty(capacity, np.float32),
            episode_start=np.empty(capacity, np.int64),
            episode_last=np.empty(capacity, np.int64),
            terminated=np.empty(capacity, bool),
            extras=extras,
        )

    def arrays(self) -> list[np.ndarray]:
        per_slot = [self.frames, self.action, self.reward, self.episode_start, self.episode_last]
        return [*per_slot, self.terminated, *self.extras.values()]

    def check_compatible(self, episode: Episode) -> None:
        expected = {"frames": self.frames, "action": self.action, **self.extras}
        if set(episode) - {"reward", "terminated"} != set(expected):
            raise ValueError(f"episode keys {sorted(episode)} differ from the buffer's")
        for key, array in expected.items():
            if episode[key].shape[1:] != array.shape[1:]:
                raise ValueError(
                    f"episode {key!r} has per-step shape {episode[key].shape[1:]}, "
                    f"buffer stores {array.shape[1:]}"
                )


class EpisodicReplay:
    """Ring of finished episodes with frame stacks and n-step returns built at sample time.

    ``capacity`` counts frame slots in memory (an episode of T transitions takes T + 1); the
    oldest whole episodes are evicted first. With ``directory`` set, every finished episode is
    written there atomically as it ends, so a crash loses at most the episode in progress.
    """

    def __init__(
        self,
        *,
        capacity: int,
        frame_stack: int,
        nstep: int,
        discount: float,
        directory: Path | None = None,
        seed: int = 0,
    ) -> None:
        if capacity < 2 or frame_stack < 1 or nstep < 1 or not 0.0 <= discount <= 1.0:
            raise ValueError(
                "need capacity >= 2, frame_stack >= 1, nstep >= 1, 0 <= discount <= 1; got "
                f"{capacity=}, {frame_stack=}, {nstep=}, {discount=}"
            )
        self.capacity, self.frame_stack = capacity, frame_stack
        self.nstep, self.discount = nstep, discount
        self.directory = Path(directory) if directory is not None else None
        self._rng = np.random.default_rng(seed)
        self._storage: _Storage | None = None
        self._placements: deque[_Placement] = deque()  # in memory, oldest first
        self._cursor = 0  # first free slot after the newest episode
        self._num_transitions = 0
        self._num_episodes = 0
        # Sampleable slots per horizon, built on first use; cleared whenever episodes change.
        self._valid_slots: dict[int, np.ndarray] = {}
        # Episodes in progress, one per stream (each env of a vector env is a stream).
        self._staged: dict[int, dict[str, list[np.ndarray]]] = {}
        self._channels: int | None = None
        self._directory_checked = False
        #: Called with each collected episode as it ends, before it is stored; returns its
        #: rewards (``robotrl.rewards.relabel``). Episodes added whole (demos) keep theirs.
        self.relabel: Callable[[Episode], np.ndarray] | None = None

    # ---------------------------------------------------------------- adding
    def start_episode(self, obs: Obs, *, stream: int = 0) -> None:
        """Begin an episode from ``env.reset()``'s observation (drops any unfinished episode).

        ``stream`` names one of several episodes collected at once (env ``i`` of a vector env
        uses stream ``i``); each stream's episode is finished, numbered and placed on its own.
        """
        pixels = np.asarray(obs["pixels"])
        if pixels.dtype != np.uint8 or pixels.ndim < 3 or pixels.shape[-3] % self.frame_stack:
            raise ValueError(
                f"pixels must be uint8 [..., C*{self.frame_stack}, H, W], got "
                f"{pixels.dtype} {pixels.shape}"
            )
        self._channels = pixels.shape[-3] // self.frame_stack
        newest = pixels[..., -self._channels :, :, :]
        # Clamping at the episode start is only right if the env repeats its reset frame
        # (Gymnasium's FrameStackObservation pads with zeros by default, for instance).
        if not np.array_equal(pixels, np.concatenate([newest] * self.frame_stack, axis=-3)):
            raise ValueError("reset observation must repeat its first frame over the whole stack")
        staged = {"frames": [newest.copy()], "action": [], "reward": []}
        for key in obs.keys() - {"pixels"}:
            if key in _RESERVED_KEYS:
                raise ValueError(f"observation key {key!r} clashes with a replay field")
            staged[key] = [np.array(obs[key])]
        self._staged[stream] = staged

    def add(
        self,
        action: np.ndarray,
        reward: float,
        next_obs: Obs,
        terminated: bool,
        truncated: bool,
        *,
        stream: int = 0,
    ) -> None:
        """Append one transition to ``stream``; a terminated or truncated episode becomes
        sampleable (``next_obs`` of an episode's last step is its true last observation)."""
        staged = self._staged_stream(stream)
        assert self._channels is not None
        frame = np.array(next_obs["pixels"][..., -self._channels :, :, :])
        extras = {key: np.array(next_obs[key]) for key in staged.keys() - _RESERVED_KEYS}
        action = np.asarray(action, np.float32).reshape(-1)
        self._append(stream, frame, extras, action, np.array(reward, np.float32))
        if terminated or truncated:
            self._finish(self._staged.pop(stream), terminated)

    def start_episodes(
        self,
        obs: Obs,
        *,
        streams: Sequence[int] | np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        """:meth:`start_episode` for the worlds of a batched observation (``[N, ...]`` arrays):
        world ``i`` begins stream ``streams[i]`` (default ``i``), where ``mask[i]`` (default all).
        """
        num_worlds = _batch_size(obs)
        for index, stream in self._batch_streams(num_worlds, streams):
            if mask is None or mask[index]:
                self.start_episode({key: value[index] for key, value in obs.items()}, stream=stream)

    def add_batch(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: Obs,
        terminated: np.ndarray,
        truncated: np.ndarray,
        *,
        streams: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """:meth:`add` for N worlds at once, world ``i`` to stream ``streams[i]`` (default ``i``).

        ``action [N, A]``, ``reward``/``terminated``/``truncated`` ``[N]`` and ``next_obs``
        (``[N, ...]`` arrays; a finished world's row is its episode's true last observation).
        Every stream must have an episode in progress; nothing is stored if one has none. The
        batch is copied once and each world keeps views of its rows, which store exactly what
        N calls of :meth:`add` would.
        """
        num_worlds = len(reward)
        pairs = self._batch_streams(num_worlds, streams)
        staged = [self._staged_stream(stream) for _, stream in pairs]
        if _batch_size(next_obs) != num_worlds or not (
            len(action) == len(terminated) == len(truncated) == num_worlds
        ):
            raise ValueError(f"add_batch needs [{num_worlds}, ...] arrays for {num_worlds} worlds")
        assert self._channels is not None
        frames = np.array(next_obs["pixels"][..., -self._channels :, :, :])
        extras = {key: np.array(next_obs[key]) for key in staged[0].keys() - _RESERVED_KEYS}
        actions = np.asarray(action, np.float32).reshape(num_worlds, -1)
        rewards = np.asarray(reward, np.float32)
        for index, stream in pairs:
            row_extras = {key: value[index] for key, value in extras.items()}
            self._append(stream, frames[index], row_extras, actions[index], rewards[index])
            if terminated[index] or truncated[index]:
                self._finish(self._staged.pop(stream), bool(terminated[index]))

    def _staged_stream(self, stream: int) -> dict[str, list[np.ndarray]]:
        staged = self._staged.get(stream)
        if staged is None or self._channels is None:
            raise RuntimeError(f"call start_episode(stream={stream}) before add(stream={stream})")
        return staged

    def _batch_streams(
        self, num_worlds: int, streams: Sequence[int] | np.ndarray | None
    ) -> list[tuple[int, int]]:
        """(world, stream) pairs of a batch, checked: one distinct stream per world."""
        chosen = list(range(num_worlds)) if streams is None else [int(s) for s in streams]
        if len(chosen) != num_worlds or len(set(chosen)) != num_worlds:
            raise ValueError(f"need {num_worlds} distinct streams, one per world, got {streams!r}")
        return list(enumerate(chosen))

    def _append(
        self,
        stream: int,
        frame: np.ndarray,
        extras: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
    ) -> None:
        staged = self._staged[stream]
        staged["frames"].append(frame)
        for key, value in extras.items():
            staged[key].append(value)
        staged["action"].append(action)
        staged["reward"].append(reward)
        if len(staged["frames"]) > self.capacity:
            raise ValueError(f"episode is longer than capacity={self.capacity} frame slots")

    def add_episode(self, episode: Episode) -> None:
        """Append one finished episode in the on-disk format (``load_episode``'s dict: ``frames``
        ``[T+1, ..., C, H, W]`` uint8 newest frames, ``action [T, A]``, ``reward [T]``,
        ``terminated`` and per-step extras ``[T+1, ...]``), e.g. a demonstration."""
        lengths = (len(episode["frames"]), len(episode["action"]), len(episode["reward"]))
        if episode["frames"].dtype != np.uint8 or not lengths[0] - 1 == lengths[1] == lengths[2]:
            raise ValueError(
                f"not an episode: uint8 frames [T+1], T actions and rewards: {lengths}"
            )
        channels = episode["frames"].shape[-3]
        if self._channels is not None and channels != self._channels:
            raise ValueError(f"episode frames have {channels} channels, buffer {self._channels}")
        self._channels = channels
        self._store({key: np.asarray(value) for key, value in episode.items()})

    def _finish(self, staged: dict[str, list[np.ndarray]], terminated: bool) -> None:
        episode = {key: np.stack(values) for key, values in staged.items()}
        episode["terminated"] = np.array(bool(terminated))
        if self.relabel is not None:
            episode["reward"] = np.asarray(self.relabel(episode), dtype=np.float32)
        self._store(episode)

    def _store(self, episode: Episode) -> None:
        if self._storage is not None:  # before it reaches disk or evicts anything
            self._storage.check_compatible(episode)
        index = self._num_episodes
        if self.directory is not None:
            self._save(index, episode)  # before counting it, so counters never run ahead of disk
        self._num_episodes += 1
        placement = self._place(index, len(episode["reward"]))
        self._write(placement, episode)

    # ---------------------------------------------------------------- ring allocation
    def _place(self, index: int, length: int) -> _Placement:
        """Reserve contiguous slots for an episode, evicting the oldest episodes in the way.

        Touches only metadata, so ``restore`` can replay the allocation from file names alone.
        """
        if length + 1 > self.capacity:
            raise ValueError(f"episode {index} has {length + 1} frames > capacity={self.capacity}")
        start = self._cursor
        if start + length + 1 > self.capacity:
            # The episodes between the cursor and the array's end are the oldest; evict them
            # before wrapping so that eviction stays oldest-first.
            while self._placements and self._placements[0].start >= start:
                self._evict_oldest()
            start = 0
        # Episodes at or after `start` are the oldest, in memory order: evict those overlapping.
        while self._placements and start <= self._placements[0].start < start + length + 1:
            self._evict_oldest()
        placement = _Placement(index, start, length)
        self._placements.append(placement)
        self._cursor = placement.end
        self._num_transitions += length
        self._valid_slots.clear()
        return placement

    def _evict_oldest(self) -> None:
        self._num_transitions -= self._placements.popleft().length
        self._valid_slots.clear()

    def _write(self, placement: _Placement, episode: Episode) -> None:
        if self._storage is None:
            self._storage = _Storage.allocate(self.capacity, episode)
        storage = self._storage
        storage.check_compatible(episode)
        start, end, last = placement.start, placement.end, placement.end - 1
        storage.frames[start:end] = episode["frames"]
        storage.action[start:last] = episode["action"]
        storage.reward[start:last] = episode["reward"]
        storage.episode_start[start:end] = start
        storage.episode_last[start:end] = last
        storage.terminated[start:end] = bool(episode["terminated"])
        for key, array in storage.extras.items():
            array[start:end] = episode[key]

    # ---------------------------------------------------------------- sampling
    def __len__(self) -> int:
        """Number of sampleable transitions (finished episodes in memory)."""
        return self._num_transitions

    @property
    def num_episodes(self) -> int:
        """Finished episodes added over the buffer's life (= episode files on disk)."""
        return self._num_episodes

    @property
    def nbytes(self) -> int:
        """Bytes reserved by storage and the sample-index cache (pages commit once written)."""
        arrays = [] if self._storage is None else self._storage.arrays()
        arrays += list(self._valid_slots.values())
        return sum(array.nbytes for array in arrays)

    def sample(
        self, batch_size: int, *, horizon: int = 0, pad: bool = False
    ) -> dict[str, np.ndarray]:
        """Uniform batch: obs, action, reward, discount, next_obs (+ extras and ``next_<key>``).

        With ``horizon=K > 0`` only steps ``t`` whose episode reaches ``o_{t+K}`` are drawn, and
        the batch also holds ``action_seq``, ``reward_seq`` and ``obs_horizon`` (module docstring).
        With ``pad=True`` as well, every step is drawn, windows past the episode end are padded
        and ``action_seq_mask`` marks the real steps (module docstring).
        """
        if horizon < 0:
            raise ValueError(f"horizon must be >= 0, got {horizon}")
        if pad and horizon == 0:
            raise ValueError("pad=True needs a horizon > 0")
        if self._num_transitions == 0 or self._storage is None:
            raise ValueError("no finished episode to sample from")
        # A slot t is valid when t + skip <= last: the n-step window (K = 0) and a padded window
        # need one transition after it, an unpadded horizon K needs o_{t+K} in the episode.
        skip = 1 if pad else max(horizon, 1)
        valid = self._valid_slots.get(skip)
        if valid is None:
            valid = np.concatenate([np.arange(p.start, p.end - skip) for p in self._placements])
            self._valid_slots[skip] = valid
        if len(valid) == 0:
            raise ValueError(
                f"no step can be sampled with horizon={horizon}: no episode in the buffer has "
                f"{horizon} or more transitions"
            )
        slots = valid[self._rng.integers(len(valid), size=batch_size)]
        batch = self._nstep_batch(slots)
        if horizon > 0:
            batch |= self._horizon_batch(slots, horizon, pad)
        return batch

    def sample_sequences(self, batch_size: int, length: int) -> dict[str, np.ndarray]:
        """Uniform windows of ``length`` observations of one episode (module docstring)."""
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if self._num_transitions == 0 or self._storage is None:
            raise ValueError("no finished episode to sample from")
        storage = self._storage
        # Cached apart from `sample`'s horizons under a negative key: a window may start at any
        # slot s with s + length - 1 <= last.
        key = -length
        valid = self._valid_slots.get(key)
        if valid is None:
            valid = np.concatenate(
                [np.arange(p.start, p.end - length + 1) for p in self._placements]
            )
            self._valid_slots[key] = valid
        if len(valid) == 0:
            longest = max(p.length for p in self._placements) + 1
            raise ValueError(
                f"no window of {length} observations fits in an episode: the longest episode in "
                f"the buffer has {longest} observations"
            )
        starts = valid[self._rng.integers(len(valid), size=batch_size)]
        window = starts[:, None] + np.arange(length)  # [B, L] slots
        is_first = window == storage.episode_start[window]
        previous = np.maximum(window - 1, 0)
        prev_action = np.where(is_first[..., None], 0.0, storage.action[previous])
        reward = np.where(is_first, 0.0, storage.reward[previous])
        is_terminal = storage.terminated[window] & (window == storage.episode_last[window])
        frames = self._stack(window.reshape(-1))
        batch = {
            "obs": frames.reshape(*window.shape, *frames.shape[1:]),
            "prev_action": prev_action.astype(np.float32),
            "reward": reward.astype(np.float32),
            "is_first": is_first,
            "is_terminal": is_terminal,
        }
        for name, array in storage.extras.items():
            batch[name] = array[window]
        return batch

    def _nstep_batch(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        storage = self._storage
        assert storage is not None
        last = storage.episode_last[slots]
        steps = np.minimum(self.nstep, last - slots)  # n' >= 1: a valid slot is before `last`
        offsets = np.arange(self.nstep)
        # Clamp so the gather never leaves the episode; the mask zeroes the clamped terms.
        reward_slots = np.minimum(slots[:, None] + offsets, last[:, None] - 1)
        weights = np.where(offsets < steps[:, None], self.discount ** offsets.astype(np.float64), 0)
        reward = (storage.reward[reward_slots] * weights).sum(axis=1)
        next_slots = slots + steps
        ends_in_terminal = storage.terminated[slots] & (next_slots == last)
        discount = np.where(ends_in_terminal, 0.0, self.discount ** steps.astype(np.float64))
        batch = {
            "obs": self._stack(slots),
            "action": storage.action[slots],
            "reward": reward.astype(np.float32)[:, None],
            "discount": discount.astype(np.float32)[:, None],
            "next_obs": self._stack(next_slots),
        }
        for key, array in storage.extras.items():
            batch[key] = array[slots]
            batch[f"next_{key}"] = array[next_slots]
        return batch

    def _horizon_batch(self, slots: np.ndarray, horizon: int, pad: bool) -> dict[str, np.ndarray]:
        storage = self._storage
        assert storage is not None
        window = slots[:, None] + np.arange(horizon)  # inside the episode unless padded
        if not pad:
            return {
                "action_seq": storage.action[window],
                "reward_seq": storage.reward[window],
                "obs_horizon": self._stack(slots + horizon),
            }
        last = storage.episode_last[slots]  # slot of o_T: actions exist up to last - 1
        mask = window < last[:, None]
        clamped = np.minimum(window, last[:, None] - 1)
        return {
            "action_seq": storage.action[clamped],
            "reward_seq": np.where(mask, storage.reward[clamped], 0.0).astype(np.float32),
            "obs_horizon": self._stack(np.minimum(slots + horizon, last)),
            "action_seq_mask": mask,
        }

    def _stack(self, slots: np.ndarray) -> np.ndarray:
        """Frame stacks ``[B, ..., C*stack, H, W]`` ending at ``slots``, oldest frame first."""
        storage = self._storage
        assert storage is not None
        frame_slots = slots[:, None] + np.arange(1 - self.frame_stack, 1)
        frame_slots = np.maximum(frame_slots, storage.episode_start[slots][:, None])
        frames = storage.frames[frame_slots]  # [B, stack, ..., C, H, W]
        frames = np.moveaxis(frames, 1, -4)  # stack next to channels (a no-op for one camera)
        return frames.reshape(*frames.shape[:-4], -1, *frames.shape[-2:])

    def rng_state(self) -> dict[str, Any]:
        """Sampling RNG state as a JSON-serialisable dict, for checkpoints."""
        return dict(self._rng.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore the sampling RNG from :meth:`rng_state`'s dict."""
        self._rng.bit_generator.state = state

    # ---------------------------------------------------------------- disk
    def _save(self, index: int, episode: Episode) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._directory_checked:
            # Scanned once, not per episode: overwriting files of another run would lose data.
            later = [p for i, p in self._episode_files().items() if i >= index]
            if later:
                raise FileExistsError(
                    f"{later[0]} already exists; call restore() to resume from "
                    f"{self.directory} or use an empty directory"
                )
            self._directory_checked = True
        path = self.directory / episode_filename(index, len(episode["reward"]))
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **episode)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _episode_files(self) -> dict[int, Path]:
        assert self.directory is not None
        files: dict[int, Path] = {}
        for path in sorted(self.directory.glob("episode_*.npz")):
            match = EPISODE_FILE.match(path.name)
            if match is None:
                continue
            index = int(match.group(1))
            if index in files:
                raise ValueError(f"two files for episode {index}: {files[index]} and {path}")
            files[index] = path
        return files

    def restore(self, num_episodes: int) -> None:
        """Reload episodes ``0..num_episodes-1`` from ``directory`` after a crash.

        Only the newest episodes that fit ``capacity`` are read into memory, placed exactly where
        the uninterrupted buffer had them. Episode files written after the checkpoint are moved
        (never deleted) to ``directory/after_checkpoint/`` so counters and data agree.
        """
        if self.directory is None:
            raise ValueError("restore() needs the buffer's directory")
        files = self._episode_files() if self.directory.is_dir() else {}
        for index in range(num_episodes):
            if index not in files:
                name = f"episode_{index:06d}_len*.npz"
                raise FileNotFoundError(f"replay episode file {self.directory / name} is missing")
        later = [path for index, path in files.items() if index >= num_episodes]
        self._set_aside(later + sorted(self.directory.glob(".episode_*.tmp")))

        self._placements.clear()
        self._cursor = self._num_transitions = 0
        self._valid_slots.clear()
        self._staged.clear()
        for index in range(num_episodes):
            match = EPISODE_FILE.match(files[index].name)
            assert match is not None
            self._place(index, int(match.group(2)))
        for placement in self._placements:
            episode = load_episode(files[placement.index])
            if self._channels is None:
                self._channels = episode["frames"].shape[-3]
            self._write(placement, episode)
        self._num_episodes = num_episodes
        self._directory_checked = True

    def _set_aside(self, paths: list[Path]) -> None:
        assert self.directory is not None
        if not paths:
            return
        aside = self.directory / AFTER_CHECKPOINT_DIR
        aside.mkdir(exist_ok=True)
        for path in paths:
            target, copy = aside / path.name, 1
            while target.exists():  # a second crash may set aside the same name again
                target, copy = aside / f"{path.name}.{copy}", copy + 1
            os.replace(path, target)


def _batch_size(obs: Obs) -> int:
    sizes = {len(value) for value in obs.values()}
    if len(sizes) != 1:
        raise ValueError(f"batched observation arrays differ in length: {sorted(sizes)}")
    return sizes.pop()


def load_episode(path: Path) -> Episode:
    """Read one episode file (never unpickling); a damaged file raises ValueError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            episode = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"replay episode file {path} is corrupt: {error}") from error
    missing = _RESERVED_KEYS - episode.keys()
    if missing:
        raise ValueError(f"replay episode file {path} is corrupt: missing {sorted(missing)}")
    match = EPISODE_FILE.match(path.name)
    length = int(match.group(2)) if match else len(episode["reward"])
    lengths = (len(episode["frames"]), len(episode["action"]), len(episode["reward"]))
    if episode["frames"].dtype != np.uint8 or lengths != (length + 1, length, length):
        raise ValueError(f"replay episode file {path} is corrupt: array lengths do not match")
    return episode
