"""The classifier gate: refuse online RL while the success classifier calls too many failures
successes (the policy would learn to fool it)."""

from __future__ import annotations

from pathlib import Path

from robotrl.rewards.classifier import LabelledFrames, SuccessClassifier
from robotrl_real.finetune.rewards import ClassifierReward
from robotrl_real.labeling import load_labelled


class ClassifierGateError(RuntimeError):
    """The success classifier is not trustworthy enough to start online RL."""


def check_classifier_gate(
    classifier: SuccessClassifier,
    held_out: LabelledFrames,
    *,
    max_fpr: float = 0.02,
    min_negatives: int = 50,
) -> dict[str, float]:
    """Measure ``classifier`` on ``held_out`` frames; raise :class:`ClassifierGateError` unless
    its false-positive rate is at most ``max_fpr``. Returns :meth:`SuccessClassifier.report`."""
    negatives = int((~held_out.labels).sum())
    if negatives < min_negatives:
        raise ClassifierGateError(
            f"the held-out set has {negatives} non-success frames; at least {min_negatives} are "
            f"needed to measure a false-positive rate of {max_fpr:.0%}. Label more negative and "
            "near-miss frames (robotrl_real.labeling.collect_labelled_frames)."
        )
    metrics = classifier.report(held_out)
    if not metrics["fpr"] <= max_fpr:
        raise ClassifierGateError(
            f"refusing to start online RL: the success classifier's false-positive rate on "
            f"{negatives} held-out non-success frames is {metrics['fpr']:.1%} "
            f"(near-misses {metrics['near_miss_fpr']:.1%}), above the {max_fpr:.0%} limit; the "
            "policy would learn to trigger false successes. Label more near-miss and negative "
            "frames (robotrl_real.labeling), retrain with SuccessClassifier.fit(target_fpr=...) "
            "and check report() again."
        )
    return metrics


def gated_classifier_reward(
    classifier_dir: str | Path, held_out: str | Path | None = None, *, max_fpr: float = 0.02
) -> tuple[ClassifierReward, dict[str, float]]:
    """The classifier reward of ``classifier_dir`` after :func:`check_classifier_gate` on its
    held-out frames (default ``<classifier_dir>/held_out.npz``)."""
    path = Path(held_out) if held_out else Path(classifier_dir) / "held_out.npz"
    if not path.is_file():
        raise ClassifierGateError(
            f"no held-out labelled frames at {path}: the gate needs them to measure the "
            "classifier's false-positive rate (robotrl_real.labeling.train_and_save writes them)"
        )
    reward = ClassifierReward(classifier_dir)
    metrics = check_classifier_gate(reward.classifier, load_labelled(path), max_fpr=max_fpr)
    return reward, metrics
