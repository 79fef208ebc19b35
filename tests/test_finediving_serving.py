"""Serving with groups beside the difficulty, the fast parts: which models
take a group, and how `tpt score` checks it. The SavedModel itself is checked end to end in
tests/test_finediving_cli.py."""

import os

import pytest

from data_pipelines.samples import Sample
from tpt_keras.serving import export, scoring


def _samples(pairs):
    return [Sample(key=f"k{i}", path="", score=50.0, difficulty=d, group=g)
            for i, (g, d) in enumerate(pairs)]


@pytest.mark.parametrize("pairs, expected", [
    ([("2", 2.0), ("2", 2.0), ("3", 3.0)], True),          # MTL-AQA: the group is the difficulty
    ([("205b", 3.0), ("305b", 3.0)], False),               # two dive numbers share DD 3.0
    ([("205b", 2.9), ("205b", 3.0), ("107c", 2.7)], False),  # one dive number, two difficulties
    ([("all", 2.0)], True),
])
def test_groups_are_difficulties(pairs, expected):
    assert export.groups_are_difficulties(_samples(pairs)) is expected


def test_signature_inputs_table():
    assert export.signature_inputs(True, ["2", "3"]) == ["frames", "difficulty"]
    assert export.signature_inputs(True, ["205b", "305b"], False) == ["frames", "difficulty", "group"]
    assert export.signature_inputs(False, ["a", "b"]) == ["frames", "group"]
    assert export.signature_inputs(False, ["a"]) == ["frames"]


def test_score_group_is_optional_beside_difficulty_and_checked():
    inputs, groups = ["frames", "difficulty", "group"], ["205b", "305b"]
    scoring.check_arguments(inputs, groups, 3.0, None)  # nearest-difficulty fallback
    scoring.check_arguments(inputs, groups, 3.0, "305b")
    with pytest.raises(ValueError, match="one of 205b, 305b"):
        scoring.check_arguments(inputs, groups, 3.0, "9999z")
    with pytest.raises(ValueError, match="--difficulty"):
        scoring.check_arguments(inputs, groups, None, "205b")
    # without difficulty the group stays required
    with pytest.raises(ValueError, match="pass --group"):
        scoring.check_arguments(["frames", "group"], ["a", "b"], None, None)


def test_step_labels_are_named_from_the_sub_action_table(shared_data, tmp_path):
    """The release's layout: FineDiving/Annotations/Sub_action_Types_Table.pkl beside the frames."""
    import shutil

    root = tmp_path / "FineDiving"
    (root / "Annotations").mkdir(parents=True)
    shutil.copy(os.path.join(shared_data, "FineDiving", "Sub_action_Types_Table.pkl"), root / "Annotations")
    video = root / "frames" / "FINAWorldChampionships2019_Women10m_final_r1" / "0"
    video.mkdir(parents=True)
    # labels of a dive: Inward, 2.5 Soms.Pike, Entry (the table's 4, 15, 36)
    names = scoring.find_step_names(str(video))
    assert [names[label] for label in (4, 15, 36)] == ["Inward", "2.5 Soms.Pike", "Entry"]
    assert scoring.find_step_names(str(tmp_path / "elsewhere")) is None
