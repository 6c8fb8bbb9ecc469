"""The success classifier's decision threshold, from validation probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from robotrl.rewards.classifier import choose_threshold


def test_threshold_sits_in_the_gap_between_the_classes():
    negatives = np.array([0.05, 0.1, 0.2, 0.25])
    positives = np.array([0.9, 0.95, 0.99])
    threshold = choose_threshold(negatives, positives, target_fpr=0.02)  # no false positive
    assert threshold == pytest.approx((0.25 + 0.9) / 2)


def test_the_allowed_false_positives_pass_and_no_more():
    rng = np.random.default_rng(0)
    negatives = rng.uniform(0.0, 0.6, 200)
    positives = rng.uniform(0.4, 1.0, 100)
    threshold = choose_threshold(negatives, positives, target_fpr=0.05)
    assert (negatives > threshold).sum() <= 10  # floor(0.05 * 200)
    bar = np.sort(negatives)[::-1][10]  # the highest negative that must be rejected
    lowest_positive_above = positives[positives > bar].min()
    assert threshold == pytest.approx((bar + lowest_positive_above) / 2)
    # no lower threshold keeps the same recall: every positive above the bar still passes
    assert (positives > threshold).sum() == (positives > bar).sum()


def test_no_positive_above_the_bar_and_no_negatives():
    assert choose_threshold(np.array([0.7, 0.3]), np.array([0.2]), 0.0) == pytest.approx(
        0.7, abs=1e-6
    )
    assert choose_threshold(np.array([0.7, 0.3]), np.array([0.2]), 0.0) > 0.7
    with pytest.raises(ValueError, match="negatives"):
        choose_threshold(np.array([]), np.array([0.9]), 0.02)
