"""Self-contained HTML pages from plain dicts: a scoring session (one video or many) and an
evaluated run. One file each: the pictures are inline SVG or ``data:`` URIs, the style and the
few lines of script (sorting the table; recording each image's loaded width) are inline; no
network, no external script or font."""

from __future__ import annotations

import os
from html import escape

import numpy as np

from tpt_keras.report import svg

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;
 margin:0;padding:24px 32px;color:#222;background:#fff;max-width:1100px}
h1{font-size:26px;margin:0 0 6px}h2{font-size:20px;margin:0 0 8px}h3{font-size:15px;margin:18px 0 6px;color:#444}
.muted{color:#666}.small{font-size:13px}
dl.card{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0 18px;font-size:14px}
dl.card dt{color:#666}dl.card dd{margin:0}
section.video{border-top:2px solid #ddd;padding:18px 0 10px;margin-top:14px}
.headline{display:flex;flex-wrap:wrap;gap:28px;align-items:center}
.score{font-size:44px;font-weight:700;line-height:1}.score .unit{font-size:14px;font-weight:400;color:#666;margin-left:6px}
.spread{font-size:14px;color:#444}
.thumbs{display:flex;margin-top:2px}
.thumbs figure{margin:0;flex:none}.thumbs .stripe{height:5px;margin-bottom:4px}
.thumbs img{width:100%;height:auto;display:block;image-rendering:pixelated;background:#eee}
.thumbs figcaption{font-size:12px;color:#333;margin-top:3px}
table{border-collapse:collapse;font-size:14px;margin:6px 0 12px}
th,td{padding:4px 10px;border-bottom:1px solid #e3e3e3;text-align:right}
th:first-child,td:first-child,td.text,th.text{text-align:left}
th{background:#f3f3f3;font-weight:600}
th button{font:inherit;background:none;border:0;padding:0;cursor:pointer;color:#1a4e8a}
th[aria-sort=ascending] button::after{content:' \\25B2'}th[aria-sort=descending] button::after{content:' \\25BC'}
a{color:#1a4e8a}.note{background:#fff7e0;border-left:4px solid #e0b030;padding:6px 10px;font-size:13px}
.plots{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
"""

SCRIPT = """
function sortTable(button){var th=button.parentNode,table=th.closest('table'),body=table.tBodies[0],
 i=th.cellIndex,up=th.getAttribute('aria-sort')!=='ascending',rows=Array.prototype.slice.call(body.rows);
 rows.sort(function(a,b){var x=a.cells[i].getAttribute('data-value'),y=b.cells[i].getAttribute('data-value'),
  nx=parseFloat(x),ny=parseFloat(y),c=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;return up?c:-c;});
 rows.forEach(function(r){body.appendChild(r);});
 table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
 th.setAttribute('aria-sort',up?'ascending':'descending');}
window.addEventListener('load',function(){document.querySelectorAll('img').forEach(function(img){
 img.setAttribute('data-natural-width',img.complete?img.naturalWidth:0);});
 document.body.setAttribute('data-ready','yes');});
"""


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style><script>{SCRIPT}</script>"
            f"</head><body>\n{body}\n</body></html>\n")


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _when(frame, seconds) -> str:
    """``1.24 s (frame 31)``, or ``frame 31`` without a frame rate."""
    return f"frame {frame:.0f}" if seconds is None else f"{seconds:.2f} s (frame {frame:.0f})"


def model_card(card: dict | None) -> str:
    """``{"title": str, "facts": [[label, text], …]}`` → a heading and a definition list."""
    if not card:
        return ""
    facts = "".join(f"<dt>{escape(str(label))}</dt><dd>{escape(str(text))}</dd>"
                    for label, text in card.get("facts", []))
    return (f'<h3 class="model">Model: {escape(card.get("title", ""))}</h3>'
            f'<dl class="card">{facts}</dl>')


def thumbnail_layout(centres, width: float, low: float = 0.0, high: float = 1.0,
                     gap: float = 0.01) -> list[float]:
    """Left edges of thumbnails of ``width`` (fractions of the row) placed as near as they fit
    under their ``centres`` (in [low, high]) without overlapping: in the order of ``centres``,
    each pushed right past its left neighbour, then the row pulled back inside ``high``.

    Returns:
        the left edge of each thumbnail, in the order given.
    """
    order = np.argsort(np.asarray(centres, np.float64), kind="stable")
    lefts = np.zeros(len(order))
    edge = low
    for i in order:
        lefts[i] = max(centres[i] - width / 2, edge)
        edge = lefts[i] + width + gap
    limit = high
    for i in order[::-1]:
        lefts[i] = min(lefts[i], limit - width)
        limit = lefts[i] - gap
    return [float(x) for x in np.maximum(lefts, low)]


def _thumbnail_row(video: dict) -> str:
    """The frames the parts look at most, each under its moment on the timeline (the horizontal
    scale of :func:`tpt_keras.report.svg.timeline`): one picture per distinct frame, striped in
    the colours of the parts that look at it, with their names and the time."""
    parts = video["parts"]
    by_frame: dict[int, list[int]] = {}
    for k, part in enumerate(parts):
        by_frame.setdefault(int(part["thumbnail_frame"]), []).append(k)
    low = svg.TIMELINE_LEFT / svg.TIMELINE_WIDTH
    high = 1 - svg.TIMELINE_RIGHT / svg.TIMELINE_WIDTH
    last = max(int(video["num_frames"]) - 1, 1)
    frames = sorted(by_frame)
    centres = [low + (high - low) * frame / last for frame in frames]
    width = min(200 / svg.TIMELINE_WIDTH, (high - low - 0.01 * (len(frames) - 1)) / len(frames))
    lefts = thumbnail_layout(centres, width, low, high)
    figures, edge = [], 0.0
    for frame, left in zip(frames, lefts):
        members = by_frame[frame]
        first = parts[members[0]]
        stops = ", ".join(f"{svg.part_colour(k)} {100 * i / len(members):.0f}% "
                          f"{100 * (i + 1) / len(members):.0f}%" for i, k in enumerate(members))
        names = ", ".join(f'<b style="color:{svg.part_colour(k)}">part {k + 1}</b>' for k in members)
        image = ""
        if video.get("thumbnails"):
            image = f'<img src="{video["thumbnails"][members[0]]}" alt="frame {frame}">'
        figures.append(f'<figure class="part" data-parts="{" ".join(str(k + 1) for k in members)}" '
                       f'style="width:{100 * width:.2f}%;margin-left:{100 * (left - edge):.2f}%">'
                       f'<div class="stripe" style="background:linear-gradient(to right, {stops})"></div>'
                       f'{image}<figcaption>{names} {"looks" if len(members) == 1 else "look"} most at '
                       f'{_when(frame, first["thumbnail_seconds"])}</figcaption></figure>')
        edge = left + width
    return f'<div class="thumbs">{"".join(figures)}</div>'


def video_section(video: dict, anchor: str, number: int | None = None) -> str:
    """One video: the score with its spread and exemplar strip, facts, the timeline of the parts,
    each part's most attended frame, and the parts' table.

    ``video``: ``name``, ``score``, ``scale_description``, ``exemplar_scores``, ``spread``,
    ``num_frames``, ``fps``, ``clip_frames``, ``attention``, ``parts``, ``step_spans`` (or None),
    optional ``thumbnails`` (K data URIs), ``true_score``, ``difficulty``, ``group``, ``note``.
    """
    scores = video["exemplar_scores"]
    heading = f"{number}. " if number is not None else ""
    facts = []
    if video.get("true_score") is not None:
        facts.append(("true score", _fmt(video["true_score"])))
        facts.append(("error", f"{video['score'] - video['true_score']:+.2f}"))
    for key in ("run", "difficulty", "group"):
        if video.get(key) not in (None, "", "all"):
            facts.append((key, str(video[key])))
    duration = (f", {(video['num_frames'] - 1) / video['fps']:.1f} s at {video['fps']:g} fps"
                if video.get("fps") else ", frame rate unknown")
    facts.append(("video", f"{video['num_frames']} frames{duration}"))
    fact_html = "".join(f"<dt>{escape(a)}</dt><dd>{escape(b)}</dd>" for a, b in facts)
    parts = video["parts"]
    rows = "".join(
        f'<tr><td style="color:{svg.part_colour(k)}"><b>part {k + 1}</b></td>'
        f'<td>{_when(p["centre_frame"], p["centre_seconds"])}</td>'
        f'<td>{_when(p["span_frames"][0], p["span_seconds"][0] if p["span_seconds"] else None)} – '
        f'{_when(p["span_frames"][1], p["span_seconds"][1] if p["span_seconds"] else None)}</td>'
        f'<td>{p["peak"]:.2f}</td><td>{_when(p["thumbnail_frame"], p["thumbnail_seconds"])}</td></tr>'
        for k, p in enumerate(parts))
    steps = video.get("step_spans")
    step_text = ""
    if steps:
        step_text = ('<p class="small muted">annotated steps: ' + "; ".join(
            f'{escape(s["label"])} {_when(s["start_frame"], s["start_seconds"])} – '
            f'{_when(s["end_frame"], s["end_seconds"])}' for s in steps) + "</p>")
    note = f'<p class="note">{escape(video["note"])}</p>' if video.get("note") else ""
    return (
        f'<section class="video" id="{escape(anchor)}" data-score="{video["score"]:.6f}">'
        f'<h2>{heading}{escape(video["name"])}</h2>'
        f'<p class="small muted">{escape(str(video.get("video", "")))}</p>{note}'
        f'<div class="headline"><div class="score" data-value="{video["score"]:.6f}">'
        f'{video["score"]:.2f}<span class="unit">{escape(video["scale_description"])}</span></div>'
        f'<div class="spread">± {video["spread"]:.2f} over the {len(scores)} exemplars (from '
        f'{min(scores):.2f} to {max(scores):.2f}; red: the score, grey: each exemplar\'s)<br>'
        f'{svg.exemplar_strip(scores, video["score"])}</div>'
        f'<dl class="card">{fact_html}</dl></div>'
        f'<h3>Where the model looks: {len(parts)} parts on the timeline</h3>'
        f'<p class="small muted">Each coloured row is one part: the darker, the more it attends '
        f'to that moment; the outline is its band (attention at least half its peak), the '
        f'triangle the moment it looks at most.</p>'
        f'{svg.timeline(video)}'
        f'{_thumbnail_row(video)}'
        f'<table class="parts"><thead><tr><th>part</th><th>weighted centre</th><th>band</th>'
        f'<th>peak attention</th><th>thumbnail</th></tr></thead><tbody>{rows}</tbody></table>'
        f'{step_text}</section>')


def _sortable_header(columns) -> str:
    return "".join(f'<th class="{"text" if text else ""}"><button type="button" '
                   f'onclick="sortTable(this)">{escape(name)}</button></th>'
                   for name, text in columns)


def score_page(session: dict) -> str:
    """The page of a scoring session.

    ``session``: ``model`` (a card for :func:`model_card`), ``videos`` (dicts for
    :func:`video_section`), optional ``title`` and ``skipped`` ([{"video", "error"}]). Several
    videos get a sortable table (video, score, spread, and the true score and error when some
    are known) linking to each section, and a histogram of the scores.
    """
    videos = session["videos"]
    if not videos:
        raise ValueError("no videos to report")
    title = session.get("title") or ("Scores of " + (videos[0]["name"] if len(videos) == 1
                                                       else f"{len(videos)} videos"))
    body = [f"<h1>{escape(title)}</h1>", model_card(session.get("model"))]
    body += [f'<p class="note">skipped {escape(s["video"])}: {escape(s["error"])}</p>'
             for s in session.get("skipped") or []]
    if len(videos) > 1:
        with_truth = any(v.get("true_score") is not None for v in videos)
        columns = [("#", False), ("video", True), ("score", False), ("± spread", False)]
        columns += [("true", False), ("error", False)] if with_truth else []
        rows = []
        for i, v in enumerate(videos):
            cells = [f'<td data-value="{i + 1}">{i + 1}</td>',
                     f'<td class="text" data-value="{escape(v["name"])}"><a href="#video-{i + 1}">'
                     f'{escape(v["name"])}</a></td>',
                     f'<td data-value="{v["score"]:.6f}">{v["score"]:.2f}</td>',
                     f'<td data-value="{v["spread"]:.6f}">{v["spread"]:.2f}</td>']
            if with_truth and v.get("true_score") is None:
                cells += ['<td data-value="">—</td>', '<td data-value="">—</td>']
            elif with_truth:
                error = v["score"] - v["true_score"]
                cells += [f'<td data-value="{v["true_score"]:.6f}">{v["true_score"]:.2f}</td>',
                          f'<td data-value="{abs(error):.6f}">{error:+.2f}</td>']
            rows.append("<tr>" + "".join(cells) + "</tr>")
        scores = [v["score"] for v in videos]
        body.append(
            f'<h2>{len(videos)} videos</h2><p class="small muted">Click a column to sort; click a '
            f'video to see where the model looked. Scores on the '
            f'{escape(videos[0]["scale_description"])}.</p>'
            f'<div class="plots"><table class="sortable videos"><thead><tr>{_sortable_header(columns)}'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<div><h3>Distribution of the scores (mean {np.mean(scores):.2f}, sd {np.std(scores):.2f})</h3>'
            f'{svg.histogram(scores)}</div></div>')
    for i, video in enumerate(videos):
        body.append(video_section(video, f"video-{i + 1}", i + 1 if len(videos) > 1 else None))
    return _page(title, "\n".join(body))


def _parsing_table(parsing: dict) -> str:
    labels = (("model", "this model"), ("uniform", "uniform attention (untrained)"),
              ("equal_parts", "equal parts"))
    rows = "".join(f'<tr><td class="text">{label}</td><td>{parsing[key]["boundary_mae"]:.3f}</td>'
                   f'<td>{parsing[key]["mean_iou"]:.3f}</td><td>{parsing[key]["iou@0.5"]:.3f}</td>'
                   f'<td>{parsing[key]["iou@0.75"]:.3f}</td></tr>' for key, label in labels)
    return (f'<p class="small muted">over {parsing["model"]["videos"]} test videos, '
            f'{parsing["model"]["boundaries"]} annotated step boundaries; boundary error in clips</p>'
            '<table class="parsing"><thead><tr><th class="text">attention</th><th>boundary MAE</th>'
            f'<th>mean IoU</th><th>IoU@0.5</th><th>IoU@0.75</th></tr></thead><tbody>{rows}</tbody></table>')


def evaluation_page(evaluation: dict) -> str:
    """The page of an evaluated run (or of several classes / folds).

    ``evaluation``: ``title``, ``models`` (cards), ``runs`` (rows of
    :func:`tpt_keras.experiment.evaluate_run`: name, checkpoint, samples, spearman, r_l2,
    scale_description, parsing, training_log, skipped), ``average``, ``panels`` (per run:
    ``name``, ``pred``, ``true``, ``links`` anchors of the worst videos or None) and ``worst``
    (video dicts with ``true_score``, the largest errors first).
    """
    runs = evaluation["runs"]
    body = [f"<h1>{escape(evaluation['title'])}</h1>"]
    body += [model_card(card) for card in evaluation.get("models", [])]
    rows = "".join(f'<tr><td class="text">{escape(r["name"])}</td>'
                   f'<td class="text">{escape(r["checkpoint"])}</td>'
                   f'<td>{r["samples"]}</td><td>{r["spearman"]:.4f}</td><td>{r["r_l2"]:.4f}</td></tr>'
                   for r in runs)
    if len(runs) > 1:
        average = evaluation["average"]
        rows += (f'<tr><td class="text"><b>average</b> (Fisher z for ρ)</td><td></td><td></td>'
                 f'<td><b>{average["spearman"]:.4f}</b></td><td><b>{average["r_l2"]:.4f}</b></td></tr>')
    body.append(f'<h2>Test results</h2><p class="small muted">scores on the '
                f'{escape(runs[0]["scale_description"])}; R-ℓ2 × 100</p>'
                f'<table class="results"><thead><tr><th class="text">run</th><th class="text">checkpoint</th>'
                f'<th>videos</th><th>Spearman ρ</th><th>R-ℓ2</th></tr></thead>'
                f'<tbody>{rows}</tbody></table>')
    for r in runs:  # the training figures are on the model cards
        for skipped in r.get("skipped") or []:
            body.append(f'<p class="note">{escape(r["name"])}: skipped unreadable '
                        f'{escape(skipped["path"])}: {escape(skipped["error"])}</p>')
    plots = "".join(f'<figure><figcaption><b>{escape(p["name"])}</b>: predicted against true '
                    f'(red: the {len(evaluation.get("worst", []))} largest errors, linked)</figcaption>'
                    f'{svg.scatter(p["pred"], p["true"], links=p.get("links"))}</figure>'
                    for p in evaluation["panels"])
    body.append(f'<h2>Predicted against true</h2><div class="plots">{plots}</div>')
    for r in runs:
        if r.get("parsing"):
            body.append(f'<h2>Parsing: parts against annotated steps ({escape(r["name"])})</h2>'
                        + _parsing_table(r["parsing"]))
    worst = evaluation.get("worst") or []
    if worst:
        rows = "".join(f'<tr><td data-value="{i + 1}">{i + 1}</td><td class="text" '
                       f'data-value="{escape(v["name"])}">'
                       f'<a href="#worst-{i + 1}">{escape(v["name"])}</a></td>'
                       f'<td data-value="{v["true_score"]:.6f}">{v["true_score"]:.2f}</td>'
                       f'<td data-value="{v["score"]:.6f}">{v["score"]:.2f}</td>'
                       f'<td data-value="{abs(v["score"] - v["true_score"]):.6f}">'
                       f'{v["score"] - v["true_score"]:+.2f}</td></tr>' for i, v in enumerate(worst))
        columns = [("#", False), ("video", True), ("true", False), ("predicted", False), ("error", False)]
        body.append(f'<h2>The {len(worst)} largest errors</h2><table class="sortable worst"><thead><tr>'
                    f'{_sortable_header(columns)}</tr></thead><tbody>{rows}</tbody></table>')
        body += [video_section(v, f"worst-{i + 1}", i + 1) for i, v in enumerate(worst)]
    return _page(evaluation["title"], "\n".join(body))


def write_page(html: str, path: str) -> str:
    """Write ``html`` to ``path`` (its folder created; atomically: a reader never sees half a
    page). Returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(html)
    os.replace(partial, path)
    return path
