"""A learned success classifier (HIL-SERL style), shared by sim tasks and the real arm.

A small conv net reads one frame (and proprio, if given) and outputs a success logit. It is
trained with binary cross-entropy on labelled frames: positives, plain negatives and near-misses
(frames just short of success, the negatives that matter). The decision threshold is then
chosen on a validation split so that the false-positive rate stays at or below a target, since a
false success ends an episode with a reward the policy will learn to exploit. :meth:`report`
measures FPR (overall and on near-misses) and recall on held-out frames.

Saved as ``classifier.safetensors`` (weights) + ``classifier.json`` (architecture, threshold,
metrics); loading never unpickles code. As a reward (``task.reward.kind=success_classifier``)
it gives 1 for a frame it calls a success and 0 otherwise, and with ``terminate_on_success``
ends the episode there.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from robotrl.rewards.base import RewardModel, frames_tensor

WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"
#: Frame kinds in a labelled set; only "positive" frames are successes.
KINDS = ("positive", "negative", "near_miss")


@dataclass
class LabelledFrames:
    """Frames uint8 ``[N, C, H, W]``, their kinds (``KINDS``) and optional proprio ``[N, P]``."""

    frames: np.ndarray
    kinds: np.ndarray  # strings from KINDS
    proprio: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        self.kinds = np.asarray(self.kinds)
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4:
            raise ValueError(
                f"frames must be uint8 [N, C, H, W], got {self.frames.dtype} {self.frames.shape}"
            )
        unknown = set(self.kinds.tolist()) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown frame kinds {sorted(unknown)}; use {KINDS}")
        if len(self.kinds) != len(self.frames) or (
            self.proprio is not None and len(self.proprio) != len(self.frames)
        ):
            raise ValueError("frames, kinds and proprio must have the same length")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def labels(self) -> np.ndarray:
        return self.kinds == "positive"

    def subset(self, index: np.ndarray) -> LabelledFrames:
        proprio = None if self.proprio is None else self.proprio[index]
        return LabelledFrames(self.frames[index], self.kinds[index], proprio)

    def split(self, fractions: tuple[float, ...], seed: int = 0) -> list[LabelledFrames]:
        """Disjoint random parts with these fractions of each kind (the rest goes last)."""
        rng = np.random.default_rng(seed)
        parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
        for kind in KINDS:
            index = rng.permutation(np.flatnonzero(self.kinds == kind))
            bounds = np.cumsum([round(f * len(index)) for f in fractions])
            for part, chunk in zip(parts, np.split(index, bounds), strict=True):
                part.extend(chunk.tolist())
        return [self.subset(np.sort(np.array(part, dtype=int))) for part in parts]


@dataclass
class ClassifierConfig:
    channels: int = 3
    image_size: int = 32
    proprio_dim: int = 0
    width: int = 32
    hidden: int = 64
    threshold: float = 0.5  # on the success probability; set by fit()
    metrics: dict[str, float] = field(default_factory=dict)  # report() on held-out frames


class SuccessNet(nn.Module):
    """Three stride-2 convolutions, global average pooling, an MLP (with proprio) to a logit."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        width = config.width
        self.conv = nn.Sequential(
            nn.Conv2d(config.channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(width * 2 + config.proprio_dim, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, frames: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        features = self.conv(frames.float() / 255.0 - 0.5)
        # Mean and max pooling: max keeps a small object's evidence wherever it is.
        pooled = [features.mean(dim=(-2, -1)), features.amax(dim=(-2, -1))]
        if proprio is not None:
            pooled.append(proprio.float())
        return self.head(torch.cat(pooled, dim=-1)).squeeze(-1)


class SuccessClassifier(RewardModel):
    """Train, calibrate, save and load a success classifier; also a terminal reward model."""

    def __init__(self, config: ClassifierConfig, net: SuccessNet | None = None) -> None:
        self.config = config
        self.net = net if net is not None else SuccessNet(config)

    # -- inference ----------------------------------------------------------------------------

    @torch.no_grad()
    def probability(
        self, frames: torch.Tensor | np.ndarray, proprio: torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        """Success probabilities ``[B]`` of uint8 frames ``[B, C, H, W]``."""
        self.net.eval()
        frames = frames_tensor(frames)
        if tuple(frames.shape[1:]) != (self.config.channels, *(2 * (self.config.image_size,))):
            raise ValueError(
                f"the classifier was trained on {self.config.channels}x{self.config.image_size}"
                f"x{self.config.image_size} frames, got {tuple(frames.shape[1:])}"
            )
        extra = None
        if self.config.proprio_dim:
            if proprio is None:
                raise ValueError("this classifier reads proprio, and none was given")
            extra = torch.as_tensor(proprio).reshape(len(frames), -1)
        return torch.sigmoid(self.net(frames, extra))

    def predict(self, frames: Any, proprio: Any = None) -> torch.Tensor:
        return self.probability(frames, proprio) >= self.config.threshold

    def score(
        self,
        frames: torch.Tensor,
        proprio: torch.Tensor | None = None,
        instruction: str | None = None,
    ) -> torch.Tensor:
        """1.0 where the classifier sees success, else 0.0."""
        return self.predict(frames, proprio).float()

    def is_success(self, scores: torch.Tensor) -> torch.Tensor:
        return scores > 0.5

    # -- training -----------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        train: LabelledFrames,
        validation: LabelledFrames,
        *,
        target_fpr: float = 0.02,
        steps: int = 400,
        batch_size: int = 64,
        lr: float = 1e-3,
        seed: int = 0,
        config: ClassifierConfig | None = None,
    ) -> SuccessClassifier:
        """Train on ``train`` with BCE (classes balanced), then set the threshold on
        ``validation`` for a false-positive rate of at most ``target_fpr``."""
        _, channels, height, width = train.frames.shape
        if height != width:
            raise ValueError(f"square frames expected, got {height}x{width}")
        proprio_dim = 0 if train.proprio is None else int(train.proprio.shape[1])
        config = config or ClassifierConfig()
        config = ClassifierConfig(
            **{
                **asdict(config),
                "channels": channels,
                "image_size": height,
                "proprio_dim": proprio_dim,
            }
        )
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        classifier = cls(config)
        net = classifier.net
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        frames = torch.as_tensor(train.frames)
        labels = torch.as_tensor(train.labels, dtype=torch.float32)
        proprio = None if train.proprio is None else torch.as_tensor(train.proprio).float()
        positives = float(labels.sum())
        if positives == 0 or positives == len(labels):
            raise ValueError("training frames need both positives and negatives")
        pos_weight = torch.tensor((len(labels) - positives) / positives)
        net.train()
        for _ in range(steps):
            index = torch.randint(len(labels), (batch_size,), generator=generator)
            batch = _random_shift(frames[index], 1, generator)
            logits = net(batch, None if proprio is None else proprio[index])
            loss = F.binary_cross_entropy_with_logits(logits, labels[index], pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        classifier.calibrate(validation, target_fpr)
        return classifier

    def calibrate(self, validation: LabelledFrames, target_fpr: float) -> float:
        """Lowest threshold whose FPR on ``validation``'s non-successes is ≤ ``target_fpr``."""
        probs = self.probability(validation.frames, validation.proprio).numpy()
        negatives = np.sort(probs[~validation.labels])[::-1]
        if len(negatives) == 0:
            raise ValueError("the validation split needs negatives to set the threshold")
        allowed = int(np.floor(target_fpr * len(negatives)))  # false positives we may keep
        # Strictly above the (allowed+1)-th highest negative: at most `allowed` pass.
        bar = float(negatives[allowed]) if allowed < len(negatives) else 0.0
        self.config.threshold = float(np.nextafter(np.float32(bar), np.float32(2.0)))
        return self.config.threshold

    def report(self, held_out: LabelledFrames) -> dict[str, float]:
        """FPR on all non-successes and on near-misses, recall and accuracy, on ``held_out``."""
        predicted = self.predict(held_out.frames, held_out.proprio).numpy()
        kinds = held_out.kinds

        def rate(mask: np.ndarray) -> float:
            return float(predicted[mask].mean()) if mask.any() else float("nan")

        metrics = {
            "fpr": rate(kinds != "positive"),
            "near_miss_fpr": rate(kinds == "near_miss"),
            "negative_fpr": rate(kinds == "negative"),
            "recall": rate(kinds == "positive"),
            "accuracy": float((predicted == held_out.labels).mean()),
            "threshold": self.config.threshold,
        }
        self.config.metrics = metrics
        return metrics

    # -- files --------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Weights as safetensors and config/threshold/metrics as JSON, each written atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        _atomic(directory / WEIGHTS_FILE, lambda tmp: save_file(weights, str(tmp)))
        text = json.dumps({"class": "SuccessClassifier", **asdict(self.config)}, indent=2)
        _atomic(directory / CONFIG_FILE, lambda tmp: tmp.write_text(text))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SuccessClassifier:
        directory = Path(directory)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"success classifier directory {str(directory)!r} lacks {name} "
                    f"(expected {WEIGHTS_FILE} and {CONFIG_FILE}, as written by save())"
                )
        record = json.loads((directory / CONFIG_FILE).read_text())
        if record.pop("class", None) != "SuccessClassifier":
            raise ValueError(f"{directory / CONFIG_FILE} does not describe a SuccessClassifier")
        classifier = cls(ClassifierConfig(**record))
        classifier.net.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        return classifier


def build_reward_model(options: dict[str, Any]) -> SuccessClassifier:
    """``task.reward.kind=success_classifier``: ``options.path`` is a saved classifier."""
    if "path" not in options:
        raise ValueError("the success_classifier reward needs options.path (a saved classifier)")
    return SuccessClassifier.load(options["path"])


def _random_shift(frames: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Each frame shifted by up to ``pad`` pixels (replicate padding), a cheap augmentation."""
    size = frames.shape[-1]
    padded = F.pad(frames.float(), (pad,) * 4, mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (len(frames), 2), generator=generator).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + size, dx : dx + size] for i, (dy, dx) in enumerate(shifts)]
    ).to(frames.dtype)


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
