"""The report pages (tpt_keras.report): clips → frames → seconds by hand, the thumbnails' layout,
and each kind of page opened in headless Chromium from disk with the network off."""

import re

import numpy as np
import pytest

from tpt_keras import report
from tpt_keras.report import images, pages, svg, timeline

import browser

CLIPS = [2, 6, 10]  # middle frames of 3 clips of a 13-frame video: cells [0,4], [4,8], [8,12]


# ------------------------------------------------------------------ clips → frames → seconds
def test_clip_cells_and_positions_in_frames():
    np.testing.assert_allclose(timeline.clip_edges(CLIPS, 13), [0, 4, 8, 12])
    np.testing.assert_allclose(timeline.clip_to_frame([-0.5, 0, 0.5, 1, 2, 2.5], CLIPS, 13),
                               [0, 2, 4, 6, 10, 12])


def test_part_summary_by_hand():
    attention = np.array([[0.1, 0.5], [0.6, 0.25], [0.3, 0.25]])
    first, second = timeline.part_summary(attention, CLIPS, 13, fps=4.0)
    # part 1: centre 0·0.1 + 1·0.6 + 2·0.3 = 1.2 clips → 6 + 0.2·4 = 6.8 frames → 1.7 s
    assert first["centre_clip"] == pytest.approx(1.2) and first["centre_frame"] == pytest.approx(6.8)
    assert first["centre_seconds"] == pytest.approx(1.7)
    assert (first["peak"], first["peak_clip"], first["thumbnail_frame"]) == (0.6, 1, 6)
    assert first["thumbnail_seconds"] == pytest.approx(1.5)
    assert first["span_clips"] == [1, 2] and first["span_frames"] == [4.0, 12.0]  # 0.3 ≥ 0.6 / 2
    assert first["span_seconds"] == [1.0, 3.0]
    # part 2: centre 0.25 + 0.5 = 0.75 clips → frame 5; peak at clip 0; every clip ≥ half the peak
    assert second["centre_frame"] == pytest.approx(5.0) and second["thumbnail_frame"] == 2
    assert second["span_clips"] == [0, 2] and second["span_frames"] == [0.0, 12.0]
    assert timeline.part_summary(attention, CLIPS, 13)[0]["centre_seconds"] is None  # no fps


def test_steps_on_the_frame_axis():
    steps = timeline.step_spans([0.5], ["take-off", "entry"], CLIPS, 13, fps=2.0)
    assert [(s["label"], s["start_frame"], s["end_frame"]) for s in steps] == [
        ("take-off", 0.0, 4.0), ("entry", 4.0, 12.0)]
    assert steps[1]["end_seconds"] == 6.0
    assert [s["label"] for s in timeline.step_spans([0.5], None, CLIPS, 13)] == ["step 1", "step 2"]


@pytest.mark.parametrize("centres, expected", [
    ([0.5, 0.5], [0.4, 0.61]),      # the second pushed right of the first
    ([0.95, 0.95], [0.59, 0.8]),    # both pulled back inside the row
    ([0.9, 0.1], [0.8, 0.0]),       # order follows the centres, not the parts
])
def test_thumbnails_sit_under_their_moments_without_overlap(centres, expected):
    np.testing.assert_allclose(pages.thumbnail_layout(centres, 0.2, 0.0, 1.0, 0.01), expected)


def test_round_ticks():
    assert svg.nice_ticks(0, 2.36, 10) == [0, 0.5, 1, 1.5, 2]
    assert svg.nice_ticks(0, 59, 10) == list(range(0, 60, 10))


def test_thumbnail_is_a_small_jpeg_of_the_frame():
    frame = np.zeros((4, 8, 3), np.uint8)
    frame[:, 4:] = 255  # right half white
    small = images.thumbnail(frame, 16)
    assert small.shape == (8, 16, 3) and small[:, :8].max() == 0 and small[:, 8:].min() == 255
    assert images.data_uri(frame).startswith("data:image/jpeg;base64,/9j/")  # JPEG magic


