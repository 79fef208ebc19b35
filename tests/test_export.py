"""TF Serving export and `tpt score`: a SavedModel that loads with TensorFlow alone and scores
raw frames exactly like the Keras model does."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.io import decode
from tpt_keras.cli import main as cli
from tpt_keras import experiment
from tpt_keras.serving import export, scoring

pytestmark = pytest.mark.slow

FRESH = r"""
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
scores = []
for path in sys.argv[2:]:
    out = model.signatures["serving_default"](frames=tf.constant(np.load(path)))
    scores.append(float(out["score"]))
print(json.dumps({"scores": scores, "tpt_keras_loaded": "tpt_keras" in sys.modules,
                  "signatures": sorted(model.signatures)}))
"""


@pytest.fixture
def exported(tiny_video_export):
    """The tiny run's SavedModel, exported once by the command line (conftest.py)."""
    return tiny_video_export


def test_layout_and_signatures_listed_by_saved_model_cli(exported):
    assert os.path.isfile(os.path.join(exported, "saved_model.pb"))
    cli_tool = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    listing = subprocess.run([cli_tool, "show", "--dir", exported, "--all"], capture_output=True,
                             text=True, check=True).stdout
    assert "signature_def['serving_default']" in listing
    assert "signature_def['relative_score']" in listing
    assert "frames" in listing and "exemplar_scores" in listing
    # a model without difficulty degrees (and one group) has no difficulty input
    default = listing.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "difficulty" not in default


