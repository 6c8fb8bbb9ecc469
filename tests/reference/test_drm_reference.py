"""DrM against the public DrM code: the dormant ratio β, the schedules over β, per-task values."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from robotrl.builders import to_train_config
from robotrl.config import TrainConfig, register_configs
from robotrl.nn.dormant import (
    AwakenSchedule,
    awaken_stddev,
    dormant_stats,
    exploitation_weight,
    perturb_factor,
)
from robotrl.nn.heads import Actor, Critic
from robotrl.schedules import LinearSchedule
from tests.reference.official import load_in_order, load_official, official_path, official_state


def networks(arrays, variant):
    meta = {key: int(arrays[f"meta/{key}"]) for key in ("repr_dim", "hidden_dim", "feature_dim")}
    actor = Actor(meta["repr_dim"], 6, meta["feature_dim"], meta["hidden_dim"])
    critic = Critic(meta["repr_dim"], 6, meta["feature_dim"], meta["hidden_dim"])
    load_in_order(actor, official_state(arrays, f"in/{variant}/actor/"))
    load_in_order(critic, official_state(arrays, f"in/{variant}/critic/"))
    return actor.eval(), critic.eval()


@pytest.mark.parametrize("variant", ["seeded", "rescaled"])
@pytest.mark.parametrize("after_relu", [True, False])
def test_dormant_ratio_equals_the_public_codes(variant, after_relu):
    """β as DrM's code measures it (hidden layers after their ReLU) equals its numbers exactly.

    Scored on every Linear layer's own output instead (``after_relu=False``), β equals the public
    function run on copies whose ReLUs are not in place: the two definitions differ only there.
    """
    arrays = load_official("drm_dormant.npz")
    actor, critic = networks(arrays, variant)
    features = torch.from_numpy(arrays["in/features"])
    action = torch.from_numpy(arrays["in/action"])
    tau = float(arrays["meta/percentage_tau"])
    suffix = "" if after_relu else "_noninplace_relu"
    actor_beta = dormant_stats(actor, lambda: actor(features, 0.0), tau, after_relu=after_relu)
    critic_beta = dormant_stats(
        critic, lambda: critic(features, action), tau, after_relu=after_relu
    )
    assert actor_beta.ratio == float(arrays[f"out/{variant}/actor_dormant_ratio{suffix}"])
    assert critic_beta.ratio == float(arrays[f"out/{variant}/critic_dormant_ratio{suffix}"])


def schedule_rows():
    with official_path("drm_schedules.csv").open() as file:
        return list(csv.DictReader(file))


def test_awaken_noise_perturb_factor_and_exploitation_weight_over_beta():
    rows = schedule_rows()
    assert len(rows) == 201
    for row in rows:
        beta = float(row["beta"])
        assert awaken_stddev(beta, 0.2, 10.0) == pytest.approx(
            float(row["awaken_stddev"]), abs=1e-12
        )
        for max_perturb in ("0.6", "0.9", "1.0"):
            expected = float(row[f"perturb_factor_max{max_perturb}"])
            got = perturb_factor(beta, float(max_perturb), min_perturb=0.2, k=2.0)
            assert got == pytest.approx(expected, abs=1e-12)
        assert exploitation_weight(beta, 0.6, 0.2, 50.0) == pytest.approx(
            float(row["exploitation_lambda"]), abs=1e-12
        )


def test_awaken_schedule_before_awakening_is_the_public_dormant_stddev():
    schedule = AwakenSchedule(base=LinearSchedule(1.0, 0.1, 500_000), earliest_step=2000)
    for row in schedule_rows():
        beta = float(row["beta"])
        assert schedule(10_000, beta) == pytest.approx(float(row["awaken_stddev"]), abs=1e-12)


TASK_DIR = Path(__file__).resolve().parents[2] / "robotrl" / "conf" / "task" / "dmc"


def compose_task(agent: str, task: str) -> TrainConfig:
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        return to_train_config(compose("train", overrides=[f"agent={agent}", f"task=dmc/{task}"]))


# DrM's tasks for which we have no DMC task config (nothing to check until one is added).
TASKS_WITHOUT_CONFIG = {
    "acrobot_swingup_sparse",
    "dog_run",
    "dog_stand",
    "dog_trot",
    "dog_walk",
    "manipulator_bring_ball",
    "soccer",
}
# DrM's global config (cfgs/config.yaml, cfgs/agent/drm.yaml) where a task file is silent.
DRM_GLOBALS = {"lr": 1e-4, "feature_dim": 50, "batch_size": 256, "replay_buffer_size": 1_000_000}


def task_rows():
    with official_path("drm_tasks.csv").open() as file:
        return list(csv.DictReader(file))


def linear_schedule(text: str) -> tuple[float, float, int]:
    initial, final, duration = text.removeprefix("linear(").removesuffix(")").split(",")
    return float(initial), float(final), int(duration)


def test_every_drm_task_of_the_public_config_is_checked_or_listed_as_missing():
    tasks = {row["task"] for row in task_rows()}
    have = {path.stem for path in TASK_DIR.glob("*.yaml")}
    assert tasks - have == TASKS_WITHOUT_CONFIG


# MENTOR's public task files (commit f4fa81f) carry DrM's values for every one of these tasks.
@pytest.mark.parametrize("agent", ["drm", "mentor"])
@pytest.mark.parametrize(
    "row",
    [row for row in task_rows() if row["task"] not in TASKS_WITHOUT_CONFIG],
    ids=lambda row: row["task"],
)
def test_drm_per_task_values_are_the_public_configs(row, agent):
    cfg = compose_task(agent, row["task"])
    value = {key: row[key] or DRM_GLOBALS.get(key) for key in row}
    assert cfg.frames == int(row["num_train_frames"])
    schedule = cfg.agent.stddev_schedule
    assert (schedule.initial, schedule.final, schedule.duration) == linear_schedule(
        row["stddev_schedule"]
    )
    assert cfg.agent.lr == float(value["lr"])
    assert cfg.agent.feature_dim == int(value["feature_dim"])
    assert cfg.agent.max_perturb == float(row["max_perturb_factor"])
    assert cfg.agent.target_lambda == float(row["target_lambda"])
    assert cfg.replay.batch_size == int(value["batch_size"])
    assert cfg.replay.capacity == int(value["replay_buffer_size"])
    assert cfg.replay.nstep == 3  # DrM's global nstep, on every task
