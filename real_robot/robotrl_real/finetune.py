"""HIL-SERL-style fine-tuning on the arm: an acting process, a learning process, and the gate.

Luo et al. (2024), "Precise and Dexterous Robotic Manipulation via Human-in-the-Loop
Reinforcement Learning": an RLPD agent (:mod:`robotrl.agents.rlpd`) learns online from a few
demonstrations, a success classifier gives the reward, and a person takes over with a teleop
device when the policy goes wrong; the corrections become demonstrations.

**Processes.** :class:`PolicyActor` runs :class:`~robotrl_real.env.RobotEnv` episodes next to the
driver (the robot PC); :class:`Learner` holds the replays and the agent and updates continuously
(a GPU server). Both run as Ray actors (``ray.remote(...)``, :func:`run_finetune`), so they can
live on different machines of one Ray cluster; both are plain classes that tests also drive
in-process.

**Actor.** Each episode it (1) at the episode boundary, and only there, asks the learner for
weights newer than its own version and swaps them in; (2) steps the env with the current policy,
tagging every transition with the policy version it was acted with and with
``info["intervention"]``, storing ``info["executed_action"]`` (the teleop's action during a
takeover) as the action; (3) queues the finished episode and delivers the queue to the learner.
The learner is found by name (``ray.get_actor``) and looked up again after any failure; calls
to it time out. A dead learner therefore never reaches the control loop: the actor keeps acting
with its last weights while episodes pile up in its queue (bounded, oldest dropped first), and
delivers them when a learner with the same name is back. Control safety does not depend on any
of this: the driver's safety layer and watchdog hold the arm on their own.

**Learner.** :meth:`Learner.add_episode` puts an episode into the online replay, and each
contiguous run of intervention steps, as its own episode, into the demo replay too (HIL-SERL
stores interventions in both buffers); a run ending mid-episode is cut off there (it bootstraps,
like a truncation). :meth:`Learner.train` makes RLPD updates (symmetric demo/online batches,
``utd`` critic updates per call) once both replays hold data, and publishes the acting weights
every ``publish_every`` updates with an increasing version. As a Ray actor a background thread
trains continuously (:meth:`Learner.start`) while episodes and weight requests come in.

**Reward.** Either the success classifier (HIL-SERL: reward 1 and termination on the first frame
it calls a success, :class:`ClassifierReward`), or any ``reward_fn(obs) -> (reward, success)``,
such as :class:`SuccessReward` around the sim twin's reach target.

**The gate.** Online RL with a classifier that calls failures successes teaches the policy to
fool it. :func:`check_classifier_gate` measures the false-positive rate on held-out labelled
frames (:mod:`robotrl_real.labeling` writes them next to the classifier) and refuses to start
above ``max_fpr`` (2%).

**CLI.** ``robotrl-finetune`` (argparse, :func:`main`; ``--help`` lists the options) points at a
running driver (``--namespace``, ``--domain-id``), a demo directory, a classifier directory and
a run directory, where it writes checkpoints (``checkpoints/step_<updates>``: safetensors +
JSON, as every robotrl checkpoint; loading never unpickles code), the online replay, and one MCAP
recording per episode (``recordings/``, :class:`~robotrl_real.recording.EpisodeRecorder`).

Departures from HIL-SERL: the learner serves weights when asked at episode boundaries instead of
pushing them over a gRPC stream (the effect on the actor is the same: weights change only between
episodes), and the encoder is trained from scratch (see :mod:`robotrl.agents.rlpd`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
from robotrl.rewards.classifier import LabelledFrames, SuccessClassifier
from robotrl_real.env import ReachReward, RewardFn, RobotEnv, RobotEnvConfig
from robotrl_real.labeling import load_labelled, teleop_episode
from robotrl_real.teleop import TeleopPublisher

logger = logging.getLogger(__name__)

Episode = dict[str, np.ndarray]
PROPRIO_DIM = 4
ACTION_DIM = 4
DEFAULT_LEARNER_NAME = "robotrl_learner"
DEFAULT_RAY_NAMESPACE = "robotrl"
#: Learner checkpoints kept in ``run_dir/checkpoints``.
KEEP_CHECKPOINTS = 2

# ------------------------------------------------------------------------------------------------
# the classifier gate


class ClassifierGateError(RuntimeError):
    """The success classifier is not trustworthy enough to start online RL."""


def check_classifier_gate(
    classifier: SuccessClassifier,
    held_out: LabelledFrames,
    *,
    max_fpr: float = 0.02,
    min_negatives: int = 50,
) -> dict[str, float]:
    """Measure ``classifier`` on ``held_out`` frames; raise :class:`ClassifierGateError` unless
    its false-positive rate is at most ``max_fpr``. Returns :meth:`SuccessClassifier.report`."""
    negatives = int((~held_out.labels).sum())
    if negatives < min_negatives:
        raise ClassifierGateError(
            f"the held-out set has {negatives} non-success frames; at least {min_negatives} are "
            f"needed to measure a false-positive rate of {max_fpr:.0%}. Label more negative and "
            "near-miss frames (robotrl_real.labeling.collect_labelled_frames)."
        )
    metrics = classifier.report(held_out)
    if not metrics["fpr"] <= max_fpr:
        raise ClassifierGateError(
            f"refusing to start online RL: the success classifier's false-positive rate on "
            f"{negatives} held-out non-success frames is {metrics['fpr']:.1%} "
            f"(near-misses {metrics['near_miss_fpr']:.1%}), above the {max_fpr:.0%} limit; the "
            "policy would learn to trigger false successes. Label more near-miss and negative "
            "frames (robotrl_real.labeling), retrain with SuccessClassifier.fit(target_fpr=...) "
            "and check report() again."
        )
    return metrics


def gated_classifier_reward(
    classifier_dir: str | Path, held_out: str | Path | None = None, *, max_fpr: float = 0.02
) -> tuple[ClassifierReward, dict[str, float]]:
    """The classifier reward of ``classifier_dir`` after :func:`check_classifier_gate` on its
    held-out frames (default ``<classifier_dir>/held_out.npz``)."""
    path = Path(held_out) if held_out else Path(classifier_dir) / "held_out.npz"
    if not path.is_file():
        raise ClassifierGateError(
            f"no held-out labelled frames at {path}: the gate needs them to measure the "
            "classifier's false-positive rate (robotrl_real.labeling.train_and_save writes them)"
        )
    reward = ClassifierReward(classifier_dir)
    metrics = check_classifier_gate(reward.classifier, load_labelled(path), max_fpr=max_fpr)
    return reward, metrics


# ------------------------------------------------------------------------------------------------
# rewards


@dataclass
class SuccessReward:
    """Sparse terminal reward from a success predicate: 1 on success, else 0 (sim twin)."""

    success: RewardFn  # e.g. ReachReward(target); only its success flag is used

    def __call__(self, obs: Mapping[str, np.ndarray]) -> tuple[float, bool]:
        _, success = self.success(dict(obs))
        return float(success), bool(success)


class ClassifierReward:
    """HIL-SERL's reward: 1 where the success classifier fires on camera ``camera``, else 0."""

    def __init__(self, directory: str | Path, camera: int = 0) -> None:
        self.directory = str(directory)
        self.camera = camera
        self.classifier = SuccessClassifier.load(directory)

    def __call__(self, obs: Mapping[str, np.ndarray]) -> tuple[float, bool]:
        frame = obs["pixels"][self.camera][None]
        proprio = obs["proprio"][None] if self.classifier.config.proprio_dim else None
        success = bool(self.classifier.predict(frame, proprio)[0])
        return float(success), success

    def __reduce__(self) -> tuple[Any, ...]:  # ship the path to Ray processes, not the net
        return (ClassifierReward, (self.directory, self.camera))


