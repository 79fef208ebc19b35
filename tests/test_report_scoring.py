"""`tpt score --report` and `tpt evaluate --report` on a real tiny run: one loaded model for a
session of videos, the JSON twin of the page, and the pages opened in headless Chromium."""

import json
import os
import re

import numpy as np
import pytest

from tpt_keras import experiment
from tpt_keras.cli import main as cli
from tpt_keras.serving import scoring

import browser


@pytest.fixture
def exported(tiny_video_export):
    """The tiny run's SavedModel, exported once by the command line (conftest.py)."""
    return tiny_video_export


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def test_what_counts_as_a_session(tmp_path):
    frames = tmp_path / "dive_frames"
    _touch(str(frames / "img_00001.jpg"))
    videos = tmp_path / "videos"
    for name in ("b.mp4", "a.gif", "notes.txt"):
        _touch(str(videos / name))
    _touch(str(videos / "c" / "img_00001.jpg"))  # a frame folder inside the folder
    (tmp_path / "list.csv").write_text("path,score,difficulty\nvideos/a.gif,7.5,\ndive_frames,,2.0\n")
    assert not scoring.is_session([str(frames)]) and not scoring.is_session([str(videos / "a.gif")])
    assert scoring.is_session([str(videos)]) and scoring.is_session([str(tmp_path / "list.csv")])
    assert scoring.is_session([str(videos / "*.mp4")]) and scoring.is_session(["x.mp4", "y.mp4"])
    names = [os.path.relpath(i.path, tmp_path) for i in scoring.session_items([str(videos)])]
    assert names == ["videos/a.gif", "videos/b.mp4", "videos/c"]  # by name; notes.txt left out
    items = scoring.session_items([str(tmp_path / "list.csv")], difficulty=3.0, group="g")
    assert [(i.true_score, i.difficulty, i.group) for i in items] == [(7.5, 3.0, "g"), (None, 2.0, "g")]
    assert [os.path.basename(i.path) for i in scoring.session_items([str(videos / "*.gif")])] == ["a.gif"]
    with pytest.raises(FileNotFoundError, match="no such video"):
        scoring.session_items([str(tmp_path / "missing.mp4")])
    with pytest.raises(ValueError, match="matches no file"):
        scoring.session_items([str(tmp_path / "*.webm")])
    (tmp_path / "bad.csv").write_text("video,score\nx,1\n")
    with pytest.raises(ValueError, match="bad.csv, line 1: header \\['video', 'score'\\] lacks required column\\(s\\) \\['path'\\]"):
        scoring.session_items([str(tmp_path / "bad.csv")])


@pytest.mark.slow
def test_score_report_of_a_session_and_its_json_twin(exported, tiny_video_run, tmp_path, capsys):
    test = tiny_video_run["splits"]["test"]
    manifest = tmp_path / "session.csv"
    manifest.write_text("path,score\n" + "".join(f"{s.path},{s.score}\n" for s in test))
    page = tmp_path / "out" / "session.html"
    assert cli.main(["score", str(manifest), "--model", exported, "--report", str(page), "--json"]) == 0
    session = json.loads(capsys.readouterr().out)
    assert session["report"] == str(page) and len(session["videos"]) == len(test)
    for sample, video in zip(test, session["videos"]):
        alone = scoring.score_video(sample.path, exported, picture=str(tmp_path / "a.png"))
        assert video["score"] == pytest.approx(alone["score"], abs=1e-4)  # one model, same score
        assert video["true_score"] == pytest.approx(sample.score)
        assert "thumbnails" not in video and video["fps"] is None  # frame folders: no frame rate
        attention, middles = np.array(video["attention"]), np.array(video["clip_frames"])
        assert video["num_frames"] == len(os.listdir(sample.path))
        for k, part in enumerate(video["parts"]):
            assert part["thumbnail_frame"] == middles[video["top_clips"][k]]
            centre = (np.arange(len(middles)) * attention[:, k]).sum() / attention[:, k].sum()
            assert part["centre_clip"] == pytest.approx(centre)
            assert part["centre_frame"] == pytest.approx(np.interp(centre, np.arange(len(middles)), middles))
    assert session["model"]["title"] == "custom"
    assert ["dataset", "custom"] in session["model"]["facts"]
    dom, shot = browser.render(page, tmp_path)
    html = browser.check_page(dom)
    assert len(html.all("img")) == sum(len({p["thumbnail_frame"] for p in v["parts"]})
                                       for v in session["videos"])  # one per distinct frame
    assert len(html.all("svg", **{"class": "timeline"})) == len(test)
    assert [a["href"] for a in html.all("a")] == [f"#video-{i + 1}" for i in range(len(test))]
    text = " ".join(html.text)
    assert all(f"{v['score']:.2f}" in text for v in session["videos"])


