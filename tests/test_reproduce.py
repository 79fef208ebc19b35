"""`tpt reproduce`: the published numbers (a table written here from the papers), the statistics of
a row against seed_statistics and a hand computation, presets that load back to the same model,
and the whole journey on a stand-in release."""

import json
import os

import numpy as np
import pytest

from tpt_keras.experiment import reproduce
from tpt_keras.ops import metrics

# From the papers: TPT (ECCV 2022) Tables 1-3; FineDiving: TSA's released test predictions.
PAPER = {
    "mtl_aqa": {"w/ DD": (0.9607, 0.2378)},
    "aqa7": {"diving": 0.8969, "gym_vault": 0.8043, "ski_big_air": 0.7336, "snowboard_big_air": 0.6965,
             "sync_diving_3m": 0.9456, "sync_diving_10m": 0.9545, "average": 0.8715},
    "jigsaws": {"suturing": 0.88, "needle_passing": 0.88, "knot_tying": 0.91, "average": 0.89},
    "finediving": {"finediving": (0.9212, 0.337)},
}


def test_published_numbers_are_the_papers():
    assert reproduce.PUBLISHED["mtl_aqa"]["rows"]["w/ DD"] == PAPER["mtl_aqa"]["w/ DD"]
    assert reproduce.PUBLISHED["finediving"]["rows"]["finediving"] == PAPER["finediving"]["finediving"]
    for table in ("aqa7", "jigsaws"):
        assert {row: rho for row, (rho, _) in reproduce.PUBLISHED[table]["rows"].items()} == PAPER[table]
    # the published AQA-7 and JIGSAWS averages are the Fisher-z means of their rows
    for table in ("aqa7", "jigsaws"):
        rows = [v for k, v in PAPER[table].items() if k != "average"]
        assert metrics.fisher_z_mean(rows) == pytest.approx(PAPER[table]["average"], abs=0.006)


def test_table_runs():
    assert [r.name for r in reproduce.table_runs("mtl_aqa")] == ["mtl_aqa_dd", "mtl_aqa_nodd"]
    assert len(reproduce.table_runs("aqa7")) == 6
    runs = reproduce.table_runs("jigsaws")
    assert len(runs) == 12 and {r.row for r in runs} == {"suturing", "needle_passing", "knot_tying"}
    config = reproduce.run_config(runs[5], {"batch_size": 3}, epochs=2)
    assert (config.action_class, config.fold, config.batch_size, config.epochs) == ("needle_passing", 1, 3, 2)