# ------------------------------------------------------------------------------------------------
# the learner


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


# ------------------------------------------------------------------------------------------------
# the actor


@dataclass
class ActorConfig:
    """Where the driver is, who the learner is, and how the actor behaves."""

    env: RobotEnvConfig = field(default_factory=RobotEnvConfig)
    domain_id: int | None = None
    loopback: bool = False  # DDS on 127.0.0.1 only (tests, one-machine setups)
    learner_name: str = DEFAULT_LEARNER_NAME
    ray_namespace: str = DEFAULT_RAY_NAMESPACE
    learner_timeout: float = 5.0  # s per call to the learner
    max_queue: int = 1000  # episodes kept while the learner is away (oldest dropped)
    terminate_on_success: bool = True
    eval_mode: bool = False  # act with the policy mean (no sampling)
    recordings: str | None = None  # directory for MCAP episode recordings
    seed: int = 0


@dataclass
class EpisodeSummary:
    """What :meth:`PolicyActor.run_episode` reports about one episode."""

    steps: int
    episode_return: float
    success: bool
    interventions: int
    policy_version: int
    delivered: int  # episodes delivered to the learner after this one ended
    queued: int  # episodes still waiting for a learner


class PolicyActor:
    """Runs RobotEnv episodes with the newest weights it got at an episode boundary."""

    def __init__(
        self,
        agent_config: RLPDConfig | Mapping[str, Any],
        config: ActorConfig,
        reward_fn: RewardFn | None = None,
        *,
        use_ray: bool = True,
        learner: Learner | None = None,
    ) -> None:
        torch.set_num_threads(1)
        self.config = config
        self.agent_config = _agent_config(agent_config)
        self.reward_fn = reward_fn
        self.use_ray = use_ray
        self._local_learner = learner
        env_cfg = config.env
        dds = None
        if config.loopback:
            from robotrl_real.node import loopback_config

            dds = loopback_config()
        self.env = RobotEnv(
            env_cfg, reward_fn=reward_fn, domain_id=config.domain_id, dds_config=dds
        )
        obs_shape = (len(env_cfg.cameras), 3, env_cfg.image_size, env_cfg.image_size)
        torch.manual_seed(config.seed)
        self.agent = RLPDAgent(
            self.agent_config,
            obs_shape=obs_shape,
            action_dim=ACTION_DIM,
            device="cpu",
            proprio_dim=PROPRIO_DIM,
        )
        self.agent.train(False)
        self.version = -1  # this process's own initial weights, until the learner's arrive
        self.queue: deque[Episode] = deque(maxlen=config.max_queue)
        self.steps = 0
        self.episodes = 0
        self._handle: Any = None
        self.recorder = None
        if config.recordings:
            from robotrl_real.recording import EpisodeRecorder, RecorderConfig

            self.recorder = EpisodeRecorder(
                Path(config.recordings),
                RecorderConfig(namespace=env_cfg.namespace, cameras=env_cfg.cameras),
            )

    # -- the learner, which may be gone ------------------------------------------------------------

    def _learner_call(self, method: str, *args: Any) -> Any:
        """Call the learner; raises ``ConnectionError`` if it is not there or does not answer."""
        if not self.use_ray:
            if self._local_learner is None:
                raise ConnectionError("no learner")
            return getattr(self._local_learner, method)(*args)
        import ray
        from ray import exceptions

        if self._handle is None:
            try:
                self._handle = ray.get_actor(
                    self.config.learner_name, namespace=self.config.ray_namespace
                )
            except ValueError as error:  # no actor by that name (yet, or any more)
                raise ConnectionError(str(error)) from error
        try:
            reference = getattr(self._handle, method).remote(*args)
            return ray.get(reference, timeout=self.config.learner_timeout)
        except (exceptions.RayError, exceptions.GetTimeoutError) as error:
            self._handle = None  # look it up again next time: a new learner may take the name
            raise ConnectionError(f"learner call {method} failed: {error}") from error

    def sync_weights(self) -> bool:
        """Swap in newer learner weights (called between episodes only); True if swapped."""
        try:
            version, weights = self._learner_call("get_weights", self.version)
        except ConnectionError as error:
            logger.warning("learner unreachable, acting with version %d: %s", self.version, error)
            return False
        if weights is None:
            return False
        self.agent.load_weights(weights)
        self.version = int(version)
        return True

    def deliver(self) -> int:
        """Send queued episodes to the learner, oldest first; returns how many went."""
        sent = 0
        while self.queue:
            try:
                self._learner_call("add_episode", self.queue[0])
            except ConnectionError as error:
                logger.warning("%d episodes queued for the learner: %s", len(self.queue), error)
                break
            self.queue.popleft()
            sent += 1
        return sent

    # -- acting -----------------------------------------------------------------------------------

    def run_episode(
        self, seed: int | None = None, *, eval_mode: bool | None = None, sync: bool = True
    ) -> EpisodeSummary:
        """One episode: sync weights (unless ``sync=False``), act (with the policy mean if
        ``eval_mode``; default ``config.eval_mode``), queue and deliver it."""
        if sync:
            self.sync_weights()
        deterministic = self.config.eval_mode if eval_mode is None else eval_mode
        version = self.version  # fixed for the whole episode
        obs, info = self.env.reset(seed=self.config.seed + self.episodes if seed is None else seed)
        pixels, proprio = [obs["pixels"]], [obs["proprio"]]
        actions, rewards, interventions = [], [], []
        success = terminated = False
        if self.recorder is not None:
            self.recorder.start_episode()
            self._record_observation(obs)
        while True:
            action = self.agent.act(obs, self.steps, eval_mode=deterministic)
            obs, reward, _, truncated, info = self.env.step(action)
            self.steps += 1
            success = bool(info.get("success", False))
            terminated = success and self.config.terminate_on_success
            executed = np.asarray(info["executed_action"], np.float32)
            pixels.append(obs["pixels"])
            proprio.append(obs["proprio"])
            actions.append(executed)
            rewards.append(float(reward))
            interventions.append(bool(info["intervention"]))
            if self.recorder is not None:
                self._record_step(
                    executed, float(reward), terminated, truncated, interventions[-1], version
                )
                self._record_observation(obs)
            if terminated or truncated:
                break
        if self.recorder is not None:
            self.recorder.finish_episode()
        self.episodes += 1
        steps = len(actions)
        self.queue.append(
            {
                "pixels": np.stack(pixels),
                "proprio": np.stack(proprio).astype(np.float32),
                "action": np.stack(actions),
                "reward": np.asarray(rewards, np.float32),
                "intervention": np.asarray(interventions, bool),
                "policy_version": np.full(steps, version, np.int64),
                "terminated": np.array(terminated),
            }
        )
        delivered = self.deliver()
        return EpisodeSummary(
            steps=steps,
            episode_return=float(np.sum(rewards)),
            success=success,
            interventions=int(np.sum(interventions)),
            policy_version=version,
            delivered=delivered,
            queued=len(self.queue),
        )

    def _record_observation(self, obs: Mapping[str, np.ndarray]) -> None:
        assert self.recorder is not None
        images = {
            camera: np.ascontiguousarray(obs["pixels"][index].transpose(1, 2, 0))
            for index, camera in enumerate(self.config.env.cameras)
        }
        self.recorder.record_observation(images)

    def _record_step(
        self,
        action: np.ndarray,
        reward: float,
        terminated: bool,
        truncated: bool,
        intervention: bool,
        version: int,
    ) -> None:
        assert self.recorder is not None
        env = self.config.env
        twist = np.concatenate([action[:3] * env.max_step / env.period, np.zeros(3)])
        self.recorder.record_step(
            twist,
            float((action[3] + 1.0) / 2.0),
            reward,
            terminated=terminated,
            truncated=truncated,
            intervention=intervention,
            policy_version=version,
        )

    def get_version(self) -> int:
        return self.version

    def close(self) -> None:
        self.env.close()


