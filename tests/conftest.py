"""Settings for the whole test suite.

`make test` runs pytest with two workers on a two-core machine. PyTorch's OpenMP threads spin
while they wait, so two workers with two threads each (and the training subprocesses they
start) slow each other down many times over. One thread per process keeps them out of each
other's way; subprocesses inherit the variables.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import torch

torch.set_num_threads(1)
