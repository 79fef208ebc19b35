"""The user's edge: the serving signature follows the model, one exemplar rule for evaluation and
export, scales, evaluation output, `tpt_keras` imports, the Keras evaluate path."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.tfdata import pairing
from data_pipelines.samples import Sample
from tpt_keras import experiment
from tpt_keras.experiment import evaluation, score_scale
from tpt_keras.serving import export, scoring
from tpt_keras import visualize
from tpt_keras.config import get_preset
from tpt_keras.models.tpt_model import TPTModel

T, D, K, E = 4, 8, 3, 4


def _config(use_difficulty):
    return get_preset("synthetic", use_difficulty=use_difficulty, feature_dim=D, hidden_dim=D,
                      ffn_dim=D, num_heads=2, head_hidden_dim=8, num_queries=K, num_intervals=4,
                      score_max=10.0, num_exemplars=E,
                      **{"protocol.num_clips": T, "protocol.clip_len": 2, "protocol.clip_stride": 2,
                         "protocol.resize_height": 16, "protocol.resize_width": 16,
                         "protocol.crop_size": 16})


def _train(use_difficulty):
    """Group "2.0": 3 samples (difficulty 2), group "3.0": 5 samples (difficulty 3)."""
    difficulties = [2.0] * 3 + [3.0] * 5
    return [Sample(key=f"k{i}", path="", score=10.0 + i, difficulty=d if use_difficulty else 1.0,
                   group=f"{d:.1f}") for i, d in enumerate(difficulties)]


def _serving(use_difficulty, groups=None):
    keras.utils.set_random_seed(0)
    config = _config(use_difficulty)
    train = _train(use_difficulty)
    if groups is not None:  # group names of the first 3 and the last 5 samples, or of each of the 8
        names = groups if len(groups) == len(train) else [groups[0]] * 3 + [groups[1]] * 5
        train = [Sample(key=s.key, path="", score=s.score, difficulty=s.difficulty, group=name)
                 for s, name in zip(train, names)]
    model = TPTModel(config, experiment.model_intervals(config, train))
    model.encode(np.zeros((1, T, D), np.float32))
    backbone = keras.Sequential([keras.Input((2, 16, 16, 3)), keras.layers.GlobalAveragePooling3D(),
                                 keras.layers.Dense(D)])
    indices, mask, difficulty, names = export.choose_exemplars(train, E, seed=0)
    rng = np.random.default_rng(0)
    parts = rng.standard_normal(indices.shape + (K, D)).astype(np.float32)
    targets = np.array([[train[i].score for i in row] for row in indices], np.float32)
    return export.Serving(model, backbone, parts, targets, mask, difficulty,
                          config.protocol, groups=names,
                          difficulty_bounds=export.difficulty_range([s.difficulty for s in train]),
                          groups_are_difficulties=export.groups_are_difficulties(train))


# The kinds of model a user exports: (use_difficulty, group names of the 3 + 5 training samples).
KINDS = {"no_dd": (False, ["all", "all"]), "dd": (True, None), "groups": (False, ["a", "b"]),
         "dd_one_group": (True, ["all", "all"]), "finediving": (True, ["205b"] * 4 + ["305b"] * 4)}  # 305b: difficulties 2 and 3


def _serving_of(kind):
    use_difficulty, groups = KINDS[kind]
    return _serving(use_difficulty, groups)


FRAMES = tf.constant(np.random.default_rng(1).integers(0, 255, (12, 20, 24, 3)), tf.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every kind of model exported once, as `tpt export` writes it (``tpt_export.json`` too):
    ``{kind: SavedModel folder}``."""
    import json

    root = tmp_path_factory.mktemp("exported")
    paths = {}
    for kind in KINDS:
        serving = _serving_of(kind)
        paths[kind] = export.export_serving(serving, str(root / kind))
        with open(os.path.join(paths[kind], "tpt_export.json"), "w", encoding="utf-8") as handle:
            json.dump(export.export_info(serving, "run", "best"), handle)
    return paths


