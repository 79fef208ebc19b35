"""Pictures: the cross-attention map with the frame each query attends to (paper Fig. 3–4), and
predicted-vs-true scatter plots. Pure functions of numpy arrays; matplotlib's Agg backend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import os  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def picture_path(path: str) -> str:
    """The file a picture is written to: ``path`` with ``.png`` added when it has no extension
    (what matplotlib would write anyway), its folder created."""
    path = os.fspath(path)
    if not os.path.splitext(path)[1]:
        path += ".png"
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return path


def most_attended_clips(attention: np.ndarray) -> np.ndarray:
    """(T, K) attention (softmax over time per query) → (K,) index of the clip each query
    attends to most."""
    attention = np.asarray(attention)
    if attention.ndim != 2:
        raise ValueError(f"attention must be (clips, queries), got shape {attention.shape}")
    return attention.argmax(axis=0)


def step_band(axis, boundaries, num_clips: int, labels=None) -> None:
    """Draw annotated steps as a band of coloured segments on the clip axis (clip t centred at
    t): step j spans [b_{j-1}, b_j] with b_{-1} = -1/2 and b_{J-1} = T - 1/2
    (:func:`tpt_keras.ops.parsing_metrics.step_segments`).

    Args:
        axis: a matplotlib axis (its x range is set to the clip axis).
        boundaries: (J - 1,) step boundaries in clip units.
        num_clips: T.
        labels: optional J names or label ids written on the segments (default the step number).
    """
    from tpt_keras.ops.parsing_metrics import step_segments

    segments = step_segments(boundaries, num_clips)
    colours = plt.get_cmap("tab10")
    for j, (start, end) in enumerate(segments):
        axis.broken_barh([(start, end - start)], (0, 1), facecolors=colours(j % 10), alpha=0.8)
        if end > start:
            axis.text((start + end) / 2, 0.5, str(labels[j]) if labels is not None else f"step {j}",
                      ha="center", va="center", fontsize=7)
    axis.set_xlim(-0.5, num_clips - 0.5)
    axis.set_ylim(0, 1)
    axis.set_yticks([])
    axis.set_ylabel("steps", rotation=0, ha="right", va="center", fontsize=8)
    axis.set_xlabel("clip")


COLOUR_BAR_LABEL = "attention weight (softmax over clips)"


def clip_tick_labels(num_clips: int, frame_numbers=None, seconds=None) -> list[str]:
    """Tick labels of the clip axis: the clip index, then its middle frame's number (``f41``)
    and its time (``1.6s``) when known."""
    labels = []
    for clip in range(num_clips):
        label = str(clip)
        if frame_numbers is not None:
            label += f"\nf{int(frame_numbers[clip])}"
        if seconds is not None:
            label += f"\n{float(seconds[clip]):.1f}s"
        labels.append(label)
    return labels


def clip_axis_label(frame_numbers=None, seconds=None) -> str:
    """What the clip axis's tick lines say."""
    parts = ["clip"] + (["middle frame (f)"] if frame_numbers is not None else []) \
        + (["time (s)"] if seconds is not None else [])
    return " / ".join(parts)


