"""FineDiving: the adapter on the real annotation files, numeric frame order, the preset,
`tpt data-info --dataset finediving` against a naive computation from the raw pickles."""

import collections
import itertools
import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from data_pipelines.io import decode
from data_pipelines.video import steps
from data_pipelines.datasets import AnnotationError, MissingMediaError, finediving
from data_pipelines.samples import Sample
from tpt_keras.cli import main as cli
from tpt_keras import experiment
from data_pipelines.io import safe_pickle
from tpt_keras.config import DATASETS, get_preset


def _raw(shared_data):
    """The TSA file (a second copy of the annotations, as lists), and the split files."""
    root = shared_data / "FineDiving"
    return (safe_pickle.load(root / "fine-grained_annotation_aqa.pkl"),
            safe_pickle.load(root / "train_split.pkl"), safe_pickle.load(root / "test_split.pkl"))


def test_adapter_matches_the_raw_annotation_lists(shared_data):
    splits = finediving.load(shared_data / "FineDiving", None)
    assert {name: len(items) for name, items in splits.items()} == {"train": 2251, "test": 749}
    raw, train, test = _raw(shared_data)
    for split, keys in (("train", train), ("test", test)):
        for sample, (event, index) in zip(splits[split], keys, strict=True):
            action_type, score, difficulty, _, labels = raw[(event, index)]
            assert sample.key == f"{event}/{index}" and sample.path == sample.key
            assert (sample.score, sample.difficulty, sample.group) == (score, difficulty, action_type)
            assert sample.split == split
            # steps expand back to the per-frame labels, and change label at every step
            expanded = [label for label, length in sample.steps for _ in range(length)]
            assert expanded == list(labels)
            assert all(a[0] != b[0] for a, b in itertools.pairwise(sample.steps))
    # one dive by hand: 407c, 88.0, DD 3.2, Inward frames 0-2, 3.5 Soms.Tuck 3-34, Entry 35-84
    dive = next(s for items in splits.values() for s in items if s.key == "01/1")
    assert (dive.group, dive.score, dive.difficulty) == ("407c", 88.0, 3.2)
    assert dive.steps == ((4, 3), (25, 32), (36, 50))
    names = finediving.step_names(shared_data / "FineDiving")
    assert (names[4], names[25], names[36]) == ("Inward", "3.5 Soms.Tuck", "Entry")


def _tiny_layout(shared_data, root, train_keys, test_keys):
    """A FineDiving-layout annotation folder with small split files (the real annotation file)."""
    annotations = root / "annotations"
    annotations.mkdir()
    os.symlink(shared_data / "FineDiving" / finediving.ANNOTATION_FILE, annotations / finediving.ANNOTATION_FILE)
    (annotations / "train_split.pkl").write_bytes(pickle.dumps(train_keys))
    (annotations / "test_split.pkl").write_bytes(pickle.dumps(test_keys))
    return annotations