# ------------------------------------------------------------------------------------------------
# orchestration


def _agent_config(value: RLPDConfig | Mapping[str, Any]) -> RLPDConfig:
    return value if isinstance(value, RLPDConfig) else RLPDConfig(**dict(value))


def _learner_config(value: LearnerConfig | Mapping[str, Any] | None) -> LearnerConfig:
    if value is None:
        return LearnerConfig()
    return value if isinstance(value, LearnerConfig) else LearnerConfig(**dict(value))


def start_learner(
    agent_config: RLPDConfig | Mapping[str, Any],
    config: LearnerConfig,
    *,
    demos: str | Path | None = None,
    run_dir: str | Path | None = None,
    name: str = DEFAULT_LEARNER_NAME,
    namespace: str = DEFAULT_RAY_NAMESPACE,
    train: bool = True,
) -> Any:
    """A named Ray learner process (threaded, so requests are served while it trains)."""
    import ray

    remote = ray.remote(num_cpus=0, max_concurrency=4)(Learner)  # type: ignore[call-overload]
    handle = remote.options(name=name, namespace=namespace).remote(
        agent_config, config, demos=demos, run_dir=run_dir
    )
    ray.get(handle.stats.remote())  # wait until it is constructed (errors surface here)
    if train:
        handle.start.remote()
    return handle


