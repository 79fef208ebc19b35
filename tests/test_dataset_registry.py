"""The dataset registry: a dataset registered here, in this file only, runs through `tpt data-info`,
`tpt train`, `tpt evaluate` and `tpt export` like a built-in one; the built-in records hold what
the library used to decide dataset by dataset."""

import csv
import json
import os

import numpy as np
import pytest

from data_pipelines import datasets
from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.samples import Sample
from tpt_keras.cli import main as cli
from data_pipelines.video.protocol import PROTOCOLS
from tpt_keras.config import PRESETS, TPTConfig, get_preset

# The toy dataset: a CSV of its own format ("name,quality,side,split"), one class per side, and
# clip features written by the test. Scores are on a 0-10 training scale; the judges' scale is ×10.
TOY_ROWS = [(f"clip{i:02d}", float(q), side, split) for i, (q, side, split) in enumerate([
    (1, "left", "train"), (2, "left", "train"), (3, "left", "train"), (4, "left", "train"),
    (5, "left", "train"), (6, "left", "train"), (7, "left", "train"), (8, "left", "train"),
    (2.5, "left", "test"), (4.5, "left", "test"), (6.5, "left", "test"), (8.5, "left", "test"),
    (3, "right", "train"), (5, "right", "train"), (7, "right", "test")])]
TOY_SETTINGS = {"base": "custom", "backbone": "none", "feature_dim": 16, "hidden_dim": 16,
                "ffn_dim": 16, "num_heads": 2, "head_hidden_dim": 16, "num_queries": 2,
                "num_layers": 1, "dropout": 0.0, "epochs": 2, "batch_size": 4, "num_exemplars": 3,
                "score_max": 10.0, "learning_rate": 1e-3, "seed": 3}


def load_toy(request):
    """The toy adapter: rows of ``request.action_class``, grouped by side (as AQA-7 by class)."""
    with open(request.path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    splits = {"train": [], "test": []}
    for row in rows:
        if row["side"] == request.action_class:
            splits[row["split"]].append(Sample(key=row["name"], path="", score=float(row["quality"]),
                                               group=row["side"], split=row["split"]))
    return splits


def toy_to_judges(score, side):
    return {"left": 10.0, "right": 10.0}[side] * score


@pytest.fixture
def toy(tmp_path):
    record = datasets.register(datasets.Dataset(
        name="toy", load=load_toy, source="manifest", protocol="custom", classes=("left", "right"),
        default_class="left", to_judges=toy_to_judges, training_scale="toy 0–10",
        row_name="{name} {action_class} side", preset_settings={"toy_preset": TOY_SETTINGS}))
    table = tmp_path / "toy.csv"
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "quality", "side", "split"])
        writer.writerows(TOY_ROWS)
    cache = FeatureCache(str(tmp_path / "features"), feature_dim=16, num_clips=20, backbone="toy",
                         create=True)
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(16)
    for name, quality, _, _ in TOY_ROWS:  # quality along one direction, plus noise
        cache.write(name, quality * direction[None, :] + 0.1 * rng.standard_normal((20, 16)))
    yield record, str(table), cache.directory
    datasets.unregister("toy")


