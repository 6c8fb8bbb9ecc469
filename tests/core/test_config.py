"""Hydra composition of the packaged configs (real compose(), no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from robotrl.builders import resolve_device, to_train_config
from robotrl.config import ConfigError, TrainConfig, register_configs
from robotrl.schedules import LinearSchedule

CONF = Path(__file__).parents[2] / "robotrl" / "conf"
DMC_TASKS = sorted(p.stem for p in (CONF / "task" / "dmc").glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        yield


def test_default_is_drqv2_on_builtin_reach_with_its_specialisation():
    cfg = compose("train")
    assert (cfg.agent.name, cfg.task.suite, cfg.task.name) == ("drqv2", "builtin", "reach")
    assert cfg.env.image_size == 32
    assert (
        cfg.replay.batch_size == 64 and cfg.agent.hidden_dim == 256
    )  # agent_task/drqv2/builtin/reach


def test_dmc_tasks_cover_the_drqv2_reference_set():
    reference = {
        p.stem.removeprefix("dmc_")
        for p in (CONF.parents[2] / "shared" / "reference" / "drqv2_curves").glob("*.csv")
    }
    if reference:
        assert reference <= set(DMC_TASKS)
    assert len(DMC_TASKS) == 24


@pytest.mark.parametrize("task", DMC_TASKS)
def test_every_dmc_task_composes_with_paper_settings(task):
    cfg = compose("train", overrides=[f"task=dmc/{task}"])
    typed = to_train_config(cfg)
    assert typed.task.suite == "dmc" and typed.task.name == task
    assert (typed.env.image_size, typed.env.action_repeat, typed.env.frame_stack) == (84, 2, 3)
    assert typed.replay.batch_size in (256, 512) and typed.agent.hidden_dim == 1024
    assert isinstance(typed.agent.stddev_schedule, LinearSchedule)
    assert typed.frames in (1_100_000, 3_100_000, 30_100_000)


def test_difficulty_and_per_task_overrides():
    easy = to_train_config(compose("train", overrides=["task=dmc/walker_walk"]))
    assert (easy.frames, easy.agent.stddev_schedule.duration) == (1_100_000, 100_000)
    medium = to_train_config(compose("train", overrides=["task=dmc/cheetah_run"]))
    assert (medium.frames, medium.agent.stddev_schedule.duration) == (3_100_000, 500_000)
    run = to_train_config(compose("train", overrides=["task=dmc/walker_run"]))
    assert (run.replay.nstep, run.replay.batch_size) == (1, 512)
    humanoid = to_train_config(compose("train", overrides=["task=dmc/humanoid_run"]))
    assert (humanoid.agent.lr, humanoid.agent.feature_dim) == (8e-5, 100)
    assert humanoid.agent.stddev_schedule.duration == 2_000_000
    quadruped = to_train_config(compose("train", overrides=["task=dmc/quadruped_run"]))
    assert quadruped.replay.capacity == 100_000


def test_command_line_overrides_win_over_task_presets():
    cfg = compose("train", overrides=["task=dmc/humanoid_run", "agent.lr=3e-4", "frames=5000"])
    assert cfg.agent.lr == 3e-4 and cfg.frames == 5000


def test_experiment_and_logger_groups():
    smoke = compose("train", overrides=["task=dmc/cartpole_swingup", "+experiment=smoke"])
    assert smoke.exp_name == "smoke" and smoke.frames == 4000 and smoke.replay.batch_size == 16
    paper = compose("train", overrides=["task=dmc/walker_run", "+experiment=drqv2_paper"])
    assert paper.exp_name == "drqv2_paper" and paper.replay.nstep == 1
    assert compose("train", overrides=["logger=csv"]).logger.tensorboard is False
    assert compose("train", overrides=["logger=wandb"]).logger.wandb is True


def test_typo_in_a_key_is_an_error_naming_it():
    with pytest.raises(ConfigCompositionException, match=r"agent\.stdev_clip"):
        compose("train", overrides=["agent.stdev_clip=0.2"])
    with pytest.raises(ConfigCompositionException, match=r"replay\.batchsize"):
        compose("train", overrides=["replay.batchsize=3"])


def test_wrong_value_type_is_an_error():
    with pytest.raises(ConfigCompositionException, match="frames"):
        compose("train", overrides=["frames=lots"])


def test_invalid_values_fail_validation_before_training():
    with pytest.raises(ValueError, match="action_repeat"):
        to_train_config(compose("train", overrides=["env.action_repeat=0"]))
    with pytest.raises(ValueError, match="critic_target_tau"):
        to_train_config(compose("train", overrides=["agent.critic_target_tau=2"]))


def test_run_dir_is_derived_from_suite_task_agent_exp_seed():
    cfg = compose(
        "train",
        overrides=["task=dmc/cheetah_run", "seed=3", "exp_name=abl"],
        return_hydra_config=True,
    )
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert (
        run_dir == "${runs_root}/${task.suite}/${task.name}/${agent.name}/${exp_name}/seed${seed}"
    )
    assert OmegaConf.select(cfg, "hydra.run.dir") == "runs/dmc/cheetah_run/drqv2/abl/seed3"
    assert OmegaConf.select(cfg, "hydra.sweep.subdir") == "dmc/cheetah_run/drqv2/abl/seed3"


def test_typed_config_is_a_dataclass():
    typed = to_train_config(compose("train"))
    assert isinstance(typed, TrainConfig)


def test_user_overlays_in_configs_are_found(tmp_path, monkeypatch):
    overlay = tmp_path / "configs" / "experiment" / "tiny.yaml"
    overlay.parent.mkdir(parents=True)
    overlay.write_text("# @package _global_\nexp_name: tiny\nframes: 123\nagent:\n  lr: 0.5\n")
    monkeypatch.chdir(tmp_path)
    cfg = compose("train", overrides=["+experiment=tiny"])
    assert (cfg.exp_name, cfg.frames, cfg.agent.lr) == ("tiny", 123, 0.5)
    overlay.write_text("# @package _global_\nagent:\n  lrr: 0.5\n")
    with pytest.raises(ConfigCompositionException, match="lrr"):
        compose("train", overrides=["+experiment=tiny"])


def test_the_shipped_example_overlay_composes(monkeypatch):
    monkeypatch.chdir(CONF.parents[1])
    cfg = to_train_config(compose("train", overrides=["+experiment=cheetah_long"]))
    assert (cfg.task.name, cfg.exp_name, cfg.frames, cfg.eval_episodes) == (
        "cheetah_run",
        "cheetah_long",
        1_000_000,
        10,
    )


@pytest.mark.parametrize(
    ("override", "named", "nearest"),
    [
        ("+agent.hiden_dim=64", "agent.hiden_dim", "agent.hidden_dim"),
        ("+frams=5", "frams", "frames"),
        ("+replay.batchsize=3", "replay.batchsize", "replay.batch_size"),
        ("+agent.stddev_schedule.finall=0.2", "agent.stddev_schedule.finall", "final"),
    ],
)
def test_a_typo_added_with_plus_is_an_error_naming_the_nearest_key(override, named, nearest):
    cfg = compose("train", overrides=[override])
    with pytest.raises(ConfigError, match=rf"unknown config key {named}.*did you mean .*{nearest}"):
        to_train_config(cfg)


def test_free_form_options_take_any_key():
    typed = to_train_config(compose("train", overrides=["+task.options.render_size=64"]))
    assert typed.task.options["render_size"] == 64


@pytest.mark.parametrize(
    "override",
    [
        "frames=-5",
        "frames=0",
        "seed_frames=-1",
        "eval_every_frames=0",
        "eval_episodes=0",
        "checkpoint_every_frames=0",
        "keep_checkpoints=-1",
        "seed=-1",
        "torch_threads=-2",
        "replay.capacity=1",
        "replay.batch_size=0",
        "replay.nstep=0",
        "env.image_size=0",
    ],
)
def test_every_run_level_number_is_checked_with_one_line_naming_it(override):
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=rf"^{key.split('.')[-1]} must be .*, got {value}$"):
        to_train_config(compose("train", overrides=[override]))


def test_a_cuda_device_without_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device='cuda' was asked for"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"
