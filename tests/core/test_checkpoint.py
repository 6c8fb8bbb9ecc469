"""Checkpoints: safetensors + JSON round trips, atomic writes, clear errors, no pickle."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from robotrl.agents.drqv2 import DrQV2Agent, DrQV2Config
from robotrl.checkpoint import (
    CHECKSUM_FILE,
    META_FILE,
    TENSORS_FILE,
    CheckpointError,
    flatten_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    unflatten_state,
)


def small_agent(hidden: int = 16) -> DrQV2Agent:
    return DrQV2Agent(
        DrQV2Config(hidden_dim=hidden), obs_shape=(9, 32, 32), action_dim=2, device="cpu"
    )


def trained_state(agent: DrQV2Agent) -> dict:
    features = agent.encode(torch.randint(0, 255, (4, 9, 32, 32)).float())
    agent.update_critic(
        features, torch.zeros(4, 2), torch.ones(4, 1), torch.ones(4, 1), features.detach(), 0
    )
    return {"agent": agent.state_dict(), "rng": {"torch": torch.get_rng_state()}}


def test_flatten_round_trip_keeps_key_types_tuples_and_tensors():
    state = {"a": {0: torch.ones(2), 1: (0.9, 0.999)}, "b": [torch.zeros(1, 3), None, "x", True]}
    tensors, skeleton = flatten_state(state)
    json.dumps(skeleton)  # the skeleton is plain JSON
    restored = unflatten_state(tensors, json.loads(json.dumps(skeleton)))
    assert list(restored["a"]) == [0, 1] and restored["a"][1] == (0.9, 0.999)
    assert torch.equal(restored["a"][0], torch.ones(2)) and restored["b"][1:] == [None, "x", True]


def test_agent_and_optimizer_state_round_trip(tmp_path):
    agent = small_agent()
    state = trained_state(agent)
    path = save_checkpoint(tmp_path, 1000, state, {"counters": {"frame": 1000}})
    checkpoint = load_checkpoint(path)
    assert checkpoint.frame == 1000
    other = small_agent()
    other.load_state_dict(checkpoint.state["agent"])
    for name, module in agent.modules.items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, other.modules[name].state_dict()[key]), (name, key)
    adam = other.optimizers["critic"].state_dict()
    assert adam["state"][0]["exp_avg"].abs().sum() > 0
    assert adam["param_groups"][0]["betas"] == (0.9, 0.999)


def test_checkpoint_layout_and_atomic_rename(tmp_path):
    path = save_checkpoint(tmp_path, 7, {"x": torch.ones(1)}, {"counters": {"frame": 7}})
    assert sorted(p.name for p in path.iterdir()) == [CHECKSUM_FILE, META_FILE, TENSORS_FILE]
    assert not list(tmp_path.glob(".tmp_*"))
    meta = json.loads((path / META_FILE).read_text())
    assert meta["format_version"] == 1 and meta["counters"] == {"frame": 7}


def test_prune_keeps_newest(tmp_path):
    for frame in (10, 20, 30):
        save_checkpoint(tmp_path, frame, {"x": torch.ones(1)}, {"counters": {"frame": frame}})
    prune_checkpoints(tmp_path, keep=2)
    assert [load_checkpoint(p).frame for p in list_checkpoints(tmp_path)] == [20, 30]


def test_corrupt_tensor_file_is_a_clear_error_and_latest_falls_back(tmp_path):
    save_checkpoint(tmp_path, 10, {"x": torch.ones(3)}, {"counters": {"frame": 10}})
    newest = save_checkpoint(tmp_path, 20, {"x": torch.ones(3)}, {"counters": {"frame": 20}})
    data = (newest / TENSORS_FILE).read_bytes()
    (newest / TENSORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt: tensors\.safetensors changed"):
        load_checkpoint(newest)
    checkpoint, skipped = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.frame == 10
    assert len(skipped) == 1 and "step_000000000020" in skipped[0]


def test_broken_meta_missing_files_and_versions_are_clear_errors(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"x": torch.ones(1)}, {"counters": {"frame": 1}})
    (path / META_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"meta\.json is not JSON"):
        load_checkpoint(path)
    (path / META_FILE).write_text(json.dumps({"format_version": 99, "state": None}))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)
    (path / TENSORS_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"incomplete: tensors\.safetensors is missing"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_pickle_is_never_loaded(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"x": torch.ones(1)}, {"counters": {"frame": 1}})

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle was executed')",))

    (path / TENSORS_FILE).write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    path = save_checkpoint(
        tmp_path, 1, trained_state(small_agent(hidden=16)), {"counters": {"frame": 1}}
    )
    bigger = small_agent(hidden=32)
    with pytest.raises(RuntimeError, match="size mismatch for policy"):
        bigger.load_state_dict(load_checkpoint(path).state["agent"])


def flip_bytes(path, count: int = 48) -> None:
    """Invert ``count`` bytes in the middle of ``path``, keeping its size."""
    data = bytearray(path.read_bytes())
    start = max(0, len(data) // 2 - count // 2)
    for index in range(start, min(len(data), start + count)):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", [TENSORS_FILE, META_FILE, CHECKSUM_FILE])
def test_flipped_bytes_in_any_checkpoint_file_are_refused_and_latest_falls_back(tmp_path, name):
    state = trained_state(small_agent())
    save_checkpoint(tmp_path, 10, state, {"counters": {"frame": 10}})
    newest = save_checkpoint(tmp_path, 20, state, {"counters": {"frame": 20}})
    assert sorted(p.name for p in newest.iterdir()) == sorted(
        [CHECKSUM_FILE, META_FILE, TENSORS_FILE]
    )
    flip_bytes(newest / name)
    with pytest.raises(CheckpointError, match=r"step_000000000020 is corrupt"):
        load_checkpoint(newest)
    checkpoint, skipped = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.frame == 10
    assert len(skipped) == 1 and "step_000000000020 is corrupt" in skipped[0]


def test_a_checkpoint_from_before_checksums_loads_with_a_warning(tmp_path, caplog):
    path = save_checkpoint(tmp_path, 1, {"x": torch.ones(1)}, {"counters": {"frame": 1}})
    (path / CHECKSUM_FILE).unlink()
    with caplog.at_level("WARNING", logger="robotrl.checkpoint"):
        assert load_checkpoint(path).frame == 1
    assert "has no checksums.json: it cannot be verified" in caplog.text
