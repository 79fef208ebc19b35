"""Where each part looks, in the video's own time: clips → frame numbers → seconds.

Pure numpy. A video of ``num_frames`` frames is read as ``T`` clips; clip ``t`` is drawn around its
middle frame ``clip_frames[t]`` and covers the frames half-way to its neighbours' middles (the
first clip from frame 0, the last to the final frame). A position on the clip axis (a part's
centre, a step boundary) maps to a frame by linear interpolation between clip middles.
"""

from __future__ import annotations

import numpy as np

from tpt_keras.ops import parsing_metrics


def clip_edges(clip_frames, num_frames: int) -> np.ndarray:
    """(T,) middle frame of each clip → (T + 1,) float64 frame edges of the clips' cells on the
    timeline: 0, the midpoints between consecutive middles, ``num_frames - 1``."""
    middles = np.asarray(clip_frames, np.float64).reshape(-1)
    inner = 0.5 * (middles[1:] + middles[:-1])
    return np.concatenate([[0.0], inner, [max(num_frames - 1.0, middles[-1])]])


def clip_to_frame(position, clip_frames, num_frames: int) -> np.ndarray:
    """Positions on the clip axis (any shape; clip t centred at t, cells ±½) → frame numbers
    (float64): linear between clip middles, linear between the cell edges at either end."""
    middles = np.asarray(clip_frames, np.float64).reshape(-1)
    edges = clip_edges(middles, num_frames)
    grid = np.concatenate([[-0.5], np.arange(len(middles), dtype=np.float64), [len(middles) - 0.5]])
    frames = np.concatenate([[edges[0]], middles, [edges[-1]]])
    return np.interp(np.asarray(position, np.float64), grid, frames)


def seconds(frame, fps):
    """A frame number → seconds (frame / fps), or None when the frame rate is unknown."""
    return None if not fps else float(frame) / float(fps)


def attended_span(weights) -> tuple[int, int]:
    """(T,) one part's attention → (first, last) clip of the run of clips around the peak whose
    attention is at least half the peak (the part's band on the timeline)."""
    weights = np.asarray(weights, np.float64)
    peak = int(weights.argmax())
    half = 0.5 * weights[peak]
    first = peak
    while first > 0 and weights[first - 1] >= half:
        first -= 1
    last = peak
    while last < len(weights) - 1 and weights[last + 1] >= half:
        last += 1
    return first, last


def part_summary(attention, clip_frames, num_frames: int, fps=None) -> list[dict]:
    """Per part, where it looks: its attention-weighted centre, its peak and its band.

    Args:
        attention: (T, K) one video's cross-attention (each column sums to 1 over the clips).
        clip_frames: (T,) the middle frame of each clip.
        num_frames: frames of the video.
        fps: frames per second, or None (then every ``*_seconds`` is None).

    Returns:
        K dicts: ``part`` (0-based), ``centre_clip`` (Σ t·A[t,k]), ``centre_frame``,
        ``centre_seconds``, ``peak`` (the largest attention weight), ``peak_clip``,
        ``thumbnail_frame`` (the peak clip's middle frame: the frame the part looks at most),
        ``thumbnail_seconds``, ``span_clips`` [first, last], ``span_frames`` [start, end] and
        ``span_seconds`` (the band: clips at ≥ half the peak, :func:`attended_span`).
    """
    attention = np.asarray(attention, np.float64)
    if attention.ndim != 2:
        raise ValueError(f"attention must be (clips, parts), got shape {attention.shape}")
    middles = np.asarray(clip_frames).reshape(-1)
    if len(middles) != attention.shape[0]:
        raise ValueError(f"{len(middles)} clip frames for {attention.shape[0]} clips")
    edges = clip_edges(middles, num_frames)
    centres = parsing_metrics.part_centres(attention[np.newaxis])[0]
    parts = []
    for k in range(attention.shape[1]):
        peak_clip = int(attention[:, k].argmax())
        first, last = attended_span(attention[:, k])
        centre_frame = float(clip_to_frame(centres[k], middles, num_frames))
        span = [float(edges[first]), float(edges[last + 1])]
        parts.append({
            "part": k, "centre_clip": float(centres[k]), "centre_frame": centre_frame,
            "centre_seconds": seconds(centre_frame, fps), "peak": float(attention[peak_clip, k]),
            "peak_clip": peak_clip, "thumbnail_frame": int(middles[peak_clip]),
            "thumbnail_seconds": seconds(middles[peak_clip], fps), "span_clips": [first, last],
            "span_frames": span,
            "span_seconds": None if not fps else [seconds(span[0], fps), seconds(span[1], fps)]})
    return parts


def step_spans(boundaries, labels, clip_frames, num_frames: int, fps=None) -> list[dict]:
    """Annotated steps on the timeline.

    Args:
        boundaries: (J - 1,) step boundaries in clip units (step j spans [b_{j-1}, b_j] with
            b_{-1} = -½ and b_{J-1} = T - ½: :func:`tpt_keras.ops.parsing_metrics.step_segments`).
        labels: J names (or ids) of the steps, or None (then ``step 1`` … ``step J``).

    Returns:
        J dicts: ``label``, ``start_frame``, ``end_frame``, ``start_seconds``, ``end_seconds``.
    """
    middles = np.asarray(clip_frames).reshape(-1)
    segments = parsing_metrics.step_segments(boundaries, len(middles))
    frames = clip_to_frame(segments, middles, num_frames)
    steps = []
    for j, (start, end) in enumerate(frames):
        label = str(labels[j]) if labels is not None and j < len(labels) else f"step {j + 1}"
        steps.append({"label": label, "start_frame": float(start), "end_frame": float(end),
                      "start_seconds": seconds(start, fps), "end_seconds": seconds(end, fps)})
    return steps
