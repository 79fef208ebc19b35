"""How well a model's temporal parts agree with annotated steps (definitions: docs/parsing.md).

Inputs are the cross-attention maps the model returns, ``(B, L, T, K)`` (batch, decoder layer,
clip, part; each part's map sums to 1 over the T clips), and each video's annotated step
boundaries in clip units (:func:`data_pipelines.video.steps.step_boundaries`). Pure numpy:

* part centre ``μ_k = Σ_t t · A[t, k]`` (:func:`part_centres`), on the clip axis where clip t is
  centred at t;
* part boundaries: the centres in time order, and the midpoints of consecutive ones
  (:func:`part_boundaries`);
* boundary error: for each annotated boundary, the distance in clips to the nearest part boundary
  (:func:`boundary_errors`); the MAE pools all annotated boundaries of all videos;
* step IoU: each annotated boundary is matched to its nearest part boundary; the matched part
  boundaries cut the clip axis into as many predicted segments as there are steps; the video's
  IoU is the mean temporal IoU of predicted and annotated segment, step by step
  (:func:`video_iou`); ``iou@d`` is the fraction of videos whose IoU is at least d.

:func:`uniform_baseline` gives the same figures for untrained, uniform attention, and
:func:`equal_parts_baseline` for K fixed equal parts (content-blind, but hard to beat).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLDS = (0.5, 0.75)


def step_segments(boundaries, num_clips: int) -> np.ndarray:
    """(J, 2) float64 segments ``[start, end]`` on the clip axis from J - 1 boundaries."""
    boundaries = np.asarray(boundaries, np.float64).reshape(-1)
    edges = np.concatenate([[-0.5], boundaries, [num_clips - 0.5]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def part_centres(attention) -> np.ndarray:
    """(B, T, K) attention over clips → (B, K) float64 centres ``Σ_t t · A[t, k] / Σ_t A[t, k]``."""
    attention = np.asarray(attention, np.float64)
    if attention.ndim != 3:
        raise ValueError(f"attention must be (batch, clips, parts), got shape {attention.shape}")
    clips = np.arange(attention.shape[1], dtype=np.float64)
    return np.einsum("btk,t->bk", attention, clips) / attention.sum(axis=1)


def part_boundaries(centres) -> np.ndarray:
    """(B, K) centres → (B, K - 1) midpoints of consecutive centres, in time order."""
    centres = np.sort(np.asarray(centres, np.float64), axis=-1)
    return 0.5 * (centres[..., 1:] + centres[..., :-1])


def nearest(predicted, annotated) -> np.ndarray:
    """For each annotated boundary (J - 1,), the nearest of the predicted ones (P,) (ties: the
    earlier). Non-decreasing when both are sorted."""
    predicted = np.asarray(predicted, np.float64).reshape(-1)
    annotated = np.asarray(annotated, np.float64).reshape(-1)
    if predicted.size == 0:
        raise ValueError("the parsing metric needs at least two parts (one part boundary)")
    return predicted[np.argmin(np.abs(annotated[:, None] - predicted[None, :]), axis=1)]


def boundary_errors(predicted, annotated) -> np.ndarray:
    """(J - 1,) distances, in clips, from each annotated boundary to the nearest predicted one."""
    return np.abs(np.asarray(annotated, np.float64).reshape(-1) - nearest(predicted, annotated))


def segment_iou(first, second) -> float:
    """Temporal IoU of two segments ``[start, end]``; 0 when the union is empty."""
    intersection = max(0.0, min(first[1], second[1]) - max(first[0], second[0]))
    union = (first[1] - first[0]) + (second[1] - second[0]) - intersection
    return float(intersection / union) if union > 0 else 0.0


def video_iou(predicted, annotated, num_clips: int) -> float:
    """Mean IoU over the annotated steps of one video.

    The predicted segments are cut at ``nearest(predicted, annotated)``, so there are as many as
    annotated steps, in order; steps of zero length on the clip grid are left out of the mean.
    """
    annotated = np.asarray(annotated, np.float64).reshape(-1)
    truth = step_segments(annotated, num_clips)
    guess = step_segments(nearest(predicted, annotated) if annotated.size else annotated, num_clips)
    ious = [segment_iou(g, t) for g, t in zip(guess, truth) if t[1] > t[0]]
    return float(np.mean(ious)) if ious else 1.0


def parsing_metrics(attention, boundaries: Sequence, layer: int = -1,
                    thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """The parsing metric of a batch.

    Args:
        attention: (B, L, T, K) cross-attention maps of B videos.
        boundaries: B arrays of annotated step boundaries in clip units (J_b - 1 each).
        layer: the decoder layer whose maps are read (default the last).
        thresholds: IoU thresholds d of ``iou@d``.

    Returns:
        ``{"boundary_mae": clips, "mean_iou", "iou@0.5", "iou@0.75", "parts_in_order": fraction of
        videos whose part centres strictly increase with the part index, "videos", "boundaries"}``.
    """
    attention = np.asarray(attention, np.float64)
    if attention.ndim != 4:
        raise ValueError(f"attention must be (batch, layers, clips, parts), got shape {attention.shape}")
    if len(boundaries) != attention.shape[0]:
        raise ValueError(f"{attention.shape[0]} attention maps but {len(boundaries)} boundary lists")
    num_clips = attention.shape[2]
    centres = part_centres(attention[:, layer])  # (B, K)
    predicted = part_boundaries(centres)  # (B, K - 1)
    errors = np.concatenate([boundary_errors(p, b) for p, b in zip(predicted, boundaries)] or [np.zeros(0)])
    ious = np.array([video_iou(p, b, num_clips) for p, b in zip(predicted, boundaries)])
    result = {"boundary_mae": float(errors.mean()) if errors.size else float("nan"),
              "mean_iou": float(ious.mean())}
    for threshold in thresholds:
        result[f"iou@{threshold:g}"] = float(np.mean(ious >= threshold))
    result["parts_in_order"] = float(np.mean(np.all(np.diff(centres, axis=1) > 0, axis=1)))
    result["videos"] = int(attention.shape[0])
    result["boundaries"] = int(errors.size)
    return result


def uniform_attention(batch: int, num_layers: int, num_clips: int, num_parts: int) -> np.ndarray:
    """(B, L, T, K) attention of an untrained decoder: every part attends 1/T to every clip."""
    return np.full((batch, num_layers, num_clips, num_parts), 1.0 / num_clips)


def equal_parts_attention(batch: int, num_layers: int, num_clips: int, num_parts: int) -> np.ndarray:
    """(B, L, T, K) attention that cuts every video into K equal parts, whatever it shows: part k
    attends uniformly to clips ``floor(kT/K) .. floor((k+1)T/K) - 1``."""
    attention = np.zeros((batch, num_layers, num_clips, num_parts))
    edges = (np.arange(num_parts + 1) * num_clips) // num_parts
    for k in range(num_parts):
        attention[:, :, edges[k]:edges[k + 1], k] = 1.0 / (edges[k + 1] - edges[k])
    return attention


def uniform_baseline(boundaries: Sequence, num_clips: int, num_parts: int,
                     thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """:func:`parsing_metrics` of uniform (untrained) attention: every part centre and every
    part boundary sits at the middle of the video, ``(T - 1) / 2``."""
    return parsing_metrics(uniform_attention(len(boundaries), 1, num_clips, num_parts), boundaries,
                           thresholds=thresholds)


def equal_parts_baseline(boundaries: Sequence, num_clips: int, num_parts: int,
                         thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """:func:`parsing_metrics` of :func:`equal_parts_attention`: fixed, content-blind parts
    (boundaries at 3.5, 7.5, 11.5, 15.5 for T = 20, K = 5), the bar a learned parse must clear."""
    return parsing_metrics(equal_parts_attention(len(boundaries), 1, num_clips, num_parts), boundaries,
                           thresholds=thresholds)
