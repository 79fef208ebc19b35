"""Annotated steps (sub-actions) of a video, mapped onto the clip grid the model sees.

FineDiving labels every frame of a dive with its step ("Inward", "3.5 Soms.Tuck", "Entry", …). A
**step** is a maximal run of equal labels, in time order; a label may come back later as a new
step (pike, twist, pike). The model does not see frames but ``T`` clips, each made of the frames
the protocol samples (:func:`clip_frame_indices`), so the labels are mapped onto clips:

* **clip steps** (:func:`clip_steps`): the step each clip mostly covers — the step holding most of
  the clip's frames (ties go to the earlier step);
* **step boundaries in clip units** (:func:`step_boundaries`): on the clip axis, clip ``t`` is
  centred at ``t`` and spans ``[t - 1/2, t + 1/2]``. The boundary between step ``j`` and ``j + 1``
  is ``b_j = -1/2 + Σ_t f_t(j)``, where ``f_t(j)`` is the fraction of clip ``t``'s frames that lie in
  steps ``0..j``. For non-overlapping clips and a change of step a fraction φ into clip ``t``,
  ``b_j = t - 1/2 + φ``; a video whose first 10 of 20 clips are step 0 has ``b_0 = 9.5``, halfway
  between the centres of clips 9 and 10. Boundaries are non-decreasing and lie in
  ``[-1/2, T - 1/2]``. Step ``j`` covers the segment ``[b_{j-1}, b_j]`` with ``b_{-1} = -1/2`` and
  ``b_{J-1} = T - 1/2`` (:func:`tpt_keras.ops.parsing_metrics.step_segments`).

Every function is pure numpy; frame indices may repeat (a dive shorter than the sampled length).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_pipelines.video.protocol import CLIP_LEN, CLIP_STRIDE, NUM_CLIPS


def label_runs(labels) -> tuple[tuple[int, int], ...]:
    """Run-length encoding of per-frame labels (the :class:`Sample` ``steps`` field).

    Args:
        labels: (F,) int, one label per frame, F >= 1.

    Returns:
        ``((label, num_frames), ...)`` in time order, e.g. ``[4, 4, 25, 36, 36] → ((4, 2), (25, 1),
        (36, 2))``.
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError("label_runs needs at least one frame label")
    starts = np.concatenate([[0], np.flatnonzero(labels[1:] != labels[:-1]) + 1])
    lengths = np.diff(np.concatenate([starts, [labels.size]]))
    return tuple((int(labels[s]), int(n)) for s, n in zip(starts, lengths))


def frame_labels(steps: Sequence[tuple[int, int]]) -> np.ndarray:
    """Inverse of :func:`label_runs`: (F,) int64 per-frame labels."""
    return np.concatenate([np.full(int(n), int(label), np.int64) for label, n in steps])


def frame_step_index(steps: Sequence[tuple[int, int]]) -> np.ndarray:
    """(F,) int64: the ordinal ``j`` of the step each frame belongs to (0, 0, 1, 2, 2 …)."""
    return np.repeat(np.arange(len(steps)), [int(n) for _, n in steps])


def clip_frame_indices(num_frames: int, num_clips: int = NUM_CLIPS, clip_len: int = CLIP_LEN,
                       clip_stride: int = CLIP_STRIDE,
                       sampling: str = "linspace", start: int = 0) -> np.ndarray:
    """The frame index of every clip position under a protocol's temporal sampling.

    The protocol first picks ``(num_clips - 1) · clip_stride + clip_len`` frames of the video
    (``"linspace"``: spread uniformly over the whole video; ``"window"``: consecutive from
    ``start``; :mod:`data_pipelines.video.protocol`), then cuts clips from them.

    Returns:
        int64 (num_clips, clip_len), frame numbers in ``[0, num_frames)``.
    """
    from data_pipelines.video import protocol  # the numpy temporal rule (no TensorFlow)

    length = (num_clips - 1) * clip_stride + clip_len
    if sampling == "linspace":
        sampled = protocol.linspace_indices(num_frames, length)
    elif sampling == "window":
        sampled = protocol.window_indices(num_frames, start, length)
    else:
        raise ValueError(f"sampling must be 'linspace' or 'window', got {sampling!r}")
    return sampled[protocol.clip_indices(length, num_clips, clip_len, clip_stride)].astype(np.int64)


def clip_step_fractions(steps: Sequence[tuple[int, int]], frame_indices) -> np.ndarray:
    """Fraction of each clip's frames in each step.

    Args:
        steps: ``((label, num_frames), ...)`` of the video (J steps, F frames in all).
        frame_indices: (T, L) int frame numbers of each clip's frames, in ``[0, F)``.

    Returns:
        float64 (T, J); rows sum to 1.
    """
    step_of_frame = frame_step_index(steps)
    frame_indices = np.asarray(frame_indices, np.int64)
    if frame_indices.ndim != 2:
        raise ValueError(f"frame_indices must be (clips, frames per clip), got shape {frame_indices.shape}")
    if frame_indices.min() < 0 or frame_indices.max() >= step_of_frame.size:
        raise ValueError(f"frame indices {frame_indices.min()}..{frame_indices.max()} fall outside the "
                         f"{step_of_frame.size} labelled frames")
    one_hot = np.eye(len(steps))[step_of_frame[frame_indices]]  # (T, L, J)
    return one_hot.mean(axis=1)


def clip_steps(steps: Sequence[tuple[int, int]], frame_indices) -> np.ndarray:
    """(T,) int64: the step ordinal each clip mostly covers (ties: the earlier step)."""
    return np.argmax(clip_step_fractions(steps, frame_indices), axis=1).astype(np.int64)


def step_boundaries(steps: Sequence[tuple[int, int]], frame_indices) -> np.ndarray:
    """(J - 1,) float64: boundary between consecutive steps in clip units (module docstring)."""
    fractions = clip_step_fractions(steps, frame_indices)  # (T, J)
    return -0.5 + np.cumsum(fractions, axis=1)[:, :-1].sum(axis=0)



def protocol_boundaries(steps: Sequence[tuple[int, int]], num_clips: int = NUM_CLIPS,
                        clip_len: int = CLIP_LEN, clip_stride: int = CLIP_STRIDE,
                        sampling: str = "linspace", start: int = 0) -> np.ndarray:
    """(J - 1,) step boundaries in clip units of a video whose frames are exactly its labelled
    frames (a FineDiving frame folder), under a protocol's sampling (:func:`clip_frame_indices`).

    Example: ``protocol_boundaries(sample.steps)`` for the ``finediving`` preset's grid.
    """
    num_frames = sum(int(length) for _, length in steps)
    return step_boundaries(steps, clip_frame_indices(num_frames, num_clips, clip_len, clip_stride,
                                                     sampling, start))
