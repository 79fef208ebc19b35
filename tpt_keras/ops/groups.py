"""Group-aware relative-score intervals (CoRe's ``Group_helper``, as used by TPT).

The relative score delta = s_exemplar - s_query is predicted as (which interval, where inside it).
The intervals are quantiles of the |delta| of all training pairs inside the same contrastive
group, so every interval holds about the same number of training pairs.

**Interval order** (the model's class index): ascending along the real line, as CoRe orders its
leaves. With B intervals and h = B / 2, index 0 is the most negative interval [-max, -e_{h-1}],
index h - 1 is [-e_1, 0], index h is [0, e_1] and index B - 1 is [e_{h-1}, max], where
``e_i = D[int(i / h * (L - 1))]`` over the sorted |delta| list D of length L. Negative intervals
mirror the positive ones (interval h - 1 - i is the mirror of h + i).

Membership (CoRe): delta >= 0 belongs to [left, right) and delta < 0 to (left, right]; so 0 is in
interval h, and an interval with left == right holds nothing. A delta in no interval (|delta|
>= max) is, with ``out_of_range="first_interval"`` (CoRe), labelled class 0 with no regression
target, or with ``"nearest_interval"`` given the nearest interval and a clipped target.
Regression target: (delta - left) / (right - left) (delta - left when the interval is a point).
Decoding: argmax interval, then left + (right - left) * sigmoid (left + sigmoid for a point).

The NumPy function :func:`compute_intervals` builds the table once from the training set; the
tensor functions (``interval_targets``, ``decode_relative_scores``) run inside the model.
"""

from __future__ import annotations

import numpy as np

from tpt_keras.config import OUT_OF_RANGE_MODES


def pairwise_abs_deltas(targets, groups=None) -> np.ndarray:
    """|t_i - t_j| over all pairs i < j with ``groups[i] == groups[j]``.

    Args:
        targets: (N,) regression targets (score / difficulty for MTL-AQA with DD).
        groups: (N,) hashable group labels, or None for a single group.

    Returns:
        (L,) float64, unsorted.
    """
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    if groups is None:
        groups = np.zeros(len(targets), dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != targets.shape:
        raise ValueError(f"targets {targets.shape} and groups {groups.shape} must have one entry "
                         "per video.")
    deltas = []
    for group in np.unique(groups):
        members = targets[groups == group]
        first, second = np.triu_indices(len(members), k=1)
        deltas.append(np.abs(members[first] - members[second]))
    return np.concatenate(deltas) if deltas else np.zeros((0,), np.float64)


def compute_intervals(targets, groups=None, num_intervals: int = 16, *, max_value: float,
                      min_value: float = 0.0) -> np.ndarray:
    """The (num_intervals, 2) table of [left, right] edges, ascending (see module docstring).

    Args:
        targets: (N,) training-set regression targets.
        groups: (N,) contrastive group per video (difficulty for MTL-AQA with DD, class for
            AQA-7) or None for one group.
        num_intervals: B, even.
        max_value: right edge of the last positive interval (30 for MTL-AQA w/ DD, 100 for
            0-100 scores).
        min_value: left edge of the first positive interval (0 in TPT).

    Returns:
        (B, 2) float64: row n is [left_n, right_n], left_n <= right_n.
    """
    if num_intervals < 2 or num_intervals % 2:
        raise ValueError(f"num_intervals must be a positive even number; received {num_intervals!r}.")
    deltas = np.sort(pairwise_abs_deltas(targets, groups))
    length = len(deltas)
    if length == 0:
        raise ValueError("compute_intervals needs at least one pair of videos in the same group.")
    half = num_intervals // 2
    positive = []
    for i in range(half):
        # Python float arithmetic, exactly as CoRe: int((i / h) * (L - 1)).
        left = float(deltas[int((i / half) * (length - 1))])
        right = float(deltas[int(((i + 1) / half) * (length - 1))])
        if i == 0:
            left = float(min_value)
        if i == half - 1:
            right = float(max_value)
        positive.append((left, right))
    negative = [(-right, -left) for left, right in reversed(positive)]
    # + 0.0 turns the mirrored -0.0 edge into 0.0.
    return np.asarray(negative + positive, dtype=np.float64) + 0.0


def interval_targets(delta, intervals, out_of_range: str = "first_interval"):
    """One-hot interval membership and the regression target inside that interval.

    Args:
        delta: (B,) relative scores (float).
        intervals: (N, 2) table from :func:`compute_intervals`.
        out_of_range: "first_interval" (CoRe: no membership; the class loss then uses class 0
            and the regression loss skips the sample) or "nearest_interval".

    Returns:
        membership: (B, N) float32, one 1 per row (or none, for an out-of-range delta in
            "first_interval" mode).
        target: (B, N) float32 regression target, valid where membership is 1 (0 elsewhere).
    """
    from keras import ops  # here: the interval table itself is numpy (tpt data-info)

    if out_of_range not in OUT_OF_RANGE_MODES:
        raise ValueError(f"out_of_range must be one of {OUT_OF_RANGE_MODES}; received "
                         f"{out_of_range!r}.")
    delta = ops.cast(ops.reshape(delta, (-1, 1)), "float32")  # (B, 1)
    intervals = ops.cast(ops.convert_to_tensor(intervals), "float32")
    left = intervals[None, :, 0]  # (1, N)
    right = intervals[None, :, 1]
    non_negative = ops.greater_equal(delta, 0.0)
    inside_pos = ops.logical_and(ops.greater_equal(delta, left), ops.less(delta, right))
    inside_neg = ops.logical_and(ops.greater(delta, left), ops.less_equal(delta, right))
    member = ops.where(non_negative, inside_pos, inside_neg)  # (B, N) bool
    membership = ops.cast(member, "float32")
    if out_of_range == "nearest_interval":
        distance = ops.maximum(ops.maximum(left - delta, delta - right), 0.0)  # (B, N)
        nearest = ops.one_hot(ops.argmin(distance, axis=-1), ops.shape(intervals)[0])
        has_member = ops.greater(ops.sum(membership, axis=-1, keepdims=True), 0.0)
        membership = ops.where(has_member, membership, ops.cast(nearest, "float32"))
    width = right - left
    point = ops.equal(width, 0.0)
    target = ops.where(point, delta - left, (delta - left) / ops.where(point, 1.0, width))
    if out_of_range == "nearest_interval":
        target = ops.where(point, target, ops.clip(target, 0.0, 1.0))
    return membership, target * membership


def decode_relative_scores(log_probs, regression, intervals):
    """Relative scores from the heads: argmax interval, then left + (right - left) * sigmoid.

    Args:
        log_probs: (B, N) class scores (log-probabilities or logits).
        regression: (B, N) sigmoid outputs in [0, 1].
        intervals: (N, 2).

    Returns:
        (B,) float32.
    """
    from keras import ops  # here: the interval table itself is numpy (tpt data-info)

    intervals = ops.cast(ops.convert_to_tensor(intervals), "float32")
    index = ops.argmax(log_probs, axis=-1)  # (B,)
    left = ops.take(intervals[:, 0], index)
    right = ops.take(intervals[:, 1], index)
    position = ops.take_along_axis(ops.cast(regression, "float32"), index[:, None], axis=-1)[:, 0]
    width = right - left
    return left + ops.where(ops.equal(width, 0.0), position, width * position)
