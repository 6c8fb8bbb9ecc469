"""The success classifier on a pretrained encoder: a tiny random transformers ResNet saved to
disk and loaded back offline, frozen under a trained head, saved, reloaded and gated."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")

from robotrl.rewards.classifier import (  # noqa: E402
    CONFIG_FILE,
    IMAGENET_MEAN,
    WEIGHTS_FILE,
    ClassifierConfig,
    LabelledFrames,
    ModelFilesError,
    PretrainedSuccessNet,
    SuccessClassifier,
)

SIZE = 16


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory) -> Path:
    """A randomly initialised ResNet (two stages of 8 and 16 channels) as save_pretrained
    writes it, with a preprocessor config asking for 24-pixel inputs."""
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"
    )
    directory = tmp_path_factory.mktemp("resnet")
    transformers.ResNetModel(config).save_pretrained(directory)
    preprocessor = {"size": {"shortest_edge": 24}, "image_mean": [0.5] * 3, "image_std": [0.25] * 3}
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return directory


def square_frames(count: int, seed: int) -> LabelledFrames:
    """Noisy grey frames; positives hold a bright 5x5 square somewhere, near-misses a dim one."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["positive", "negative", "near_miss"])[rng.integers(0, 3, count)]
    frames = rng.integers(40, 90, (count, 3, SIZE, SIZE))
    for frame, kind in zip(frames, kinds, strict=True):
        if kind != "negative":
            top, left = rng.integers(0, SIZE - 5, 2)
            frame[:, top : top + 5, left : left + 5] = 250 if kind == "positive" else 110
    return LabelledFrames(frames.astype(np.uint8), kinds)


def pretrained_config(path: Path, freeze: bool = True) -> ClassifierConfig:
    return ClassifierConfig(encoder="pretrained", encoder_path=str(path), freeze_encoder=freeze)


@pytest.fixture(scope="module")
def trained(backbone_dir):
    """A frozen-encoder classifier fitted on square frames, and its held-out frames."""
    train, validation, held_out = (square_frames(n, s) for n, s in ((300, 0), (150, 1), (200, 2)))
    before = {k: v.clone() for k, v in _encoder(backbone_dir).state_dict().items()}
    # target_fpr=0: fit()'s threshold is the lowest that keeps the validation FPR at target,
    # and at 0.02 it let 2 validation near-misses through and 3.6% of held-out non-successes
    # (the gate below would refuse it). Positives then score >= 0.8, non-successes <= 0.2.
    classifier = SuccessClassifier.fit(
        train,
        validation,
        steps=400,
        batch_size=32,
        lr=3e-3,
        target_fpr=0.0,
        config=pretrained_config(backbone_dir),
    )
    return classifier, held_out, before


def _encoder(path: Path) -> torch.nn.Module:
    return transformers.ResNetModel.from_pretrained(path, local_files_only=True)


def test_encoder_weights_are_the_saved_ones_and_preprocessing_is_read(backbone_dir):
    classifier = SuccessClassifier(pretrained_config(backbone_dir))
    net = classifier.net
    assert isinstance(net, PretrainedSuccessNet)
    saved = load_file(str(backbone_dir / "model.safetensors"))
    state = net.encoder.state_dict()
    assert set(saved) <= set(state) and len(saved) > 5
    for name, value in saved.items():
        assert torch.equal(state[name], value), name
    # from preprocessor_config.json, not the defaults
    assert classifier.config.encoder_input_size == 24
    assert (
        classifier.config.encoder_mean == [0.5] * 3 and classifier.config.encoder_std == [0.25] * 3
    )
    # without that file: the frame size and ImageNet statistics (a ResNet config has no size)
    bare = backbone_dir.parent / "bare"
    _encoder(backbone_dir).save_pretrained(bare)
    plain = SuccessClassifier(pretrained_config(bare)).config
    assert plain.encoder_input_size == plain.image_size and plain.encoder_mean == list(
        IMAGENET_MEAN
    )


def test_frozen_encoder_gets_no_gradient_and_is_unchanged_by_training(backbone_dir, trained):
    classifier, _, before = trained
    net = classifier.net
    assert all(not p.requires_grad for p in net.encoder.parameters())
    # a backward pass through the whole net reaches the head only
    net.train()
    assert not net.encoder.training  # batch-norm statistics stay fixed too
    frames = torch.as_tensor(square_frames(8, 5).frames)
    net(frames).sum().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.head.parameters())
    for name, value in net.encoder.state_dict().items():  # buffers included
        assert torch.equal(value, before[name]), name


