"""TPT's losses as pure functions. Everything is computed in float32.

Attention losses act on one cross-attention map ``A`` of shape (B, T, K) whose columns sum to 1
over time (T clips, K queries). Clip positions are **1-based**: t = 1..T.

* :func:`attention_centers`  mu_k = sum_t t * A[t, k]
* :func:`ranking_loss`       sum_{k<K} max(0, m - (mu_{k+1} - mu_k)) + max(0, m - (mu_1 - 1))
                             + max(0, m - (T - mu_K)), mean over the batch
* :func:`sparsity_loss`      mean over videos and queries of sum_t |t - mu_k| * A[t, k]
* :func:`diversity_loss`     sum_{i<j} exp(-(mu_i - mu_j)^2 / (2 sigma^2)), mean over the batch
                             (Table 5b ablation, after Associative Embedding)
* :func:`step_boundary_loss`  optional step supervision: mean over annotated step boundaries of
                             the distance, in clips, to the nearest part boundary

Score losses act on the heads' outputs for one direction of the pair (B pairs, N intervals):

* :func:`interval_classification_loss`  NLL of the true interval, batch mean
* :func:`interval_regression_loss`      per interval, MSE of the sigmoid output over the samples
                                        inside it; summed over intervals

Every function is pure: its value depends on its arguments only. How several micro-batches or
replicas combine into one update (and where interval counts are summed over them) is decided by
``TPTModel.train_step``.
"""

from __future__ import annotations

from keras import ops


def _positions(num_clips):
    """(1, T, 1) float32 clip positions 1..T."""
    return ops.reshape(ops.arange(1, num_clips + 1, dtype="float32"), (1, -1, 1))


def attention_centers(attention):
    """Attention centre of every query.

    Args:
        attention: (B, T, K), each column summing to 1 over T.

    Returns:
        (B, K) float32, 1-based centres in [1, T].
    """
    attention = ops.cast(attention, "float32")
    return ops.sum(attention * _positions(ops.shape(attention)[1]), axis=1)


def ranking_loss(attention, margin: float = 3.2):
    """Margin ranking loss that orders the attention centres in time (Eq. 9).

    Args:
        attention: (B, T, K).
        margin: m.

    Returns:
        scalar float32, mean over the batch.
    """
    attention = ops.cast(attention, "float32")
    num_clips = ops.cast(ops.shape(attention)[1], "float32")
    centers = attention_centers(attention)  # (B, K)
    gaps = centers[:, 1:] - centers[:, :-1]  # (B, K-1)
    per_video = ops.sum(ops.relu(margin - gaps), axis=-1)
    per_video = per_video + ops.relu(margin - (centers[:, 0] - 1.0))
    per_video = per_video + ops.relu(margin - (num_clips - centers[:, -1]))
    return ops.mean(per_video)


def sparsity_loss(attention):
    """Mean over videos and queries of sum_t |t - mu_k| A[t, k] (Eq. 10, averaged over k).

    Args:
        attention: (B, T, K).

    Returns:
        scalar float32.
    """
    attention = ops.cast(attention, "float32")
    centers = attention_centers(attention)  # (B, K)
    spread = ops.abs(_positions(ops.shape(attention)[1]) - centers[:, None, :])  # (B, T, K)
    return ops.mean(ops.sum(spread * attention, axis=1))


def diversity_loss(attention, sigma: float = 1.0):
    """Push attention centres apart without ordering them (Table 5b ablation).

    Args:
        attention: (B, T, K).
        sigma: width of the Gaussian push.

    Returns:
        scalar float32, mean over the batch of sum_{i<j} exp(-(mu_i - mu_j)^2 / (2 sigma^2)).
    """
    centers = attention_centers(attention)  # (B, K)
    num_queries = ops.shape(centers)[-1]
    diff = centers[:, :, None] - centers[:, None, :]  # (B, K, K)
    kernel = ops.exp(-ops.square(diff) / (2.0 * sigma * sigma))
    upper = ops.triu(ops.ones((num_queries, num_queries), dtype="float32"), k=1)  # pairs i < j
    return ops.mean(ops.sum(kernel * upper[None], axis=(1, 2)))


def step_boundary_loss(attention, boundaries, mask):
    """Pull the part boundaries toward annotated step boundaries (optional step supervision).

    Part boundaries are the midpoints of consecutive attention centres in part order,
    ``p_k = (mu_k + mu_{k+1}) / 2 - 1`` (K - 1 of them), on the 0-based clip axis of
    :mod:`data_pipelines.video.steps` (clip t centred at t), the axis the annotated boundaries use.
    Each annotated boundary ``b_j`` is matched to its **nearest** part boundary, so a dive with
    fewer steps (J - 1 < K - 1 boundaries) leaves the unmatched part boundaries free and one with
    more lets two annotated boundaries share one; padded entries (``mask`` 0) count for nothing.
    The value is the mean over the real annotated boundaries of the batch of
    ``min_k |b_j - p_k|``, in clips: the parsing metric's ``boundary_mae``, made a loss.

    Args:
        attention: (B, T, K), each column summing to 1 over T.
        boundaries: (B, M) annotated step boundaries in clip units, padded to M.
        mask: (B, M) 1 for a real boundary, 0 for padding.

    Returns:
        scalar float32; 0 when the batch has no annotated boundary.
    """
    centers = attention_centers(attention) - 1.0  # (B, K), 0-based
    parts = 0.5 * (centers[:, 1:] + centers[:, :-1])  # (B, K-1)
    boundaries = ops.cast(boundaries, "float32")
    mask = ops.cast(mask, "float32")
    distance = ops.min(ops.abs(boundaries[:, :, None] - parts[:, None, :]), axis=-1)  # (B, M)
    return ops.sum(distance * mask) / ops.maximum(ops.sum(mask), 1.0)


def interval_classification_loss(log_probs, membership):
    """Negative log-likelihood of the true interval, batch mean.

    The class is ``argmax(membership)``, as in CoRe: a row without membership is class 0.

    Args:
        log_probs: (B, N) log-softmax outputs.
        membership: (B, N) one-hot (or all-zero) interval membership.

    Returns:
        scalar float32.
    """
    log_probs = ops.cast(log_probs, "float32")
    labels = ops.argmax(membership, axis=-1)  # (B,)
    picked = ops.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    return -ops.mean(picked)


def interval_regression_loss(regression, membership, target, counts=None):
    """Per interval, the MSE over the samples inside it; summed over intervals.

    Args:
        regression: (B, N) sigmoid outputs.
        membership: (B, N) one-hot membership (rows may be all zero).
        target: (B, N) regression targets (valid where membership is 1).
        counts: optional (N,) divisor of each interval's sum of squares (e.g. its samples over
            several batches); default: the samples of this batch in each interval.

    Returns:
        scalar float32: sum_i (sum over samples in interval i of (r - t)^2) / max(counts_i, 1);
        intervals without samples contribute 0.
    """
    regression = ops.cast(regression, "float32")
    membership = ops.cast(membership, "float32")
    squared = ops.square(regression - ops.cast(target, "float32")) * membership
    if counts is None:
        counts = ops.sum(membership, axis=0)  # (N,)
    counts = ops.stop_gradient(ops.cast(counts, "float32"))
    return ops.sum(ops.sum(squared, axis=0) / ops.maximum(counts, 1.0))