def start_actor(
    agent_config: RLPDConfig | Mapping[str, Any],
    config: ActorConfig,
    reward_fn: RewardFn | None = None,
) -> Any:
    """A Ray acting process (the robot PC's side)."""
    import ray

    remote = ray.remote(num_cpus=0, max_concurrency=2)(PolicyActor)  # type: ignore[call-overload]
    handle = remote.remote(agent_config, config, reward_fn)
    ray.get(handle.get_version.remote())
    return handle


@dataclass
class FinetuneResult:
    summaries: list[EpisodeSummary]
    learner_stats: dict[str, Any]
    checkpoint: Path | None
    classifier_metrics: dict[str, float] | None


def run_finetune(
    agent_config: RLPDConfig,
    learner_config: LearnerConfig,
    actor_config: ActorConfig,
    *,
    episodes: int,
    run_dir: str | Path,
    demos: str | Path | None,
    reward_fn: RewardFn | None = None,
    classifier_dir: str | Path | None = None,
    held_out: str | Path | None = None,
    max_fpr: float = 0.02,
    on_episode: Callable[[int, EpisodeSummary], None] | None = None,
) -> FinetuneResult:
    """The gate, then a learner and an actor on Ray for ``episodes`` episodes; ray must be
    initialised. With ``classifier_dir`` the reward is the classifier's (after the gate)."""
    import ray

    metrics = None
    if classifier_dir is not None:
        reward_fn, metrics = gated_classifier_reward(classifier_dir, held_out, max_fpr=max_fpr)
    if reward_fn is None:
        raise ValueError("fine-tuning needs a reward: a classifier directory or a reward_fn")
    run_dir = Path(run_dir)
    learner = start_learner(
        agent_config,
        learner_config,
        demos=demos,
        run_dir=run_dir,
        name=actor_config.learner_name,
        namespace=actor_config.ray_namespace,
    )
    actor = start_actor(agent_config, actor_config, reward_fn)
    summaries = []
    try:
        for index in range(episodes):
            summary = ray.get(actor.run_episode.remote())
            summaries.append(summary)
            if on_episode is not None:
                on_episode(index, summary)
        checkpoint = ray.get(learner.save.remote())
        stats = ray.get(learner.stats.remote())
    finally:
        for handle, method in ((learner, "stop"), (actor, "close")):
            with contextlib.suppress(ray.exceptions.RayError):  # it may be dead already
                ray.get(getattr(handle, method).remote(), timeout=30)
            ray.kill(handle)
    return FinetuneResult(summaries, stats, checkpoint, metrics)


