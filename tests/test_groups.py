"""Group-aware intervals: hand-derived answers, membership edges, decoding, real MTL-AQA parity."""

import numpy as np
import pytest

from tpt_keras.ops import groups
from data_pipelines.io import safe_pickle

HAND_INTERVALS = np.array([[-10.0, -3.0], [-3.0, 0.0], [0.0, 3.0], [3.0, 10.0]])


def test_four_intervals_from_hand_made_scores():
    # |deltas| of 0, 1, 3, 6: 1, 3, 6, 2, 5, 3 -> sorted D = [1, 2, 3, 3, 5, 6], L = 6.
    # Positive interval 0: [min=0, D[int(0.5 * 5)] = D[2] = 3]; interval 1: [D[2] = 3, max = 10].
    intervals = groups.compute_intervals([0, 1, 3, 6], None, num_intervals=4, max_value=10)
    np.testing.assert_array_equal(intervals, HAND_INTERVALS)


def test_sixteen_intervals_with_repeated_edges():
    # D = [1, 2, 3, 3, 5, 6]; edge i = D[int(i / 8 * 5)] for i = 1..7: indices 0,1,1,2,3,3,4.
    intervals = groups.compute_intervals([0, 1, 3, 6], None, num_intervals=16, max_value=30)
    positive = [[0, 1], [1, 2], [2, 2], [2, 3], [3, 3], [3, 3], [3, 5], [5, 30]]
    np.testing.assert_array_equal(intervals[8:], positive)
    # Negatives mirror the positives, most negative first.
    np.testing.assert_array_equal(intervals[:8], [[-r, -l] for l, r in positive[::-1]])
    assert not np.any(np.signbit(intervals) & (intervals == 0))  # no -0.0 edge


def test_only_pairs_inside_a_group_count():
    # Group a: 0, 1 -> |delta| 1; group b: 10, 4 -> 6. Cross-group deltas (10, 9, 4, 3) are ignored.
    np.testing.assert_array_equal(
        np.sort(groups.pairwise_abs_deltas([0, 10, 1, 4], ["a", "b", "a", "b"])), [1, 6])
    intervals = groups.compute_intervals([0, 10, 1, 4], ["a", "b", "a", "b"], num_intervals=4,
                                         max_value=30)
    # L = 2: the inner edge is D[int(0.5 * 1)] = D[0] = 1.
    np.testing.assert_array_equal(intervals, [[-30, -1], [-1, 0], [0, 1], [1, 30]])


def test_compute_intervals_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one pair"):
        groups.compute_intervals([1.0, 2.0], ["a", "b"], max_value=30)
    with pytest.raises(ValueError, match="even"):
        groups.compute_intervals([1.0, 2.0], None, num_intervals=5, max_value=30)


