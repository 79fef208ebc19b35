"""The loss functions on hand-made attention maps and head outputs, with hand-computed answers."""

import math

import keras
import numpy as np
import pytest

from tpt_keras.ops import losses


def hand_attention():
    """Two videos, T = 4 clips, K = 2 queries; columns sum to 1 over time.

    Video 0: query 0 on clip 1 (mu = 1), query 1 split over clips 3 and 4 (mu = 3.5).
    Video 1: both queries uniform (mu = 2.5).
    """
    attention = np.zeros((2, 4, 2), np.float32)
    attention[0, 0, 0] = 1.0
    attention[0, 2:, 1] = 0.5
    attention[1] = 0.25
    return attention


def test_centers_are_one_based():
    np.testing.assert_allclose(np.asarray(losses.attention_centers(hand_attention())),
                               [[1.0, 3.5], [2.5, 2.5]])


def test_ranking_loss_by_hand():
    # m = 1. Video 0: max(0, 1 - (3.5 - 1)) + max(0, 1 - (1 - 1)) + max(0, 1 - (4 - 3.5)) = 1.5.
    # Video 1: max(0, 1 - 0) + 2 * max(0, 1 - 1.5) = 1. Batch mean 1.25.
    assert float(losses.ranking_loss(hand_attention(), margin=1.0)) == pytest.approx(1.25)
    # m = 3.2 (TPT): video 0: 0.7 + 3.2 + 2.7 = 6.6; video 1: 3.2 + 1.7 + 1.7 = 6.6.
    assert float(losses.ranking_loss(hand_attention(), margin=3.2)) == pytest.approx(6.6, rel=1e-6)


def test_ranking_loss_is_zero_for_well_spread_ordered_parts():
    def one_hot_centres(centres, num_clips):
        attention = np.zeros((1, num_clips, len(centres)), np.float32)
        for k, centre in enumerate(centres):
            attention[0, centre - 1, k] = 1.0  # 1-based centre
        return attention

    # T = 21, centres 5, 9, 13, 17: mu_1 - 1 = 4, gaps 4, T - mu_K = 4, all >= 3.2.
    assert float(losses.ranking_loss(one_hot_centres([5, 9, 13, 17], 21), 3.2)) == 0.0
    # Last centre at 19: only the boundary term is active, 3.2 - (21 - 19) = 1.2.
    assert float(losses.ranking_loss(one_hot_centres([5, 9, 13, 19], 21), 3.2)) == pytest.approx(1.2)
    # Two parts swapped: gaps 8, -4, 8 -> only 3.2 - (-4) = 7.2.
    assert float(losses.ranking_loss(one_hot_centres([5, 13, 9, 17], 21), 3.2)) == pytest.approx(7.2)


def test_sparsity_loss_by_hand():
    # Video 0: query 0 has no spread; query 1: 0.5 |3 - 3.5| + 0.5 |4 - 3.5| = 0.5.
    # Video 1: (1.5 + 0.5 + 0.5 + 1.5) / 4 = 1 for both queries. Mean over 4 = 0.625.
    assert float(losses.sparsity_loss(hand_attention())) == pytest.approx(0.625)


def test_diversity_loss_by_hand():
    # Video 0: exp(-(1 - 3.5)^2 / 2) = exp(-3.125); video 1: exp(0) = 1.
    expected = (math.exp(-3.125) + 1.0) / 2
    value = losses.diversity_loss(hand_attention(), sigma=1.0)
    assert float(value) == pytest.approx(expected, rel=1e-6)
    # sigma = 2.5: exp(-6.25 / 12.5) = exp(-0.5).
    expected = (math.exp(-0.5) + 1.0) / 2
    value = losses.diversity_loss(hand_attention(), sigma=2.5)
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_diversity_loss_counts_each_pair_once():
    attention = np.full((1, 6, 3), 1 / 6, np.float32)  # three identical centres: 3 pairs
    assert float(losses.diversity_loss(attention)) == pytest.approx(3.0)


def test_classification_nll_by_hand():
    probs = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    membership = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32)  # row 2: no interval -> 0
    expected = -(math.log(0.25) + math.log(0.5) + math.log(0.1)) / 3
    value = losses.interval_classification_loss(np.log(probs), membership)
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_regression_loss_is_a_per_interval_mean_summed():
    regression = np.array([[0.5, 0.9], [0.2, 0.1], [0.3, 1.0], [0.7, 0.7]], np.float32)
    membership = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], np.float32)
    target = np.array([[0.1, 0], [0.2, 0], [0, 0.5], [0, 0]], np.float32)
    # Interval 0: ((0.5 - 0.1)^2 + 0) / 2 = 0.08; interval 1: (1 - 0.5)^2 = 0.25. Row 3 ignored.
    value = losses.interval_regression_loss(regression, membership, target)
    assert float(value) == pytest.approx(0.33, rel=1e-6)
    # No member anywhere: zero, not NaN.
    assert float(losses.interval_regression_loss(regression, np.zeros_like(membership), target)) == 0.0


def test_per_micro_batch_and_global_normalisation_differ_by_hand():
    """Two micro-batches of one update. Interval 0 holds errors 0.1 and 0.3 in the first and 0.6
    in the second; interval 1 holds error 0.2 in the second only.

    per micro-batch (the original's per-replica means), mean over the two micro-batches:
        ((0.01 + 0.09) / 2 + (0.36 / 1 + 0.04 / 1)) / 2 = (0.05 + 0.40) / 2 = 0.225
    global (each interval's mean over the whole update's samples):
        (0.01 + 0.09 + 0.36) / 3 + 0.04 / 1 = 0.19333...
    They agree only when every micro-batch holds the same share of every interval."""
    membership = np.eye(2, dtype=np.float32)
    first = (np.array([[0.1, 0.0], [0.3, 0.0]], np.float32), membership[[0, 0]])
    second = (np.array([[0.6, 0.0], [0.0, 0.2]], np.float32), membership[[0, 1]])
    def loss(part, counts=None):
        errors, member = part  # targets 0: the outputs are the errors
        return float(losses.interval_regression_loss(errors, member, np.zeros_like(errors), counts))

    per_micro_batch = (loss(first) + loss(second)) / 2
    assert per_micro_batch == pytest.approx(0.225, rel=1e-6)
    counts = first[1].sum(0) + second[1].sum(0)  # [3, 1]
    # As the train step computes it: each micro-batch's term x 2 micro-batches, then the mean.
    global_value = (2 * loss(first, counts) + 2 * loss(second, counts)) / 2
    assert global_value == pytest.approx(0.46 / 3 + 0.04, rel=1e-6)
    whole = np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
    assert loss(whole) == pytest.approx(global_value, rel=1e-6)  # the whole batch at once


def test_losses_are_float32_for_half_inputs():
    attention = hand_attention().astype(np.float16)
    for value in (losses.ranking_loss(attention), losses.sparsity_loss(attention),
                  losses.diversity_loss(attention)):
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
