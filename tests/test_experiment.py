"""`tpt train` / `tpt evaluate` on tiny data: run folders, resume after a kill, evaluation."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from tpt_keras.cli import main as cli
from tpt_keras import experiment
from tpt_keras.runtime import backup
from tpt_keras.config import TPTConfig, get_preset


class _Killed(Exception):
    pass


class _KillAfterEpoch(keras.callbacks.Callback):
    """Simulates a killed process: raises once the given epoch's end has been handled."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed(f"killed after epoch {epoch}")


def _tiny(epochs=4):
    return get_preset("synthetic", epochs=epochs, feature_dim=16, hidden_dim=16, ffn_dim=16,
                      head_hidden_dim=16, batch_size=16)


def _splits(tmp_path, config):
    return experiment.synthetic_splits(config, str(tmp_path / "cache"), num_train=64, num_test=24)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    config = _tiny(epochs=4)
    splits = _splits(tmp_path, config)
    cache = str(tmp_path / "cache")
    whole = experiment.train(config, splits, str(tmp_path / "whole"), features_dir=cache, verbose=0)

    killed_dir = str(tmp_path / "killed")
    with pytest.raises(_Killed):
        experiment.train(config, splits, killed_dir, features_dir=cache, verbose=0,
                         extra_callbacks=[_KillAfterEpoch(1)])
    assert not os.path.exists(os.path.join(killed_dir, "last.keras"))
    assert backup.backup_epoch(os.path.join(killed_dir, "backup")) >= 1
    resumed = experiment.train(config, splits, killed_dir, features_dir=cache, verbose=0)

    a = experiment.load_run(str(tmp_path / "whole"), "last").model
    b = experiment.load_run(killed_dir, "last").model
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 4 * 4
    for va, vb in zip(a.weights, b.weights):
        if va.path.endswith("key/bias"):
            # key·query + bias·query is constant over time, so the softmax over time ignores the
            # key bias: its gradient is float round-off that Adam normalises to lr-sized steps.
            # In this process TensorFlow keeps its default inter-op threads, whose round-off
            # differs between two runs; `tpt train` makes runs bit-identical, tested in
            # test_run_folder.py in fresh processes. Nothing else may differ here.
            continue
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), rtol=1e-5, atol=1e-6,
                                   err_msg=va.path)
    assert resumed["last"] == pytest.approx(whole["last"])
    with open(os.path.join(killed_dir, "log.csv")) as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [0, 1, 2, 3]  # every epoch logged once


def test_a_finished_run_is_not_trained_again_and_a_changed_config_is_refused(tmp_path):
    config = _tiny(epochs=1)
    splits = _splits(tmp_path, config)
    run = str(tmp_path / "run")
    first = experiment.train(config, splits, run, features_dir=str(tmp_path / "cache"), verbose=0)
    stamp = os.path.getmtime(os.path.join(run, "last.keras"))
    again = experiment.train(config, splits, run, features_dir=str(tmp_path / "cache"), verbose=0)
    assert again == first and os.path.getmtime(os.path.join(run, "last.keras")) == stamp
    with pytest.raises(ValueError, match="different configuration"):
        experiment.train(config.replace(rank_margin=1.0), splits, run,
                         features_dir=str(tmp_path / "cache"), verbose=0)


