"""Staged dense rewards: a task as ordered stages, each with a success predicate and a progress.

A stage spec is a list of stages, written by a person or proposed by a language model from the
task instruction (it is plain data: YAML/JSON with the schema below, so a model's proposal is
checked by the same validation). For pick-a-cube::

    stages:
      - {name: reach, done: {kind: distance, a: [0, 1, 2], b: [7, 8, 9], below: 0.02},
         progress: {kind: distance, a: [0, 1, 2], b: [7, 8, 9], start: 0.3}}
      - {name: grasp, done: {kind: proprio, index: 3, below: 0.045}}
      - {name: lift, done: {kind: proprio, index: 9, above: 0.08},
         progress: {kind: proprio, index: 9, start: 0.02, end: 0.08}}

The score of a frame is ``(k + progress_k) / K`` for ``K`` stages, where ``k`` counts the stages
done *in order* from the first (a later stage's predicate counts only when all earlier ones hold)
and ``progress_k`` in ``[0, 1)`` is the progress within the first stage not done (0 when it has
no progress term). So every frame in stage ``k`` scores above every frame in an earlier stage:
the reward is dense inside a stage and monotone across stages, and it is 1 exactly when all
stages are done (``is_success``). It reads only the current frame (no hidden state), so online
scores and a finished episode scored in one batch agree.

Predicates (``done``): ``proprio`` (``proprio[index]`` ``above`` and/or ``below`` a value),
``distance`` (Euclidean distance between ``proprio[a]`` and ``proprio[b]``, or a fixed ``point``,
``below`` a value), ``model`` (another reward model's ``is_success``, e.g. a success classifier
per stage: ``{kind: model, reward: {kind: success_classifier, options: {path: ...}}}``).
Progress terms: ``proprio`` (linear from ``start`` to ``end``), ``distance`` (1 at distance 0,
0 at distance ``start``), ``model`` (the model's score, clipped to [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robotrl.rewards.base import RewardModel

#: (frames [B, C, H, W], proprio [B, P] or None) -> [B] values.
FrameFunction = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass
class Stage:
    """One stage: ``done`` says which frames finished it (bool ``[B]``); ``progress`` (optional)
    how far each frame is through it (``[B]`` in [0, 1])."""

    name: str
    done: FrameFunction
    progress: FrameFunction | None = None


class StagedReward(RewardModel):
    """``(stages done in order + progress in the next) / number of stages`` (module docstring)."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        if not stages:
            raise ValueError("a staged reward needs at least one stage")
        self.stages = list(stages)

    def stage_index(self, frames: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        """How many stages each frame has done in order, ``[B]`` (int64)."""
        done = torch.stack([stage.done(frames, proprio).bool() for stage in self.stages], dim=1)
        return done.long().cumprod(dim=1).sum(dim=1)

    def score(
        self,
        frames: torch.Tensor,
        proprio: torch.Tensor | None = None,
        instruction: str | None = None,
    ) -> torch.Tensor:
        index = self.stage_index(frames, proprio)
        progress = torch.zeros(len(index), dtype=torch.float64)
        for k, stage in enumerate(self.stages):
            rows = index == k
            if stage.progress is not None and bool(rows.any()):
                values = stage.progress(frames, proprio).double().clamp(0.0, 1.0 - 1e-6)
                progress = torch.where(rows, values, progress)
        return ((index.double() + progress) / len(self.stages)).float()

    def is_success(self, scores: torch.Tensor) -> torch.Tensor | None:
        return scores >= 1.0


def _proprio(proprio: torch.Tensor | None, what: str) -> torch.Tensor:
    if proprio is None:
        raise ValueError(f"stage {what} reads proprio, but the env has none")
    return proprio.double().reshape(len(proprio), -1)


def _distance(spec: Mapping[str, Any], what: str) -> FrameFunction:
    if "a" not in spec or ("b" in spec) == ("point" in spec):
        raise ValueError(f"a distance {what} needs `a` and exactly one of `b` or `point`: {spec}")
    a = list(spec["a"])
    b = list(spec["b"]) if "b" in spec else None
    point = torch.tensor(list(spec["point"]), dtype=torch.float64) if b is None else None
    if (b is not None and len(b) != len(a)) or (point is not None and len(point) != len(a)):
        raise ValueError(f"a distance {what} compares vectors of different sizes: {spec}")

    def distance(frames: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        values = _proprio(proprio, what)
        other = values[:, b] if b is not None else point
        assert other is not None
        return torch.linalg.vector_norm(values[:, a] - other, dim=1)

    return distance


def build_predicate(spec: Mapping[str, Any]) -> FrameFunction:
    """A ``done`` predicate from its spec (module docstring)."""
    kind = spec.get("kind")
    if kind == "model":
        model = _nested_model(spec)

        def model_done(frames: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
            success = model.is_success(model.score(frames, proprio))
            if success is None:
                raise ValueError(f"reward model {type(model).__name__} never reports success")
            return success

        return model_done
    above, below = spec.get("above"), spec.get("below")
    if above is None and below is None:
        raise ValueError(f"a {kind} predicate needs `above` and/or `below`: {dict(spec)}")
    value: FrameFunction
    if kind == "proprio":
        index = int(spec["index"])

        def value(frames: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
            return _proprio(proprio, "predicate")[:, index]

    elif kind == "distance":
        value = _distance(spec, "predicate")
    else:
        raise ValueError(f"predicate kind must be 'proprio', 'distance' or 'model', got {kind!r}")

    def done(frames: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        measured = value(frames, proprio)
        result = torch.ones_like(measured, dtype=torch.bool)
        if above is not None:
            result &= measured > float(above)
        if below is not None:
            result &= measured < float(below)
        return result

    return done


def build_progress(spec: Mapping[str, Any]) -> FrameFunction:
    """A ``progress`` term from its spec (module docstring)."""
    kind = spec.get("kind")
    if kind == "model":
        model = _nested_model(spec)
        return lambda frames, proprio: model.score(frames, proprio).double()
    if kind == "proprio":
        index, start, end = int(spec["index"]), float(spec["start"]), float(spec["end"])
        if start == end:
            raise ValueError(f"proprio progress needs start != end: {dict(spec)}")
        return lambda frames, proprio: (
            (_proprio(proprio, "progress")[:, index] - start) / (end - start)
        )
    if kind == "distance":
        start = float(spec.get("start", 0.0))
        if not start > 0:
            raise ValueError(
                f"distance progress needs start > 0 (the distance at 0 progress): {dict(spec)}"
            )
        distance = _distance(spec, "progress")
        return lambda frames, proprio: 1.0 - distance(frames, proprio) / start
    raise ValueError(f"progress kind must be 'proprio', 'distance' or 'model', got {kind!r}")


def _nested_model(spec: Mapping[str, Any]) -> RewardModel:
    from robotrl.rewards.config import build_reward_model

    reward = spec.get("reward")
    if not isinstance(reward, Mapping) or "kind" not in reward:
        raise ValueError(f"a model stage needs `reward: {{kind: ..., options: ...}}`: {dict(spec)}")
    return build_reward_model(str(reward["kind"]), dict(reward.get("options", {})))


def build_reward_model(options: dict[str, Any]) -> StagedReward:
    """``task.reward.kind=staged``: ``options.stages`` is the stage list (module docstring)."""
    specs = options.get("stages")
    if not specs:
        raise ValueError("the staged reward needs options.stages, a non-empty list of stages")
    stages = []
    for i, spec in enumerate(specs):
        if "done" not in spec:
            raise ValueError(f"stage {i} ({spec.get('name', '?')}) has no `done` predicate")
        progress = spec.get("progress")
        stages.append(
            Stage(
                name=str(spec.get("name", f"stage{i}")),
                done=build_predicate(spec["done"]),
                progress=None if progress is None else build_progress(progress),
            )
        )
    return StagedReward(stages)
