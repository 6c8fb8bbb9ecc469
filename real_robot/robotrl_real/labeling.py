"""Labelled frames for the success classifier, collected on the arm while a teleop device drives.

HIL-SERL trains its reward classifier on frames an operator collects by teleoperation: a few
hundred successes, many failures, and near-misses, the failures that look almost like success.
:func:`collect_labelled_frames` steps a :class:`~robotrl_real.env.RobotEnv` with zero policy
actions while a teleop device (published by :class:`~robotrl_real.teleop.TeleopPublisher`, so
the env sees an intervention and the driver executes the teleop twist) moves the arm, and asks a
**labeler** for the kind of every frame it sees.

How labels are marked. A labeler is ``labeler(obs, info) -> kind | None`` with ``kind`` in
``robotrl.rewards.classifier.KINDS`` (``None`` skips the frame):

- in simulation, :class:`DistanceLabeler` marks from the TCP position: within
  ``success_radius`` of the goal a success, within ``near_miss_radius`` a near-miss, else a
  negative;
- on a real device, :class:`ButtonLabeler` reads two buttons the operator holds: the success
  button while the task is achieved, the near-miss button while it is almost achieved (e.g. the
  object is touching but not placed); frames with neither are negatives. Its ``pressed``
  callbacks read whatever the device offers (a keyboard key, a gamepad button, a pedal).

:func:`train_and_save` splits the frames (train / calibration / held out), fits and calibrates
a :class:`~robotrl.rewards.classifier.SuccessClassifier` for the target false-positive rate,
and saves it with its held-out frames (``held_out.npz``), which the fine-tune's gate
(:func:`robotrl_real.finetune.check_classifier_gate`) measures again before it starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robotrl.rewards.classifier import KINDS, LabelledFrames, SuccessClassifier
from robotrl_real import msgs
from robotrl_real.teleop import TeleopPublisher

Labeler = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], str | None]
HELD_OUT_FILE = "held_out.npz"


@dataclass
class DistanceLabeler:
    """Sim labels from the TCP position (``proprio[:3]``) and a goal (metres)."""

    goal: Sequence[float]
    success_radius: float = 0.03
    near_miss_radius: float = 0.08

    def __post_init__(self) -> None:
        if not 0 < self.success_radius < self.near_miss_radius:
            raise ValueError(
                "need 0 < success_radius < near_miss_radius, got "
                f"{self.success_radius}, {self.near_miss_radius}"
            )

    def __call__(self, obs: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> str:
        distance = float(np.linalg.norm(np.asarray(obs["proprio"][:3]) - np.asarray(self.goal)))
        if distance < self.success_radius:
            return "positive"
        return "near_miss" if distance < self.near_miss_radius else "negative"


@dataclass
class ButtonLabeler:
    """Real-device labels from two buttons the operator holds (module docstring)."""

    success_pressed: Callable[[], bool]
    near_miss_pressed: Callable[[], bool] = lambda: False

    def __call__(self, obs: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> str:
        if self.success_pressed():
            return "positive"
        return "near_miss" if self.near_miss_pressed() else "negative"


@contextmanager
def teleop_episode(teleop: TeleopPublisher | None) -> Iterator[None]:
    """Publish ``teleop``'s device only for the duration of one episode (after the reset), then
    hand control back (``intervention: False``).

    Two workarounds for the driver (robotrl_real.driver) live here: it drops a reset goal on any
    teleop twist, intervening or not, so nothing may be published during ``env.reset()``; and
    it clears its teleop set-points on every intervention message, so a publisher that sends the
    intervention flag on every tick (as :class:`TeleopPublisher` does) can wipe the twist of the
    same tick when the two topics arrive out of order. This loop therefore sends the flag only
    when it changes and the twist on every tick, at the publisher's rate. ``None``: nothing to
    do (the device is published elsewhere).
    """
    if teleop is None:
        yield
        return
    stop = threading.Event()

    def run() -> None:
        intervening: bool | None = None
        while not stop.is_set():
            command = teleop.device.poll()
            if command.intervene != intervening:
                intervening = bool(command.intervene)
                teleop.intervention.publish(msgs.Bool(intervening))
            vx, vy, vz, wx, wy, wz = (float(v) for v in command.twist)
            teleop.twist.publish(
                msgs.TwistStamped(
                    header=msgs.stamped_header(teleop.frame_id),
                    twist=msgs.Twist(msgs.Vector3(vx, vy, vz), msgs.Vector3(wx, wy, wz)),
                )
            )
            stop.wait(teleop.period)

    thread = threading.Thread(target=run, name="teleop-episode", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        teleop.intervention.publish(msgs.Bool(False))


def collect_labelled_frames(
    env: Any,
    labeler: Labeler,
    *,
    episodes: int,
    camera: int = 0,
    seed: int = 0,
    require_intervention: bool = True,
    teleop: TeleopPublisher | None = None,
    between_episodes: Callable[[int], None] | None = None,
) -> LabelledFrames:
    """Frames of camera ``camera`` (and proprio) from ``episodes`` teleoperated episodes.

    The env gets zero actions; the teleop device moves the arm. With ``require_intervention``
    only frames reached while the teleop held control are kept (and an episode in which it never
    did is an error: is the teleop publisher running?). ``between_episodes(i)`` runs before
    episode ``i`` (e.g. to give a scripted teleop a new target). ``teleop``: a publisher (not
    started) that this runs during each episode only (:func:`teleop_episode`).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    frames: list[np.ndarray] = []
    proprio: list[np.ndarray] = []
    kinds: list[str] = []
    action = np.zeros(env.action_space.shape, np.float32)
    for index in range(episodes):
        if between_episodes is not None:
            between_episodes(index)
        obs, _ = env.reset(seed=seed + index)
        intervened = False
        with teleop_episode(teleop):
            while True:
                obs, _, terminated, truncated, info = env.step(action)
                intervened = intervened or bool(info["intervention"])
                if (info["intervention"] or not require_intervention) and not info["stale"]:
                    kind = labeler(obs, info)
                    if kind is not None:
                        if kind not in KINDS:
                            raise ValueError(f"the labeler returned {kind!r}; use one of {KINDS}")
                        frames.append(np.array(obs["pixels"][camera]))
                        proprio.append(np.array(obs["proprio"], np.float32))
                        kinds.append(kind)
                if terminated or truncated:
                    break
        if require_intervention and not intervened:
            raise RuntimeError(
                f"episode {index}: the teleop never took over; start a TeleopPublisher whose "
                "device intervenes (or pass require_intervention=False)"
            )
    if not frames:
        raise RuntimeError("no frames were labelled")
    return LabelledFrames(np.stack(frames), np.array(kinds), np.stack(proprio))


