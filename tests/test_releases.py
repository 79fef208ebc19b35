"""Stand-in releases: the real annotation keys, laid out and numbered as each public release is,
with exactly the defects planted (checked against the files on disk and the layouts written here)."""

import os
import re

import pytest

from data_pipelines.io import safe_pickle
from data_pipelines.synthetic import releases

SOURCES = {"mtl_aqa": "MTL-AQA", "aqa7": "AQA-7", "jigsaws": "JIGSAWS", "finediving": "FineDiving"}


def _files(folder):
    return sorted(os.listdir(folder))


def test_mtl_aqa_layout(tmp_path, shared_data):
    release = releases.make_release("mtl_aqa", shared_data / "MTL-AQA", tmp_path / "r", per_split=3)
    real = safe_pickle.load(shared_data / "MTL-AQA" / "augmented_final_annotations_dict.pkl")
    real_train = safe_pickle.load(shared_data / "MTL-AQA" / "train_split_0.pkl")
    chosen = safe_pickle.load(os.path.join(release.annotations, "train_split_0.pkl"))
    assert set(chosen) <= set(real_train) and len(chosen) == 3
    for video, dive in chosen:
        folder = os.path.join(release.media, f"{video:02d}_{dive:02d}")
        names = _files(folder)
        start, end = real[(video, dive)]["start_frame"], real[(video, dive)]["end_frame"]
        # frames named by their number in the broadcast, at least 3 + 3 + 103 of them
        assert names[0] == f"{start:06d}.jpg"
        assert len(names) == max(109, end - start + 1)
        assert [int(n[:-4]) for n in names] == list(range(start, start + len(names)))


def test_aqa7_layout_and_every_class(tmp_path, shared_data):
    release = releases.make_release("aqa7", shared_data / "AQA-7", tmp_path / "r", per_split=2)
    classes = ["diving", "gym_vault", "ski_big_air", "snowboard_big_air", "sync_diving_3m", "sync_diving_10m"]
    assert [key.rsplit("_", 1)[0] for key in release.keys["test"]] == [c for c in classes for _ in range(2)]
    for key in release.keys["train"] + release.keys["test"]:
        name, index = key.rsplit("_", 1)
        names = _files(os.path.join(release.media, f"{name}-out", index))
        assert names == [f"img_{i:05d}.jpg" for i in range(1, 104)]


def test_jigsaws_videos_in_the_archive_layout(tmp_path, shared_data):
    import av

    release = releases.make_release("jigsaws", shared_data / "JIGSAWS", tmp_path / "r", per_split=2)
    splits = safe_pickle.load(os.path.join(release.annotations, "splits.pkl"))
    assert sorted(splits) == ["Knot_Tying", "Needle_Passing", "Suturing"]
    assert all(len(folds) == 4 and all(len(f) == 2 for f in folds) for folds in splits.values())
    path = os.path.join(release.media, "Suturing", "video", f"{splits['Suturing'][0][0]}_capture1.avi")
    with av.open(path) as container:
        assert sum(1 for _ in container.decode(video=0)) == 160


def test_finediving_frames_follow_the_labels(tmp_path, shared_data):
    release = releases.make_release("finediving", shared_data / "FineDiving", tmp_path / "r", per_split=2)
    fine = safe_pickle.load(os.path.join(release.annotations, "FineDiving_fine-grained_annotation.pkl"))
    coarse = safe_pickle.load(shared_data / "FineDiving" / "FineDiving_coarse_annotation.pkl")
    for (event, index), record in fine.items():
        names = _files(os.path.join(release.media, event, str(index)))
        assert len(names) == len(record["frames_labels"])
        assert names[0] == f"{coarse[(event, index)]['start_frame']:05d}.jpg"
        assert all(re.fullmatch(r"\d{5,}\.jpg", n) for n in names)
    # every test dive has a training dive of its action type (its exemplars)
    train = safe_pickle.load(os.path.join(release.annotations, "train_split.pkl"))
    test = safe_pickle.load(os.path.join(release.annotations, "test_split.pkl"))
    assert {fine[k]["action_type"] for k in test} <= {fine[k]["action_type"] for k in train}


def test_defects_are_planted_as_listed(tmp_path, shared_data):
    release = releases.make_release("aqa7", shared_data / "AQA-7", tmp_path / "r", per_split=2, defects="all")
    kinds = {d.kind: d for d in release.defects}
    assert sorted(kinds) == sorted(["missing", "missing_frame", "unreadable", "numbering"])
    assert len({d.key for d in release.defects}) == 4  # one sample each
    assert not os.path.exists(kinds["missing"].path)
    assert not os.path.exists(kinds["missing_frame"].path)
    with open(kinds["unreadable"].path, "rb") as handle:
        assert not handle.read(3) == b"\xff\xd8\xff"
    assert _files(kinds["numbering"].path)[0] == "frame0.jpg"


def test_refusals(tmp_path, shared_data):
    with pytest.raises(ValueError, match="cannot plant 'numbering'"):
        releases.make_release("jigsaws", shared_data / "JIGSAWS", tmp_path / "a", defects=["numbering"])
    with pytest.raises(ValueError, match="unknown dataset"):
        releases.make_release("kinetics", shared_data, tmp_path / "b")
    releases.make_release("finediving", shared_data / "FineDiving", tmp_path / "c", per_split=2)
    with pytest.raises(FileExistsError):
        releases.make_release("finediving", shared_data / "FineDiving", tmp_path / "c", per_split=2)
