"""The learning process: replays + RLPD agent; learns from delivered episodes and serves
versioned weights (see :mod:`robotrl_real.finetune`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robotrl.agents.rlpd import RLPDAgent, RLPDConfig
from robotrl.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from robotrl.demos import demo_files
from robotrl.replay import EPISODE_FILE, EpisodicReplay, episode_filename, load_episode
from robotrl_real.finetune.common import (
    ACTION_DIM,
    KEEP_CHECKPOINTS,
    PROPRIO_DIM,
    Episode,
    _agent_config,
)

logger = logging.getLogger(__name__)


@dataclass
class LearnerConfig:
    """What the learner needs besides the agent's hyper-parameters."""

    obs_shape: tuple[int, ...] = (2, 3, 64, 64)  # RobotEnv pixels [V, 3, H, W]
    batch_size: int = 64
    replay_capacity: int = 50_000  # frame slots of the online replay
    demo_capacity: int = 20_000  # frame slots for interventions added to the demos
    discount: float = 0.97
    publish_every: int = 1  # publish the acting weights every n updates
    checkpoint_every: int = 100  # updates; 0: only on save()
    seed: int = 0

    def __post_init__(self) -> None:
        self.obs_shape = tuple(self.obs_shape)
        if self.batch_size < 2 or self.publish_every < 1 or self.checkpoint_every < 0:
            raise ValueError("need batch_size >= 2, publish_every >= 1, checkpoint_every >= 0")