def collect_teleop_demos(
    env: RobotEnv,
    directory: str | Path,
    *,
    episodes: int,
    teleop: TeleopPublisher | None = None,
    seed: int = 0,
    between_episodes: Callable[[int], None] | None = None,
) -> int:
    """Record ``episodes`` episodes in which a teleop device drives the arm, as a demo directory
    (:mod:`robotrl.demos`): the env is stepped with zero actions and the executed (teleop)
    actions are stored; an episode ends at success (terminated) or the step limit. ``teleop``
    (not started) is published during each episode only (:func:`~robotrl_real.labeling.
    teleop_episode`). Returns the number of transitions."""
    replay = EpisodicReplay(
        capacity=100_000, frame_stack=1, nstep=1, discount=1.0, directory=Path(directory)
    )
    transitions = 0
    for index in range(episodes):
        if between_episodes is not None:
            between_episodes(index)
        obs, _ = env.reset(seed=seed + index)
        replay.start_episode(obs)
        with teleop_episode(teleop):
            while True:
                obs, reward, terminated, truncated, info = env.step(np.zeros(ACTION_DIM))
                success = bool(info.get("success", False))
                replay.add(info["executed_action"], float(reward), obs, success, truncated)
                transitions += 1
                if success or truncated or terminated:
                    break
    return transitions