@pytest.mark.parametrize(
    "delta, index, target",
    [
        (0.0, 2, 0.0),      # 0 belongs to the first positive interval [0, 3)
        (1.5, 2, 0.5),
        (3.0, 3, 0.0),      # positive intervals are closed on the left
        (-1.5, 1, 0.5),     # (-3, 0]: (-1.5 + 3) / 3
        (-3.0, 0, 1.0),     # negative intervals are closed on the right: -3 is in (-10, -3]
        (9.99, 3, (9.99 - 3) / 7),
    ],
)
def test_membership_and_regression_target(delta, index, target):
    membership, targets = groups.interval_targets(np.array([delta]), HAND_INTERVALS)
    membership, targets = np.asarray(membership), np.asarray(targets)
    expected = np.zeros((1, 4))
    expected[0, index] = 1
    np.testing.assert_array_equal(membership, expected)
    np.testing.assert_allclose(targets[0, index], target, rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(targets[0]) <= 1


def test_out_of_range_deltas():
    delta = np.array([10.0, -10.0, 12.0])
    # CoRe: no interval -> all-zero membership (the class loss then uses class 0).
    membership, targets = groups.interval_targets(delta, HAND_INTERVALS, "first_interval")
    np.testing.assert_array_equal(np.asarray(membership), np.zeros((3, 4)))
    np.testing.assert_array_equal(np.asarray(targets), np.zeros((3, 4)))
    # Clean option: the nearest interval, target clipped into [0, 1].
    membership, targets = groups.interval_targets(delta, HAND_INTERVALS, "nearest_interval")
    np.testing.assert_array_equal(np.argmax(np.asarray(membership), -1), [3, 0, 3])
    np.testing.assert_allclose(np.asarray(targets)[[0, 1, 2], [3, 0, 3]], [1.0, 0.0, 1.0])


def test_point_interval_holds_nothing():
    intervals = np.array([[-5, -2], [-2, -2], [-2, 0], [0, 2], [2, 2], [2, 5]], float)
    membership, _ = groups.interval_targets(np.array([2.0, -2.0]), intervals)
    np.testing.assert_array_equal(np.argmax(np.asarray(membership), -1), [5, 0])
    # -2 is in (-5, -2] (index 0), not in the point interval [-2, -2].
    np.testing.assert_array_equal(np.asarray(membership).sum(0), [1, 0, 0, 0, 0, 1])


def test_decode_relative_scores():
    log_probs = np.log(np.array([[0.1, 0.2, 0.6, 0.1], [0.7, 0.1, 0.1, 0.1]]))
    regression = np.array([[0.9, 0.9, 0.5, 0.9], [0.25, 0.0, 0.0, 0.0]])
    decoded = np.asarray(groups.decode_relative_scores(log_probs, regression, HAND_INTERVALS))
    np.testing.assert_allclose(decoded, [0 + 3 * 0.5, -10 + 7 * 0.25])
    # A point interval decodes to left + sigmoid (CoRe).
    point = np.array([[-5, -2], [2, 2], [2, 5], [5, 9]], float)
    decoded = groups.decode_relative_scores(np.array([[0.0, 1.0, 0.0, 0.0]]),
                                            np.array([[0, 0.3, 0, 0]]), point)
    np.testing.assert_allclose(np.asarray(decoded), [2.3], rtol=1e-6)


def _naive_intervals(targets_by_group, num_intervals, max_value):
    """CoRe's Group_helper written out with plain Python loops and lists."""
    deltas = []
    for members in targets_by_group.values():
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                deltas.append(abs(members[i] - members[j]))
    deltas.sort()
    half = num_intervals // 2
    table = [None] * num_intervals
    for i in range(half):
        left = 0.0 if i == 0 else deltas[int(i / half * (len(deltas) - 1))]
        right = max_value if i == half - 1 else deltas[int((i + 1) / half * (len(deltas) - 1))]
        table[half + i] = [left, right]
    for i in range(half):
        table[i] = sorted(-edge for edge in table[num_intervals - 1 - i])
    return table


def test_real_mtl_aqa_intervals_match_naive_computation(shared_data):
    annotations = safe_pickle.load(shared_data / "MTL-AQA" / "augmented_final_annotations_dict.pkl")
    train_keys = safe_pickle.load(shared_data / "MTL-AQA" / "train_split_0.pkl")
    targets = [annotations[key]["final_score"] / annotations[key]["difficulty"] for key in train_keys]
    difficulty = [annotations[key]["difficulty"] for key in train_keys]
    by_group = {}
    for key in train_keys:
        by_group.setdefault(annotations[key]["difficulty"], []).append(
            annotations[key]["final_score"] / annotations[key]["difficulty"])

    intervals = groups.compute_intervals(targets, difficulty, num_intervals=16, max_value=30.0)
    naive = np.array(_naive_intervals(by_group, 16, 30.0))
    np.testing.assert_array_equal(intervals, naive)
    assert len(groups.pairwise_abs_deltas(targets, difficulty)) == sum(
        len(v) * (len(v) - 1) // 2 for v in by_group.values())
    # Structure: ascending, contiguous, mirrored, 0 in the middle, +-30 at the ends.
    assert intervals.shape == (16, 2)
    np.testing.assert_array_equal(intervals[1:, 0], intervals[:-1, 1])
    np.testing.assert_array_equal(intervals[:8], -intervals[::-1][:8, ::-1])
    assert intervals[8, 0] == 0 and intervals[15, 1] == 30 and intervals[0, 0] == -30
    # Known values of this split.
    np.testing.assert_allclose(intervals[12:], [[3.0, 4.5], [4.5, 6.0], [6.0, 8.5], [8.5, 30.0]],
                               atol=1e-9)
