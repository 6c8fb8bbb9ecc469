"""A learned success classifier (HIL-SERL style), shared by sim tasks and the real arm.

A conv net reads one frame (and proprio, if given) and outputs a success logit: either a small
CNN trained from scratch (``encoder="cnn"``) or a pretrained vision backbone loaded with
transformers from a local directory (``encoder="pretrained"``, see :class:`PretrainedSuccessNet`)
under a small trained head. It is trained with binary cross-entropy on labelled frames:
positives, plain negatives and near-misses (frames just short of success, the negatives that
matter). The decision threshold is then chosen on a validation split so that the false-positive
rate stays at or below a target, since a false success ends an episode with a reward the policy
will learn to exploit. :meth:`report` measures FPR (overall and on near-misses) and recall on
held-out frames.

Saved as ``classifier.safetensors`` (weights) + ``classifier.json`` (architecture, threshold,
metrics; for a pretrained encoder its kind, path and preprocessing); loading never unpickles
code. As a reward (``task.reward.kind=success_classifier``) it gives 1 for a frame it calls a
success and 0 otherwise, and with ``terminate_on_success`` ends the episode there.
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
from robotrl.rewards.clip import _WEIGHT_FILES, CLIP_MEAN, CLIP_STD, ModelFilesError

WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"
#: Frame kinds in a labelled set; only "positive" frames are successes.
KINDS = ("positive", "negative", "near_miss")
ENCODERS = ("cnn", "pretrained")
# ImageNet statistics, for a backbone directory without preprocessor_config.json (CLIP's own
# statistics for CLIP towers).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    """The classifier's architecture, threshold and metrics (all saved in ``classifier.json``).

    ``encoder="pretrained"`` reads frames with the transformers backbone saved (by
    ``save_pretrained``) in the local directory ``encoder_path``; with ``freeze_encoder`` (the
    default, as in HIL-SERL) only the head is trained. ``encoder_input_size`` and
    ``encoder_mean``/``encoder_std`` are the backbone's preprocessing; left at 0/empty they are
    read from that directory when the classifier is built (see :func:`encoder_preprocessing`)
    and then saved, so a loaded classifier preprocesses as it was trained.
    """

    channels: int = 3
    image_size: int = 32
    proprio_dim: int = 0
    width: int = 32  # cnn only
    hidden: int = 64
    threshold: float = 0.5  # on the success probability; set by fit()
    metrics: dict[str, float] = field(default_factory=dict)  # report() on held-out frames
    encoder: str = "cnn"  # one of ENCODERS
    encoder_path: str | None = None
    freeze_encoder: bool = True
    encoder_input_size: int = 0
    encoder_mean: list[float] = field(default_factory=list)
    encoder_std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "pretrained" and not self.encoder_path:
            raise ValueError(
                "encoder='pretrained' needs encoder_path, a local directory written by "
                "save_pretrained"
            )


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


class PretrainedSuccessNet(nn.Module):
    """A transformers vision backbone from a local directory under a trained MLP head.

    Frames are resized (bilinear, antialiased) to ``encoder_input_size``, scaled to [0, 1] and
    normalised with ``encoder_mean``/``encoder_std``. The backbone's ``last_hidden_state``
    (``[B, C, h, w]`` for a conv net such as ResNet, ``[B, tokens, D]`` for a ViT or a CLIP
    tower) is mean- and max-pooled over positions, as in :class:`SuccessNet`. A frozen backbone
    stays in eval mode (batch-norm statistics fixed) and gets no gradient.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        assert config.encoder_path is not None  # ClassifierConfig checks it
        self.encoder = load_backbone(config.encoder_path)
        size, mean, std = encoder_preprocessing(config.encoder_path, self.encoder.config)
        # The recorded preprocessing wins: a loaded head was trained with it.
        config.encoder_input_size = config.encoder_input_size or size or config.image_size
        config.encoder_mean = list(config.encoder_mean or mean)
        config.encoder_std = list(config.encoder_std or std)
        if (
            len(config.encoder_mean) != config.channels
            or len(config.encoder_std) != config.channels
        ):
            raise ValueError(
                f"the encoder's mean/std have {len(config.encoder_mean)} channels, "
                f"the frames {config.channels}"
            )
        self.input_size = config.encoder_input_size
        # Not persistent: the JSON records them.
        mean_tensor = torch.tensor(config.encoder_mean).view(1, -1, 1, 1)
        self.register_buffer("mean", mean_tensor, persistent=False)
        self.register_buffer(
            "std", torch.tensor(config.encoder_std).view(1, -1, 1, 1), persistent=False
        )
        self.frozen = config.freeze_encoder
        if self.frozen:
            self.encoder.requires_grad_(False)
        with torch.no_grad():
            probe = torch.zeros(1, config.channels, self.input_size, self.input_size)
            feature_dim = self.encode(probe).shape[-1]
        self.head = nn.Sequential(
            nn.Linear(feature_dim + config.proprio_dim, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 1),
        )

    def train(self, mode: bool = True) -> PretrainedSuccessNet:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``[B, 2D]`` of normalised pixels ``[B, C, S, S]``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.encoder(pixel_values=pixels).last_hidden_state
        positions = hidden.flatten(2) if hidden.ndim == 4 else hidden.transpose(1, 2)
        return torch.cat([positions.mean(dim=-1), positions.amax(dim=-1)], dim=-1)

    def forward(self, frames: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        pixels = frames.float() / 255.0
        if pixels.shape[-1] != self.input_size or pixels.shape[-2] != self.input_size:
            pixels = F.interpolate(
                pixels, size=(self.input_size,) * 2, mode="bilinear", antialias=True
            )
        features = [self.encode((pixels - self.mean) / self.std)]
        if proprio is not None:
            features.append(proprio.float())
        return self.head(torch.cat(features, dim=-1)).squeeze(-1)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What ``save`` writes: the head, and the backbone only if it was trained too (a
        frozen one is read again from ``encoder_path``)."""
        return {
            name: value
            for name, value in self.state_dict().items()
            if not (self.frozen and name.startswith("encoder."))
        }


def build_net(config: ClassifierConfig) -> nn.Module:
    return SuccessNet(config) if config.encoder == "cnn" else PretrainedSuccessNet(config)


def check_encoder_dir(path: str | Path) -> Path:
    """``path`` as a directory holding a saved transformers vision model, or a clear error."""
    directory = Path(path).expanduser()
    expected = (
        "config.json and model.safetensors (or pytorch_model.bin), as written by the "
        "model's save_pretrained; preprocessor_config.json (image size, mean, std) is optional"
    )
    if not directory.is_dir():
        raise ModelFilesError(
            f"pretrained encoder directory {str(directory)!r} does not exist; expected a "
            f"directory with {expected}. Weights are never downloaded: copy them there first."
        )
    missing = []
    if not (directory / "config.json").is_file():
        missing.append("config.json")
    if not any((directory / name).is_file() for name in _WEIGHT_FILES):
        missing.append(" or ".join(_WEIGHT_FILES))
    if missing:
        raise ModelFilesError(
            f"pretrained encoder directory {str(directory)!r} lacks {'; '.join(missing)} "
            f"(expected {expected})"
        )
    return directory


def load_backbone(path: str | Path) -> nn.Module:
    """The vision model saved in ``path`` (local files only). A full CLIP checkpoint gives its
    vision tower; anything else is loaded with ``AutoModel``."""
    directory = check_encoder_dir(path)
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "a pretrained classifier encoder needs transformers: pip install 'robotrl[vlm]'"
        ) from err
    config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    loader = transformers.CLIPVisionModel if config.model_type == "clip" else transformers.AutoModel
    model: nn.Module = loader.from_pretrained(directory, local_files_only=True)
    return model


def encoder_preprocessing(
    path: str | Path, model_config: Any
) -> tuple[int, list[float], list[float]]:
    """Input size (0: keep the frame size), mean and std for the backbone in ``path``.

    From ``preprocessor_config.json`` when present: ``crop_size`` if given, else ``size``
    (``height``, ``shortest_edge`` or a number; frames are square, so each means the side),
    ``image_mean`` and ``image_std``. Otherwise the model config's ``image_size`` (ViT, CLIP; a
    ResNet has none) and ImageNet's statistics (CLIP's for CLIP towers).
    """
    model_type = str(getattr(model_config, "model_type", ""))
    clip = model_type.startswith("clip")
    mean, std = (CLIP_MEAN, CLIP_STD) if clip else (IMAGENET_MEAN, IMAGENET_STD)
    size = int(getattr(model_config, "image_size", 0) or 0)
    preprocessor = Path(path).expanduser() / "preprocessor_config.json"
    if preprocessor.is_file():
        settings = json.loads(preprocessor.read_text())
        mean = settings.get("image_mean", mean)
        std = settings.get("image_std", std)
        side = settings.get("crop_size") or settings.get("size")
        if isinstance(side, dict):
            side = side.get("height", side.get("shortest_edge"))
        if side:
            size = int(side)
    return size, [float(m) for m in mean], [float(s) for s in std]


def choose_threshold(negatives: np.ndarray, positives: np.ndarray, target_fpr: float) -> float:
    """A decision threshold with at most ``floor(target_fpr · len(negatives))`` negatives above
    it (strictly) and as many positives above it as that allows, placed halfway between the
    highest negative it must reject and the lowest positive above that one, so that unseen
    negatives scoring a little higher than the validation ones are still rejected."""
    negatives = np.sort(np.asarray(negatives, np.float64))[::-1]
    if len(negatives) == 0:
        raise ValueError("the validation split needs negatives to set the threshold")
    allowed = int(np.floor(target_fpr * len(negatives)))  # false positives we may keep
    bar = float(negatives[allowed]) if allowed < len(negatives) else 0.0
    above = np.asarray(positives, np.float64)
    above = above[above > bar]
    if len(above):
        return float((bar + above.min()) / 2)
    return float(np.nextafter(np.float32(bar), np.float32(2.0)))


class SuccessClassifier(RewardModel):
    """Train, calibrate, save and load a success classifier; also a terminal reward model."""

    def __init__(self, config: ClassifierConfig, net: nn.Module | None = None) -> None:
        self.config = config
        self.net = net if net is not None else build_net(config)

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
        trained = [p for p in net.parameters() if p.requires_grad]  # not a frozen encoder
        optimizer = torch.optim.Adam(trained, lr=lr)
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
        """Sets the threshold from ``validation`` (:func:`choose_threshold`) and returns it."""
        probs = self.probability(validation.frames, validation.proprio).numpy()
        labels = validation.labels
        self.config.threshold = choose_threshold(probs[~labels], probs[labels], target_fpr)
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
        """Weights as safetensors and config/threshold/metrics as JSON, each written atomically.

        A frozen pretrained encoder is not copied: the JSON names its directory, which must
        still hold the same weights when the classifier is loaded."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = (
            self.net.trained_state()
            if isinstance(self.net, PretrainedSuccessNet)
            else self.net.state_dict()
        )
        weights = {k: v.detach().cpu().contiguous() for k, v in state.items()}
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
        weights = load_file(str(directory / WEIGHTS_FILE))
        net = classifier.net
        if isinstance(net, PretrainedSuccessNet) and net.frozen:
            expected = set(net.trained_state())
            if set(weights) != expected:
                missing, unexpected = expected - set(weights), set(weights) - expected
                raise ValueError(
                    f"{directory / WEIGHTS_FILE} does not hold this classifier's head: missing "
                    f"{sorted(missing)}, unexpected {sorted(unexpected)}"
                )
            net.load_state_dict(weights, strict=False)  # the encoder came from encoder_path
        else:
            net.load_state_dict(weights)
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
