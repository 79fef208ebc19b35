"""`tpt tune`: the hp -> TPTConfig mapping (known answers), and a 2-trial random search on tiny
synthetic features whose best trial becomes a preset file that `tpt train` accepts."""

import json
import math

import keras_tuner as kt
import numpy as np
import pytest

from tpt_keras.cli import main as cli
from tpt_keras import experiment
from tpt_keras.experiment import callbacks as evaluation
from tpt_keras.tuning import search as tuning
from tpt_keras.config import TPTConfig, get_preset

TUNED = ("num_queries", "hidden_dim", "rank_margin", "temperature_init", "rank_weight",
         "sparsity_weight", "learning_rate", "head_learning_rate")


# ---------------------------------------------------------------------------------------------
# config_from_hp
# ---------------------------------------------------------------------------------------------
def test_empty_hp_gives_the_base_values_where_they_lie_in_the_space():
    base = get_preset("synthetic")  # K 5, d 64 (ffn 64, 4 heads), lr 1e-3 / 1e-3
    hp = kt.HyperParameters()
    config = tuning.config_from_hp(hp, base)
    # hidden_dim 64 is not a default choice (128, 256, 512): the first choice, ffn tied to it.
    assert config == base.replace(hidden_dim=128, ffn_dim=128)
    assert hp.values == {"num_queries": 5, "hidden_dim": 128, "rank_margin": 3.2,
                         "temperature_init": 0.07, "rank_weight": 1.0, "sparsity_weight": 0.05,
                         "learning_rate": 1e-3, "head_learning_rate": 1e-3}
    space = {p.name: p for p in hp.space}
    assert space["num_queries"].values == [2, 3, 4, 5, 6, 8]
    assert space["hidden_dim"].values == [128, 256, 512]
    assert (space["rank_margin"].min_value, space["rank_margin"].max_value) == (0.5, 5.0)
    assert space["rank_margin"].sampling == "linear"
    for name in ("temperature_init", "rank_weight", "sparsity_weight", "learning_rate",
                 "head_learning_rate"):
        assert space[name].sampling == "log", name


def test_trial_values_become_config_fields():
    base = get_preset("synthetic", ffn_dim=128, num_heads=4)  # ffn = 2 d
    space = tuning.SearchSpace(num_queries=(2, 3, 8, 32), hidden_dim=(6, 48, 512))
    hp = kt.HyperParameters()
    hp.values.update({"num_queries": 3, "hidden_dim": 6, "rank_margin": 1.5,
                      "temperature_init": 0.2, "rank_weight": 0.5, "sparsity_weight": 0.01,
                      "learning_rate": 2e-4, "head_learning_rate": 4e-3,
                      "tuner/epochs": 3, "tuner/initial_epoch": 0})  # tuner/...: ignored
    config = tuning.config_from_hp(hp, base, space)
    assert config == base.replace(num_queries=3, hidden_dim=6, ffn_dim=12, num_heads=3,
                                  rank_margin=1.5, temperature_init=0.2, rank_weight=0.5,
                                  sparsity_weight=0.01, learning_rate=2e-4,
                                  head_learning_rate=4e-3)
    # K choices above num_clips (20) are dropped.
    assert {p.name: p for p in hp.space}["num_queries"].values == [2, 3, 8]
    assert tuning.tuned_fields(config, base) == {
        "num_queries": 3, "hidden_dim": 6, "ffn_dim": 12, "num_heads": 3, "temperature_init": 0.2,
        "rank_margin": 1.5, "rank_weight": 0.5, "sparsity_weight": 0.01,
        "learning_rate": 2e-4, "head_learning_rate": 4e-3}

    hp = kt.HyperParameters()
    hp.values.update({"hidden_dim": 48})
    config = tuning.config_from_hp(hp, base, space)
    assert (config.hidden_dim, config.ffn_dim, config.num_heads) == (48, 96, 4)