def _cli(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_registered_dataset_is_a_valid_config_and_preset_until_unregistered(toy):
    config = get_preset("toy_preset")
    expected = {name: value for name, value in TOY_SETTINGS.items() if name != "base"}
    assert {name: getattr(config, name) for name in expected} == expected
    assert config.dataset == "toy" and config.protocol == get_preset("custom").protocol
    assert "toy_preset" in PRESETS and "toy" in datasets.names("manifest")
    with pytest.raises(ValueError, match=r"action_class must be one of \('left', 'right'\) for toy"):
        config.replace(action_class="up")
    datasets.unregister("toy")
    with pytest.raises(ValueError, match="TPTConfig.dataset must be one of"):
        TPTConfig(dataset="toy")
    assert "toy_preset" not in PRESETS


def test_registering_twice_or_a_taken_preset_is_refused(toy):
    record = toy[0]
    with pytest.raises(ValueError, match="'toy' is already registered"):
        datasets.register(record)
    with pytest.raises(ValueError, match="preset 'custom' belongs to dataset 'custom'"):
        datasets.register(datasets.Dataset(name="toy2", load=load_toy, source="manifest",
                                           protocol="custom", presets=("custom",)))


def test_toy_dataset_through_the_command_line(toy, tmp_path, capsys):
    _, table, features = toy
    # data-info: counts of the chosen class, written above
    status, out, err = _cli(capsys, "data-info", "--dataset", "toy", "--annotations", table,
                            "--class", "right", "--json")
    assert status == 0, err
    info = json.loads(out)
    assert info["splits"] == {"train": 2, "test": 1} and info["score_range"]["train"] == [3.0, 5.0]
    status, out, err = _cli(capsys, "data-info", "--dataset", "toy", "--annotations", table, "--json")
    assert status == 0 and json.loads(out)["splits"] == {"train": 8, "test": 4}, err

    run = tmp_path / "run"
    status, out, err = _cli(capsys, "train", "toy_preset", "--manifest", table, "--features", features,
                            "--output", run, "--verbose", "0")
    assert status == 0, err
    assert "validation Spearman" in out
    saved = json.loads((run / "config.json").read_text())
    assert (saved["dataset"], saved["action_class"], saved["epochs"]) == ("toy", None, 2)
    samples = json.loads((run / "samples.json").read_text())
    assert [s["key"] for s in samples["test"]] == ["clip08", "clip09", "clip10", "clip11"]

    status, out, err = _cli(capsys, "evaluate", run, "--json")
    assert status == 0, err
    row = json.loads(out)["runs"][0]
    assert row["name"] == "toy left side" and row["samples"] == 4
    assert row["scale_description"] == "judges' scale (converted from the toy 0–10 training scale)"
    # a scale ×10 keeps the ranks: Spearman is the same on both
    assert row["by_scale"]["judges"]["spearman"] == pytest.approx(row["by_scale"]["normalised"]["spearman"])

    # a SavedModel takes frames: a run on features from no known video backbone is refused in one
    # line naming the run and why, and leaves no version folder
    status, out, err = _cli(capsys, "export", run, "--base-dir", tmp_path / "models")
    lines = err.strip().splitlines()
    assert status == 2 and lines[0].startswith("tpt export: error: ") and str(run) in lines[0], err
    assert "precomputed features" in lines[0] and "cannot be exported" in lines[0]
    assert not os.path.exists(tmp_path / "models" / "tpt" / "1")


# The built-in records hold, for each dataset, what the library decided before there was a
# registry; the tables here are written out independently.
BUILT_IN = {
    # name: (source, presets, default class, classes, folds, steps)
    "mtl_aqa": ("annotations", ("mtl_aqa_dd", "mtl_aqa_nodd"), None, 0, None, False),
    "aqa7": ("annotations", ("aqa7",), "diving", 6, None, False),
    "jigsaws": ("annotations", ("jigsaws",), "suturing", 3, 4, False),
    "finediving": ("annotations", ("finediving",), None, 0, None, True),
    "custom": ("manifest", ("custom",), None, 0, None, False),
    "synthetic": ("synthetic", ("synthetic",), None, 0, None, False),
    "synthetic_finediving": ("synthetic", ("synthetic_finediving",), None, 0, None, True),
}


def test_built_in_records():
    assert set(BUILT_IN) <= set(datasets.names())
    for name, (source, presets, default, classes, folds, steps) in BUILT_IN.items():
        record = datasets.get(name)
        assert (record.source, record.presets, record.default_class, len(record.classes),
                record.num_folds, record.has_steps) == (source, presets, default, classes, folds, steps), name
        for preset in presets:
            assert PRESETS[preset].dataset == name
            assert PRESETS[preset].protocol == PROTOCOLS[record.protocol]
    run = {"mtl_aqa": "mtl_aqa (DD)", "aqa7": "aqa7 gym_vault", "jigsaws": "jigsaws knot_tying fold 2",
           "custom": "custom"}
    assert datasets.get("mtl_aqa").run_name(None, 0, True) == run["mtl_aqa"]
    assert datasets.get("mtl_aqa").run_name(None, 0, False) == "mtl_aqa (no DD)"
    assert datasets.get("aqa7").run_name("gym_vault", 0, False) == run["aqa7"]
    assert datasets.get("jigsaws").run_name("knot_tying", 2, False) == run["jigsaws"]
    assert datasets.get("custom").run_name(None, 0, False) == run["custom"]
    assert [n for n in datasets.names() if datasets.get(n).averages_runs] == ["aqa7", "jigsaws"]
    assert [n for n in datasets.names() if datasets.get(n).to_judges] == ["aqa7"]
    # AQA-7 diving: 0-100 normalised over (21.6, 102.6); 50 → 62.1 on the judges' scale
    assert datasets.get("aqa7").judges_scale()(50.0, "diving") == pytest.approx(21.6 + 0.5 * 81.0)


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown dataset 'kinetics'; registered: mtl_aqa, aqa7"):
        datasets.get("kinetics")
