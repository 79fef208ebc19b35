"""`tpt prepare`: a release checked against its annotations reports exactly the planted defects,
reads headers (sizes written here by hand) without TensorFlow, and decodes videos resumably."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines.io import headers
from data_pipelines.synthetic import releases
from tpt_keras.config import get_preset
from tpt_keras.experiment import prepare

SOURCES = {"mtl_aqa": "MTL-AQA", "aqa7": "AQA-7", "jigsaws": "JIGSAWS", "finediving": "FineDiving"}


def _image(path, width, height, **options):
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path, **options)


def test_header_sizes_without_decoding(tmp_path):
    _image(tmp_path / "a.jpg", 37, 21)
    _image(tmp_path / "b.jpg", 40, 30, progressive=True)
    _image(tmp_path / "c.png", 5, 9)
    assert headers.image_size(str(tmp_path / "a.jpg")) == (37, 21)
    assert headers.image_size(str(tmp_path / "b.jpg")) == (40, 30)
    assert headers.image_size(str(tmp_path / "c.png")) == (5, 9)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"hello world")
    with pytest.raises(headers.HeaderError, match="empty file"):
        headers.image_size(str(tmp_path / "empty.jpg"))
    with pytest.raises(headers.HeaderError, match="not a JPEG"):
        headers.image_size(str(tmp_path / "text.jpg"))
    # a JPEG cut after its header passes the header check and fails the full decode
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    assert headers.image_size(str(tmp_path / "cut.jpg")) == (37, 21)
    with pytest.raises(headers.HeaderError, match="cannot decode"):
        headers.decode_image(str(tmp_path / "cut.jpg"))


def test_required_frames_per_protocol():
    assert prepare.required_frames(get_preset("mtl_aqa_dd").protocol) == 3 + 3 + 103
    assert prepare.required_frames(get_preset("aqa7").protocol) == 103
    assert prepare.required_frames(get_preset("jigsaws").protocol) is None  # linspace: any length
    assert prepare.required_frames(get_preset("finediving").protocol) is None


@pytest.mark.parametrize("dataset", sorted(SOURCES))
def test_reports_exactly_the_planted_defects(tmp_path, shared_data, dataset):
    clean = releases.make_release(dataset, shared_data / SOURCES[dataset], tmp_path / "clean", per_split=4)
    report = prepare.check_release(dataset, clean.annotations, clean.media, progress=False)
    assert report["problems"] == [] and report["usable"]
    bad = releases.make_release(dataset, shared_data / SOURCES[dataset], tmp_path / "bad", per_split=4,
                                defects="all")
    report = prepare.check_release(dataset, bad.annotations, bad.media, progress=False)
    found = {(p["key"], p["kind"]) for p in report["problems"]}
    assert found == {(d.key, d.kind) for d in bad.defects}
    assert not report["usable"]
    first = next(iter(bad.keys))
    assert report["splits"][first]["missing"] == 1 and report["splits"][first]["damaged"] == 1
    assert prepare.blocked_keys(report) == {d.key for d in bad.defects if d.kind in ("missing", "unreadable")}


def test_short_mtl_aqa_folder_is_a_warning(tmp_path, shared_data):
    release = releases.make_release("mtl_aqa", shared_data / "MTL-AQA", tmp_path / "r", per_split=2)
    key = release.keys["test"][0]
    folder = os.path.join(release.media, key)
    for name in sorted(os.listdir(folder))[100:]:  # keep 100 of the frames: 3 + 3 + 103 are read
        os.remove(os.path.join(folder, name))
    report = prepare.check_release("mtl_aqa", release.annotations, release.media, progress=False)
    assert [(p["key"], p["kind"], p["detail"]) for p in report["problems"]] == [
        (key, "short", "100 frames, the protocol reads 109")]
    assert report["usable"]


def test_command_line_exit_status_report_and_no_tensorflow(tmp_path, shared_data):
    release = releases.make_release("aqa7", shared_data / "AQA-7", tmp_path / "r", per_split=2,
                                    defects=["missing", "numbering"])
    report_path = tmp_path / "report.json"
    code = ("import sys; from tpt_keras.cli.main import main; "
            f"status = main(['prepare', 'aqa7', '--annotations', {release.annotations!r}, '--media-root', "
            f"{release.media!r}, '--report', {str(report_path)!r}]); "
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'; sys.exit(status)")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stderr
    assert "train: missing: diving_054" in done.stdout and "not usable as it is: train" in done.stdout
    saved = json.loads(report_path.read_text())
    assert {(p["key"], p["kind"]) for p in saved["problems"]} == {(d.key, d.kind) for d in release.defects}


def test_decode_videos_resumably_into_frame_folders(tmp_path, shared_data):
    release = releases.make_release("jigsaws", shared_data / "JIGSAWS", tmp_path / "r", per_split=2,
                                    defects=["unreadable"])
    frames = str(tmp_path / "frames")
    done = prepare.decode_videos("jigsaws", release.annotations, release.media, frames, progress=False)
    assert len(done["decoded"]) == 23 and [k for k, _ in done["failed"]] == [release.defects[0].key]
    trial = done["decoded"][0]
    assert sorted(os.listdir(os.path.join(frames, f"{trial}_capture1"))) == [
        f"img_{i:05d}.jpg" for i in range(1, 161)]
    # resumable: finished folders are kept, a half-written one is redone
    os.rename(os.path.join(frames, f"{trial}_capture1"), os.path.join(frames, f"{trial}_capture1.partial"))
    again = prepare.decode_videos("jigsaws", release.annotations, release.media, frames, progress=False)
    assert again["decoded"] == [trial] and len(again["skipped_existing"]) == 22
    report = prepare.check_release("jigsaws", release.annotations, frames, progress=False)
    assert {(p["key"], p["kind"]) for p in report["problems"]} == {(release.defects[0].key, "missing")}


def test_finediving_frame_numbers_of_six_digits_are_the_release_naming(tmp_path):
    from data_pipelines.samples import Sample

    folder = tmp_path / "FINADivingWorldCup2021_Men3m_final_r1" / "8"
    folder.mkdir(parents=True)
    for number in range(99998, 100003):  # {frame:05d} of 99998 … 100002
        _image(folder / f"{number:05d}.jpg", 8, 8)
    check = prepare.check_sample(Sample(key="k", path=str(folder), score=1.0), "finediving", None)
    assert check.problems == {} and check.frames == 5 and check.size == (8, 8)
