"""Settings for the whole test suite.

`make test` runs pytest with two workers on a two-core machine. PyTorch's OpenMP threads spin
while they wait, so two workers with two threads each (and the training subprocesses they
start) slow each other down many times over. One thread per process keeps them out of each
other's way; subprocesses inherit the variables.

The training runs go first, longest first (``@pytest.mark.duration(seconds)``, measured in
`make test`). With ``--dist loadgroup`` every test is its own work unit handed to whichever
worker is free, so the long runs spread over both workers and the short tests fill the gaps;
in collection order they queued on one worker at the end and left the other idle.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def expected_seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("duration")
        return float(mark.args[0]) if mark else 0.0

    items.sort(key=expected_seconds, reverse=True)  # a stable sort: the rest keep their order
