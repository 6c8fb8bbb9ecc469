"""Benchmark recipes (``+experiment=<set>``): each sweep expands to real job configs.

Each recipe's ``hydra.sweeper.params`` is parsed with Hydra's own override parser and expanded
into its jobs, as the basic sweeper does, and every job is composed: the right agent, task and
per-task values and the published protocol.
"""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from robotrl.builders import to_train_config
from robotrl.config import register_configs
from robotrl.reference import DRQV2_DMC_GROUPS

DRM_METAWORLD = ("assembly", "coffee-push", "disassemble", "soccer", "stick-pull", "sweep-into")
MENTOR_EXTRA = ("hammer", "hand-insert", "lever-pull", "pick-out-of-hole")


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        yield


def sweep_jobs(experiment: str) -> list[list[str]]:
    """The override lists of every job the recipe's sweep launches."""
    cfg = compose("train", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert isinstance(params, dict)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    return [list(job) for job in itertools.product(*axes)]


def compose_jobs(experiment: str) -> list:
    return [
        to_train_config(compose("train", overrides=[f"+experiment={experiment}", *job]))
        for job in sweep_jobs(experiment)
    ]


def test_drqv2_dmc_medium_covers_the_medium_tasks_with_the_paper_protocol():
    jobs = compose_jobs("drqv2_dmc_medium")
    medium = set(DRQV2_DMC_GROUPS["medium"])
    assert {(j.task.suite, j.task.name) for j in jobs} == {("dmc", t) for t in medium}
    assert len(jobs) == len(medium) * 5 and {j.seed for j in jobs} == {1, 2, 3, 4, 5}
    for job in jobs:
        assert job.agent.name == "drqv2" and job.frames == 3_100_000
        assert (job.eval_every_frames, job.eval_episodes, job.seed_frames) == (10_000, 10, 4000)
        assert job.exp_name == "drqv2_dmc_medium"
    by_task = {j.task.name: j for j in jobs}
    # The paper's per-task exceptions come through the task files.
    assert by_task["walker_run"].replay.batch_size == 512
    assert by_task["cheetah_run"].replay.batch_size == 256


@pytest.mark.parametrize(
    ("experiment", "agent", "tasks"),
    [
        ("drm_metaworld", "drm", DRM_METAWORLD),
        ("mentor_metaworld", "mentor", DRM_METAWORLD + MENTOR_EXTRA),
    ],
)
def test_metaworld_recipes(experiment: str, agent: str, tasks: tuple[str, ...]):
    jobs = compose_jobs(experiment)
    assert sorted({j.task.name for j in jobs}) == sorted(tasks)
    assert len(jobs) == len(tasks) * 5
    for job in jobs:
        assert job.agent.name == agent and job.task.suite == "metaworld"
        assert job.frames == 2_100_000 and job.eval_every_frames == 10_000
        # DrM's MetaWorld agent: constant exploitation weight (agent_task/<agent>/metaworld).
        assert job.agent.exploitation == "constant"
    by_task = {j.task.name: j for j in jobs}
    assert by_task["stick-pull"].agent.max_perturb == pytest.approx(0.9)
    assert by_task["assembly"].agent.max_perturb == pytest.approx(0.95)


@pytest.mark.parametrize("agent", ["drm", "mentor"])
def test_adroit_recipes(agent: str):
    jobs = compose_jobs(f"{agent}_adroit")
    assert sorted({j.task.name for j in jobs}) == ["door", "hammer", "pen"]
    assert len(jobs) == 3 * 5
    for job in jobs:
        assert job.agent.name == agent and job.task.suite == "adroit"
        assert job.frames == 6_100_000 and job.env.frame_stack == 1
    by_task = {j.task.name: j for j in jobs}
    assert by_task["door"].agent.expectile == pytest.approx(0.6)
    assert by_task["pen"].agent.expectile == pytest.approx(0.7)
