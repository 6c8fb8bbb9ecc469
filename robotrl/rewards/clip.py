"""CLIP goal reward (VLM-RM, Rocamonde et al. 2023), with CLIP towers from a local directory.

With ``x`` the normalised image embedding, ``g`` and ``b`` the means of the normalised target
and baseline prompt embeddings, and ``d = g − b``::

    r = 1 − ½ ‖(x − g) P‖²,    P = α d dᵀ / ‖d‖² + (1 − α) I

``α = 0`` gives ``1 − ½‖x − g‖²`` (the cosine similarity when ``g`` is a unit vector); ``α = 1``
keeps only the component of ``x − g`` along the direction from the baseline to the target.

Weights are never downloaded: ``model_path`` is a directory written by transformers'
``save_pretrained`` holding the CLIP model (``config.json`` + ``model.safetensors``) and its
tokenizer (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``); ``preprocessor_config.json``
is read for the image mean and std when present. Images are resized and normalised in torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from robotrl.rewards.base import RewardModel, frames_tensor

# CLIP's image statistics (OpenAI), used when the directory has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))


class ModelFilesError(FileNotFoundError):
    """A local model directory lacks the files a reward model needs."""


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise ImportError("CLIP rewards need transformers: pip install 'robotrl[vlm]'") from err
    return transformers


def check_model_dir(path: str | Path) -> Path:
    """``path`` as a directory holding a saved CLIP model and tokenizer, or a clear error."""
    directory = Path(path).expanduser()
    expected = (
        "config.json, model.safetensors (or pytorch_model.bin) and tokenizer.json "
        "(or vocab.json + merges.txt), as written by CLIPModel.save_pretrained and "
        "the tokenizer's save_pretrained"
    )
    if not directory.is_dir():
        raise ModelFilesError(
            f"CLIP model directory {str(directory)!r} does not exist; expected a directory "
            f"with {expected}. Weights are never downloaded: copy them there first."
        )
    missing = []
    if not (directory / "config.json").is_file():
        missing.append("config.json")
    if not any((directory / name).is_file() for name in _WEIGHT_FILES):
        missing.append(" or ".join(_WEIGHT_FILES))
    if not any(all((directory / n).is_file() for n in group) for group in _TOKENIZER_FILES):
        missing.append("tokenizer.json or vocab.json + merges.txt")
    if missing:
        raise ModelFilesError(
            f"CLIP model directory {str(directory)!r} lacks {'; '.join(missing)} "
            f"(expected {expected})"
        )
    return directory


def vlm_rm_reward(
    image_embeddings: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor, alpha: float
) -> torch.Tensor:
    """``1 − ½‖(x − g)P‖²`` for each row ``x`` of ``image_embeddings`` (see module docstring).

    ``image_embeddings`` ``[B, D]`` and ``target``/``baseline`` ``[D]`` are used as given (the
    caller normalises them). ``P`` is symmetric, so ``(x − g)P`` is ``P(x − g)``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    residual = image_embeddings - target
    direction = target - baseline
    norm_sq = direction.dot(direction)
    if alpha > 0 and norm_sq <= 0:
        raise ValueError("target and baseline embeddings coincide; the projection is undefined")
    projected = (1.0 - alpha) * residual
    if alpha > 0:
        projected = projected + alpha * (residual @ direction)[:, None] * direction / norm_sq
    return 1.0 - 0.5 * (projected * projected).sum(dim=-1)


