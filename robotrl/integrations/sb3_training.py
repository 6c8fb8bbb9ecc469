"""Train SB3 baselines (``agent=sb3_sac|sb3_ppo|sb3_td3``) through our pipeline.

SB3 keeps its own loop (``model.learn``); :class:`SB3Trainer` hooks into it with a callback and
does around it what ``robotrl.trainer.Trainer`` does for our agents, with the same shared pieces:
the run directory, ``Logger`` (train.csv, eval.csv, TensorBoard, same column names), the progress
bar, periodic deterministic evaluation through ``robotrl.evaluation.run_episodes`` (the model
behind :class:`~robotrl.integrations.sb3_models.SB3Actor`), checkpoints named and pruned as
``robotrl.checkpoint`` does, and resume from the newest intact one.

An SB3 checkpoint is a directory ``checkpoints/step_<frame>/`` holding SB3's own ``model.zip``
(``model.save``), for off-policy algorithms ``replay_buffer.npz`` (the buffer's filled slots as
plain arrays), and
``meta.json`` with the run config, counters and ``"format": "sb3"``, which is how
``robotrl-eval`` and ``robotrl.benchmark`` recognise it. The directory is written under a
temporary name and renamed, so a kill leaves the whole checkpoint or none. Nothing is unpickled
on resume: the model is rebuilt from the config and only its tensors are read
(:func:`~robotrl.integrations.sb3_models.load_model_state`), and the replay buffer's arrays are
read with ``allow_pickle=False`` into the model's own buffer (SB3's ``save_replay_buffer`` would
pickle the whole buffer object, preallocated slots included).

Callbacks run at two points of SB3's loop: after each env step (``_on_step``: episode logging,
before SB3 stores the transition) and when a rollout starts (``_on_rollout_start``: after the
previous round of updates, with every transition stored). Evaluations and checkpoints happen at
the latter, so a checkpoint's model, replay buffer and counters agree.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import OmegaConf
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger as SB3Logger

import robotrl
from robotrl.agents import class_path
from robotrl.benchmark import read_meta
from robotrl.checkpoint import (
    META_FILE,
    CheckpointError,
    list_checkpoints,
    prune_checkpoints,
    write_checkpoint_directory,
    write_json_atomic,
)
from robotrl.config import TrainConfig
from robotrl.evaluation import run_episodes, summarize
from robotrl.integrations.sb3 import RobotrlVecEnv, make_sb3_env
from robotrl.integrations.sb3_config import SB3_FORMAT, SB3AgentConfig, is_sb3_meta
from robotrl.integrations.sb3_models import (
    ALGORITHMS,
    SB3Actor,
    build_model,
    is_off_policy,
    load_model_state,
)
from robotrl.logger import Logger
from robotrl.progress import ProgressBar
from robotrl.trainer import (
    TrainingDivergedError,
    TrainResult,
    eval_reset_seed,
    training_result,
)
from robotrl.training_run import Counters
from robotrl.video import VideoRecorder

log = logging.getLogger(__name__)

MODEL_FILE = "model.zip"
REPLAY_FILE = "replay_buffer.npz"


def make_train_env(cfg: TrainConfig) -> RobotrlVecEnv:
    """The training envs as an SB3 VecEnv (``agent.n_envs`` copies, each in SB3's Monitor)."""
    agent = cfg.agent
    assert isinstance(agent, SB3AgentConfig)
    return make_sb3_env(
        cfg.task.suite,
        cfg.task.name,
        n_envs=agent.n_envs,
        seed=cfg.seed,
        image_size=cfg.env.image_size,
        action_repeat=cfg.env.action_repeat,
        frame_stack=cfg.env.frame_stack,
        options=dict(cfg.task.options),
    )


def make_model(cfg: TrainConfig, env: RobotrlVecEnv, device: str) -> BaseAlgorithm:
    """The model for this run; sizes the config leaves open come from the run's replay settings."""
    assert isinstance(cfg.agent, SB3AgentConfig)
    return build_model(
        cfg.agent,
        env,
        seed=cfg.seed,
        device=device,
        buffer_size=cfg.replay.capacity,
        batch_size=cfg.replay.batch_size,
        learning_starts=cfg.seed_frames // cfg.env.action_repeat,
    )


class SB3Trainer:
    """Runs one SB3 training job in a robotrl run directory; see the module docstring."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        *,
        model: BaseAlgorithm,
        eval_env: gym.Env,
        logger: Logger,
        config_record: dict[str, Any],
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.model = model
        self.actor = SB3Actor(model)
        self.eval_env = eval_env
        self.logger = logger
        self.config_record = config_record
        self.counters = Counters()
        self.action_repeat = int(cfg.env.action_repeat)
        self.checkpoint_dir = run_dir / "checkpoints"
        self.last_checkpoint: Path | None = None
        self.last_video: Path | None = None
        self.last_eval: dict[str, float] = {}
        # Quiet SB3's own logger (no stdout, no files); its latest values feed our train.csv.
        model.set_logger(SB3Logger(folder=None, output_formats=[]))

    # -- resume ----------------------------------------------------------------------------

    def resume(self) -> int | None:
        """Continue from the newest intact checkpoint in the run directory, if there is one."""
        for path in reversed(list_checkpoints(self.checkpoint_dir)):
            try:
                self._restore(path)
            except CheckpointError as err:
                log.warning("skipping unusable checkpoint: %s", err)
                continue
            self.logger.truncate_after(self.counters.frame)
            log.info("resumed from %s at frame %d", path, self.counters.frame)
            return self.counters.frame
        return None

    def _restore(self, path: Path) -> None:
        meta = read_meta(path)
        check_sb3_checkpoint(path, meta, self.model)
        replay_file = path / REPLAY_FILE
        if is_off_policy(self.model) and not replay_file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {REPLAY_FILE} is missing")
        try:
            load_model_state(self.model, path / MODEL_FILE, str(self.model.device))
        except (RuntimeError, ValueError, KeyError, OSError) as err:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {err}") from err
        if is_off_policy(self.model):
            load_replay(self.model, replay_file)
        self.counters = Counters(**meta["counters"])
        self.model.num_timesteps = self.counters.step
        self.model._episode_num = self.counters.episode
        self.model._n_updates = int(meta["n_updates"])
        self.last_checkpoint = path

    def save(self) -> Path:
        """Write ``checkpoints/step_<frame>/`` atomically; keep the newest ``keep_checkpoints``."""
        self.counters.last_checkpoint_frame = self.counters.frame
        meta: dict[str, Any] = {
            "format": SB3_FORMAT,
            "robotrl_version": robotrl.__version__,
            "agent_name": self.cfg.agent.name,
            "agent_class": class_path(type(self.model)),
            "config": self.config_record,
            "counters": vars(self.counters),
            "n_updates": int(self.model._n_updates),
        }
        if is_off_policy(self.model):
            meta["replay_size"] = int(self.model.replay_buffer.size())  # type: ignore[attr-defined]
        path = save_sb3_checkpoint(self.checkpoint_dir, self.counters.frame, self.model, meta)
        prune_checkpoints(self.checkpoint_dir, int(self.cfg.keep_checkpoints))
        self.last_checkpoint = path
        return path

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        recorder = None
        if self.cfg.logger.save_video:
            recorder = VideoRecorder(self.run_dir / "videos")
            recorder.start()
        results = run_episodes(
            self.eval_env,
            self.actor,
            episodes=int(self.cfg.eval_episodes),
            step=self.counters.step,
            seed=eval_reset_seed(int(self.cfg.seed)),
            recorder=recorder,
        )
        summary = summarize(results)
        if recorder is not None:
            self.last_video = recorder.save(f"eval_{self.counters.frame:09d}")
        self.logger.log("eval", {**summary, "step": self.counters.step}, frame=self.counters.frame)
        self.last_eval = summary
        return summary

    # -- main loop -------------------------------------------------------------------------

    def train(self) -> TrainResult:
        resumed_from = self.resume()
        cfg, counters = self.cfg, self.counters
        total_steps = int(cfg.frames) // self.action_repeat
        if counters.step >= total_steps:
            log.info("run already complete at frame %d; nothing to do", counters.frame)
            return self._result(resumed_from)
        env = self.model.get_env()
        assert env is not None
        # A fresh start state for each (re)start, as our trainer's resets; SB3 resets on learn().
        env.seed(int(cfg.seed) * 100_003 + counters.episode)
        progress = ProgressBar(int(cfg.frames), counters.frame, disable=not cfg.logger.progress_bar)
        callback = _PipelineCallback(self, progress)
        # log_interval=None: SB3 never dumps its logger, so the callback reads its latest values.
        no_dumps: Any = None
        try:
            self.model.learn(
                total_steps - counters.step,
                callback=callback,
                reset_num_timesteps=False,
                log_interval=no_dumps,
            )
        finally:
            progress.close()
        callback.sync_counters()
        self.evaluate()
        if counters.frame >= counters.next_eval_frame:  # a longer re-run need not repeat it
            counters.next_eval_frame += int(cfg.eval_every_frames)
        self.save()
        return self._result(resumed_from)

    def _result(self, resumed_from: int | None) -> TrainResult:
        return training_result(self, resumed_from)


class _PipelineCallback(BaseCallback):
    """Logs finished episodes; evaluates and checkpoints between rounds of SB3's loop."""

    def __init__(self, trainer: SB3Trainer, progress: ProgressBar) -> None:
        super().__init__()
        self.trainer = trainer
        self.progress = progress
        self.checkpoint_due = False
        self.episode_start = [time.perf_counter()] * trainer.model.n_envs

    def sync_counters(self) -> None:
        counters = self.trainer.counters
        counters.step = int(self.trainer.model.num_timesteps)
        counters.frame = counters.step * self.trainer.action_repeat

    def _on_rollout_start(self) -> None:
        trainer, counters = self.trainer, self.trainer.counters
        self.sync_counters()
        if counters.frame >= counters.next_eval_frame:
            trainer.evaluate()
            counters.next_eval_frame += int(trainer.cfg.eval_every_frames)
            # run_episodes leaves the policy in training mode; SB3 collects in eval mode.
            trainer.model.policy.set_training_mode(False)
        if self.checkpoint_due:
            trainer.save()
            self.checkpoint_due = False

    def _on_step(self) -> bool:
        trainer, counters, cfg = self.trainer, self.trainer.counters, self.trainer.cfg
        self.sync_counters()
        rewards = np.asarray(self.locals["rewards"])
        if not np.all(np.isfinite(rewards)):
            raise TrainingDivergedError(
                f"the env returned a non-finite reward ({rewards}) at frame {counters.frame}; "
                "the last checkpoint is intact"
            )
        for index, (done, info) in enumerate(
            zip(self.locals["dones"], self.locals["infos"], strict=True)
        ):
            if not done or "episode" not in info:
                continue
            counters.episode += 1
            now = time.perf_counter()
            length = int(info["episode"]["l"])
            metrics = _update_metrics(trainer.model, counters.frame)
            metrics |= {
                "episode_return": float(info["episode"]["r"]),
                "episode_length": length,
                "episode": counters.episode,
                "step": counters.step,
                "fps": length * trainer.action_repeat / max(now - self.episode_start[index], 1e-9),
            }
            self.episode_start[index] = now
            if is_off_policy(trainer.model):
                # SB3 stores this step's transition right after the callback.
                replay = trainer.model.replay_buffer  # type: ignore[attr-defined]
                metrics["buffer_size"] = min(replay.size() + 1, replay.buffer_size)
            if "success" in info:
                metrics["success"] = float(info["success"])
            trainer.logger.log("train", metrics, frame=counters.frame)
            self.progress.update(
                counters.frame, episode_return=metrics["episode_return"], episode=counters.episode
            )
            if counters.frame - counters.last_checkpoint_frame >= cfg.checkpoint_every_frames:
                self.checkpoint_due = True
        return True


def _update_metrics(model: BaseAlgorithm, frame: int) -> dict[str, float]:
    """SB3's latest ``train/*`` values (losses, entropy coefficient, ...), prefix dropped."""
    metrics = {
        name.removeprefix("train/"): float(value)
        for name, value in model.logger.name_to_value.items()
        if name.startswith("train/")
    }
    bad = sorted(name for name, value in metrics.items() if not np.isfinite(value))
    if bad:
        raise TrainingDivergedError(
            f"non-finite training metrics at frame {frame}: {bad}; the last checkpoint is intact"
        )
    return metrics


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_sb3_checkpoint(
    directory: Path, frame: int, model: BaseAlgorithm, meta: dict[str, Any]
) -> Path:
    """Write SB3's zip (and replay buffer) and ``meta`` to ``directory/step_<frame>`` atomically."""

    def write(tmp: Path) -> list[Path]:
        # TD3's scheduled noise reads the model's step count, so it would pickle the whole model
        # with its envs; it is rebuilt from the config on resume.
        model.save(tmp / MODEL_FILE, exclude=["action_noise"])
        written = [tmp / MODEL_FILE]
        if is_off_policy(model):
            save_replay(model, tmp / REPLAY_FILE)
            written.append(tmp / REPLAY_FILE)
        write_json_atomic(tmp / META_FILE, meta)
        return written

    return write_checkpoint_directory(directory, frame, write)


def save_replay(model: BaseAlgorithm, path: Path) -> None:
    """The replay buffer's filled slots as plain arrays in ``path`` (an ``.npz``), and its position.

    SB3 allocates its whole buffer up front (1.8 GB for 100k transitions of 32x32 pixels with
    frame stack 3, however few it holds); only the slots written so far are saved, so a checkpoint
    grows with the data. :func:`load_replay` reads them back without unpickling anything.
    """
    buffer = model.replay_buffer  # type: ignore[attr-defined]
    used = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {_POS: np.asarray(buffer.pos), _FULL: np.asarray(buffer.full)}
    for key, array in _slot_arrays(buffer):
        arrays[key] = array[:used]
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_replay(model: BaseAlgorithm, path: Path) -> None:
    """Fill the model's own (full-size) replay buffer from :func:`save_replay`'s file."""
    buffer = model.replay_buffer  # type: ignore[attr-defined]
    try:
        with np.load(path, allow_pickle=False) as stored:
            for key, array in _slot_arrays(buffer):
                if key not in stored:
                    raise CheckpointError(f"{path} has no {key!r} array for the replay buffer")
                saved = stored[key]
                if saved.shape[1:] != array.shape[1:] or len(saved) > len(array):
                    raise CheckpointError(
                        f"{path}: replay {key!r} holds {saved.shape}, the buffer {array.shape}"
                    )
                array[: len(saved)] = saved
            buffer.pos, buffer.full = int(stored[_POS]), bool(stored[_FULL])
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} is not a readable replay buffer: {err}") from err


