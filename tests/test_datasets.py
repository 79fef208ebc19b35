"""Dataset adapters on the real annotation files, with small generated frame folders laid out like
the real datasets (the clip layouts of the original code), and every documented annotation error."""

import os
import pickle

import numpy as np
import pytest
import scipy.io

from data_pipelines.io import decode
from data_pipelines.video import protocol as protocol_lib
from data_pipelines.video import video_ops
from data_pipelines.datasets import (
    AnnotationError,
    MissingMediaError,
    aqa7,
    jigsaws,
    manifest,
    mtl_aqa,
)
from data_pipelines.datasets import load as load_dataset
from data_pipelines.samples import Sample, target
from data_pipelines.io.safe_pickle import UnsafePickleError

TINY = np.full((2, 8, 12, 3), 128, np.uint8)


# --------------------------------------------------------------------------------------------- MTL-AQA
def test_mtl_aqa_annotations_only(shared_data):
    splits = mtl_aqa.load(shared_data / "MTL-AQA", None)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1059, "test": 353}
    first = splits["train"][0]  # train_split_0.pkl starts with (18, 67)
    assert (first.key, first.path, first.score, first.difficulty, first.group) == ("18_67", "18_67", 94.35, 3.7, "3.7")
    assert (first.start_frame, first.end_frame) == (108168, 108312)
    assert target(first, True) == pytest.approx(94.35 / 3.7) and target(first, False) == 94.35
    train_keys = {s.key for s in splits["train"]}
    assert not train_keys & {s.key for s in splits["test"]}
    assert all(s.split == "test" for s in splits["test"])
    assert {s.group for s in splits["test"]} <= {s.group for s in splits["train"]}
    assert "3.0" in {s.group for s in splits["train"]}  # integral difficulties keep one decimal
    no_dd = mtl_aqa.load(shared_data / "MTL-AQA", None, use_difficulty=False)
    assert {s.group for s in no_dd["train"]} == {"all"}


def _mtl_frames_root(shared_data, root):
    splits = mtl_aqa.load(shared_data / "MTL-AQA", None)
    for sample in splits["train"] + splits["test"]:
        os.makedirs(root / sample.key)
    return splits


def test_mtl_aqa_with_frame_folders_and_missing_folder(shared_data, tmp_path):
    root = tmp_path / "frames"
    _mtl_frames_root(shared_data, root)
    frames = (np.arange(110) * 2).astype(np.uint8).reshape(110, 1, 1, 1) * np.ones((1, 16, 24, 3), np.uint8)
    decode.write_frame_folder(str(root / "01_12"), frames)
    splits = mtl_aqa.load(shared_data / "MTL-AQA", root)
    sample = next(s for s in splits["train"] + splits["test"] if s.key == "01_12")
    assert sample.path == str(root / "01_12")
    window = decode.read_frames(sample.path, lambda n: protocol_lib.temporal_indices(n, "mtl_aqa", start=5))
    assert window.shape == (103, 16, 24, 3)
    np.testing.assert_allclose(window[:, 8, 12, 0], 2 * np.arange(5, 108), atol=2)
    os.rmdir(root / "18_67")
    with pytest.raises(MissingMediaError, match=r"train_split_0\.pkl, entry 0 \(dive 18_67\).*18_67 does not exist"):
        mtl_aqa.load(shared_data / "MTL-AQA", root)
    assert len(mtl_aqa.load(shared_data / "MTL-AQA", root, check_paths=False)["train"]) == 1059
    assert issubclass(MissingMediaError, FileNotFoundError) and issubclass(MissingMediaError, ValueError)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_mtl_aqa_malicious_and_malformed_pickles(tmp_path):
    marker = str(tmp_path / "pwned")
    (tmp_path / "augmented_final_annotations_dict.pkl").write_bytes(pickle.dumps({(1, 1): _Payload(marker)}))
    (tmp_path / "train_split_0.pkl").write_bytes(pickle.dumps([(1, 1)]))
    (tmp_path / "test_split_0.pkl").write_bytes(pickle.dumps([(1, 2)]))
    with pytest.raises(UnsafePickleError, match="augmented_final_annotations_dict.pkl: refusing to load 'posix.mkdir'"):
        mtl_aqa.load(tmp_path, None)
    assert not os.path.exists(marker)  # the payload never ran

    record = {"final_score": 80.0, "difficulty": 3.0}
    (tmp_path / "augmented_final_annotations_dict.pkl").write_bytes(pickle.dumps({(1, 1): record}))
    with pytest.raises(AnnotationError, match=r"test_split_0\.pkl, entry 0: dive \(1, 2\) is not in"):
        mtl_aqa.load(tmp_path, None)
    (tmp_path / "augmented_final_annotations_dict.pkl").write_bytes(
        pickle.dumps({(1, 1): record, (1, 2): {"difficulty": 2.0}}))
    with pytest.raises(AnnotationError, match=r"dive \(1, 2\): missing field 'final_score'"):
        mtl_aqa.load(tmp_path, None)
    (tmp_path / "test_split_0.pkl").write_bytes(pickle.dumps([(1, 2, 3)]))
    with pytest.raises(AnnotationError, match=r"test_split_0\.pkl, entry 0: expected a \(video, dive\) pair"):
        mtl_aqa.load(tmp_path, None)
    for entry in ((float("inf"), 1), (1, float("nan")), (1.5, 2)):  # inf gave a raw OverflowError
        (tmp_path / "test_split_0.pkl").write_bytes(pickle.dumps([(1, 1), entry]))
        with pytest.raises(AnnotationError, match=r"test_split_0\.pkl, entry 1: expected a \(video, dive\) pair "
                                                  r"of whole numbers"):
            mtl_aqa.load(tmp_path, None)
    os.remove(tmp_path / "test_split_0.pkl")
    with pytest.raises(FileNotFoundError, match="test_split_0.pkl: MTL-AQA test split not found"):
        mtl_aqa.load(tmp_path, None)