def intervention_segments(intervention: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` step ranges of the contiguous True runs of ``intervention``."""
    flags = np.concatenate([[False], np.asarray(intervention, bool), [False]])
    edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def replay_episode(
    episode: Mapping[str, np.ndarray], start: int = 0, end: int | None = None
) -> Episode:
    """Steps ``[start, end)`` of an actor episode in the replay's format (frames ``[T+1]``)."""
    length = len(episode["action"])
    end = length if end is None else end
    terminated = bool(episode["terminated"]) and end == length
    return {
        "frames": np.asarray(episode["pixels"][start : end + 1], np.uint8),
        "proprio": np.asarray(episode["proprio"][start : end + 1], np.float32),
        "action": np.asarray(episode["action"][start:end], np.float32),
        "reward": np.asarray(episode["reward"][start:end], np.float32),
        "terminated": np.array(terminated),
    }


class Learner:
    """Replays + RLPD agent; learns from delivered episodes and serves versioned weights."""

    def __init__(
        self,
        agent_config: RLPDConfig | Mapping[str, Any],
        config: LearnerConfig | Mapping[str, Any] | None = None,
        *,
        demos: str | Path | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        torch.set_num_threads(1)  # leave cores to the control loop and the other process
        self.agent_config = _agent_config(agent_config)
        self.config = _learner_config(config)
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.agent = RLPDAgent(
            self.agent_config,
            obs_shape=cfg.obs_shape,
            action_dim=ACTION_DIM,
            device="cuda" if torch.cuda.is_available() else "cpu",
            proprio_dim=PROPRIO_DIM,
        )
        self.run_dir = Path(run_dir) if run_dir is not None else None
        replay_dir = self.run_dir / "replay" if self.run_dir is not None else None
        self.online = EpisodicReplay(
            capacity=cfg.replay_capacity,
            frame_stack=1,
            nstep=1,
            discount=cfg.discount,
            directory=replay_dir,
            seed=cfg.seed,
        )
        demo_dir = demos if demos is not None else self.agent_config.demos
        if demo_dir:
            self.demos = _demo_replay(Path(demo_dir), cfg)
        else:
            self.demos = _empty_replay(cfg.demo_capacity, cfg)
        self.agent.attach_demos(self.demos)
        self.intervention_dir = self.run_dir / "interventions" if self.run_dir else None
        self.intervention_episodes = 0
        self.lock = threading.Lock()
        self.updates = 0
        self.version = 0
        self.weights = self.agent.get_weights()
        self.episodes_received = 0
        self.intervention_steps = 0
        self.received_versions: list[np.ndarray] = []  # policy_version per step, per episode
        self.last_metrics: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.run_dir is not None:
            self._resume()

    def _resume(self) -> None:
        """Continue a learner that ran in ``run_dir`` before (a restart after a crash or kill):
        the checkpoint (weights, version), the online replay and the intervention demos."""
        assert self.run_dir is not None and self.intervention_dir is not None
        checkpoint, skipped = latest_checkpoint(self.run_dir / "checkpoints")
        for note in skipped:
            logger.warning("skipping unreadable learner checkpoint: %s", note)
        if checkpoint is not None:
            self.load(checkpoint.path)
        if self.online.directory is not None and self.online.directory.is_dir():
            count = sum(1 for p in self.online.directory.iterdir() if EPISODE_FILE.match(p.name))
            if count:
                self.online.restore(count)
        if self.intervention_dir.is_dir():
            for path in sorted(self.intervention_dir.glob("episode_*.npz")):
                if EPISODE_FILE.match(path.name):
                    self.demos.add_episode(load_episode(path))
                    self.intervention_episodes += 1

    def _keep_intervention(self, segment: Episode) -> None:
        self.demos.add_episode(segment)
        if self.intervention_dir is not None:
            self.intervention_dir.mkdir(parents=True, exist_ok=True)
            name = episode_filename(self.intervention_episodes, len(segment["reward"]))
            tmp = self.intervention_dir / f".{name}.tmp"
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **segment)
            tmp.replace(self.intervention_dir / name)
        self.intervention_episodes += 1

    # -- data in ----------------------------------------------------------------------------------

    def add_episode(self, episode: Mapping[str, np.ndarray]) -> int:
        """Store one actor episode (online replay; its interventions also as demos)."""
        check_episode(episode)
        with self.lock:
            self.online.add_episode(replay_episode(episode))
            for start, end in intervention_segments(episode["intervention"]):
                self._keep_intervention(replay_episode(episode, start, end))
                self.intervention_steps += end - start
            self.episodes_received += 1
            self.received_versions.append(np.asarray(episode["policy_version"]).copy())
            return self.episodes_received

    # -- learning ---------------------------------------------------------------------------------

    def ready(self) -> bool:
        return len(self.online) > 0 and len(self.demos) > 0

    def train(self, updates: int = 1) -> dict[str, float]:
        """Up to ``updates`` RLPD updates (none until both replays hold data)."""
        metrics: dict[str, float] = {}
        for _ in range(updates):
            with self.lock:
                if not self.ready():
                    break
                batch = self.agent.sample_batch(self.online, self.config.batch_size)
                metrics = self.agent.update(batch, self.updates)
                self.updates += 1
                if self.updates % self.config.publish_every == 0:
                    self.weights = self.agent.get_weights()
                    self.version += 1
                self.last_metrics = metrics
            every = self.config.checkpoint_every
            if every and self.run_dir is not None and self.updates % every == 0:
                self.save()
        return metrics

    def start(self) -> None:
        """Train continuously on a background thread (a Ray learner's normal state)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="learner", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.ready():
                self.train(1)
            else:
                self._stop.wait(0.05)

    # -- data out ---------------------------------------------------------------------------------

    def get_weights(self, have_version: int = -1) -> tuple[int, dict[str, Any] | None]:
        """``(version, weights)``; weights ``None`` when ``have_version`` is already current."""
        with self.lock:
            if have_version >= self.version:
                return self.version, None
            return self.version, self.weights

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "updates": self.updates,
                "version": self.version,
                "episodes": self.episodes_received,
                "online_transitions": len(self.online),
                "demo_transitions": len(self.demos),
                "intervention_steps": self.intervention_steps,
                "received_versions": [v.tolist() for v in self.received_versions],
                "metrics": dict(self.last_metrics),
            }

    def sample_demos(self, count: int) -> dict[str, np.ndarray]:
        with self.lock:
            return self.demos.sample(count)

    def save(self, directory: str | Path | None = None) -> Path:
        """Agent state, update count and version as a checkpoint in ``directory`` (default
        ``run_dir/checkpoints``), named by the update count; the newest are kept."""
        if directory is None:
            if self.run_dir is None:
                raise ValueError("save() needs a directory when the learner has no run_dir")
            directory = self.run_dir / "checkpoints"
        directory = Path(directory)
        with self.lock:
            state = {"agent": self.agent.state_dict()}
            meta = {
                "updates": self.updates,
                "version": self.version,
                "agent_config": asdict(self.agent_config),
            }
            path = save_checkpoint(directory, self.updates, state, meta)
        prune_checkpoints(directory, KEEP_CHECKPOINTS)
        return path

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save`."""
        checkpoint = load_checkpoint(path)
        with self.lock:
            self.agent.load_state_dict(checkpoint.state["agent"])
            self.updates = int(checkpoint.meta["updates"])
            self.version = int(checkpoint.meta["version"])
            self.weights = self.agent.get_weights()


def _empty_replay(capacity: int, cfg: LearnerConfig) -> EpisodicReplay:
    return EpisodicReplay(
        capacity=capacity, frame_stack=1, nstep=1, discount=cfg.discount, seed=cfg.seed + 1
    )


def _demo_replay(directory: Path, cfg: LearnerConfig) -> EpisodicReplay:
    """The demo files of ``directory``, with room for ``demo_capacity`` more slots
    (interventions)."""
    files = demo_files(directory)
    slots = 0
    for path in files:
        match = EPISODE_FILE.match(path.name)
        assert match is not None  # demo_files only lists matching names
        slots += int(match.group(2)) + 1
    replay = _empty_replay(slots + cfg.demo_capacity, cfg)
    for path in files:
        episode = load_episode(path)
        if episode["frames"].shape[1:] != cfg.obs_shape:
            raise ValueError(
                f"demo {path} has frames {episode['frames'].shape[1:]}, but the robot env "
                f"observes pixels {cfg.obs_shape}; record demos with the same cameras and size"
            )
        replay.add_episode(episode)
    return replay


def check_episode(episode: Mapping[str, np.ndarray]) -> None:
    """An actor episode: ``pixels``/``proprio`` ``[T+1]``; ``action``, ``reward``,
    ``intervention``, ``policy_version`` ``[T]``; ``terminated``."""
    needed = ("pixels", "proprio", "action", "reward", "intervention", "policy_version")
    missing = [key for key in (*needed, "terminated") if key not in episode]
    if missing:
        raise ValueError(f"episode lacks {missing}")
    steps = len(episode["action"])
    lengths = {key: len(episode[key]) for key in needed}
    expected = {key: steps + 1 if key in ("pixels", "proprio") else steps for key in needed}
    if steps < 1 or lengths != expected:
        raise ValueError(f"episode arrays have lengths {lengths}, expected {expected}")


def _learner_config(value: LearnerConfig | Mapping[str, Any] | None) -> LearnerConfig:
    if value is None:
        return LearnerConfig()
    return value if isinstance(value, LearnerConfig) else LearnerConfig(**dict(value))