def save_labelled(frames: LabelledFrames, path: str | Path) -> Path:
    """Write labelled frames as one ``.npz`` (frames, kinds, optional proprio)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"frames": frames.frames, "kinds": frames.kinds.astype(str)}
    if frames.proprio is not None:
        arrays["proprio"] = frames.proprio
    np.savez_compressed(path, **arrays)
    return path


def load_labelled(path: str | Path) -> LabelledFrames:
    """Read what :func:`save_labelled` wrote."""
    with np.load(Path(path), allow_pickle=False) as data:
        proprio = data["proprio"] if "proprio" in data.files else None
        return LabelledFrames(data["frames"], data["kinds"], proprio)


def train_and_save(
    frames: LabelledFrames,
    directory: str | Path,
    *,
    target_fpr: float = 0.02,
    steps: int = 400,
    seed: int = 0,
    use_proprio: bool = False,
) -> tuple[SuccessClassifier, dict[str, float]]:
    """Split 60/20/20 (per kind), fit on the first part, calibrate the threshold on the second,
    report on the held-out third; save the classifier and ``held_out.npz`` in ``directory``."""
    train, calibration, held_out = frames.split((0.6, 0.2), seed=seed)
    if not use_proprio:
        train, calibration, held_out = (
            LabelledFrames(part.frames, part.kinds) for part in (train, calibration, held_out)
        )
    classifier = SuccessClassifier.fit(
        train, calibration, target_fpr=target_fpr, steps=steps, seed=seed
    )
    metrics = classifier.report(held_out)
    classifier.save(directory)
    save_labelled(held_out, Path(directory) / HELD_OUT_FILE)
    return classifier, metrics