# ------------------------------------------------------------------ pages
def _video(name, score, seed, num_parts=3, steps=True, fps=25.0, true=None):
    rng = np.random.default_rng(seed)
    num_frames, num_clips = 60, 10
    attention = rng.random((num_clips, num_parts)) ** 4
    attention /= attention.sum(axis=0)
    clip_frames = np.linspace(3, num_frames - 4, num_clips).round().astype(int)
    frames = np.zeros((num_frames, 36, 48, 3), np.uint8)
    frames[..., 0] = np.arange(num_frames)[:, None, None] * 4  # red grows with time
    frames[:, 10:26, 16:32, 2] = 200
    parts = timeline.part_summary(attention, clip_frames, num_frames, fps)
    exemplars = list(score + rng.normal(0, 1, 10))
    return {"video": f"/videos/{name}", "name": name, "score": score,
            "scale_description": "judges' scale", "exemplar_scores": exemplars,
            "spread": float(np.std(exemplars)), "num_frames": num_frames, "fps": fps,
            "clip_frames": clip_frames.tolist(), "attention": attention.tolist(), "parts": parts,
            "step_spans": timeline.step_spans([3.2, 6.5], ["take-off", "flight", "entry"],
                                              clip_frames, num_frames, fps) if steps else None,
            "thumbnails": [images.data_uri(frames[p["thumbnail_frame"]]) for p in parts],
            "true_score": true}


CARD = {"title": "custom", "facts": [["run", "/runs/demo"], ["videos", "14 train, 6 test"]]}


def test_names_are_escaped_and_each_video_has_its_section():
    session = {"model": CARD, "videos": [_video("a<b>.mp4", 50.0, 0), _video("c.mp4", 60.0, 1)]}
    html = report.score_page(session)
    assert "a&lt;b&gt;.mp4" in html and "a<b>.mp4" not in html
    assert re.findall(r'<section class="video" id="(video-\d)"', html) == ["video-1", "video-2"]
    assert html.count('href="#video-') == 2
    with pytest.raises(ValueError, match="no videos"):
        report.score_page({"model": CARD, "videos": []})


def _distinct_frames(video):
    """One picture per distinct most-attended frame (parts that share one share the picture)."""
    return len({part["thumbnail_frame"] for part in video["parts"]})


def _check_video(page, video, section_count):
    scores = [a for a in page.all("div", **{"class": "score"})]
    assert f"{video['score']:.6f}" in {a["data-value"] for a in scores}
    assert len(page.all("svg", **{"class": "timeline"})) == section_count
    assert {a["data-parts"] for a in page.all("svg", **{"class": "timeline"})} == {str(len(video["parts"]))}


def test_session_page_in_a_browser(tmp_path):
    videos = [_video(f"dive_{i}.mp4", s, i, true=s + d)
              for i, (s, d) in enumerate([(55.5, 1.0), (71.25, -2.0), (48.0, 0.5), (63.0, 3.0)])]
    path = report.write_score_report({"model": CARD, "videos": videos}, tmp_path / "session.html")
    dom, shot = browser.render(path, tmp_path)
    page = browser.check_page(dom)
    text = " ".join(page.text)
    for video in videos:
        _check_video(page, video, len(videos))
        assert f"{video['score']:.2f}" in text and video["name"] in text
    assert len(page.all("img")) == sum(_distinct_frames(v) for v in videos)
    assert len(page.all("rect", **{"class": "band"})) == 3 * len(videos)
    assert len(page.all("svg", **{"class": "histogram"})) == 1
    assert [a["href"] for a in page.all("a")] == [f"#video-{i}" for i in range(1, 5)]
    assert "take-off" in text and "seconds" in text


