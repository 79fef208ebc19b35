"""The restricted unpickler: real annotation files load; anything that would run code does not."""

import os
import pickle

import numpy as np
import pytest

from data_pipelines.io import safe_pickle


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


# Pickles whose allocation is sized by a number in the file, not by the bytes it holds. Each is
# written by hand (opcodes of protocol 0/2), so nothing here depends on the code under test.
_OBJECT_ARRAY = pickle.dumps(np.array([1, 2], dtype=object), protocol=2)
_BYTE_ARRAY = pickle.dumps(np.zeros(2, np.uint8), protocol=2)
SIZE_BOMBS = {
    # builtins.bytearray(3000000000): 36 bytes, 3 GB on a plain pickle.load
    "bytearray": b"cbuiltins\nbytearray\n(I3000000000\ntR.",
    "bytes": b"cbuiltins\nbytes\n(I3000000000\ntR.",
    # numpy.core.multiarray._reconstruct(ndarray, (3000000000,), b"b")
    "reconstruct": b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I3000000000\ntc_codecs\nencode\n"
                   b"(Vb\nVlatin1\ntRtR.",
    # ndarray.__setstate__ with shape (1879048192,) but 2 items of data (segfaults numpy for objects)
    "object_state": _OBJECT_ARRAY.replace(b"K\x02\x85", b"J\x00\x00\x00\x70\x85"),
    "byte_state": _BYTE_ARRAY.replace(b"K\x02\x85", b"J\x00\x00\x00\x70\x85"),
}

# Peak RSS from /proc (VmHWM), not getrusage: Linux carries ru_maxrss across exec, so the child
# would start with the parent's peak and hide a smaller allocation.
_MEASURE = """
import sys
from data_pipelines.io import safe_pickle

def kib(field):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))

before = kib("VmRSS")
try:
    safe_pickle.load(sys.argv[1])
    outcome = "loaded"
except safe_pickle.UnsafePickleError as error:
    outcome = "refused: " + str(error)
print(kib("VmHWM") - before, outcome)
"""


@pytest.mark.parametrize("name", sorted(SIZE_BOMBS))
def test_allocation_bombs_are_refused_with_bounded_memory(tmp_path, name):
    import subprocess
    import sys

    assert SIZE_BOMBS[name] != _OBJECT_ARRAY and SIZE_BOMBS[name] != _BYTE_ARRAY  # the patch applied
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(SIZE_BOMBS[name])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": root})
    assert result.returncode == 0, result.stderr[-2000:]  # a segfault would be rc -11
    grown_kib, outcome = result.stdout.strip().split(" ", 1)
    assert outcome.startswith("refused: ") and str(path) in outcome
    assert int(grown_kib) < 50 * 1024  # < 50 MB, where the bombs ask for 1.9–15 GB


def test_real_annotation_files_of_every_dataset_load(shared_data):
    labels = safe_pickle.load(shared_data / "JIGSAWS" / "label.pkl")
    splits = safe_pickle.load(shared_data / "JIGSAWS" / "splits.pkl")
    assert isinstance(labels, dict) and len(splits["Suturing"]) == 4
    finediving = [p for p in (shared_data / "FineDiving").glob("*.pkl")]
    for path in finediving:
        assert safe_pickle.load(path) is not None


def test_numpy_arrays_of_every_kind_round_trip(tmp_path):
    value = {"f": np.arange(12, dtype=np.float64).reshape(3, 4), "o": np.array([1, "a", None], dtype=object),
             "e": np.zeros((0, 3), np.float32), "s": np.float32(2.5), "ba": bytearray(b"xyz"), "b": b"\x00\x01"}
    for protocol in (2, 4, 5):
        path = tmp_path / f"ok{protocol}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        loaded = safe_pickle.load(path)
        np.testing.assert_array_equal(loaded["f"], value["f"])
        assert list(loaded["o"]) == [1, "a", None] and loaded["e"].shape == (0, 3)
        assert loaded["s"] == 2.5 and loaded["ba"] == bytearray(b"xyz") and loaded["b"] == b"\x00\x01"


def test_data_pipelines_never_imports_tpt_keras():
    import pathlib
    import re

    package = pathlib.Path(__file__).resolve().parent.parent / "data_pipelines"
    offenders = [str(path) for path in package.rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+tpt_keras\b", path.read_text(), re.MULTILINE)]
    assert offenders == []