def test_preset_round_trip_gives_the_same_predictions(tmp_path):
    import keras

    from tpt_keras.config import get_preset
    from tpt_keras.models import presets
    from tpt_keras.models.tpt_model import TPTModel

    config = get_preset("synthetic", feature_dim=16, hidden_dim=16, ffn_dim=16, head_hidden_dim=8,
                        num_heads=2)
    intervals = np.stack([np.linspace(-30, 28, 16), np.linspace(-28, 30, 16)], axis=1)
    model = TPTModel(config, intervals)
    model.compile()
    rng = np.random.default_rng(1)
    inputs = {"query": rng.normal(size=(3, 20, 16)).astype("float32"),
              "exemplar": rng.normal(size=(3, 20, 16)).astype("float32")}
    before = model(inputs, training=False)
    presets.save_preset(model, str(tmp_path / "preset"), {"data": {"dataset": "synthetic"}})
    assert sorted(os.listdir(tmp_path / "preset")) == ["config.json", "metadata.json", "model.weights.h5"]
    meta = json.loads((tmp_path / "preset" / "metadata.json").read_text())
    assert meta["data"] == {"dataset": "synthetic"} and meta["parameter_count"] == model.count_params()
    import tpt_keras

    loaded = tpt_keras.load_preset(str(tmp_path / "preset"))
    after = loaded(inputs, training=False)
    assert loaded.config == config
    np.testing.assert_array_equal(loaded.intervals, model.intervals)
    flat_before, flat_after = keras.tree.flatten(before), keras.tree.flatten(after)
    assert len(flat_before) == len(flat_after) > 0
    for a, b in zip(flat_before, flat_after):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_preset_errors_name_the_file(tmp_path):
    from tpt_keras.models import presets

    with pytest.raises(FileNotFoundError, match="config.json: missing"):
        presets.load_preset(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        presets.load_preset_config(str(tmp_path))


TINY = ["--set", "protocol.resize_height=32", "--set", "protocol.resize_width=32",
        "--set", "protocol.crop_size=32", "--set", "hidden_dim=16", "--set", "ffn_dim=16",
        "--set", "head_hidden_dim=8", "--set", "num_heads=2", "--set", "batch_size=2",
        "--set", "empty_group=all", "--epochs", "1", "--bootstrap", "50"]


@pytest.mark.slow
def test_reproduce_end_to_end_on_a_stand_in(tmp_path, shared_data, capsys):
    """FineDiving stand-in with a missing and an unreadable dive: prepare leaves them out, the I3D
    features are extracted once, one seed trains one epoch, the table holds the published numbers;
    a second call resumes (nothing retrained); the exported preset evaluates to the same ρ."""
    from data_pipelines.synthetic import releases
    from tpt_keras.cli import main as cli

    release = releases.make_release("finediving", shared_data / "FineDiving", tmp_path / "release",
                                    per_split=4, defects=["missing", "unreadable"])
    output = str(tmp_path / "out")
    argv = ["reproduce", "finediving", "--annotations", release.annotations, "--media-root",
            release.media, "--output", output, *TINY]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("finediving "))
    assert "0.9212" in row and "0.3370" in row
    assert "best test epoch" in text and "left out" in text
    results = json.loads(open(os.path.join(output, "reproduce_finediving.json")).read())
    assert sorted(results["left_out"]) == sorted(d.key for d in release.defects)
    assert os.path.isfile(os.path.join(output, "reproduce_finediving.png"))
    run = os.path.join(output, "runs", "finediving", "seed_12")
    log = os.path.join(run, "log.csv")
    stamp = os.path.getmtime(log)
    assert cli.main(argv) == 0  # resumes: everything cached, nothing retrained
    again = json.loads(open(os.path.join(output, "reproduce_finediving.json")).read())
    assert os.path.getmtime(log) == stamp
    assert again["rows"][0]["best"]["mean"] == results["rows"][0]["best"]["mean"]
    capsys.readouterr()
    assert cli.main(["export-preset", run, str(tmp_path / "preset")]) == 0
    assert "preset written to" in capsys.readouterr().out
    meta = json.loads((tmp_path / "preset" / "metadata.json").read_text())
    assert meta["data"]["dataset"] == "finediving" and meta["seeds"] == [12]
    assert meta["test"]["spearman"] == pytest.approx(results["rows"][0]["best"]["mean"]["spearman"])
    assert cli.main([*argv, "--weights", str(tmp_path / "preset"), "--json"]) == 0
    weighed = json.loads(capsys.readouterr().out)
    assert weighed["name"] == "reproduce_finediving_weights"  # the trained table is kept
    assert os.path.isfile(os.path.join(output, "reproduce_finediving_weights.json"))
    assert weighed["rows"][0]["best"]["mean"]["spearman"] == pytest.approx(meta["test"]["spearman"])


def test_the_update_line_names_micro_batches_and_normalisation():
    from tpt_keras.config import get_preset

    assert reproduce.update_line(get_preset("mtl_aqa_dd")) == (
        "update: 24 pairs as 8 micro-batches of 3 (each interval's mean within a micro-batch): "
        "the original's 8 GPUs × 3 pairs, accumulated on one device")
    assert reproduce.update_line(get_preset("custom", batch_size=12)) == (
        "update: 12 pairs as 1 micro-batch of 12 (each interval's mean over the whole batch)")
    # 2 pairs cut for 8 micro-batches: ceil(2 / 8) = 1 pair each, so 2 micro-batches
    assert reproduce.update_line(get_preset("mtl_aqa_dd", batch_size=2)) == (
        "update: 2 pairs as 2 micro-batches of 1 (each interval's mean within a micro-batch)")