def plot_attention(attention: np.ndarray, path: str, clip_frames: np.ndarray | None = None,
                   title: str = "", step_boundaries=None, step_labels=None,
                   clip_frame_numbers=None, clip_seconds=None) -> str:
    """Save the queries × clips attention map and, below it, the annotated steps (when known)
    and each query's most attended frame.

    Args:
        attention: (T, K) or (L, T, K) cross-attention of one video (the last layer is shown).
        path: PNG file to write.
        clip_frames: optional (T, H, W, 3) uint8, one representative frame per clip (e.g. the
            clip's middle frame).
        title: figure title (e.g. the predicted score).
        step_boundaries: optional (J - 1,) annotated step boundaries in clip units: a band of
            the J steps under the map (:func:`step_band`), on the same clip axis.
        step_labels: optional J labels written on the band's segments (step names).
        clip_frame_numbers: optional (T,) the video's frame number at the middle of each clip,
            written under the clip index.
        clip_seconds: optional (T,) their time in seconds (when the source knows its timing).

    Returns:
        the file written (:func:`picture_path`).
    """
    path = picture_path(path)
    attention = np.asarray(attention, dtype=np.float32)
    if attention.ndim == 3:
        attention = attention[-1]
    num_clips, num_queries = attention.shape
    top = most_attended_clips(attention)
    band = step_boundaries is not None
    tick_lines = 1 + (clip_frame_numbers is not None) + (clip_seconds is not None)
    # with the step band (no tight layout), an empty row under the clip axis leaves room for its
    # tick lines above the frame titles
    gap = [0.12 * tick_lines + 0.15] if clip_frames is not None and band else []
    heights = [1.2] + ([0.25] if band else []) + gap + ([1.0] if clip_frames is not None else [])
    rows = len(heights)
    figure = plt.figure(figsize=(max(6.0, 0.5 * num_clips), 2.2 + 1.8 * (clip_frames is not None)
                                 + 0.5 * band + 0.3 * (tick_lines - 1)))
    grid = figure.add_gridspec(rows, max(num_queries, 1), height_ratios=heights)
    axis = figure.add_subplot(grid[0, :])
    image = axis.imshow(attention.T, aspect="auto", cmap="viridis", interpolation="nearest")
    ticks = clip_tick_labels(num_clips, clip_frame_numbers, clip_seconds)
    axis.set_xlabel(clip_axis_label(clip_frame_numbers, clip_seconds), fontsize=8)
    axis.set_ylabel("query (part)")
    axis.set_yticks(range(num_queries))
    axis.set_xticks(range(num_clips), ticks)
    axis.tick_params(labelsize=7)
    if title:
        axis.set_title(title)
    if band:
        band_axis = figure.add_subplot(grid[1, :], sharex=axis)
        step_band(band_axis, step_boundaries, num_clips, step_labels)
        band_axis.set_xticks(range(num_clips), ticks)
        band_axis.tick_params(labelsize=7)
        band_axis.set_xlabel(axis.get_xlabel(), fontsize=8)
        axis.set_xlabel("")
        axis.tick_params(labelbottom=False)
        bar = figure.colorbar(image, ax=[axis, band_axis], fraction=0.02, pad=0.01)  # keeps them aligned
    else:
        bar = figure.colorbar(image, ax=axis, fraction=0.02, pad=0.01)
    bar.set_label(COLOUR_BAR_LABEL, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    if clip_frames is not None:
        clip_frames = np.asarray(clip_frames)
        if clip_frames.shape[0] != num_clips:
            raise ValueError(f"clip_frames has {clip_frames.shape[0]} frames for {num_clips} clips")
        for query, clip in enumerate(top):
            frame_axis = figure.add_subplot(grid[rows - 1, query])
            frame_axis.imshow(clip_frames[clip])
            where = f"clip {clip}"
            if clip_frame_numbers is not None:
                where += f", f{int(clip_frame_numbers[clip])}"
            if clip_seconds is not None:
                where += f", {float(clip_seconds[clip]):.1f}s"
            frame_axis.set_title(f"q{query}: {where}", fontsize=7)
            frame_axis.axis("off")
    if not band:  # the shared colour bar of map and band lays itself out
        figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _scatter(axis, predicted, true, title):
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    true = np.asarray(true, dtype=np.float64).ravel()
    if predicted.shape != true.shape:
        raise ValueError(f"{predicted.shape[0]} predictions for {true.shape[0]} true scores")
    axis.scatter(true, predicted, s=12, alpha=0.7)
    low = float(min(true.min(), predicted.min()))
    high = float(max(true.max(), predicted.max()))
    axis.plot([low, high], [low, high], color="gray", linewidth=1, linestyle="--")
    axis.set_xlabel("true score")
    axis.set_ylabel("predicted score")
    if title:
        axis.set_title(title, fontsize=9)


def plot_scatter(predicted: np.ndarray, true: np.ndarray, path: str, title: str = "") -> str:
    """Save predicted vs true scores with the identity line. Returns the file written
    (:func:`picture_path`)."""
    return plot_scatter_panels([(predicted, true, title)], path)


def plot_scatter_panels(panels, path: str) -> str:
    """One picture, one scatter panel per ``(predicted (N,), true (N,), title)`` (e.g. per run of
    ``tpt evaluate``), up to 3 per row. Returns the file written (:func:`picture_path`)."""
    path = picture_path(path)
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.2 * rows), squeeze=False)
    for axis, (predicted, true, title) in zip(axes.ravel(), panels):
        _scatter(axis, predicted, true, title)
    for axis in axes.ravel()[len(panels):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
