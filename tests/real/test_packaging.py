"""The three distributions install separately; the core never imports a simulator or the robot.

A robot PC installs robotrl + robotrl-real without simulators, so importing the core, its
trainer and its CLIs must not pull in robotrl_sim, mujoco or dm_control.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path

import robotrl_real


def test_each_part_is_its_own_installed_distribution():
    assert version("robotrl") == version("robotrl-sim") == version("robotrl-real") == "0.1.0"
    assert robotrl_real.__version__ == "0.1.0"
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts["robotrl-train"] == "robotrl.cli.train:main"
    assert scripts["robotrl-eval"] == "robotrl.cli.evaluate:main"
    assert scripts["robotrl-report"] == "robotrl.cli.report:main"
    assert scripts["robotrl-robot"] == "robotrl_real.cli:main"
    assert scripts["robotrl-finetune"] == "robotrl_real.finetune.cli:main"


def test_the_real_robot_clis_answer_help():
    for script in ("robotrl-robot", "robotrl-finetune"):
        done = subprocess.run(
            [str(Path(sys.executable).parent / script), "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.startswith(f"usage: {script}"), done.stdout[:200]


def test_importing_the_core_loads_no_simulator():
    code = (
        "import sys, json\n"
        "import robotrl.trainer, robotrl.cli.train, robotrl.cli.evaluate, robotrl.builders\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('robotrl_sim', 'robotrl_real', 'mujoco', 'dm_control'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