def test_the_table_sorts_by_score_in_a_browser(tmp_path):
    videos = [_video(f"v{i}.mp4", s, i) for i, s in enumerate([5.0, 9.0, 1.0])]
    html = report.score_page({"model": CARD, "videos": videos})
    click = ("<script>window.addEventListener('load',function(){sortTable(document.querySelectorAll("
             "'table.videos th button')[2]);});</script></body>")  # the "score" column, once: ascending
    path = tmp_path / "sorted.html"
    path.write_text(html.replace("</body>", click), encoding="utf-8")
    dom, _ = browser.render(path, tmp_path)
    table = dom[dom.index('<table class="sortable videos"'):]
    assert [m for m in re.findall(r'href="#video-(\d)"', table)][:3] == ["3", "1", "2"]  # 1 < 5 < 9


def test_single_video_page_without_frame_rate_or_steps_in_a_browser(tmp_path):
    video = _video("one.gif", 7.5, 5, num_parts=5, steps=False, fps=None)
    path = report.write_score_report({"model": CARD, "videos": [video]}, tmp_path / "one.html")
    dom, shot = browser.render(path, tmp_path, height=1400)
    page = browser.check_page(dom)
    _check_video(page, video, 1)
    assert len(page.all("img")) == _distinct_frames(video)
    assert not page.all("table", **{"class": "sortable videos"})
    assert "frame rate unknown" in " ".join(page.text)


def test_evaluation_page_in_a_browser(tmp_path):
    worst = [_video(f"t{i}.mp4", 50.0 + i, i, true=60.0 - i) for i in range(3)]
    parsing = {key: {"videos": 6, "boundaries": 12, "boundary_mae": 1.5, "mean_iou": 0.5,
                     "iou@0.5": 0.4, "iou@0.75": 0.1} for key in ("model", "uniform", "equal_parts")}
    row = {"name": "custom", "checkpoint": "best", "samples": 6, "spearman": 0.8125, "r_l2": 1.5,
           "scale_description": "judges' scale", "parsing": parsing,
           "training_log": {"best": {"spearman": 0.9, "epoch": 2}, "last": {"spearman": 0.8, "epoch": 2}},
           "skipped": []}
    pred, true = [50.0, 51.0, 52.0, 55.0, 56.0, 57.0], [60.0, 59.0, 58.0, 55.5, 56.0, 57.5]
    evaluation = {"title": "Evaluation of custom", "models": [CARD], "runs": [row],
                  "average": {"spearman": 0.8125, "r_l2": 1.5},
                  "panels": [{"name": "custom", "pred": pred, "true": true,
                              "links": ["worst-1", "worst-2", "worst-3", None, None, None]}],
                  "worst": worst}
    path = report.write_evaluation_report(evaluation, tmp_path / "evaluation.html")
    dom, shot = browser.render(path, tmp_path)
    page = browser.check_page(dom)
    text = " ".join(page.text)
    assert "0.8125" in text and "this model" in text and "equal parts" in text
    assert len(page.all("circle")) >= len(pred) and len(page.all("svg", **{"class": "scatter"})) == 1
    assert len(page.all("svg", **{"class": "timeline"})) == 3 and len(page.all("img")) == sum(map(_distinct_frames, worst))
    assert sum(a["href"].startswith("#worst-") for a in page.all("a")) == 6  # 3 dots + 3 rows


@pytest.mark.parametrize("planted, message", [
    ('<img src="data:image/jpeg;base64,AAAA" alt="broken">', "image not loaded: broken"),
    ('<a href="#nowhere">x</a>', "link #nowhere has no target"),
    ('<img src="https://example.com/a.png" alt="remote">', "image not embedded: https://example.com"),
])
def test_the_browser_check_catches_a_broken_page(tmp_path, planted, message):
    """A broken image, a dangling link or a network resource planted in a good page fails it."""
    html = report.score_page({"model": CARD, "videos": [_video("v.mp4", 5.0, 0)]})
    path = tmp_path / "planted.html"
    path.write_text(html.replace("</body>", planted + "</body>"), encoding="utf-8")
    dom, _ = browser.render(path, tmp_path, height=600)
    with pytest.raises(AssertionError, match=message):
        browser.check_page(dom)