def test_unfrozen_encoder_trains(backbone_dir):
    train, validation = square_frames(60, 0), square_frames(60, 1)
    classifier = SuccessClassifier.fit(
        train, validation, steps=3, batch_size=16, config=pretrained_config(backbone_dir, False)
    )
    saved = load_file(str(backbone_dir / "model.safetensors"))
    state = classifier.net.encoder.state_dict()
    changed = [
        n for n, v in saved.items() if v.is_floating_point() and not torch.equal(state[n], v)
    ]
    assert changed  # so the frozen test's "unchanged" is not vacuous


def test_training_separates_bright_squares_from_dim_ones(trained):
    classifier, held_out, _ = trained
    metrics = classifier.report(held_out)
    print(f"\npretrained-encoder classifier on held-out squares: {metrics}")
    assert metrics["accuracy"] >= 0.9 and metrics["recall"] >= 0.8 and metrics["fpr"] <= 0.05
    # chance would be ~1/3 positives: a constant or random head cannot pass this
    untrained = SuccessClassifier(dataclasses.replace(classifier.config))
    assert untrained.report(held_out)["accuracy"] < 0.9


def test_save_load_gives_identical_logits_and_records_the_encoder(backbone_dir, trained, tmp_path):
    classifier, held_out, _ = trained
    directory = classifier.save(tmp_path / "clf")
    record = json.loads((directory / CONFIG_FILE).read_text())
    assert record["encoder"] == "pretrained" and record["encoder_path"] == str(backbone_dir)
    assert record["freeze_encoder"] is True and record["encoder_input_size"] == 24
    # a frozen encoder is not copied: the file holds the head only
    assert all(name.startswith("head.") for name in load_file(str(directory / WEIGHTS_FILE)))
    loaded = SuccessClassifier.load(directory)
    frames = torch.as_tensor(held_out.frames)
    classifier.net.eval()
    loaded.net.eval()
    with torch.no_grad():
        assert torch.equal(classifier.net(frames), loaded.net(frames))
    assert loaded.config.threshold == classifier.config.threshold
    assert torch.equal(loaded.predict(held_out.frames), classifier.predict(held_out.frames))


def test_unfrozen_encoder_is_saved_with_the_head(backbone_dir, tmp_path):
    classifier = SuccessClassifier(pretrained_config(backbone_dir, freeze=False))
    with torch.no_grad():
        next(classifier.net.encoder.parameters()).add_(1.0)  # as if fine-tuned
    directory = classifier.save(tmp_path / "clf")
    names = set(load_file(str(directory / WEIGHTS_FILE)))
    assert any(n.startswith("encoder.") for n in names)
    loaded = SuccessClassifier.load(directory)
    frames = torch.as_tensor(square_frames(6, 3).frames)
    with torch.no_grad():
        assert torch.equal(classifier.net.eval()(frames), loaded.net.eval()(frames))


def test_missing_or_incomplete_encoder_dir_names_the_files(backbone_dir, tmp_path):
    with pytest.raises(
        ModelFilesError, match=r"does not exist.*config\.json and model\.safetensors"
    ):
        SuccessClassifier(pretrained_config(tmp_path / "nowhere"))
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text((backbone_dir / "config.json").read_text())
    with pytest.raises(ModelFilesError, match=r"lacks model\.safetensors or .*pytorch_model\.bin"):
        SuccessClassifier(pretrained_config(incomplete))
    with pytest.raises(ValueError, match="needs encoder_path"):
        ClassifierConfig(encoder="pretrained")
    with pytest.raises(ValueError, match="encoder must be one of"):
        ClassifierConfig(encoder="resnet")


def test_fpr_gate_and_classifier_reward_work_with_it(trained, tmp_path):
    gate = pytest.importorskip("robotrl_real.finetune.gate")
    labeling = pytest.importorskip("robotrl_real.labeling")
    classifier, held_out, _ = trained
    metrics = gate.check_classifier_gate(classifier, held_out)
    assert metrics["fpr"] <= 0.02
    biased = SuccessClassifier(dataclasses.replace(classifier.config))
    biased.net.load_state_dict(classifier.net.state_dict())
    biased.config.threshold = 0.0
    with pytest.raises(gate.ClassifierGateError, match="above the 2% limit"):
        gate.check_classifier_gate(biased, held_out)
    # the saved form the fine-tuning CLI loads: classifier directory + held_out.npz
    directory = classifier.save(tmp_path / "clf")
    labeling.save_labelled(held_out, directory / "held_out.npz")
    reward, passed = gate.gated_classifier_reward(directory)
    assert passed["fpr"] <= 0.02
    positive = held_out.frames[held_out.labels][0]
    negative = held_out.frames[held_out.kinds == "negative"][0]
    assert reward({"pixels": positive[None], "proprio": np.zeros(4)}) == (1.0, True)
    assert reward({"pixels": negative[None], "proprio": np.zeros(4)}) == (0.0, False)
