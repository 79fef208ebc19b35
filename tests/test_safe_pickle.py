"""The restricted unpickler: real annotation files load; anything that would run code does not."""

import os
import pickle

import numpy as np
import pytest

from tpt_keras import safe_pickle


class _Exploit:
    """Unpickling this with plain pickle would call os.system."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/tpt_keras_pwned",))


def test_plain_data_and_numpy_round_trip(tmp_path):
    value = {("a", 1): [1.5, "x", None, True], "arr": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(value))
    loaded = safe_pickle.load(path)
    assert loaded[("a", 1)] == [1.5, "x", None, True]
    np.testing.assert_array_equal(loaded["arr"], value["arr"])


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = "/tmp/tpt_keras_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": _Exploit()}))
    with pytest.raises(safe_pickle.UnsafePickleError) as info:
        safe_pickle.load(path)
    assert str(path) in str(info.value)
    assert "system" in str(info.value)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("payload", [b"", b"not a pickle at all", pickle.dumps(list(range(100)))[:20]])
def test_malformed_pickle_gives_clear_error(tmp_path, payload):
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload)
    with pytest.raises(safe_pickle.UnsafePickleError, match="bad.pkl: not a readable pickle"):
        safe_pickle.load(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        safe_pickle.load(tmp_path / "nope.pkl")


def test_real_mtl_aqa_annotations_load(shared_data):
    annotations = safe_pickle.load(shared_data / "MTL-AQA" / "augmented_final_annotations_dict.pkl")
    assert len(annotations) == 1412
    train = safe_pickle.load(shared_data / "MTL-AQA" / "train_split_0.pkl")
    assert len(train) == 1059
    first = annotations[train[0]]
    assert {"final_score", "difficulty", "judge_scores"} <= set(first)