def main(argv: Sequence[str] | None = None) -> None:
    """``robotrl-finetune``: fine-tune on a running driver (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="robotrl-finetune",
        description="HIL-SERL-style fine-tuning (RLPD actor + learner on Ray) against a running "
        "robotrl-robot driver.",
    )
    parser.add_argument("--namespace", default="robot", help="the driver's namespace")
    parser.add_argument("--domain-id", type=int, default=None, help="default: ROS_DOMAIN_ID or 0")
    parser.add_argument("--loopback", action="store_true", help="DDS on 127.0.0.1 only")
    parser.add_argument("--demos", default=None, help="demo directory (episode_*.npz)")
    parser.add_argument("--classifier", default=None, help="saved success classifier directory")
    parser.add_argument("--held-out", default=None, help="default: <classifier>/held_out.npz")
    parser.add_argument("--max-fpr", type=float, default=0.02)
    parser.add_argument(
        "--reach-target",
        type=float,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="sim twin: sparse success reward within 3 cm of this TCP position, no classifier",
    )
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--max-episode-steps", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--cameras", nargs="+", default=["wrist", "front"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ray-address", default=None, help="join a Ray cluster (default: local)")
    parser.add_argument("--learner-name", default=DEFAULT_LEARNER_NAME)
    parser.add_argument("--no-record", action="store_true", help="skip MCAP recordings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--agent",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="RLPDConfig overrides, e.g. utd=10 num_qs=10 (numbers parsed as such)",
    )
    args = parser.parse_args(argv)
    if (args.classifier is None) == (args.reach_target is None):
        parser.error("give exactly one reward: --classifier DIR or --reach-target X Y Z")
    overrides: dict[str, Any] = {}
    for item in args.agent:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--agent takes KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    agent_config = RLPDConfig(**overrides)
    env_config = RobotEnvConfig(
        namespace=args.namespace,
        cameras=tuple(args.cameras),
        image_size=args.image_size,
        max_episode_steps=args.max_episode_steps,
    )
    run_dir = Path(args.run_dir)
    actor_config = ActorConfig(
        env=env_config,
        domain_id=args.domain_id,
        loopback=args.loopback,
        learner_name=args.learner_name,
        recordings=None if args.no_record else str(run_dir / "recordings"),
        seed=args.seed,
    )
    learner_config = LearnerConfig(
        obs_shape=(len(args.cameras), 3, args.image_size, args.image_size),
        batch_size=args.batch_size,
        seed=args.seed,
    )
    reward_fn: RewardFn | None = None
    if args.reach_target is not None:
        reward_fn = SuccessReward(ReachReward(tuple(args.reach_target)))
    else:  # the gate runs before anything starts
        try:
            reward_fn, metrics = gated_classifier_reward(
                args.classifier, args.held_out, max_fpr=args.max_fpr
            )
        except ClassifierGateError as error:
            raise SystemExit(f"robotrl-finetune: {error}") from None
        print(f"success classifier passed the gate: {metrics}", flush=True)
    import ray

    ray.init(address=args.ray_address, include_dashboard=False, namespace=DEFAULT_RAY_NAMESPACE)

    def report(index: int, summary: EpisodeSummary) -> None:
        print(
            f"episode {index}: steps {summary.steps} return {summary.episode_return:.2f} "
            f"success {summary.success} interventions {summary.interventions} "
            f"policy v{summary.policy_version} queued {summary.queued}",
            flush=True,
        )

    try:
        result = run_finetune(
            agent_config,
            learner_config,
            actor_config,
            episodes=args.episodes,
            run_dir=run_dir,
            demos=args.demos,
            reward_fn=reward_fn,
            on_episode=report,
        )
    finally:
        ray.shutdown()
    successes = np.mean([s.success for s in result.summaries]) if result.summaries else 0.0
    print(f"done: success rate {successes:.2f}; checkpoint {result.checkpoint}")


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