def test_frame_folders_missing_folder_and_malformed_files(shared_data, tmp_path):
    train_keys = [("FINADivingWorldCup2021_Men3m_final_r1", 8), ("01", 1)]
    test_keys = [("FINAWorldChampionships2019_Women10m_final_r1", 1)]
    annotations = _tiny_layout(shared_data, tmp_path, train_keys, test_keys)
    media = tmp_path / "frames"
    for event, index in train_keys + test_keys:
        (media / event / str(index)).mkdir(parents=True)
    splits = experiment.load_splits(get_preset("finediving"), str(annotations), str(media))
    assert [s.path for s in splits["train"]] == [str(media / e / str(i)) for e, i in train_keys]
    assert [s.key for s in splits["test"]] == ["FINAWorldChampionships2019_Women10m_final_r1/1"]
    os.rmdir(media / "01" / "1")
    with pytest.raises(MissingMediaError, match=r"train_split\.pkl, entry 1 \(dive 01/1\).*does not exist"):
        finediving.load(annotations, media)
    # a split entry that is not annotated, a broken entry, a malicious pickle
    (annotations / "test_split.pkl").write_bytes(pickle.dumps([("nowhere", 3)]))
    with pytest.raises(AnnotationError, match=r"test_split\.pkl, entry 0: dive \('nowhere', 3\) is not in"):
        finediving.load(annotations, None)
    (annotations / "test_split.pkl").write_bytes(pickle.dumps([("01",)]))
    with pytest.raises(AnnotationError, match=r"test_split\.pkl, entry 0: expected an \(event, index\) pair"):
        finediving.load(annotations, None)
    (annotations / "test_split.pkl").write_bytes(pickle.dumps(test_keys))
    bad = tmp_path / "bad"
    bad.mkdir()
    record = {"action_type": "101b", "dive_score": 50.0, "difficulty": 0.0, "frames_labels": np.array([1, 1, 36])}
    (bad / finediving.ANNOTATION_FILE).write_bytes(pickle.dumps({("e", 1): record}))
    (bad / "train_split.pkl").write_bytes(pickle.dumps([("e", 1)]))
    (bad / "test_split.pkl").write_bytes(pickle.dumps([]))
    with pytest.raises(AnnotationError, match=r"FineDiving_fine-grained_annotation\.pkl, dive \('e', 1\): difficulty"):
        finediving.load(bad, None)
    del record["frames_labels"]
    (bad / finediving.ANNOTATION_FILE).write_bytes(pickle.dumps({("e", 1): record}))
    with pytest.raises(AnnotationError, match=r"missing field\(s\) \['frames_labels'\]"):
        finediving.load(bad, None)
    (bad / finediving.ANNOTATION_FILE).write_bytes(pickle.dumps({("e", 1): collections.Counter()}))
    with pytest.raises(safe_pickle.UnsafePickleError, match="FineDiving_fine-grained_annotation.pkl"):
        finediving.load(bad, None)
    with pytest.raises(FileNotFoundError, match="FineDiving annotation pickle not found"):
        finediving.load(tmp_path / "nowhere", None)


def test_frame_files_sort_numerically(tmp_path):
    folder = tmp_path / "dive"
    folder.mkdir()
    for number in (10, 2, 1, 100, 9):  # lexical order would be 1, 10, 100, 2, 9
        Image.fromarray(np.full((4, 4, 3), number, np.uint8)).save(folder / f"{number}.jpg", quality=100)
    names = [os.path.basename(p) for p in decode.list_frame_files(str(folder))]
    assert names == ["1.jpg", "2.jpg", "9.jpg", "10.jpg", "100.jpg"]
    frames = decode.read_frames(str(folder))
    np.testing.assert_allclose(frames[:, 2, 2, 0], [1, 2, 9, 10, 100], atol=2)
    # zero-padded names keep their order
    assert sorted(["img_00010.jpg", "img_00002.jpg"], key=decode.frame_sort_key) == ["img_00002.jpg", "img_00010.jpg"]


def test_sample_steps_survive_json_and_are_checked(tmp_path):
    sample = Sample(key="01/1", path="", score=88.0, difficulty=3.2, group="407c", steps=[[4, 3], [36, 2]])
    assert sample.steps == ((4, 3), (36, 2)) and hash(sample)
    path = str(tmp_path / "samples.json")
    experiment.save_samples({"train": [sample]}, path)
    assert experiment.load_samples(path) == {"train": [sample]}
    with pytest.raises(ValueError, match="at least one frame"):
        Sample(key="x", path="", score=1.0, steps=[[4, 0]])
    assert steps.frame_labels(sample.steps).tolist() == [4, 4, 4, 36, 36]


def test_preset():
    config = get_preset("finediving")
    assert "finediving" in DATASETS
    expected = {"dataset": "finediving", "use_difficulty": True, "score_max": 30.0,
                "num_exemplars": 10}
    assert {name: getattr(config, name) for name in expected} == expected
    protocol = {"sampling": "linspace", "num_clips": 20, "clip_len": 8, "clip_stride": 5,
                "train_start": 0, "train_jitter": 0, "test_exemplar_start": 0,
                "test_query_start": 0, "swap_resize": False, "resize_height": 256,
                "resize_width": 455, "crop_size": 224, "flip": True, "random_crop": True}
    assert {name: getattr(config.protocol, name) for name in protocol} == protocol
    assert config.frames_per_video == 103