@pytest.mark.slow
def test_single_video_json_carries_the_timeline(exported, tiny_video_run, tmp_path, capsys):
    sample = tiny_video_run["splits"]["test"][0]
    assert cli.main(["score", sample.path, "--model", exported, "--json",
                     "--picture", str(tmp_path / "p.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["parts"]) == len(result["top_clips"]) and result["picture"] == str(tmp_path / "p.png")
    assert {"centre_frame", "centre_seconds", "peak", "thumbnail_frame"} <= set(result["parts"][0])
    assert result["model"]["title"] == "custom"


@pytest.mark.slow
def test_evaluate_report_shows_the_largest_errors(tiny_video_run, tmp_path, capsys):
    page = tmp_path / "evaluation.html"
    assert cli.main(["evaluate", tiny_video_run["run"], "--report", str(page)]) == 0
    assert f"report: {page}" in capsys.readouterr().out
    dom, shot = browser.render(page, tmp_path)
    html = browser.check_page(dom)
    test = tiny_video_run["splits"]["test"]  # 6 videos: all of them are among the 10 largest
    assert len(html.all("section", **{"class": "video"})) == len(test)
    assert len(html.all("svg", **{"class": "scatter"})) == 1
    assert len(html.all("img")) >= len(test)  # at least one most-attended frame per video
    table = dom[dom.index('class="sortable worst"'):]
    table = table[:table.index("</table>")]
    shown = [float(v) for v in re.findall(r'<td data-value="([0-9.e-]+)">[+-]', table)]
    outputs = experiment.predict_split(experiment.load_run(tiny_video_run["run"]))
    expected = sorted(np.abs(outputs["pred"] - outputs["true"]), reverse=True)
    np.testing.assert_allclose(shown, expected, atol=1e-4)


def test_a_worst_video_without_its_frames_is_drawn_on_the_clip_axis():
    from data_pipelines.samples import Sample
    from tpt_keras.config import get_preset
    from tpt_keras.serving import run_report

    attention = np.array([[0.7, 0.1], [0.2, 0.1], [0.1, 0.8]])
    sample = Sample(key="gone", path="/nowhere/gone.mp4", score=5.0)
    video = run_report.worst_video(sample, attention, None, 3.0, 5.0, [2.5, 3.5], "judges' scale",
                                   get_preset("custom").protocol, "custom")
    assert video["num_frames"] == 3 and video["clip_frames"] == [0, 1, 2] and video["fps"] is None
    assert "not readable" in video["note"] and "thumbnails" not in video
    assert [p["thumbnail_frame"] for p in video["parts"]] == [0, 2] and video["spread"] == 0.5


@pytest.mark.slow
def test_session_benchmark_prints_its_table(exported):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "score_session.py"),
                           "--videos", "2", "--single", "1", "--size", "32", "--model", exported,
                           "--work", os.path.join(os.path.dirname(exported), "bench")],
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "session, no report", "session + report", "one call per video (loads the model)"]
    assert [row.split("|")[2].strip() for row in rows[1:]] == ["2", "2", "1"]


def test_timeline_of_a_video_names_its_steps():
    attention = np.array([[0.6, 0.1], [0.3, 0.2], [0.1, 0.7]])
    clip_frames = np.array([2, 6, 10])  # frame numbers in a 13-frame video
    steps = (np.array([0.5]), [4, 36])  # FineDiving label ids: Inward, then Entry
    video = scoring.video_timeline("/x/dive.gif", 13, clip_frames, attention, steps,
                                   4.0, step_names={4: "Inward", 36: "Entry"})
    assert video["name"] == "dive.gif" and video["num_frames"] == 13
    assert video["step_labels"] == ["Inward", "Entry"]
    assert [(s["label"], s["end_frame"], s["end_seconds"]) for s in video["step_spans"]] == [
        ("Inward", 4.0, 1.0), ("Entry", 12.0, 3.0)]
    assert [p["thumbnail_frame"] for p in video["parts"]] == [2, 10]
    unnamed = scoring.video_timeline("/x/dive.gif", 13, clip_frames, attention, steps, None)
    assert unnamed["step_labels"] == ["4", "36"] and unnamed["parts"][0]["centre_seconds"] is None