def test_untuned_and_inapplicable_fields_are_left_alone():
    base = get_preset("synthetic", part_encoder="holistic")
    space = tuning.SearchSpace(hidden_dim=None, learning_rate=None)
    hp = kt.HyperParameters()
    config = tuning.config_from_hp(hp, base, space)
    # Holistic: no parts, no attention losses; hidden_dim and learning_rate: not in the space.
    assert sorted(hp.values) == ["head_learning_rate"]
    assert config == base
    with pytest.raises(ValueError, match="min < max"):
        tuning.SearchSpace(learning_rate=(1e-3, 1e-4))
    with pytest.raises(ValueError, match="fits num_clips"):
        tuning.config_from_hp(kt.HyperParameters(), get_preset("synthetic"),
                              tuning.SearchSpace(num_queries=(30,)))


def test_build_model_makes_a_built_tpt_model_from_plain_config_values():
    base = get_preset("synthetic", feature_dim=8, hidden_dim=8, ffn_dim=8, num_heads=2,
                      head_hidden_dim=8)
    intervals = np.stack([np.linspace(-30, 26.25, 16), np.linspace(-26.25, 30, 16)], axis=1)
    hp = kt.HyperParameters()
    hp.values.update({"num_queries": 3, "hidden_dim": 16, "learning_rate": 5e-4})
    space = tuning.SearchSpace(hidden_dim=(8, 16))
    model = tuning.build_model(hp, base, intervals, space=space)
    assert model.config == tuning.config_from_hp(hp, base, space)
    assert (model.config.num_queries, model.config.hidden_dim, model.config.ffn_dim) == (3, 16, 16)
    np.testing.assert_array_equal(model.intervals, intervals)
    # Built on a dummy batch: every variable, the optimizer's included, exists before fit.
    assert model.built and model.optimizer.built
    assert float(model.optimizer.learning_rate) == pytest.approx(5e-4)


def test_tuner_seed_is_never_zero():
    # Keras Tuner reads seed 0 as "no seed"; the synthetic preset has seed 0.
    assert tuning.tuner_seed(0) == 1 and tuning.tuner_seed(12) == 13


# ---------------------------------------------------------------------------------------------
# A real search
# ---------------------------------------------------------------------------------------------
TINY = dict(epochs=2, feature_dim=16, hidden_dim=16, ffn_dim=16, num_heads=2, head_hidden_dim=16,
            batch_size=8, num_exemplars=4)