def test_data_info_against_a_naive_count(shared_data, capsys):
    status = cli.main(["data-info", "--dataset", "finediving", "--annotations",
                       str(shared_data / "FineDiving"), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert status == 0
    raw, train, test = _raw(shared_data)
    assert info["splits"] == {"train": len(train), "test": len(test)} == {"train": 2251, "test": 749}
    per_type = collections.Counter(raw[k][0] for k in train)
    few = sum(1 for k in test if per_type[raw[k][0]] < 10)
    assert info["test_with_fewer_than_10_exemplars"] == few == 31
    assert info["action_types"] == {"train": len(per_type), "test": len({raw[k][0] for k in test}),
                                    "all": len({v[0] for v in raw.values()})}
    assert info["action_types"]["all"] == 52
    assert info["groups"]["train"] == dict(sorted(per_type.items()))
    # largest same-type |Δ completeness| in training fits inside score_max = 30
    completeness = collections.defaultdict(list)
    for k in train:
        completeness[raw[k][0]].append(raw[k][1] / raw[k][2])
    assert max(max(v) - min(v) for v in completeness.values()) <= info["score_max"] == 30.0
    intervals = np.array(info["intervals"])
    assert intervals.shape == (16, 2) and intervals[0, 0] == -30.0 and intervals[-1, 1] == 30.0
    np.testing.assert_allclose(intervals[:8], -intervals[::-1][:8, ::-1])
    # step statistics, counted frame by frame
    step_counts, lengths, dive_lengths, labels = collections.Counter(), [], [], set()
    for value in raw.values():
        frames = list(value[4])
        count, run = 1, 1
        for previous, current in zip(frames, frames[1:]):
            if current == previous:
                run += 1
            else:
                lengths.append(run)
                count, run = count + 1, 1
        lengths.append(run)
        step_counts[str(count)] += 1
        dive_lengths.append(len(frames))
        labels.update(frames)
    stats = info["steps"]
    assert stats["dives"] == 3000 and stats["steps_per_dive"] == dict(sorted(step_counts.items()))
    assert stats["steps_per_dive"] == {"3": 2208, "4": 568, "5": 224}
    assert stats["step_frames"] == pytest.approx({"min": min(lengths), "median": float(np.median(lengths)),
                                                  "mean": sum(lengths) / len(lengths), "max": max(lengths)})
    assert stats["dive_frames"] == pytest.approx({"min": 63, "median": float(np.median(dive_lengths)),
                                                  "mean": sum(dive_lengths) / 3000, "max": 273})
    assert stats["step_labels"] == len(labels)
    status = cli.main(["data-info", "--dataset", "finediving", "--annotations", str(shared_data / "FineDiving")])
    out = capsys.readouterr().out
    assert status == 0 and "3 steps: 2208" in out and "train 52" in out


def test_a_real_dive_through_the_preset_sampling(shared_data, tmp_path):
    """Dive 01/1 (85 frames) as unpadded numbered frames: the preset samples floor(linspace(0, 84,
    103)) in numeric order, and the clip grid's steps follow the frames' labels."""
    from data_pipelines.video import protocol as protocol_lib

    annotations = _tiny_layout(shared_data, tmp_path, [("01", 1)], [])
    folder = tmp_path / "frames" / "01" / "1"
    folder.mkdir(parents=True)
    for number in range(85):  # pixel value = 2 x frame number, file names 1.jpg … 85.jpg
        Image.fromarray(np.full((8, 8, 3), 2 * number, np.uint8)).save(folder / f"{number + 1}.jpg", quality=100)
    config = get_preset("finediving")
    dive = experiment.load_splits(config, str(annotations), str(tmp_path / "frames"))["train"][0]
    frames = decode.read_frames(dive.path, lambda n: protocol_lib.sample_frames(n, config.protocol))
    expected = [i * 84 // 102 for i in range(103)]  # exact floor of linspace(0, 84, 103)
    np.testing.assert_allclose(frames[:, 4, 4, 0], 2 * np.array(expected), atol=2)
    # labels: Inward 0-2, 3.5 Soms.Tuck 3-34, Entry 35-84; clip t holds sampled frames 5t..5t+7
    labels = [4] * 3 + [25] * 32 + [36] * 50
    majority = []
    for t in range(20):
        clip = [labels[expected[5 * t + i]] for i in range(8)]
        majority.append(max((clip.count(x), -[4, 25, 36].index(x)) for x in set(clip)))
    by_hand = [-order for _, order in majority]
    assert steps.clip_steps(dive.steps, steps.clip_frame_indices(85)).tolist() == by_hand