def test_fresh_tensorflow_only_process_gives_the_keras_models_scores(tiny_video_run, exported,
                                                                     tmp_path):
    test = tiny_video_run["splits"]["test"]
    files = []
    for sample in test:
        files.append(str(tmp_path / f"{sample.key}.npy"))
        np.save(files[-1], decode.read_frames(sample.path))
    result = subprocess.run([sys.executable, "-c", FRESH, exported, *files], capture_output=True,
                            text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert fresh["tpt_keras_loaded"] is False
    assert {"serving_default", "relative_score"} <= set(fresh["signatures"])
    # the Keras model on the same videos: the cached I3D features (made by the tf.data
    # pipeline, not by the signature), against the exemplars baked into the export
    run = experiment.load_run(tiny_video_run["run"])
    serving = export.serving_from_run(tiny_video_run["run"])
    bank_parts = np.asarray(serving.bank_parts[0])
    bank_targets = np.asarray(serving.bank_targets[0])
    from data_pipelines.io.feature_cache import FeatureCache
    from tpt_keras.ops.exemplar_scores import aggregate_exemplar_scores

    cache = FeatureCache(tiny_video_run["features"], feature_dim=None, num_clips=None)
    query_parts, _ = run.model.encode(cache.read_many([s.key for s in test]))
    expected = []
    for parts in np.asarray(query_parts):
        relative = run.model.relative_scores(bank_parts, np.repeat(parts[None], len(bank_parts), 0))
        score, _ = aggregate_exemplar_scores(np.asarray(relative)[None], bank_targets[None],
                                             np.asarray(serving.bank_mask[0])[None], [1.0], False)
        expected.append(float(score[0]))
    np.testing.assert_allclose(fresh["scores"], expected, atol=2e-3)
    assert np.std(fresh["scores"]) > 0  # different videos, different scores


def test_bad_inputs_get_clear_errors(exported):
    signature = tf.saved_model.load(exported).signatures["serving_default"]
    empty = tf.zeros([0, 32, 32, 3], tf.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="the video has no frames"):
        signature(frames=empty)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"assertion failed: \[frames must be one "
                       r"video: a uint8 tensor of shape \(frames, height, width, 3\)\]"):
        signature(frames=tf.zeros([32, 32, 3], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor"):
        signature(frames=tf.zeros([10, 32, 32, 3], tf.float32))


def test_relative_score_signature_equals_the_keras_regressor(exported, tiny_video_run):
    """relative_score(query, exemplar) from raw frames = f_r(exemplar, query) on cached features."""
    from data_pipelines.io.feature_cache import FeatureCache

    relative = tf.saved_model.load(exported).signatures["relative_score"]
    a, b = tiny_video_run["splits"]["test"][:2]
    served = [float(relative(query_frames=tf.constant(decode.read_frames(q.path)),
                             exemplar_frames=tf.constant(decode.read_frames(e.path)))["relative_score"])
              for q, e in ((a, b), (b, a), (a, a))]
    model = experiment.load_run(tiny_video_run["run"]).model
    cache = FeatureCache(tiny_video_run["features"], feature_dim=None, num_clips=None)
    parts, _ = model.encode(cache.read_many([a.key, b.key]))
    expected = [float(model.relative_scores(parts[e:e + 1], parts[q:q + 1])[0])
                for q, e in ((0, 1), (1, 0), (0, 0))]
    np.testing.assert_allclose(served, expected, atol=2e-3)


def test_score_command_writes_the_attention_picture(exported, tiny_video_run, tmp_path, capsys):
    sample = tiny_video_run["splits"]["test"][0]
    picture = str(tmp_path / "missing" / "folder" / "attention.png")  # parents are created
    assert cli.main(["score", sample.path, "--model", exported, "--picture", picture]) == 0
    out = capsys.readouterr().out
    assert out.index("score") < out.index("picture: ") and os.path.getsize(picture) > 10_000
    saved = scoring.score_video(sample.path, exported, picture=str(tmp_path / "a.png"))
    in_process = scoring.score_video(sample.path, tiny_video_run["run"], picture=str(tmp_path / "b.png"))
    assert saved["score"] == pytest.approx(in_process["score"], abs=1e-3)
    assert len(saved["exemplar_scores"]) == 10
    attention = np.array(saved["attention"])
    np.testing.assert_allclose(attention.sum(axis=0), 1.0, atol=1e-4)  # softmax over clips


def test_score_prints_the_score_first_and_defaults_to_the_current_folder(
        exported, tiny_video_run, tmp_path, capsys, monkeypatch):
    sample = tiny_video_run["splits"]["test"][0]
    monkeypatch.chdir(tmp_path)
    assert cli.main(["score", sample.path, "--model", exported]) == 0
    name = os.path.splitext(os.path.basename(sample.path.rstrip("/")))[0] + "_attention.png"
    assert os.path.isfile(tmp_path / name)  # not beside the video
    assert not os.path.exists(os.path.splitext(sample.path.rstrip("/"))[0] + "_attention.png")
    capsys.readouterr()
    (tmp_path / "blocker").write_text("a file where a folder should be")
    status = cli.main(["score", sample.path, "--model", exported, "--picture", "blocker/x.png"])
    captured = capsys.readouterr()
    assert status == 2 and "score" in captured.out and "blocker" in captured.err
    assert cli.main(["score", sample.path, "--model", exported, "--difficulty", "3"]) == 2
    assert "drop --difficulty" in capsys.readouterr().err


def test_evaluate_and_score_give_a_video_the_same_score(tiny_video_run, exported, tmp_path):
    """One exemplar rule: the per-video predictions of `tpt evaluate` equal `tpt score`'s."""
    run = experiment.load_run(tiny_video_run["run"])
    evaluated = experiment.predict_split(run)
    scorer = scoring.load_scorer(exported)
    for key, predicted in zip(evaluated["keys"], evaluated["pred"]):
        sample = next(s for s in tiny_video_run["splits"]["test"] if s.key == key)
        served = float(scorer(decode.read_frames(sample.path))["score"])
        assert served == pytest.approx(float(predicted), abs=2e-3), key


def test_evaluate_plot_and_refusals(tiny_video_run, tmp_path, capsys):
    run = tiny_video_run["run"]
    plot = str(tmp_path / "plots" / "scatter")  # no extension: .png is added and reported
    assert cli.main(["evaluate", run, "--plot", plot]) == 0
    out = capsys.readouterr().out
    assert f"scatter plot: {plot}.png" in out and os.path.isfile(plot + ".png")
    assert "scores on the judges' scale" in out
    assert cli.main(["evaluate", run, run]) == 2
    assert "given twice" in capsys.readouterr().err


def test_export_refuses_runs_without_a_video_path(tiny_synthetic_run, tmp_path, capsys):
    status = cli.main(["export", tiny_synthetic_run["run"], "--base-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "not on Kinetics I3D features" in err and "cannot be exported" in err
    assert not os.path.exists(tmp_path / "out" / "tpt" / "1")  # nothing written


def test_choose_exemplars_per_group_with_the_fill_rule():
    from data_pipelines.samples import Sample

    train = [Sample(key=f"k{i}", path="", score=10.0 + i, difficulty=d, group=f"{d:g}")
             for i, d in enumerate([2.0] * 3 + [3.0] * 12)]
    indices, mask, difficulty, groups = export.choose_exemplars(train, 10, seed=0)
    assert groups == ["2", "3"] and difficulty.tolist() == [2.0, 3.0]
    assert mask[0].tolist() == [1] * 3 + [0] * 7 and mask[1].tolist() == [1] * 10
    assert sorted(indices[0, :3]) == [0, 1, 2] and set(indices[0]) == {0, 1, 2}  # repeats, masked
    assert len(set(indices[1])) == 10 and set(indices[1]) <= set(range(3, 15))
    again = export.choose_exemplars(train, 10, seed=0)[0]
    np.testing.assert_array_equal(indices, again)