# ------------------------------------------------------------------ signature inputs (item 16, 12.4)
def test_difficulty_model_requires_a_sane_difficulty():
    serving = _serving(True)
    assert serving.inputs == ["frames", "difficulty"]
    assert np.isfinite(float(serving.score(FRAMES, tf.constant([2.5]))["score"]))
    # the named check runs before anything reshapes the empty input
    with pytest.raises(tf.errors.InvalidArgumentError, match="pass one difficulty, difficulty=\\[DD\\]"):
        serving.score(FRAMES, tf.zeros([0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="difficulty must be finite"):
        serving.score(FRAMES, tf.constant([np.inf]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="difficulty must be finite"):
        serving.score(FRAMES, tf.constant([np.nan]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be > 0"):
        serving.score(FRAMES, tf.constant([0.0]))
    # training difficulties 2 and 3: accepted [1, 6]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside \[1, 6\]"):
        serving.score(FRAMES, tf.constant([1e30]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside \[1, 6\]"):
        serving.score(FRAMES, tf.constant([0.9]))


def test_model_without_difficulty_takes_frames_only_or_a_group():
    plain = _serving(False, groups=["all", "all"])
    assert plain.inputs == ["frames"] and plain.groups == ["all"]
    assert np.isfinite(float(plain.score(FRAMES)["score"]))
    grouped = _serving(False, groups=["a", "b"])
    assert grouped.inputs == ["frames", "group"] and grouped.groups == ["a", "b"]
    a = grouped.score(FRAMES, tf.constant("a"))
    b = grouped.score(FRAMES, tf.constant("b"))
    assert len(a["exemplar_scores"]) == 3 and len(b["exemplar_scores"]) == 4  # 3 and 5 members, E=4
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown group: .* a, b"):
        grouped.score(FRAMES, tf.constant("c"))


@pytest.mark.slow
def test_saved_model_signature_inputs_follow_the_model(exported):
    for kind, expected in (("dd", {"frames", "difficulty"}), ("no_dd", {"frames"})):
        signature = tf.saved_model.load(exported[kind]).signatures["serving_default"]
        assert set(signature.structured_input_signature[1]) == expected
        if kind == "dd":
            with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
                signature(frames=FRAMES, difficulty=tf.constant([1e30]))


def test_an_export_is_loaded_once_for_video_after_video(exported, tmp_path, monkeypatch):
    import shutil

    from tpt_keras.serving import client

    loads, real = [], client.load
    monkeypatch.setattr(client, "load", lambda path: loads.append(path) or real(path))
    scoring._load_saved_scorer.cache_clear()
    model = tmp_path / "model"
    shutil.copytree(exported["no_dd"], model)
    first = scoring.load_scorer(str(model))
    assert scoring.load_scorer(str(model)) is first and len(loads) == 1
    shutil.rmtree(model)  # another model written at the same place: loaded again
    shutil.copytree(exported["dd"], model)
    assert sorted(scoring.load_scorer(str(model)).inputs) == ["difficulty", "frames"]
    assert len(loads) == 2


@pytest.mark.parametrize("inputs, difficulty, group, message", [
    (["frames", "difficulty"], None, None, "pass --difficulty DD \\(trained on 2–3\\)"),
    (["frames", "difficulty"], float("inf"), None, "finite number > 0"),
    (["frames", "difficulty"], 1e30, None, "outside the accepted \\[1, 6\\]"),
    (["frames", "difficulty"], 2.5, "a", "by the difficulty: drop --group"),
    (["frames"], 2.5, None, "without difficulty degrees: drop --difficulty"),
    (["frames", "group"], None, None, "pass --group, one of a, b"),
    (["frames", "group"], None, "c", "--group 'c' is not a group of this model's training set: it must be one of a, b"),
    (["frames", "difficulty", "group"], 2.5, "zzz", "--group 'zzz' is not a group .*: it must be one of a, b"),
    (["frames"], None, "a", "from its only group 'all': drop --group"),
])
def test_score_arguments_are_checked_before_any_work(inputs, difficulty, group, message):
    groups = ["a", "b"] if "group" in inputs else ["all"]
    with pytest.raises(ValueError, match=message):
        scoring.check_arguments(inputs, groups, difficulty, group, (1.0, 6.0))
    scoring.check_arguments(["frames", "difficulty"], ["2.0"], 2.5, None, (1.0, 6.0))  # fine


# ------------------------------------------------------------------ one exemplar rule
def test_every_test_video_of_a_group_votes_with_the_exports_set():
    train = _train(True) + [Sample(key="x", path="", score=1.0, difficulty=3.0, group="3.0")]
    test = [Sample(key=f"t{i}", path="", score=1.0, difficulty=d, group=f"{d:.1f}", split="test")
            for i, d in enumerate([3.0, 2.0, 3.0, 3.0, 2.0])]
    chosen = pairing.test_exemplars(test, train, E, seed=7)
    indices, mask, difficulty, groups = export.choose_exemplars(train, E, seed=7)
    assert groups == ["2.0", "3.0"] and difficulty.tolist() == [2.0, 3.0]
    for row, sample in enumerate(test):
        np.testing.assert_array_equal(chosen.indices[row], indices[groups.index(sample.group)])
        np.testing.assert_array_equal(chosen.mask[row], mask[groups.index(sample.group)])
    # the set of a group depends on (seed, group) only: not on test order or other groups
    alone = pairing.test_exemplars(test[3:4], train, E, seed=7)
    np.testing.assert_array_equal(alone.indices[0], chosen.indices[0])
    only_three = train[3:]  # without group "2.0": group "3.0" keeps the same videos
    moved = pairing.test_exemplars(test[:1], only_three, E, seed=7)
    assert [only_three[i].key for i in moved.indices[0]] == [train[i].key for i in chosen.indices[0]]
    assert mask[0].tolist() == [1, 1, 1, 0]  # group 2.0 has 3 members: fill rule


# ------------------------------------------------------------------ scales
def test_judges_scale_inverts_the_aqa7_normalisation():
    # diving range 21.6–102.6: 50 → 21.6 + 0.5 × 81 = 62.1; gym_vault 12.3–16.87: 0 → 12.3
    np.testing.assert_allclose(score_scale.to_judges([50.0, 0.0], ["diving", "gym_vault"], "aqa7"),
                               [62.1, 12.3])
    np.testing.assert_allclose(score_scale.to_judges([50.0], ["all"], "mtl_aqa"), [50.0])
    assert "per-class" in score_scale.describe("normalised", "aqa7")
    assert score_scale.describe("judges", "jigsaws") == "judges' scale"


# ------------------------------------------------------------------ evaluate output (items 15, 22)
def test_pictures_are_written_where_they_are_reported(tmp_path):
    written = visualize.plot_scatter([1.0, 2.0, 3.0], [1.5, 2.0, 2.5], str(tmp_path / "new" / "plot"))
    assert written == str(tmp_path / "new" / "plot.png") and os.path.getsize(written) > 1000
    panels = visualize.plot_scatter_panels([([1.0, 2.0], [1.0, 2.5], "a"), ([3.0, 1.0], [2.0, 2.0], "b")],
                                           str(tmp_path / "panels.png"))
    assert panels == str(tmp_path / "panels.png") and os.path.isfile(panels)


def test_run_names_and_the_runs_that_may_be_averaged(tmp_path):
    folds = [get_preset("jigsaws", fold=f) for f in (0, 1)]
    assert [experiment.run_name(c) for c in folds] == ["jigsaws suturing fold 0", "jigsaws suturing fold 1"]
    assert experiment.run_name(get_preset("aqa7", action_class="diving")) == "aqa7 diving"
    assert experiment.run_name(get_preset("mtl_aqa_dd")) == "mtl_aqa (DD)"
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    evaluation._check_runs([a, b], folds)  # two folds: fine
    with pytest.raises(ValueError, match="different datasets"):
        evaluation._check_runs([a, b], [get_preset("mtl_aqa_dd"), folds[0]])
    with pytest.raises(ValueError, match="given twice"):
        evaluation._check_runs([a, b, a + "/"], folds + folds[:1])
    with pytest.raises(ValueError, match="both jigsaws suturing fold 0"):
        evaluation._check_runs([a, b], [folds[0], folds[0]])
    with pytest.raises(ValueError, match="several mtl_aqa runs"):
        evaluation._check_runs([a, b], [get_preset("mtl_aqa_dd")] * 2)


def test_format_results_names_rows_scale_and_plots():
    row = dict(name="jigsaws suturing fold 0", checkpoint="best", samples=10, spearman=0.5,
               r_l2=1.0, plot="p.png", scale_description="judges' scale", training_log=None,
               skipped=[{"path": "v.mp4", "error": "corrupt"}])
    text = experiment.format_results({"runs": [row, {**row, "name": "jigsaws suturing fold 1"}],
                                      "average": {"spearman": 0.5, "r_l2": 1.0}})
    assert "jigsaws suturing fold 0" in text and "jigsaws suturing fold 1" in text
    assert "scores on the judges' scale" in text and "scatter plot: p.png" in text
    assert "skipped unreadable v.mp4: corrupt" in text


# ------------------------------------------------------------------ unreadable test video
def test_unreadable_test_video_is_named_or_skipped(tmp_path):
    from data_pipelines.io import decode

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    config = _config(False)
    run = experiment.Run(experiment.RunPaths(str(tmp_path)), config, None,
                         {"test": [Sample(key="b", path=str(bad), score=1.0)]}, {})
    with pytest.raises(ValueError, match=r"bad\.mp4: corrupt or unreadable video") as error:
        list(evaluation._videos(run, run.splits["test"], "query", 1))
    assert "\n" not in str(error.value)
    log = decode.SkipLog()
    assert list(evaluation._videos(run, run.splits["test"], "query", 1, log)) == []
    assert log.items[0][0] == str(bad)


# ------------------------------------------------------------------ Keras evaluate path
def test_keras_evaluate_on_a_test_protocol_dataset_points_at_validation_spearman():
    config = _config(True)
    model = TPTModel(config, experiment.model_intervals(config, _train(True)))
    model.compile()
    rng = np.random.default_rng(0)
    batch = {"query": rng.standard_normal((2, T, D)).astype(np.float32),
             "exemplars": rng.standard_normal((2, 3, T, D)).astype(np.float32),
             "exemplar_scores": np.ones((2, 3), np.float32), "exemplar_mask": np.ones((2, 3), np.float32),
             "query_difficulty": np.ones(2, np.float32), "score": np.ones(2, np.float32)}
    dataset = tf.data.Dataset.from_tensors(batch)
    with pytest.raises(ValueError, match="ValidationSpearman"):
        model.evaluate(dataset, verbose=0)


# ------------------------------------------------------------------ public loader
def test_public_loader_round_trips_a_model(tmp_path):
    import tpt_keras

    config = _config(True)
    model = TPTModel(config, experiment.model_intervals(config, _train(True)))
    model.encode(np.zeros((1, T, D), np.float32))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = tpt_keras.load_model(path)
    assert type(loaded).__name__ == "TPTModel" and loaded.config == model.config
    probe = np.random.default_rng(0).standard_normal((2, T, D)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded.encode(probe)[0]), np.asarray(model.encode(probe)[0]),
                               atol=1e-6)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(open(path, "rb").read()[:300])
    with pytest.raises(ValueError, match="broken.keras: not a readable .keras archive"):
        tpt_keras.load_model(str(broken))


# ------------------------------------------------------------------ refusals a caller can read
def _first_line(call):
    from tpt_keras.serving.client import ServingError

    with pytest.raises(ServingError) as caught:
        call()
    text = str(caught.value)
    assert len(text) < 300  # a sentence, never a tensor dump
    return text.splitlines()[0]


def test_every_refusal_of_the_signature_is_one_named_sentence():
    from tpt_keras.serving.client import call_signature

    serving = _serving_of("finediving")
    frames, good = FRAMES, tf.constant([2.5])

    def score(**inputs):
        return lambda: call_signature(serving.score, {"frames": frames, "difficulty": good,
                                                      "group": tf.constant(""), **inputs})

    # a 0-frame video is refused before anything gathers frames (it was "indices[..] = -1")
    assert _first_line(score(frames=tf.zeros([0, 20, 24, 3], tf.uint8))) == "the video has no frames"
    rank = "frames must be one video: a uint8 tensor of shape (frames, height, width, 3)"
    assert _first_line(score(frames=tf.zeros([20, 24, 3], tf.uint8))) == rank
    assert _first_line(score(frames=tf.zeros([2, 5, 20, 24, 3], tf.uint8))) == rank
    assert _first_line(score(frames=tf.zeros([5, 20, 24, 4], tf.uint8))) == rank
    assert _first_line(score(frames=tf.zeros([5, 1, 24, 3], tf.uint8))) == "frames are smaller than 2×2 pixels"
    assert _first_line(score(difficulty=tf.zeros([0]))) == (
        "this model was trained with difficulty degrees: pass one difficulty, difficulty=[DD]")
    assert _first_line(score(difficulty=tf.constant([np.nan]))) == "difficulty must be finite"
    assert _first_line(score(difficulty=tf.constant([-1.0]))) == "difficulty must be > 0"
    assert _first_line(score(difficulty=tf.constant([9.0]))) == (  # trained on 2 and 3: [1, 6]
        "difficulty is outside [1, 6], half the smallest to twice the largest difficulty of the "
        "training set")
    assert _first_line(score(group=tf.constant("9999z"))) == (
        "unknown group: it must be one of the training groups 205b, 305b")
    assert _first_line(score(group=tf.constant(["205b", "305b"]))) == "group must be one group name (a string scalar)"
    # the same inputs, well formed, score; a scalar difficulty is one difficulty too
    assert np.isfinite(float(call_signature(serving.score, {"frames": frames, "difficulty": tf.constant(2.5),
                                                            "group": tf.constant("205b")})["score"]))


def test_only_inputs_with_a_choice_are_inputs():
    """One group: no group input (the README's score(frames=…, difficulty=…) on a custom DD
    model); several dive numbers beside the difficulty: a group input."""
    expected = {"no_dd": ["frames"], "dd": ["frames", "difficulty"], "groups": ["frames", "group"],
                "dd_one_group": ["frames", "difficulty"],
                "finediving": ["frames", "difficulty", "group"]}
    assert {kind: _serving_of(kind).inputs for kind in KINDS} == expected


def test_scoring_the_sampled_frames_equals_scoring_the_whole_video(tmp_path):
    """`tpt score` decodes only the frames the protocol takes; the signature samples them again
    (all of them) and gives the score of the whole video, for short and long videos."""
    from data_pipelines.io import decode

    serving = _serving_of("dd")
    rng = np.random.default_rng(2)
    for length in (5, 12, 40):  # shorter than the 8 sampled frames, and longer
        video = rng.integers(0, 255, (length, 20, 24, 3)).astype(np.uint8)
        path = str(tmp_path / f"v{length}")
        decode.write_frame_folder(path, video, pattern="{:03d}.png")
        frames, numbers, _ = scoring.read_test_frames(path, serving.protocol.to_dict())
        assert frames.shape[0] == serving.protocol.num_frames == 8
        np.testing.assert_array_equal(numbers, np.floor(np.linspace(0, length - 1, 8)))  # linspace
        np.testing.assert_array_equal(frames, video[numbers])
        whole = serving.score(tf.constant(video), tf.constant([2.5]))
        sampled = serving.score(tf.constant(frames), tf.constant([2.5]))
        assert float(whole["score"]) == float(sampled["score"])
        np.testing.assert_array_equal(whole["attention"], sampled["attention"])


def test_export_is_atomic_and_can_be_rerun(tmp_path, monkeypatch):
    import errno

    serving = _serving_of("dd")
    monkeypatch.setattr(export, "serving_from_run", lambda *args, **kwargs: serving)
    real = export.export_serving

    def full_disk(module, path):
        real(module, path)  # the SavedModel is written, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "export_serving", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export.export_run("run", name="m", version=1, base_dir=str(tmp_path))
    assert os.listdir(tmp_path / "m") == []  # no version folder, no temporary folder
    monkeypatch.setattr(export, "export_serving", real)
    path = export.export_run("run", name="m", version=1, base_dir=str(tmp_path))
    assert os.listdir(tmp_path / "m") == ["1"] and os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert sorted(os.listdir(path)) == sorted(["assets", "fingerprint.pb", "saved_model.pb",
                                               "tpt_export.json", "variables"])


def test_runs_on_precomputed_features_are_refused_with_the_reason():
    export.check_video_path("runs/x", {"features": "f"}, "i3d_kinetics400_mixed5c", "i3d_kinetics400_mixed5c")  # fine
    with pytest.raises(ValueError, match=r"^runs/x was trained on precomputed features \(computed "
                       r"outside tpt-keras\), not on Kinetics I3D features: .* cannot be exported"):
        export.check_video_path("runs/x", {"features_source": "precomputed"}, None, "i3d_kinetics400_mixed5c")
    with pytest.raises(ValueError, match="features made by 'resnet'"):
        export.check_video_path("runs/x", {}, "resnet", "i3d_kinetics400_mixed5c")


def test_the_signatures_temporal_rule_equals_numpys_in_a_graph():
    """The served graph samples frames as evaluation does (numpy), for every length: tf.linspace
    inside a graph gave frame 4 for 5 (floor of 4.999…) at 8 of 8 frames."""
    from data_pipelines.video import protocol as protocol_lib
    from data_pipelines.video import video_ops

    for spec in (_config(True).protocol, get_preset("custom").protocol,
                 get_preset("mtl_aqa_dd").protocol):
        graph = tf.function(lambda frames: video_ops.tf_temporal_indices(tf.shape(frames)[0], spec),
                            input_signature=[tf.TensorSpec([None], tf.uint8)])
        for length in list(range(1, 260)) + [1000, 4093]:
            np.testing.assert_array_equal(graph(tf.zeros([length], tf.uint8)).numpy(),
                                          protocol_lib.temporal_indices(length, spec, spec.test_query_start),
                                          err_msg=f"{length} frames")


# ------------------------------------------------------------------ a collapsed model is named
def test_collapse_threshold_by_hand():
    from tpt_keras.ops import metrics

    true = [60.0, 70.0, 80.0, 90.0]  # population std √125 = 11.180; 0.1 of it: 1.118
    assert metrics.collapse_warning([80.0, 82.0, 80.0, 82.0], true).startswith(  # std 1.0 < 1.118
        "collapsed predictions: their spread is 0.089 of the targets' (std 1 vs 11.18, below 0.1)")
    assert metrics.collapse_warning([79.4, 82.6, 79.4, 82.6], true) is None  # std 1.6 ≥ 1.118
    assert metrics.collapse_warning([81.46] * 4, true) is not None  # constant: spread 0
    assert metrics.collapse_warning([61.0, 69.0, 81.0, 88.0], true) is None
    assert abs(metrics.spread_ratio([80.0, 82.0, 80.0, 82.0], true) - 1.0 / 125 ** 0.5) < 1e-12


def test_evaluate_warns_on_a_collapsed_model_and_says_so_in_the_plot(tmp_path, monkeypatch):
    """A model whose head outputs a constant (every video 81.46, as seen on a real run)."""
    from tpt_keras.experiment import report
    from tpt_keras.runtime import run_folder

    run_dir = str(tmp_path / "run")
    config = get_preset("synthetic")
    paths = run_folder.RunPaths(run_dir)
    os.makedirs(run_dir)
    run_folder.write_json(paths.config, config.to_dict())
    true = np.array([55.0, 62.0, 70.0, 78.0, 85.0, 91.0])
    pred = 81.46 + np.array([0.0, 0.01, -0.01, 0.02, 0.0, 0.01])  # ρ 0.26-ish, spread 0.001
    fake = evaluation.Run(paths, config, None, {}, {})
    monkeypatch.setattr(evaluation, "load_run", lambda *args, **kwargs: fake)
    monkeypatch.setattr(evaluation, "predict_split", lambda *args, **kwargs: {
        "pred": pred, "true": true, "groups": ["all"] * 6, "attention": np.zeros((6, 1, 4, 1)),
        "boundaries": [None] * 6, "keys": [str(i) for i in range(6)], "skipped": []})
    titles = []
    real = visualize.plot_scatter
    monkeypatch.setattr(visualize, "plot_scatter",
                        lambda p, t, path, title="": titles.append(title) or real(p, t, path, title))
    results = evaluation.evaluate_run(run_dir)
    row = results["runs"][0]
    assert row["collapse"].startswith("collapsed predictions: their spread is 0.001 of the targets'")
    assert "warning: " + row["name"] + ": collapsed predictions" in report.format_results(results)
    assert titles and "\nCOLLAPSED: prediction spread 0.001 of the targets'" in titles[0]
    assert os.path.isfile(row["plot"])


# ------------------------------------------------------------------ the README's serving calls
def _readme(name="README.md"):
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), name), encoding="utf-8") as handle:
        return handle.read()


# The README's Python calls, as written there, and the kinds of model each is for.
README_CALLS = {
    "out = score(frames=uint8_frames)": ["no_dd"],
    "out = score(frames=uint8_frames, difficulty=tf.constant([3.2]))": ["dd", "dd_one_group"],
    'out = score(frames=uint8_frames, group=tf.constant("b"))': ["groups"],
    'out = score(frames=uint8_frames, difficulty=tf.constant([3.0]), group=tf.constant("205b"))': ["finediving"],
}
# kind → the REST body of docs/serving.md (by its position in its JSON block)
README_BODIES = {"no_dd": 0, "dd": 1, "dd_one_group": 1, "groups": 2, "finediving": 3}

FRESH_README = r"""
import json, sys
import numpy as np
import tensorflow as tf
from tpt_keras.serving import client

uint8_frames = tf.constant(np.random.default_rng(1).integers(0, 255, (12, 20, 24, 3)), tf.uint8)
report = {}
for kind, (path, calls) in json.loads(sys.argv[1]).items():
    served = tf.saved_model.load(path)
    score = served.signatures["serving_default"]
    scores = []
    for call in calls:
        exec(call)
        scores.append(float(out["score"]))
    wrapped = client.load(path)
    refusals = {}
    good = {name: value for name, value in (("difficulty", 2.5), ("group", wrapped.groups[0]))
            if name in wrapped.inputs}
    for name, kwargs in [("no frames", {**good, "frames": np.zeros((0, 20, 24, 3), np.uint8)}),
                         ("rank", {**good, "frames": np.zeros((20, 24, 3), np.uint8)}),
                         ("dtype", {**good, "frames": np.zeros((4, 20, 24, 3), np.float32)}),
                         ("frames only", {"frames": uint8_frames}),
                         ("no group", {"frames": uint8_frames, "difficulty": 2.5}),
                         ("bad difficulty", {"frames": uint8_frames, "difficulty": float("nan"), "group": "a"})]:
        try:
            wrapped(**kwargs)
            refusals[name] = None
        except client.ServingError as error:
            refusals[name] = str(error)
    try:
        score(frames=tf.zeros([0, 20, 24, 3], tf.uint8), **({"difficulty": tf.constant([2.5])} if "difficulty" in wrapped.inputs else {}), **({"group": tf.constant("a")} if "group" in wrapped.inputs else {}))
        raw = None
    except tf.errors.InvalidArgumentError as error:
        raw = str(error)
    report[kind] = {"scores": scores, "refusals": refusals, "raw": raw}
print(json.dumps({"report": report}))
"""


@pytest.mark.slow
def test_readme_calls_each_kind_of_model_in_a_fresh_tensorflow_process(exported):
    """Every Python call of the README on the kind of model it is for, in a process that imports
    TensorFlow, numpy and the serving client only; each refusal's first line."""
    import json
    import subprocess
    import sys

    readme = _readme()
    for call in README_CALLS:
        assert call in readme
    paths = {kind: (path, [call for call, kinds in README_CALLS.items() if kind in kinds])
             for kind, path in exported.items()}
    result = subprocess.run([sys.executable, "-c", FRESH_README, json.dumps(paths)],
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    report = fresh["report"]
    for kind, row in report.items():
        assert len(row["scores"]) == 1 and np.isfinite(row["scores"][0]), kind
        refusals = row["refusals"]
        assert refusals["no frames"] == "the video has no frames"
        assert refusals["rank"] == "frames must be one video: a uint8 tensor of shape (frames, height, width, 3)"
        assert refusals["dtype"] == "frames must be uint8 (values 0–255), got float32"
        # the raw signature: TensorFlow's framing, the sentence inside, no tensor dump
        assert "assertion failed: [the video has no frames]" in row["raw"] and len(row["raw"]) < 1000
    difficulty = "this model was trained with difficulty degrees: pass difficulty=DD (the dive's degree of difficulty)"
    assert report["dd"]["refusals"]["frames only"] == difficulty
    assert report["dd_one_group"]["refusals"]["frames only"] == difficulty
    assert report["finediving"]["refusals"]["frames only"] == difficulty
    assert report["groups"]["refusals"]["frames only"] == (
        "this model's exemplars depend on the video's group: pass group=, one of a, b")
    assert report["no_dd"]["refusals"]["frames only"] is None  # frames are all it takes
    assert report["dd_one_group"]["refusals"]["no group"] is None  # one group: not an input
    assert report["finediving"]["refusals"]["no group"] is None  # the nearest difficulty's group
    assert report["no_dd"]["refusals"]["no group"] == (
        "this model was trained without difficulty degrees: drop difficulty")
    assert report["finediving"]["refusals"]["bad difficulty"] == "difficulty must be finite"  # checked first
    assert report["dd"]["refusals"]["bad difficulty"] == "this model picks the group by the difficulty: drop group"
    assert report["no_dd"]["refusals"]["bad difficulty"] == "this model was trained without difficulty degrees: drop difficulty"
    assert report["dd_one_group"]["refusals"]["bad difficulty"] == "this model has one group ('all'): drop group"


def rest_inputs(body: dict, signature) -> dict:
    """TF Serving's REST rules for a columnar request (``{"inputs": {name: value}}``): each value
    a JSON scalar or nested list, turned into a tensor of the dtype the signature declares for
    that name (strings as they are; ``{"b64": …}`` would be bytes); the row form is not used."""
    import base64

    assert set(body) <= {"signature_name", "inputs"} and isinstance(body["inputs"], dict)
    specs = signature.structured_input_signature[1]
    assert set(body["inputs"]) <= set(specs), f"unknown inputs {set(body['inputs']) - set(specs)}"
    tensors = {}
    for name, value in body["inputs"].items():
        dtype = specs[name].dtype
        if dtype == tf.string:
            value = base64.b64decode(value["b64"]) if isinstance(value, dict) else value
            tensors[name] = tf.constant(value, tf.string)
        else:
            tensors[name] = tf.constant(np.array(value, dtype=dtype.as_numpy_dtype))
    return tensors


@pytest.mark.slow
def test_readme_rest_bodies_score_through_the_json_rules(exported):
    import json

    block = _readme("docs/serving.md").split("**TF Serving's REST API.**")[1].split("```json")[1].split("```")[0]
    bodies = [json.loads(line) for line in block.strip().splitlines()]
    assert len(bodies) == 4
    for kind, index in README_BODIES.items():
        body = json.loads(json.dumps(bodies[index]))  # what travels: JSON text
        signature = tf.saved_model.load(exported[kind]).signatures["serving_default"]
        assert set(body["inputs"]) == set(signature.structured_input_signature[1]), kind
        out = signature(**rest_inputs(body, signature))
        assert np.isfinite(float(out["score"])), kind
        assert out["attention"].shape == (T, K)


def test_attention_picture_clip_axis_carries_frames_and_seconds(tmp_path):
    assert visualize.clip_tick_labels(3, [4, 9, 14], [0.16, 0.36, 0.56]) == [
        "0\nf4\n0.2s", "1\nf9\n0.4s", "2\nf14\n0.6s"]
    assert visualize.clip_tick_labels(2, [4, 9]) == ["0\nf4", "1\nf9"]
    assert visualize.clip_axis_label([4], [0.1]) == "clip / middle frame (f) / time (s)"
    assert visualize.COLOUR_BAR_LABEL == "attention weight (softmax over clips)"
    attention = np.full((4, 2), 0.25)
    for band in (None, [1.5]):
        path = visualize.plot_attention(attention, str(tmp_path / f"a{band}.png"),
                                        clip_frames=np.zeros((4, 8, 8, 3), np.uint8),
                                        clip_frame_numbers=[1, 3, 5, 7], clip_seconds=[0.04, 0.12, 0.2, 0.28],
                                        step_boundaries=band, step_labels=["Inward", "Entry"] if band else None)
        assert os.path.getsize(path) > 5000
