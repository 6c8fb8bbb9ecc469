"""Numbers produced by the papers' public code, shipped beside the repository.

``../shared/reference/official/`` (its README gives shapes, names and tolerances) holds weights,
batches, random draws and outputs of the public DrQ-v2, DrM, TACO and MENTOR code. The tests in
this folder load those weights into our networks and compare our outputs with theirs. Without
the folder the tests skip, except under CI, where it is always laid out and its absence fails.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

OFFICIAL = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "official"


def official_path(name: str) -> Path:
    path = OFFICIAL / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"reference file missing under CI: {path}")
        pytest.skip(f"reference file not found: {path}")
    return path


def load_official(name: str) -> dict[str, np.ndarray]:
    """Every array of one reference ``.npz``, float16 weights cast to float32."""
    with np.load(official_path(name)) as data:
        return {
            key: data[key].astype(np.float32) if data[key].dtype == np.float16 else data[key]
            for key in data.files
        }


def official_state(arrays: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """The arrays stored under ``prefix`` in the official ``state_dict`` order."""
    return [value for key, value in arrays.items() if key.startswith(prefix)]


def load_in_order(module: nn.Module, values: list[np.ndarray]) -> None:
    """Copy official tensors into ``module`` by ``state_dict`` order, checking every shape."""
    ours = module.state_dict()
    if len(ours) != len(values):
        raise AssertionError(f"{len(ours)} tensors in our module, {len(values)} official")
    loaded = {}
    for (name, tensor), value in zip(ours.items(), values, strict=True):
        if tuple(tensor.shape) != value.shape:
            raise AssertionError(f"{name}: ours {tuple(tensor.shape)}, official {value.shape}")
        loaded[name] = torch.from_numpy(np.array(value)).to(tensor.dtype)
    module.load_state_dict(loaded)