# --------------------------------------------------------------------------------------------- AQA-7
def test_aqa7_annotations_only(shared_data):
    diving = aqa7.load(shared_data / "AQA-7", None, "diving")
    assert (len(diving["train"]), len(diving["test"])) == (300, 70)
    first = diving["train"][0]  # row [1, 54, 8415]
    assert (first.key, first.path, first.group) == ("diving_054", os.path.join("diving-out", "054"), "diving")
    assert first.score == pytest.approx((84.15 - 21.6) / (102.6 - 21.6) * 100)
    assert aqa7.denormalise_score(first.score, "diving") == pytest.approx(84.15)
    everything = aqa7.load(shared_data / "AQA-7", None, "all")
    assert (len(everything["train"]), len(everything["test"])) == (803, 303)
    for name in aqa7.CLASSES:
        scores = [s.score for s in everything["train"] + everything["test"] if s.group == name]
        assert min(scores) == pytest.approx(0.0, abs=1e-9) and max(scores) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="unknown AQA-7 class"):
        aqa7.load(shared_data / "AQA-7", None, "high_jump")


def test_aqa7_with_frame_folders_and_row_pointing_nowhere(shared_data, tmp_path):
    samples = aqa7.load(shared_data / "AQA-7", None, "sync_diving_3m")
    root = tmp_path / "AQA-7"
    for sample in samples["train"] + samples["test"]:
        os.makedirs(root / sample.path)
    folder = root / samples["test"][0].path
    frames = (np.arange(105) * 2).astype(np.uint8).reshape(105, 1, 1, 1) * np.ones((1, 16, 24, 3), np.uint8)
    paths = decode.write_frame_folder(str(folder), frames)
    assert os.path.basename(paths[0]) == "img_00001.jpg"
    loaded = aqa7.load(shared_data / "AQA-7", root, "sync_diving_3m")
    assert loaded["test"][0].path == str(folder)
    clip_frames = decode.read_frames(str(folder), lambda n: protocol_lib.temporal_indices(n, "aqa7"))
    np.testing.assert_allclose(clip_frames[:, 8, 12, 0], 2 * np.arange(103), atol=2)  # img_00001 … img_00103
    victim = loaded["train"][3]
    os.rmdir(victim.path)
    with pytest.raises(MissingMediaError, match=r"consolidated_train_list\.mat, row \d+ .*does not exist"):
        aqa7.load(shared_data / "AQA-7", root, "sync_diving_3m")