_POS, _FULL = "__pos__", "__full__"


def _slot_arrays(buffer: Any) -> list[tuple[str, np.ndarray]]:
    """The buffer's per-slot arrays (``observations``, ``actions``, ...; dict buffers by key)."""
    size = buffer.buffer_size
    found: list[tuple[str, np.ndarray]] = []
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == size:
            found.append((name, value))
        elif isinstance(value, dict):
            found += [
                (f"{name}.{key}", array)
                for key, array in value.items()
                if isinstance(array, np.ndarray) and array.ndim and array.shape[0] == size
            ]
    return found


def check_sb3_checkpoint(path: Path, meta: dict[str, Any], model: BaseAlgorithm) -> None:
    """A clear error unless ``path`` is an SB3 checkpoint written for ``model``'s algorithm."""
    if not is_sb3_meta(meta):
        raise CheckpointError(f'{path} is not an SB3 checkpoint (no "format": "sb3" in meta)')
    expected = class_path(type(model))
    if meta.get("agent_class") != expected:
        raise CheckpointError(
            f"checkpoint {path} was written by {meta.get('agent_class')}, not {expected}; "
            "use a new run directory (exp_name=...) for a different agent"
        )
    if not (path / MODEL_FILE).is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: {MODEL_FILE} is missing")
    if "counters" not in meta or "n_updates" not in meta:
        raise CheckpointError(f"checkpoint {path} has no counters in {META_FILE}")