def test_train_and_evaluate_commands(tmp_path, capsys):
    run = str(tmp_path / "run")
    status = cli.main(["train", "synthetic", "--output", run, "--epochs", "2", "--verbose", "0",
                       "--set", "feature_dim=16", "--set", "hidden_dim=16", "--set", "ffn_dim=16"])
    assert status == 0
    saved = TPTConfig.load(os.path.join(run, "config.json"))
    assert saved.epochs == 2 and saved.hidden_dim == 16  # the resolved config beside the weights
    for name in ("best.keras", "last.keras", "log.csv", "samples.json"):
        assert os.path.exists(os.path.join(run, name)), name
    capsys.readouterr()
    plot = str(tmp_path / "scatter.png")
    assert cli.main(["evaluate", run, "--checkpoint", "last", "--json", "--plot", plot]) == 0
    results = json.loads(capsys.readouterr().out)
    row = results["runs"][0]
    assert row["samples"] == 150 and -1 <= row["spearman"] <= 1 and row["r_l2"] > 0
    assert os.path.getsize(plot) > 5_000
    # the bank evaluation reproduces the validation numbers logged during training
    assert row["spearman"] == pytest.approx(row["training_log"]["last"]["spearman"], abs=1e-6)
    assert row["r_l2"] == pytest.approx(row["training_log"]["last"]["r_l2"], rel=1e-4)
    # several runs are averaged only as AQA-7 classes / JIGSAWS folds; one run twice is refused
    assert cli.main(["evaluate", run, run, "--checkpoint", "last", "--json"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_bank_predictions_equal_predict_step(tmp_path):
    """The exemplar bank (exemplars encoded once) gives predict_step's scores."""
    config = _tiny(epochs=1)
    splits = _splits(tmp_path, config)
    cache = str(tmp_path / "cache")
    run_dir = str(tmp_path / "run")
    experiment.train(config, splits, run_dir, features_dir=cache, verbose=0)
    run = experiment.load_run(run_dir, "last")
    banked = experiment.predict_split(run)
    dataset = experiment.eval_dataset(config, splits["test"], splits["train"], cache, batch_size=5)
    direct = np.concatenate([np.asarray(run.model.predict_on_batch(b)["score"]) for b in dataset])
    np.testing.assert_allclose(banked["pred"], direct, atol=1e-4)


def test_clear_errors_for_bad_command_lines(tmp_path, capsys):
    assert cli.main(["train", "nonsense", "--output", str(tmp_path / "r")]) == 2
    assert "unknown preset 'nonsense'" in capsys.readouterr().err
    assert cli.main(["train", "mtl_aqa_dd", "--output", str(tmp_path / "r")]) == 2
    assert "needs --annotations" in capsys.readouterr().err
    assert cli.main(["train", "synthetic", "--output", str(tmp_path / "r"),
                     "--set", "hiden_dim=3"]) == 2
    assert "did you mean 'hidden_dim'" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.slow
def test_extract_features_command_reports_bad_videos_and_resumes(tmp_path, capsys):
    from data_pipelines.synthetic import videos as synthetic_videos
    from data_pipelines.io.feature_cache import FeatureCache

    manifest = synthetic_videos.write_synthetic_video_dataset(
        str(tmp_path / "videos"), num_train=2, num_test=2, size=32, seed=5, progress=False)
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with open(manifest, "a") as handle:
        handle.write("broken.mp4,50.0,train\n")
    cache = str(tmp_path / "cache")
    argv = ["extract-features", "custom", "--manifest", manifest, "--cache", cache,
            "--set", "protocol.resize_height=32", "--set", "protocol.resize_width=32",
            "--set", "protocol.crop_size=32"]
    assert cli.main(argv) == 2
    assert "broken.mp4" in capsys.readouterr().err
    assert cli.main(argv + ["--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "1 skipped" in out and "broken.mp4" in out
    features = FeatureCache(cache, feature_dim=None, num_clips=None)
    assert len(features.keys()) == 4 and features.read(features.keys()[0]).shape == (20, 1024)
    assert cli.main(argv + ["--skip-bad"]) == 0  # resumes: nothing left to extract
    assert "0 videos extracted, 4 already cached" in capsys.readouterr().out


@pytest.mark.slow
def test_train_command_mirrored_over_two_logical_cpus(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tpt_keras.cli.main", "train", "synthetic", "--output",
         str(tmp_path / "run"), "--epochs", "1", "--verbose", "0", "--strategy", "mirrored",
         "--logical-cpus", "2", "--set", "feature_dim=16", "--set", "hidden_dim=16",
         "--set", "ffn_dim=16"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MirroredStrategy (2 replicas)" in result.stdout
    assert os.path.exists(tmp_path / "run" / "last.keras")


@pytest.mark.slow
def test_end_to_end_training_fine_tunes_i3d_with_frozen_bn_statistics(tiny_video_run, tmp_path):
    """Frames → Kinetics I3D (BN statistics frozen, beta trained) → TPT, one epoch."""
    config = tiny_video_run["config"].replace(backbone="i3d", epochs=1, batch_size=2,
                                              num_exemplars=3)
    splits = {"train": tiny_video_run["splits"]["train"][:6],
              "test": tiny_video_run["splits"]["test"][:2]}
    run_dir = str(tmp_path / "e2e")
    before = experiment.build_backbone(config)
    results = experiment.train(config, splits, run_dir, verbose=0)
    model = experiment.load_run(run_dir, "last").model
    assert model.backbone is not None and int(model.optimizer.iterations) == 3
    trained = {v.path.split("/", 1)[1]: np.asarray(v) for v in model.backbone.weights}
    start = {v.path.split("/", 1)[1]: np.asarray(v) for v in before.weights}
    moving = [p for p in start if "moving_" in p]
    betas = [p for p in start if p.endswith("beta")]
    assert moving and betas
    for path in moving:  # frozen statistics
        np.testing.assert_array_equal(trained[path], start[path], err_msg=path)
    assert any(not np.allclose(trained[p], start[p]) for p in betas)  # beta fine-tuned
    # evaluation decodes the videos and encodes each training video once (the bank)
    evaluated = experiment.evaluate_run(run_dir, which="last")["runs"][0]
    assert evaluated["samples"] == 2 and np.isfinite(evaluated["r_l2"])
    assert evaluated["spearman"] == pytest.approx(results["last"]["spearman"], abs=1e-6)


def test_a_nan_loss_stops_training_with_a_clear_error(tmp_path, capsys):
    status = cli.main(["train", "synthetic", "--output", str(tmp_path / "run"), "--epochs", "2",
                       "--verbose", "0", "--set", "feature_dim=16", "--set", "hidden_dim=16",
                       "--set", "ffn_dim=16", "--set", "learning_rate=1e30",
                       "--set", "head_learning_rate=1e30"])
    assert status == 2
    err = capsys.readouterr().err
    assert "the training loss became nan" in err and "lower the learning rates" in err


def test_training_refuses_a_cache_extracted_with_another_protocol(tmp_path):
    """A cache records the protocol its I3D features were extracted with; a config whose
    preprocessing differs is refused, naming the field (else the export would preprocess
    differently from what the model was trained on)."""
    from data_pipelines.io.feature_cache import FeatureCache, FeatureCacheError

    config = get_preset("custom")
    FeatureCache(str(tmp_path), feature_dim=1024, num_clips=20, create=True,
                 extra={"protocol": config.protocol.to_dict()})
    assert experiment.open_feature_cache(config, str(tmp_path)).shape == (20, 1024)
    other = config.replace(**{"protocol.resize_height": 300})
    with pytest.raises(FeatureCacheError, match="resize_height"):
        experiment.open_feature_cache(other, str(tmp_path))
    with pytest.raises(FeatureCacheError, match="feature_dim"):
        experiment.open_feature_cache(config.replace(feature_dim=512), str(tmp_path))


def test_empty_group_is_a_config_field_the_evaluation_honours(tmp_path):
    """A test group with no training sample is refused by default, naming the fix
    (`--set empty_group=all`), and with the field set draws from the whole training set."""
    from data_pipelines.io.feature_cache import FeatureCache
    from data_pipelines.tfdata.pairing import EmptyGroupError
    from data_pipelines.samples import Sample

    config = get_preset("custom", num_exemplars=2)
    cache = FeatureCache(str(tmp_path), feature_dim=1024, num_clips=20, create=True,
                         extra={"protocol": config.protocol.to_dict()})
    train = [Sample(key=f"t{i}", path="", score=10.0 * i, group="a") for i in range(3)]
    test = [Sample(key="q", path="", score=5.0, group="b")]
    for sample in train + test:
        cache.write(sample.key, np.full((20, 1024), float(sample.score), np.float32))
    with pytest.raises(EmptyGroupError, match="empty_group=all"):
        experiment.eval_dataset(config, test, train, str(tmp_path))
    dataset = experiment.eval_dataset(config.replace(empty_group="all"), test, train, str(tmp_path))
    batch = next(iter(dataset))
    features = batch["exemplars"][0, :, 0, 0].numpy()  # each exemplar's features = its score
    np.testing.assert_array_equal(features, batch["exemplar_scores"][0].numpy())
    assert len(set(features.tolist())) == 2 and set(features.tolist()) <= {0.0, 10.0, 20.0}


def test_one_validation_video_is_refused_before_training():
    """Spearman of one video is undefined: a split of one is refused up front, by name."""
    from data_pipelines.samples import Sample

    one = {"train": [Sample(key=f"t{i}", path="", score=float(i)) for i in range(4)],
           "test": [Sample(key="q", path="", score=1.0)]}
    with pytest.raises(ValueError, match="'test' split has 1 video"):
        experiment.validation_split(one)
    two = {**one, "test": one["test"] + [Sample(key="r", path="", score=2.0)]}
    assert experiment.validation_split(two) == "test"


@pytest.mark.slow
def test_train_on_own_videos_extracts_features_once_into_the_run_folder(tmp_path, capsys):
    """`tpt train custom --manifest …` without --features: the clip features are extracted into
    RUN/features (the cache `tpt extract-features` makes), the head trains on them, a batch
    larger than the training set is lowered with a notice; the same command again extracts
    nothing and trains nothing."""
    from data_pipelines.io.feature_cache import FeatureCache
    from data_pipelines.synthetic import videos as synthetic_videos

    manifest = synthetic_videos.write_synthetic_video_dataset(
        str(tmp_path / "videos"), num_train=6, num_test=3, size=32, seed=2, progress=False)
    run = str(tmp_path / "run")
    argv = ["train", "custom", "--manifest", manifest, "--output", run, "--epochs", "1",
            "--verbose", "0", "--set", "protocol.resize_height=32",
            "--set", "protocol.resize_width=32", "--set", "protocol.crop_size=32",
            "--set", "hidden_dim=16", "--set", "ffn_dim=16", "--set", "head_hidden_dim=16",
            "--set", "num_exemplars=2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert ("batch_size 24 → 6: the training set has 6 videos, fewer than one batch of 24 pairs "
            "(--set batch_size=N to choose)") in out
    assert "features: 9 extracted, 0 cached, 0 unreadable" in out
    cache = os.path.join(run, "features")
    features = FeatureCache(cache)
    assert len(features.keys()) == 9 and features.read(features.keys()[0]).shape == (20, 1024)
    assert features.metadata["backbone"] == experiment.BACKBONE_NAME
    saved = TPTConfig.load(os.path.join(run, "config.json"))
    assert saved.batch_size == 6 and saved.backbone == "i3d"
    assert experiment.open_feature_cache(saved, cache).shape == (20, 1024)  # the same protocol
    with open(os.path.join(run, "data.json")) as handle:
        assert json.load(handle)["features"] == os.path.abspath(cache)
    model = experiment.load_run(run, "last").model
    assert model.backbone is None and int(model.optimizer.iterations) == 1
    assert cli.main(argv) == 0
    again = capsys.readouterr().out
    assert "extracted" not in again and f"{run} has finished its 1 epochs: nothing to train" in again


def test_step_progress_prints_one_line_per_step():
    import io

    from tpt_keras.experiment import training

    model = keras.Sequential([keras.layers.Dense(1)])
    model.compile(loss="mse")
    stream = io.StringIO()
    model.fit(np.zeros((6, 2)), np.zeros((6, 1)), batch_size=2, epochs=1, verbose=0,
              callbacks=[training.step_progress(stream)])
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"epoch 1 step {i}/3" for i in (1, 2, 3)]
    assert lines[-1].endswith("0.0 min left in the epoch")
