"""Inline SVG drawings of plain numbers: the video timeline with the parts' bands, the exemplar
strip, the score histogram and the predicted-against-true scatter. No scripts, no fonts: the
browser's own sans-serif."""

from __future__ import annotations

import math
from html import escape

import numpy as np

PART_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")
STEP_COLOURS = ("#dbe9f6", "#fde5cc", "#dcefd9", "#f6d6d6", "#e8e0f1", "#eadcd6", "#f9e0ef")


TIMELINE_WIDTH, TIMELINE_LEFT, TIMELINE_RIGHT = 960, 78, 16  # the plot spans [left, width - right]


def part_colour(part: int) -> str:
    return PART_COLOURS[part % len(PART_COLOURS)]


def _number(value: float) -> str:
    return f"{value:.1f}"


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """About ``count`` round values (steps of 1, 2 or 5 × 10^n) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _text(x, y, text, size=12, anchor="start", colour="#222", weight="normal", cls=""):
    extra = f' class="{cls}"' if cls else ""
    return (f'<text x="{_number(x)}" y="{_number(y)}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{colour}" font-weight="{weight}"{extra}>{escape(str(text))}</text>')


def timeline(video: dict, width: int = TIMELINE_WIDTH) -> str:
    """The video's timeline: the annotated steps (when known) in a band on top, then one row per
    part with its attention over the clips as opacity, its band (clips at ≥ half its peak)
    outlined, a mark at its most attended frame; under them the time axis in seconds (when the
    frame rate is known) and frame numbers.

    Args:
        video: ``num_frames``, ``fps`` (or None), ``clip_frames`` (T,), ``attention`` (T, K),
            ``parts`` (:func:`tpt_keras.report.timeline.part_summary`), ``step_spans`` (None or
            :func:`tpt_keras.report.timeline.step_spans`).
    """
    from tpt_keras.report.timeline import clip_edges

    attention = np.asarray(video["attention"], np.float64)
    num_clips, num_parts = attention.shape
    num_frames = int(video["num_frames"])
    fps = video.get("fps")
    steps = video.get("step_spans") or []
    left, right, row, gap = TIMELINE_LEFT, TIMELINE_RIGHT, 22, 4
    plot = width - left - right
    last = max(num_frames - 1, 1)

    def x(frame):
        return left + plot * float(frame) / last

    y = 6
    shapes = []
    if steps:
        shapes.append(_text(left - 8, y + 15, "steps", 12, "end", "#555"))
        for j, step in enumerate(steps):
            x0, x1 = x(step["start_frame"]), x(step["end_frame"])
            shapes.append(f'<rect x="{_number(x0)}" y="{y}" width="{_number(max(x1 - x0, 0.5))}" '
                          f'height="{row}" fill="{STEP_COLOURS[j % len(STEP_COLOURS)]}" '
                          f'stroke="#999" stroke-width="0.5"><title>{escape(step["label"])}: frames '
                          f'{step["start_frame"]:.0f}–{step["end_frame"]:.0f}</title></rect>')
            if x1 - x0 > 7 * len(step["label"]):
                shapes.append(_text((x0 + x1) / 2, y + 15, step["label"], 11, "middle"))
        y += row + gap
    edges = clip_edges(video["clip_frames"], num_frames)
    for k, part in enumerate(video["parts"]):
        colour = part_colour(k)
        peak = max(float(attention[:, k].max()), 1e-12)
        shapes.append(_text(left - 8, y + 15, f"part {k + 1}", 12, "end", colour, "bold"))
        shapes.append(f'<rect x="{left}" y="{y}" width="{plot}" height="{row}" fill="#f4f4f4"/>')
        for t in range(num_clips):
            x0, x1 = x(edges[t]), x(edges[t + 1])
            shapes.append(f'<rect x="{_number(x0)}" y="{y}" width="{_number(max(x1 - x0, 0.5))}" '
                          f'height="{row}" fill="{colour}" fill-opacity="{attention[t, k] / peak:.3f}"/>')
        s0, s1 = x(part["span_frames"][0]), x(part["span_frames"][1])
        shapes.append(f'<rect class="band" data-part="{k + 1}" x="{_number(s0)}" y="{y - 1}" '
                      f'width="{_number(max(s1 - s0, 1))}" height="{row + 2}" fill="none" '
                      f'stroke="{colour}" stroke-width="2"/>')
        mark = x(part["thumbnail_frame"])
        shapes.append(f'<path d="M{_number(mark - 5)},{y + row + 6} L{_number(mark + 5)},{y + row + 6} '
                      f'L{_number(mark)},{y + row} Z" fill="{colour}"/>')
        y += row + gap + 6
    axis_y = y + 2
    shapes.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot}" y2="{axis_y}" stroke="#333"/>')
    if fps:
        shapes.append(_text(left - 8, axis_y + 14, "seconds", 11, "end", "#555"))
        shapes.append(_text(left - 8, axis_y + 28, "frame", 11, "end", "#888"))
        for tick in nice_ticks(0.0, last / fps, 10):
            tx = x(tick * fps)
            shapes.append(f'<line x1="{_number(tx)}" y1="{axis_y}" x2="{_number(tx)}" '
                          f'y2="{axis_y + 4}" stroke="#333"/>')
            shapes.append(_text(tx, axis_y + 14, f"{tick:g}", 11, "middle"))
            shapes.append(_text(tx, axis_y + 28, f"{tick * fps:.0f}", 10, "middle", "#888"))
        height = axis_y + 34
    else:
        shapes.append(_text(left - 8, axis_y + 14, "frame", 11, "end", "#555"))
        for tick in nice_ticks(0.0, last, 10):
            tx = x(tick)
            shapes.append(f'<line x1="{_number(tx)}" y1="{axis_y}" x2="{_number(tx)}" '
                          f'y2="{axis_y + 4}" stroke="#333"/>')
            shapes.append(_text(tx, axis_y + 14, f"{tick:g}", 11, "middle"))
        height = axis_y + 20
    return (f'<svg class="timeline" data-parts="{num_parts}" viewBox="0 0 {width} {height}" '
            f'shape-rendering="crispEdges" '
            f'width="100%" role="img" aria-label="timeline of the parts">' + "".join(shapes) + "</svg>")


def exemplar_strip(exemplar_scores, score: float, width: int = 420) -> str:
    """A number line of the scores from each exemplar (small dots) with the final score (a bar)."""
    values = np.asarray(list(exemplar_scores) + [score], np.float64)
    low, high = float(values.min()), float(values.max())
    pad = max((high - low) * 0.08, 0.5)
    low, high = low - pad, high + pad
    left, right, height = 10, 10, 46
    plot = width - left - right

    def x(value):
        return left + plot * (value - low) / (high - low)

    shapes = [f'<line x1="{left}" y1="20" x2="{width - right}" y2="20" stroke="#bbb"/>']
    for value in exemplar_scores:
        shapes.append(f'<circle class="exemplar" cx="{_number(x(value))}" cy="20" r="4" fill="#888" '
                      f'fill-opacity="0.7"><title>{value:.2f}</title></circle>')
    shapes.append(f'<rect x="{_number(x(score) - 1.5)}" y="8" width="3" height="24" fill="#c0392b"/>')
    for tick in nice_ticks(low, high, 5):
        shapes.append(_text(x(tick), 42, f"{tick:g}", 10, "middle", "#666"))
    return (f'<svg class="strip" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="scores from each exemplar">' + "".join(shapes) + "</svg>")


def histogram(values, width: int = 520, height: int = 200, bins: int = 12, label: str = "score") -> str:
    """Bars of how many values fall in each of ``bins`` equal bins."""
    values = np.asarray(values, np.float64)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    left, right, top, bottom = 40, 14, 10, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max(int(counts.max()), 1)
    shapes = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
              'stroke="#333"/>']
    for i, count in enumerate(counts):
        x0 = left + plot_w * i / bins
        bar = plot_h * count / most
        shapes.append(f'<rect x="{_number(x0 + 1)}" y="{_number(top + plot_h - bar)}" '
                      f'width="{_number(plot_w / bins - 2)}" height="{_number(bar)}" fill="#4a7ab5">'
                      f'<title>{edges[i]:.2f}–{edges[i + 1]:.2f}: {count}</title></rect>')
    for tick in nice_ticks(low, high, 6):
        tx = left + plot_w * (tick - low) / (high - low)
        shapes.append(_text(tx, top + plot_h + 14, f"{tick:g}", 10, "middle"))
    for tick in nice_ticks(0, most, 4):
        if tick == int(tick):
            ty = top + plot_h - plot_h * tick / most
            shapes.append(_text(left - 6, ty + 4, f"{tick:g}", 10, "end"))
    shapes.append(_text(left + plot_w / 2, height - 6, label, 11, "middle", "#555"))
    return (f'<svg class="histogram" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="score distribution">' + "".join(shapes) + "</svg>")


def scatter(predicted, true, width: int = 360, height: int = 360, links=None) -> str:
    """Predicted (y) against true (x) scores with the identity line; ``links`` (optional, N)
    anchors the points link to."""
    predicted = np.asarray(predicted, np.float64)
    true = np.asarray(true, np.float64)
    low = float(min(predicted.min(), true.min()))
    high = float(max(predicted.max(), true.max()))
    pad = max((high - low) * 0.05, 0.5)
    low, high = low - pad, high + pad
    left, right, top, bottom = 46, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(value):
        return left + plot_w * (value - low) / (high - low)

    def py(value):
        return top + plot_h - plot_h * (value - low) / (high - low)

    shapes = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#999"/>',
              f'<line x1="{_number(px(low))}" y1="{_number(py(low))}" x2="{_number(px(high))}" '
              f'y2="{_number(py(high))}" stroke="#999" stroke-dasharray="4 3"/>']
    for tick in nice_ticks(low, high, 5):
        shapes.append(_text(px(tick), top + plot_h + 14, f"{tick:g}", 10, "middle"))
        shapes.append(_text(left - 5, py(tick) + 4, f"{tick:g}", 10, "end"))
    for i, (p, t) in enumerate(zip(predicted, true)):
        dot = (f'<circle cx="{_number(px(t))}" cy="{_number(py(p))}" r="3.5" fill="#4a7ab5" '
               f'fill-opacity="0.75"><title>true {t:.2f}, predicted {p:.2f}</title></circle>')
        if links is not None and links[i]:
            dot = f'<a href="#{escape(links[i])}">{dot.replace("#4a7ab5", "#c0392b")}</a>'
        shapes.append(dot)
    shapes.append(_text(left + plot_w / 2, height - 8, "true score", 11, "middle", "#555"))
    shapes.append(f'<text x="12" y="{_number(top + plot_h / 2)}" font-size="11" fill="#555" '
                  f'text-anchor="middle" transform="rotate(-90 12 {_number(top + plot_h / 2)})">'
                  f'predicted score</text>')
    return (f'<svg class="scatter" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="predicted against true scores">' + "".join(shapes) + "</svg>")
