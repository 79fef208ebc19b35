"""The test-time score from relative scores against several exemplars (pure maths).

A query is compared with E exemplars of known score; each comparison predicts the query's score
as the exemplar's target plus the relative score (times the query's difficulty with DD), and the
final score is their mean over the real (unmasked) exemplars.
"""

from __future__ import annotations

from keras import ops


def aggregate_exemplar_scores(relative, exemplar_targets, exemplar_mask, query_difficulty,
                              use_difficulty: bool):
    """Final scores from the relative scores against several exemplars.

    Args:
        relative: (B, E) predicted s_query - s_exemplar, in target units.
        exemplar_targets: (B, E) the exemplars' regression targets.
        exemplar_mask: (B, E) 1 for a real exemplar, 0 for padding.
        query_difficulty: (B,) difficulty of each query (used when ``use_difficulty``).
        use_difficulty: multiply by the query's difficulty (MTL-AQA with DD).

    Returns:
        scores: (B,) float32, the masked mean over exemplars of the per-exemplar predictions.
        per_exemplar: (B, E) float32, (relative + exemplar_target) [x query_difficulty].
    """
    per_exemplar = ops.cast(relative, "float32") + ops.cast(exemplar_targets, "float32")
    if use_difficulty:
        per_exemplar = per_exemplar * ops.reshape(ops.cast(query_difficulty, "float32"), (-1, 1))
    mask = ops.cast(exemplar_mask, "float32")
    count = ops.maximum(ops.sum(mask, axis=1), 1.0)  # an all-padding row scores 0, not NaN
    return ops.sum(per_exemplar * mask, axis=1) / count, per_exemplar
