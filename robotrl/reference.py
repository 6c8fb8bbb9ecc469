"""Published learning curves shipped with robotrl, and the task groups they are reported on.

``robotrl/data/reference/drqv2/dmc_<task>.csv`` are the DrQ-v2 curves on DeepMind Control
(24 tasks, 8–10 seeds, an evaluation every 20k frames, 100k on the humanoids), as published
in github.com/facebookresearch/drqv2 (``curves/``, MIT licence). Frames count environment
frames with the action repeat included, like robotrl's own logs.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from robotrl.scores import DMC_SUITE, ScoreError, check_unique, load_curve_csv, task_id

PUBLISHED_SUFFIX = " (published)"

# The DrQ-v2 paper's task groups (Yarats et al. 2021, Table 1 / Appendix). Each of the medium
# and easy tasks that robotrl configures says so in robotrl/conf/task/dmc/<task>.yaml
# (`/dmc_difficulty`), reach_duplo (dm_control's manipulation suite) included.
DRQV2_DMC_GROUPS: dict[str, tuple[str, ...]] = {
    "easy": (
        "cartpole_balance",
        "cartpole_balance_sparse",
        "cartpole_swingup",
        "cup_catch",
        "finger_spin",
        "hopper_stand",
        "pendulum_swingup",
        "walker_stand",
        "walker_walk",
    ),
    "medium": (
        "acrobot_swingup",
        "cartpole_swingup_sparse",
        "cheetah_run",
        "finger_turn_easy",
        "finger_turn_hard",
        "hopper_hop",
        "quadruped_run",
        "quadruped_walk",
        "reach_duplo",
        "reacher_easy",
        "reacher_hard",
        "walker_run",
    ),
    "hard": ("humanoid_run", "humanoid_stand", "humanoid_walk"),
}

# Names usable in `robotrl-report --tasks`: "dmc-easy", "dmc-medium", "dmc-hard".
TASK_GROUPS: dict[str, tuple[str, ...]] = {
    f"{DMC_SUITE}-{name}": tuple(task_id(DMC_SUITE, task) for task in tasks)
    for name, tasks in DRQV2_DMC_GROUPS.items()
}

REFERENCES = {"drqv2": "data/reference/drqv2"}


def load_reference(name: str) -> pd.DataFrame:
    """The packaged published curves `name` as a tidy score table (see `robotrl.scores`).

    The algo is labelled as published (``"DrQ-v2 (published)"``) so it never merges with this
    project's own runs of the same agent.
    """
    if name not in REFERENCES:
        raise ScoreError(f"unknown reference {name!r}; known: {sorted(REFERENCES)}")
    folder = resources.files("robotrl").joinpath(REFERENCES[name])
    tables = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".csv"):
            with resources.as_file(entry) as path:
                tables.append(load_curve_csv(path, algo_suffix=PUBLISHED_SUFFIX))
    if not tables:
        raise ScoreError(f"reference {name!r} has no CSV files in robotrl/{REFERENCES[name]}")
    return check_unique(pd.concat(tables, ignore_index=True))