TINY_SPACE = tuning.SearchSpace(num_queries=(3, 4), hidden_dim=(16, 32))


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves files
def search(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    config = get_preset("synthetic", **TINY)
    features = str(root / "features")
    splits = experiment.synthetic_splits(config, features, num_train=48, num_test=24)
    output = str(root / "tuner")
    summary = tuning.tune(config, splits, features, output, tuner="random", max_trials=2,
                          space=TINY_SPACE, verbose=0)
    return {"root": root, "config": config, "splits": splits, "features": features,
            "output": output, "summary": summary}


def test_random_search_saves_the_best_trial_as_a_preset(search):
    summary, base, output = search["summary"], search["config"], search["output"]
    trials = summary["trials"]
    assert [t["trial_id"] for t in trials] == ["0", "1"]
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    for trial in trials:
        assert sorted(trial["values"]) == sorted(TUNED)
        assert trial["values"]["num_queries"] in (3, 4) and trial["values"]["hidden_dim"] in (16, 32)
        assert -1.0 <= trial["val_spearman"] <= 1.0
    # Two different random draws (seeded by config.seed + 1).
    assert trials[0]["values"] != trials[1]["values"]
    best = max(trials, key=lambda t: t["val_spearman"])
    assert summary["best"]["trial_id"] == best["trial_id"]
    assert summary["best"]["val_spearman"] == best["val_spearman"]
    assert summary["validation_split"] == "test"

    # The preset: the base config with exactly the best trial's values (ffn tied, heads dividing).
    assert summary["preset"] == f"{output}/best_preset.json"
    preset = TPTConfig.load(summary["preset"])
    for name in TUNED:
        assert getattr(preset, name) == best["values"][name], name
    assert preset.ffn_dim == preset.hidden_dim and preset.num_heads == 2
    assert preset == base.replace(ffn_dim=preset.hidden_dim,
                                  **{n: best["values"][n] for n in TUNED})
    assert summary["best"]["overrides"] == tuning.tuned_fields(preset, base)
    with open(f"{output}/summary.json", encoding="utf-8") as handle:
        assert json.load(handle) == summary

    # `tpt train PRESET_FILE` resolves the file to the same config.
    args = cli.build_parser().parse_args(["train", summary["preset"], "--output", "unused"])
    assert cli.resolve_config(args) == preset

    # The table: one row per trial, the best marked, rho to 4 significant digits.
    table = tuning.format_summary(summary)
    lines = table.splitlines()
    assert lines[0].split() == ["trial", *TUNED, "val_spearman"]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert set(rows) == {t["trial_id"] + ("*" if t is best else "") for t in trials}
    for trial in trials:
        row = rows[trial["trial_id"] + ("*" if trial is best else "")]
        assert row[-1] == f"{trial['val_spearman']:.4g}"
        assert row[1:3] == [str(trial["values"]["num_queries"]), str(trial["values"]["hidden_dim"])]
    assert f"preset: {summary['preset']}" in table


def test_best_model_reloads_with_its_val_spearman(search):
    base, splits, features = search["config"], search["splits"], search["features"]
    hypermodel = tuning.TPTHyperModel(base, experiment.model_intervals(base, splits["train"]),
                                      splits["train"], splits["test"], features,
                                      space=TINY_SPACE)
    tuner = tuning.make_tuner("random", hypermodel, search["output"], seed=base.seed,
                              max_trials=2, epochs=2)
    model = tuner.get_best_models(1)[0]
    assert model.config == TPTConfig.load(search["summary"]["preset"])
    results = evaluation.evaluate(model, experiment.eval_dataset(model.config, splits["test"],
                                                                 splits["train"], features))
    assert math.isclose(results["spearman"], search["summary"]["best"]["val_spearman"],
                        abs_tol=1e-6)


def test_rerun_resumes_and_different_settings_are_refused(search, tmp_path):
    base, splits, features = search["config"], search["splits"], search["features"]
    again = tuning.tune(base, splits, features, search["output"], tuner="random", max_trials=2,
                        space=TINY_SPACE, verbose=0)
    assert again["trials"] == search["summary"]["trials"]  # reloaded, nothing retrained
    with pytest.raises(ValueError, match=r"different settings \(space\)"):
        tuning.tune(base, splits, features, search["output"], max_trials=2, verbose=0)
    with pytest.raises(ValueError, match=r"different settings \(config\)"):
        tuning.tune(base.replace(rank_weight=2.0), splits, features, search["output"],
                    max_trials=2, space=TINY_SPACE, verbose=0)
    # The same seed draws the same first trial in a fresh folder (no training needed to see it).
    hypermodel = tuning.TPTHyperModel(base, experiment.model_intervals(base, splits["train"]),
                                      splits["train"], splits["test"], features, space=TINY_SPACE)
    fresh = tuning.make_tuner("random", hypermodel, str(tmp_path), seed=base.seed, max_trials=2,
                              epochs=2)
    first = fresh.oracle.create_trial("check").hyperparameters.values
    assert first == search["summary"]["trials"][0]["values"]


def test_tpt_train_accepts_the_preset(search):
    preset = search["summary"]["preset"]
    run = search["root"] / "run"
    code = cli.main(["train", preset, "--output", str(run), "--epochs", "1", "--verbose", "0",
                     "--mixed-precision", "off", "--jit-compile", "off"])
    assert code == 0
    trained = TPTConfig.load(run / "config.json")
    assert trained == TPTConfig.load(preset).replace(epochs=1)
    assert (run / "best.keras").exists() or (run / "last.keras").exists()
    assert np.isfinite(experiment.best_logged(str(run / "log.csv")))