class CLIPGoalReward(RewardModel):
    """VLM-RM's goal reward from a CLIP model saved in a local directory.

    ``target_prompts`` describe the goal, ``baseline_prompts`` a neutral description of the
    scene; each set's normalised embeddings are averaged into ``g`` and ``b`` (the means are
    not renormalised; with one prompt each they are unit vectors). Prompt embeddings are
    computed once per prompt set and cached; an ``instruction`` passed to :meth:`score`
    replaces the target prompts.
    """

    def __init__(
        self,
        model_path: str | Path,
        target_prompts: Sequence[str],
        baseline_prompts: Sequence[str],
        *,
        alpha: float = 0.5,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        if not target_prompts or not baseline_prompts:
            raise ValueError("CLIPGoalReward needs at least one target and one baseline prompt")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        directory = check_model_dir(model_path)
        transformers = _require_transformers()
        self.model = transformers.CLIPModel.from_pretrained(directory, local_files_only=True)
        self.model.eval().to(device)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            directory, local_files_only=True
        )
        self.image_size = int(self.model.config.vision_config.image_size)
        mean, std = _image_statistics(directory)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.max_text_length = int(self.model.config.text_config.max_position_embeddings)
        self.device = torch.device(device)
        self.alpha = float(alpha)
        self.batch_size = batch_size
        self.target_prompts = tuple(target_prompts)
        self.baseline_prompts = tuple(baseline_prompts)
        self._prompt_cache: dict[tuple[str, ...], torch.Tensor] = {}

    # -- embeddings -------------------------------------------------------------------------

    @torch.no_grad()
    def prompt_embedding(self, prompts: Sequence[str]) -> torch.Tensor:
        """Mean of the prompts' normalised text embeddings ``[D]`` (cached per prompt set)."""
        key = tuple(prompts)
        if key not in self._prompt_cache:
            tokens = self.tokenizer(
                list(key),
                padding=True,
                truncation=True,
                max_length=self.max_text_length,
                return_tensors="pt",
            ).to(self.device)
            features = _features(self.model.get_text_features(**tokens))
            self._prompt_cache[key] = F.normalize(features.float(), dim=-1).mean(dim=0)
        return self._prompt_cache[key]

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` → CLIP's input: shorter side resized to the model's image size
        (bicubic, antialiased), centre-cropped square, scaled to [0, 1], mean/std normalised."""
        images = frames.to(self.device, torch.float32) / 255.0
        height, width = images.shape[-2:]
        scale = self.image_size / min(height, width)
        size = (
            max(self.image_size, round(height * scale)),
            max(self.image_size, round(width * scale)),
        )
        if size != (height, width):
            images = F.interpolate(
                images, size=size, mode="bicubic", align_corners=False, antialias=True
            ).clamp(0.0, 1.0)
        top = (size[0] - self.image_size) // 2
        left = (size[1] - self.image_size) // 2
        images = images[..., top : top + self.image_size, left : left + self.image_size]
        return (images - self.mean) / self.std

    @torch.no_grad()
    def image_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings ``[B, D]``, computed ``batch_size`` frames at a time."""
        frames = frames_tensor(frames)
        if frames.shape[1] != 3:
            raise ValueError(f"CLIP needs RGB frames [B, 3, H, W], got {tuple(frames.shape)}")
        chunks = []
        for start in range(0, frames.shape[0], self.batch_size):
            pixels = self.preprocess(frames[start : start + self.batch_size])
            features = _features(self.model.get_image_features(pixel_values=pixels))
            chunks.append(F.normalize(features.float(), dim=-1))
        return torch.cat(chunks)

    # -- RewardModel ------------------------------------------------------------------------

    def score(
        self,
        frames: torch.Tensor,
        proprio: torch.Tensor | None = None,
        instruction: str | None = None,
    ) -> torch.Tensor:
        targets = (instruction,) if instruction else self.target_prompts
        goal = self.prompt_embedding(targets)
        baseline = self.prompt_embedding(self.baseline_prompts)
        rewards = vlm_rm_reward(self.image_embeddings(frames), goal, baseline, self.alpha)
        return rewards.cpu()


def build_reward_model(options: dict[str, Any]) -> CLIPGoalReward:
    """``task.reward.kind=clip_goal``: ``options`` are :class:`CLIPGoalReward`'s arguments."""
    if "model_path" not in options:
        raise ValueError("the clip_goal reward needs options.model_path (a local CLIP directory)")
    return CLIPGoalReward(**options)


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns an output object whose ``pooler_output`` is the projection."""
    if torch.is_tensor(output):
        return output
    return output.pooler_output


def _image_statistics(directory: Path) -> tuple[Sequence[float], Sequence[float]]:
    config_file = directory / "preprocessor_config.json"
    if config_file.is_file():
        import json

        config = json.loads(config_file.read_text())
        return config.get("image_mean", CLIP_MEAN), config.get("image_std", CLIP_STD)
    return CLIP_MEAN, CLIP_STD
