"""Bad dataset inputs are refused in one line that names the file, the problem and the fix."""

import pickle
import resource
import time

import numpy as np
import pytest

from data_pipelines.datasets import AnnotationError, manifest
from data_pipelines.io import safe_pickle
from tpt_keras.cli import main as cli
from tpt_keras.config import TPTConfig


def _cli(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    return status, capsys.readouterr().err.strip().splitlines()


class _ArrayBomb:
    """Pickles as a direct call ``numpy.ndarray((400000000,), 'O')``: 3.2 GB of object pointers."""

    def __reduce__(self):
        return (np.ndarray, ((400_000_000,), "O"))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_direct_ndarray_allocation_is_refused_within_the_caps(tmp_path, protocol):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps(_ArrayBomb(), protocol=protocol))
    assert path.stat().st_size < 64
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(safe_pickle.UnsafePickleError) as error:
        safe_pickle.load(path)
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 1024  # no 3 GB
    message = str(error.value)
    assert message.startswith(f"{path}: refusing a numpy array of shape (400000000,) and dtype object")
    assert "3200000000 bytes" in message and "may be malicious or is not an annotation file" in message


def test_small_arrays_still_load_by_every_route():
    for value in (np.arange(6.0).reshape(2, 3), np.array(["a", None], object), np.zeros((0, 3))):
        for protocol in (0, 2, 4):
            np.testing.assert_array_equal(safe_pickle.loads(pickle.dumps(value, protocol)), value)
    # a direct constructor call that fits the file
    assert safe_pickle.loads(pickle.dumps(_Small(), 2)).shape == (2,)


class _Small:
    def __reduce__(self):
        return (np.ndarray, ((2,), "u1"))


def test_the_bomb_as_an_annotation_file_is_named_by_data_info(tmp_path, capsys):
    (tmp_path / "augmented_final_annotations_dict.pkl").write_bytes(pickle.dumps(_ArrayBomb()))
    status, lines = _cli(capsys, "data-info", "--dataset", "mtl_aqa", "--annotations", tmp_path)
    assert status == 2
    assert lines[0].startswith(f"tpt data-info: error: {tmp_path}/augmented_final_annotations_dict.pkl: "
                               "refusing a numpy array of shape (400000000,)")


def test_a_zero_row_aqa7_list_is_named(tmp_path, capsys):
    import scipy.io

    for split in ("train", "test"):
        scipy.io.savemat(tmp_path / f"consolidated_{split}_list.mat",
                         {f"consolidated_{split}_list": np.zeros((0, 3))})
    status, lines = _cli(capsys, "data-info", "--dataset", "aqa7", "--annotations", tmp_path)
    assert status == 2
    assert lines[0] == (f"tpt data-info: error: {tmp_path}/consolidated_train_list.mat: the list has no "
                        "rows (an empty (0, 3) matrix); expected one [class, index, score×100] row per "
                        "video: replace it with the consolidated list of the AQA-7 release")


def test_an_aqa7_list_without_the_class_is_named(tmp_path, capsys):
    import scipy.io

    rows = {"train": [[2, 1, 1400.0], [2, 2, 1500.0]], "test": [[2, 3, 1450.0], [1, 4, 5000.0]]}
    for split, matrix in rows.items():
        scipy.io.savemat(tmp_path / f"consolidated_{split}_list.mat",
                         {f"consolidated_{split}_list": np.array(matrix)})
    status, lines = _cli(capsys, "data-info", "--dataset", "aqa7", "--annotations", tmp_path)
    assert status == 2  # the default class, diving (id 1), has no training row
    assert lines[0].startswith(f"tpt data-info: error: {tmp_path}/consolidated_train_list.mat: no row "
                               "of class 1 (diving);")
    assert "choose another --class" in lines[0]
    status, lines = _cli(capsys, "data-info", "--dataset", "aqa7", "--annotations", tmp_path,
                         "--class", "gym_vault", "--json")
    assert status == 0, lines


def test_a_manifest_whose_only_test_row_is_one_video_is_named(tmp_path, capsys):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    path = tmp_path / "m.csv"
    path.write_text("path,score,split\na,1,train\nc,3,test\nb,2,train\n")
    with pytest.raises(AnnotationError) as error:
        manifest.load(str(path))
    expected = (f"{path}, line 3: the only 'test' row; Spearman's ρ needs at least 2 videos to "
                "validate and evaluate: mark at least one more row 'test'")
    assert str(error.value) == expected
    status, lines = _cli(capsys, "data-info", "--dataset", "custom", "--annotations", path)
    assert status == 2 and lines[0] == f"tpt data-info: error: {expected}"
    path.write_text("path,score,split\na,1,train\nc,3,test\nb,2,test\n")
    assert [s.key for s in manifest.load(str(path))["test"]] == ["c", "b"]


def test_a_garbage_preset_file_is_named(tmp_path):
    path = tmp_path / "preset.json"
    path.write_text("{epochs: 3}\n")
    with pytest.raises(ValueError) as error:
        TPTConfig.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a valid preset JSON file (Expecting property name enclosed "
                              "in double quotes, line 1 column 2); fix the file, or pass a preset name "
                              "instead (mtl_aqa_dd, mtl_aqa_nodd, aqa7,")
    assert "\n" not in message
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match="preset.json: not a preset JSON file \\(not UTF-8 text\\)"):
        TPTConfig.load(path)
