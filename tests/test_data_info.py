"""`tpt data-info` on the real annotation files: counts, intervals, exemplar shortfalls."""

import collections
import json
import pickle

import numpy as np
import pytest

from tpt_keras.cli import main as cli
from data_pipelines.io import safe_pickle


def _run(capsys, *argv):
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_mtl_aqa_json(shared_data, capsys):
    status, out, _ = _run(capsys, "data-info", "--dataset", "mtl_aqa", "--annotations",
                          str(shared_data / "MTL-AQA"), "--json")
    assert status == 0
    info = json.loads(out)
    assert info["splits"] == {"train": 1059, "test": 353}
    assert len(info["intervals"]) == 16
    intervals = np.array(info["intervals"])
    assert intervals[0, 0] == -30.0 and intervals[-1, 1] == 30.0  # DD: ±score_max (3 judges × 10)
    np.testing.assert_allclose(intervals[:8], -intervals[::-1][:8, ::-1])  # mirrored negatives
    # naive count: test dives whose difficulty has fewer than 10 training dives
    annotations = safe_pickle.load(shared_data / "MTL-AQA" / "augmented_final_annotations_dict.pkl")
    train = safe_pickle.load(shared_data / "MTL-AQA" / "train_split_0.pkl")
    test = safe_pickle.load(shared_data / "MTL-AQA" / "test_split_0.pkl")
    sizes = collections.Counter(float(annotations[k]["difficulty"]) for k in train)
    expected = sum(1 for k in test if sizes[float(annotations[k]["difficulty"])] < 10)
    assert info["test_with_fewer_than_10_exemplars"] == expected == 14
    assert sum(info["groups"]["train"].values()) == 1059


def test_mtl_aqa_without_dd_has_one_group(shared_data, capsys):
    status, out, _ = _run(capsys, "data-info", "--dataset", "mtl_aqa", "--annotations",
                          str(shared_data / "MTL-AQA"), "--no-dd", "--json")
    info = json.loads(out)
    assert status == 0 and info["groups"]["train"] == {"all": 1059}
    assert info["intervals"][-1][1] == 100.0 and info["test_with_fewer_than_10_exemplars"] == 0


def test_text_report_and_other_datasets(shared_data, capsys):
    status, out, _ = _run(capsys, "data-info", "--dataset", "mtl_aqa", "--annotations",
                          str(shared_data / "MTL-AQA"))
    assert status == 0 and "16 group-aware intervals" in out and "1059" in out
    status, out, _ = _run(capsys, "data-info", "--dataset", "aqa7", "--annotations",
                          str(shared_data / "AQA-7"), "--class", "diving", "--json")
    info = json.loads(out)
    assert status == 0 and info["intervals"][-1][1] == 100.0
    assert 0.0 <= info["score_range"]["train"][0] and info["score_range"]["train"][1] <= 100.0
    status, out, _ = _run(capsys, "data-info", "--dataset", "jigsaws", "--annotations",
                          str(shared_data / "JIGSAWS"), "--task", "suturing", "--json")
    info = json.loads(out)
    assert status == 0 and sum(info["splits"].values()) > 0
    low, high = info["score_range"]["train"]
    assert 6 <= low <= high <= 30  # GRS sum of 6 items scored 1..5


def test_malicious_annotation_pickle_is_refused(tmp_path, capsys):
    class Exploit:
        def __reduce__(self):
            return (eval, ("1/0",))

    (tmp_path / "augmented_final_annotations_dict.pkl").write_bytes(pickle.dumps({"x": Exploit()}))
    (tmp_path / "train_split_0.pkl").write_bytes(pickle.dumps([]))
    (tmp_path / "test_split_0.pkl").write_bytes(pickle.dumps([]))
    status, _, err = _run(capsys, "data-info", "--dataset", "mtl_aqa", "--annotations", str(tmp_path))
    assert status == 2
    assert "augmented_final_annotations_dict.pkl" in err and "refusing to load 'builtins.eval'" in err


def test_missing_annotation_folder_is_a_clear_error(tmp_path, capsys):
    status, _, err = _run(capsys, "data-info", "--dataset", "mtl_aqa", "--annotations",
                          str(tmp_path / "nowhere"))
    assert status == 2 and "nowhere" in err and "Traceback" not in err