def test_aqa7_malformed_rows(tmp_path):
    good = np.array([[1, 5, 8000], [2, 7, 1500]], float)
    scipy.io.savemat(tmp_path / "consolidated_train_list.mat", {"consolidated_train_list": good})
    scipy.io.savemat(tmp_path / "consolidated_test_list.mat", {"consolidated_test_list": np.array([[7, 1, 5000.0]])})
    with pytest.raises(AnnotationError, match=r"consolidated_test_list\.mat, row 1 .*class must be an integer 1–6"):
        aqa7.load(tmp_path, None, "all")
    scipy.io.savemat(tmp_path / "consolidated_test_list.mat", {"x": np.ones((3, 2))})
    with pytest.raises(AnnotationError, match=r"expected an \(N, 3\) numeric matrix"):
        aqa7.load(tmp_path, None)
    scipy.io.savemat(tmp_path / "consolidated_test_list.mat", {"x": good + 1j})  # imaginary part ≠ 0
    with pytest.raises(AnnotationError, match=r"consolidated_test_list\.mat: the matrix holds complex numbers"):
        aqa7.load(tmp_path, None)
    (tmp_path / "consolidated_test_list.mat").write_bytes(b"garbage")
    with pytest.raises(AnnotationError, match="not a readable .mat file"):
        aqa7.load(tmp_path, None)


# --------------------------------------------------------------------------------------------- JIGSAWS
@pytest.mark.parametrize("task, total", [("suturing", 39), ("needle_passing", 28), ("Knot_Tying", 36)])
def test_jigsaws_folds(shared_data, task, total):
    tests = []
    for fold in range(4):
        split = jigsaws.load(shared_data / "JIGSAWS", None, task, fold)
        train_keys, test_keys = {s.key for s in split["train"]}, {s.key for s in split["test"]}
        assert len(train_keys) + len(test_keys) == total and not train_keys & test_keys
        assert all(6 <= s.score <= 30 and s.group == "all" for s in split["train"] + split["test"])
        assert all(s.path == f"{s.key}_capture1" for s in split["test"])
        tests.append(test_keys)
    assert set().union(*tests) == train_keys | test_keys  # the four test folds cover the task
    assert sum(len(t) for t in tests) == total


def test_jigsaws_known_score_and_videos(shared_data, tmp_path):
    split = jigsaws.load(shared_data / "JIGSAWS", None, "needle_passing", 0)
    by_key = {s.key: s for s in split["train"] + split["test"]}
    assert by_key["Needle_Passing_B001"].score == 8.0  # GRS items [1, 1, 1, 2, 1, 2]
    root = tmp_path / "videos"
    os.makedirs(root / "Needle_Passing" / "video")
    for index, key in enumerate(by_key):
        if index == 0:
            decode.write_frame_folder(str(root / f"{key}_capture1"), TINY)  # MUSDL frame folder
        elif index == 1:
            decode.write_video(str(root / f"{key}_capture1.avi"), TINY)
        else:
            decode.write_video(str(root / "Needle_Passing" / "video" / f"{key}_capture1.avi"), TINY)
    split = jigsaws.load(shared_data / "JIGSAWS", root, "needle_passing", 0)
    paths = {s.key: s.path for s in split["train"] + split["test"]}
    keys = list(by_key)
    assert paths[keys[0]] == str(root / f"{keys[0]}_capture1")
    assert paths[keys[1]] == str(root / f"{keys[1]}_capture1.avi")
    assert paths[keys[2]] == str(root / "Needle_Passing" / "video" / f"{keys[2]}_capture1.avi")
    assert decode.read_frames(paths[keys[2]]).shape == (2, 8, 12, 3)
    os.remove(paths[keys[2]])
    with pytest.raises(MissingMediaError, match=f"no video for trial {keys[2]}; tried"):
        jigsaws.load(shared_data / "JIGSAWS", root, "needle_passing", 0)
    with pytest.raises(ValueError, match="fold must be 0–3"):
        jigsaws.load(shared_data / "JIGSAWS", None, "suturing", 4)
    with pytest.raises(ValueError, match="unknown JIGSAWS task"):
        jigsaws.load(shared_data / "JIGSAWS", None, "juggling")


def test_jigsaws_trial_without_label(tmp_path):
    (tmp_path / "label.pkl").write_bytes(pickle.dumps({"Suturing_B001": [1, 2, 3, 4, 5, 6]}))
    folds = [["Suturing_B001"], ["Suturing_B002"], [], []]
    (tmp_path / "splits.pkl").write_bytes(pickle.dumps({"Suturing": folds}))
    with pytest.raises(AnnotationError, match=r"splits\.pkl, task Suturing, fold 1, entry 0: trial 'Suturing_B002'"):
        jigsaws.load(tmp_path, None)