def load_sb3_actor(path: Path, env: gym.Env, device: str) -> tuple[SB3Actor, dict[str, Any]]:
    """The policy of the SB3 checkpoint at ``path``, acting on ``env`` (built from its config).

    For ``robotrl-eval``: the model is rebuilt from the config in ``meta.json`` with a one-slot
    replay buffer and its tensors are loaded from SB3's zip; nothing is unpickled.
    """
    meta = read_meta(path)
    record = meta["config"]
    agent_cfg = sb3_agent_config(record["agent"])
    venv = RobotrlVecEnv([lambda: env])
    model = build_model(
        agent_cfg, venv, seed=0, device=device, buffer_size=1, batch_size=1, learning_starts=0
    )
    check_sb3_checkpoint(path, meta, model)
    try:
        load_model_state(model, path / MODEL_FILE, device)
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit its config: {err}") from err
    return SB3Actor(model), meta


def sb3_agent_config(raw: dict[str, Any]) -> SB3AgentConfig:
    """The typed SB3 agent config stored in a checkpoint's meta (by its ``name``)."""
    by_name = {schema().name: schema for schema in ALGORITHMS}
    try:
        schema = by_name[raw["name"]]
    except KeyError:
        raise CheckpointError(
            f"unknown SB3 agent {raw.get('name')!r}; known: {sorted(by_name)}"
        ) from None
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    assert isinstance(typed, SB3AgentConfig)
    return typed


def train_sb3(
    cfg: TrainConfig,
    run_dir: Path,
    *,
    eval_env: gym.Env,
    logger: Logger,
    config_record: dict[str, Any],
    device: str,
) -> TrainResult:
    """Build the SB3 model for ``cfg`` on its training envs and run :class:`SB3Trainer`."""
    env = make_train_env(cfg)
    try:
        model = make_model(cfg, env, device)
        trainer = SB3Trainer(
            cfg, run_dir, model=model, eval_env=eval_env, logger=logger, config_record=config_record
        )
        return trainer.train()
    finally:
        env.close()
