"""Checkpoints: tensors in safetensors, everything else in JSON; atomic; never unpickled.

A checkpoint is a directory ``step_<frame>/`` holding ``tensors.safetensors``, ``meta.json`` and
``checksums.json`` (the SHA-256 of every other file, checked on every load, so flipped bytes are
refused rather than loaded). It is written under a temporary name, fsynced and renamed, so a
crash leaves either the whole checkpoint or none. Nested states (agent modules, optimizers, RNG)
are flattened into named tensors plus a JSON skeleton that records where each tensor goes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"
CHECKSUM_FILE = "checksums.json"
_PREFIX = "step_"
log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit what it is loaded into."""


# ---------------------------------------------------------------------------------------------
# Nested state <-> (named tensors, JSON skeleton)


def flatten_state(state: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state into ``{name: tensor}`` and a JSON-serialisable skeleton."""
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach().cpu().contiguous().clone()
            return {"__tensor__": path}
        if isinstance(value, dict):
            return {
                "__dict__": [[key, encode(item, f"{path}/{key}")] for key, item in value.items()]
            }
        if isinstance(value, tuple):
            return {"__tuple__": [encode(item, f"{path}/{i}") for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [encode(item, f"{path}/{i}") for i, item in enumerate(value)]
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"cannot store {type(value).__name__} at {path!r} in a checkpoint")

    return tensors, encode(state, prefix)


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            name = skeleton["__tensor__"]
            if name not in tensors:
                raise CheckpointError(f"tensor {name!r} is listed in {META_FILE} but missing")
            return tensors[name]
        if "__dict__" in skeleton:
            return {key: unflatten_state(tensors, item) for key, item in skeleton["__dict__"]}
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(tensors, item) for item in skeleton["__tuple__"])
        raise CheckpointError(f"unknown entry in checkpoint skeleton: {sorted(skeleton)}")
    if isinstance(skeleton, list):
        return [unflatten_state(tensors, item) for item in skeleton]
    return skeleton


# ---------------------------------------------------------------------------------------------
# Writing


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def checkpoint_name(frame: int) -> str:
    return f"{_PREFIX}{frame:012d}"


def save_checkpoint(directory: Path, frame: int, state: Any, meta: dict[str, Any]) -> Path:
    """Atomically write ``state`` (nested, with tensors) and ``meta`` to ``directory/step_<frame>``.

    Returns the checkpoint directory.
    """

    def write(tmp: Path) -> list[Path]:
        tensors, skeleton = flatten_state(state)
        save_file(tensors, str(tmp / TENSORS_FILE), metadata={"format": "robotrl"})
        write_json_atomic(
            tmp / META_FILE, {**meta, "format_version": FORMAT_VERSION, "state": skeleton}
        )
        return [tmp / TENSORS_FILE]

    return write_checkpoint_directory(directory, frame, write)


def write_checkpoint_directory(
    directory: Path, frame: int, write: Callable[[Path], list[Path]]
) -> Path:
    """``directory/step_<frame>`` filled by ``write(tmp)`` under a temporary name, then renamed.

    ``write`` fills the temporary directory and returns the files it wrote (fsynced here; files
    written with :func:`write_json_atomic` are already); ``checksums.json`` is added here. A crash
    leaves the whole checkpoint or none; re-saving a frame (e.g. after a resume) replaces it whole.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / checkpoint_name(frame)
    tmp = directory / f".tmp_{checkpoint_name(frame)}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for path in write(tmp):
        _fsync_file(path)
    write_json_atomic(tmp / CHECKSUM_FILE, _checksums(tmp))
    _fsync_dir(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    _fsync_dir(directory)
    return target


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (and any leftover temporaries)."""
    for leftover in directory.glob(".tmp_*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _checksums(directory: Path) -> dict[str, str]:
    """SHA-256 of every file below ``directory`` but the checksum file, by relative path."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != CHECKSUM_FILE)
    return {str(p.relative_to(directory)): _sha256(p) for p in files}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading


def verify_checksums(path: Path) -> None:
    """Raise :class:`CheckpointError` unless every file of checkpoint ``path`` has the SHA-256
    its ``checksums.json`` lists (and no file is missing or unlisted).

    A checkpoint written before robotrl kept checksums (no ``checksums.json``) is accepted with a
    warning that it cannot be verified.
    """
    manifest = path / CHECKSUM_FILE
    if not manifest.is_file():
        log.warning("checkpoint %s has no %s: it cannot be verified", path, CHECKSUM_FILE)
        return
    try:
        expected = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {CHECKSUM_FILE} is not JSON ({err})"
        ) from err
    found = _checksums(path)
    if not isinstance(expected, dict) or set(expected) != set(found):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its files {sorted(found)} are not the ones "
            f"{CHECKSUM_FILE} lists"
        )
    bad = sorted(name for name, digest in found.items() if expected[name] != digest)
    if bad:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {', '.join(bad)} changed since it was written "
            "(SHA-256 mismatch)"
        )


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``meta`` from JSON and the nested ``state`` with its tensors."""

    path: Path
    meta: dict[str, Any]
    state: Any

    @property
    def frame(self) -> int:
        return int(self.meta["counters"]["frame"])


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint directories, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)]
    return sorted(found, key=lambda p: p.name)


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read and validate a checkpoint directory; :class:`CheckpointError` says what is wrong."""
    path = Path(path)
    if path.is_file() and path.name in (META_FILE, TENSORS_FILE):
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint directory at {path}")
    meta_path, tensors_path = path / META_FILE, path / TENSORS_FILE
    for needed in (meta_path, tensors_path):
        if not needed.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {needed.name} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {META_FILE} is not JSON ({err})"
        ) from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('format_version')!r}; "
            f"this robotrl reads version {FORMAT_VERSION}"
        )
    verify_checksums(path)
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: cannot read {TENSORS_FILE} ({err})"
        ) from err
    state = unflatten_state(tensors, meta.pop("state"))
    return Checkpoint(path=path, meta=meta, state=state)


def latest_checkpoint(directory: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint in ``directory`` that loads, and a note for each one skipped."""
    skipped: list[str] = []
    for path in reversed(list_checkpoints(directory)):
        try:
            return load_checkpoint(path), skipped
        except CheckpointError as err:
            skipped.append(str(err))
    return None, skipped