# --------------------------------------------------------------------------------------------- manifest
def _write(path, text):
    path.write_text(text)
    return str(path)


def test_manifest_relative_paths_and_defaults(tmp_path):
    decode.write_frame_folder(str(tmp_path / "frames" / "a"), TINY)
    os.makedirs(tmp_path / "clips")
    decode.write_video(str(tmp_path / "clips" / "b.mp4"), TINY)
    csv_path = _write(tmp_path / "manifest.csv",
                      "path,score,difficulty,group,split,key\n"
                      "frames/a,78.5,3.2,3.2,train,\n"
                      "\n"
                      f"{tmp_path / 'clips' / 'b.mp4'},64,,,test,\n"
                      "frames/a,60,,,test,a2\n"
                      "clips/b.mp4,70,,,val,\n"
                      "frames/a,71,,,val,a3\n")
    splits = manifest.load(csv_path)
    a, b = splits["train"][0], splits["test"][0]
    assert a == Sample(key="frames/a", path=str(tmp_path / "frames" / "a"), score=78.5, difficulty=3.2,
                       group="3.2", split="train")
    assert (b.path, b.score, b.difficulty, b.group) == (str(tmp_path / "clips" / "b.mp4"), 64.0, 1.0, "all")
    assert splits["val"][0].path == b.path and splits["val"][0].key == "clips/b.mp4"
    assert decode.read_frames(a.path).shape == (2, 8, 12, 3)
    assert load_dataset("manifest", csv_path)["test"][0].key == b.key


@pytest.mark.parametrize("body, message", [
    ("path,split\nx,train\n", r"line 1: header .* lacks required column\(s\) \['score'\]"),
    ("path,score,scroe\nx,1,2\n", r"line 1: unknown column\(s\) \['scroe'\]"),
    ("path,score\nok,1\nok2,abc\n", r"line 3: column 'score' is not a number: 'abc'"),
    ("path,score,difficulty\nok,1,0\n", r"line 2: difficulty must be > 0"),
    ("path,score\nok,\n", r"line 2: empty required column 'score'"),
    ("path,score\nok,1,extra\n", r"line 2: more values than columns"),
    ("path,score\nok,1\nok,2\n", r"line 3: duplicate key 'ok' \(first on line 2\)"),
    ("path,score\n", r"no samples"),
    ("path,score\nok,1\nok2,1e308\n", r"line 3: column 'score' is 1e308, beyond"),
    ("path,score,difficulty\nok,1,-1e300\n", r"line 2: column 'difficulty' is -1e300, beyond"),
    ("path,score\nok,inf\n", r"line 2: column 'score' is not finite"),
    ("path,score,split\nok,1,test\nok2,2,test\n", r"m\.csv: the manifest has no training rows \(split 'train'\); found 2 'test'"),
])
def test_manifest_malformed(tmp_path, body, message):
    for name in ("ok", "ok2", "x"):
        os.makedirs(tmp_path / name, exist_ok=True)
    with pytest.raises(AnnotationError, match=message):
        manifest.load(_write(tmp_path / "m.csv", body))


def test_manifest_non_utf8_byte_names_the_csv_and_line(tmp_path):
    os.makedirs(tmp_path / "ok")
    path = tmp_path / "m.csv"
    path.write_bytes("path,score\nok,1\n".encode() + b"caf\xe9,2\n")  # Latin-1 é on line 3
    with pytest.raises(AnnotationError, match=r"m\.csv, line 3: byte 0xe9 is not UTF-8"):
        manifest.load(str(path))


def test_manifest_row_pointing_nowhere(tmp_path):
    csv_path = _write(tmp_path / "m.csv", "path,score\nvideos/missing.mp4,50\n")
    with pytest.raises(MissingMediaError, match=r"m\.csv, line 2: frame folder or video .*missing\.mp4 does not exist"):
        manifest.load(csv_path)
    assert manifest.load(csv_path, check_paths=False)["train"][0].path == str(tmp_path / "videos" / "missing.mp4")
    with pytest.raises(FileNotFoundError, match="nope.csv: manifest CSV not found"):
        manifest.load(str(tmp_path / "nope.csv"))


def test_sample_validation():
    with pytest.raises(ValueError, match="difficulty must be > 0"):
        Sample(key="a", path="p", score=1.0, difficulty=0.0)
    with pytest.raises(ValueError, match="score must be finite"):
        Sample(key="a", path="p", score=float("nan"))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("kinetics")
