"""Run folders: atomic writes, the lock, damaged files, a full disk, NaN validation, resuming and
extending runs, and — in subprocesses killed with SIGKILL at named moments — resuming to the
weights of an uninterrupted run, bit for bit."""

import csv
import errno
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tpt_keras.cli import main as cli
from tpt_keras import experiment
from tpt_keras.runtime import backup, run_folder
from tpt_keras.config import TPTConfig, get_preset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(epochs=2, **overrides):
    return get_preset("synthetic", epochs=epochs, feature_dim=16, hidden_dim=16, ffn_dim=16,
                      head_hidden_dim=16, batch_size=16, **overrides)


def _splits(cache, config):
    return experiment.synthetic_splits(config, cache, num_train=48, num_test=16)


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves files
def finished(tmp_path_factory):
    """A finished 2-epoch run (3 steps per epoch) on tiny synthetic features."""
    root = tmp_path_factory.mktemp("finished")
    config = _tiny(epochs=2)
    cache = str(root / "cache")
    splits = _splits(cache, config)
    run = str(root / "run")
    results = experiment.train(config, splits, run, features_dir=cache, verbose=0)
    return {"config": config, "splits": splits, "cache": cache, "run": run, "results": results}


def _copy_run(source, target):
    import shutil

    shutil.copytree(source, target)
    return str(target)


# ------------------------------------------------------------------ atomic writes and the lock


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "config.json")
    run_folder.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with run_folder.atomic_path(path) as temporary:
            with open(temporary, "w") as handle:
                handle.write('{"a": ')  # half written, then the writer dies
            raise RuntimeError("killed")
    assert run_folder.read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["config.json"]


def test_a_full_disk_is_one_clear_error_naming_the_file(tmp_path):
    path = str(tmp_path / "samples.json")
    run_folder.write_text(path, "old")
    with pytest.raises(run_folder.DiskFullError, match="samples.json: no space left"):
        with run_folder.atomic_path(path) as temporary:
            with open(temporary, "w") as handle:
                handle.write("new, partly")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["samples.json"]


def test_the_lock_names_the_process_that_holds_it(tmp_path):
    folder = str(tmp_path / "run")
    with run_folder.RunLock(folder):
        with pytest.raises(run_folder.RunInUseError, match=f"run is in use by process {os.getpid()}"):
            with run_folder.RunLock(folder):
                pass
    with run_folder.RunLock(folder):  # released
        pass


def test_a_second_train_on_a_locked_folder_is_refused(tmp_path, capsys):
    run = str(tmp_path / "run")
    with run_folder.RunLock(run):
        status = cli.main(["train", "synthetic", "--output", run, "--epochs", "1", "--verbose",
                           "0", "--set", "feature_dim=16", "--set", "hidden_dim=16",
                           "--set", "ffn_dim=16", "--set", "head_hidden_dim=16"])
    assert status == 2
    assert f"is in use by process {os.getpid()}" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(run, "config.json"))


def test_epochs_zero_is_refused(tmp_path, capsys):
    assert cli.main(["train", "synthetic", "--output", str(tmp_path / "r"), "--epochs", "0"]) == 2
    assert "--epochs must be ≥ 1, got 0" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r")


def test_a_run_that_fails_before_training_writes_nothing(tmp_path, finished):
    run = str(tmp_path / "run")
    with pytest.raises(ValueError, match="make no batch"):
        experiment.train(finished["config"].replace(batch_size=1000), finished["splits"], run,
                         features_dir=finished["cache"], verbose=0)
    assert not os.path.exists(run)


# ------------------------------------------------------------------ finished runs, damaged files


def test_a_changed_config_names_the_differing_fields(finished):
    with pytest.raises(ValueError, match=r"rank_margin: .* → 1\.0; seed: 0 → 3"):
        experiment.train(finished["config"].replace(rank_margin=1.0, seed=3), finished["splits"],
                         finished["run"], features_dir=finished["cache"], verbose=0)
    with pytest.raises(ValueError, match="already trained 2 epochs, more than the 1"):
        experiment.train(finished["config"].replace(epochs=1), finished["splits"],
                         finished["run"], features_dir=finished["cache"], verbose=0)


def test_a_damaged_last_keras_is_named_and_rebuilt_from_the_backup(tmp_path, finished):
    run = _copy_run(finished["run"], tmp_path / "run")
    last = os.path.join(run, "last.keras")
    expected = [np.asarray(v) for v in experiment.load_run(run, "last").model.weights]
    with open(last, "r+b") as handle:
        handle.truncate(2953)  # what a kill during the write left
    with pytest.warns(UserWarning, match=r"last\.keras: damaged .*rebuilt from .*backup"):
        again = experiment.train(finished["config"], finished["splits"], run,
                                 features_dir=finished["cache"], verbose=0)
    assert again["last"] == finished["results"]["last"]
    rebuilt = experiment.load_run(run, "last").model
    for value, weight in zip(expected, rebuilt.weights):
        np.testing.assert_array_equal(np.asarray(weight), value, err_msg=weight.path)


def test_damaged_run_files_are_named(tmp_path, finished):
    run = _copy_run(finished["run"], tmp_path / "run")
    with open(os.path.join(run, "best.keras"), "r+b") as handle:
        handle.truncate(2953)
    with pytest.raises(ValueError, match=r"best\.keras: damaged Keras model file"):
        experiment.load_run(run, "best")
    state = os.path.join(run, "backup", "state.npz")
    with open(state, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(ValueError, match=r"backup/state\.npz: damaged training backup"):
        experiment.train(finished["config"], finished["splits"], run,
                         features_dir=finished["cache"], verbose=0)
    with open(os.path.join(run, "config.json"), "w") as handle:
        handle.write('{"dataset": "synth')
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        experiment.train(finished["config"], finished["splits"], run,
                         features_dir=finished["cache"], verbose=0)


def test_a_finished_run_extends_to_more_epochs(tmp_path, finished):
    run = _copy_run(finished["run"], tmp_path / "run")
    results = experiment.train(finished["config"].replace(epochs=3), finished["splits"], run,
                               features_dir=finished["cache"], verbose=0)
    assert results["epochs"] == 3
    with open(os.path.join(run, "log.csv")) as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [0, 1, 2]
    model = experiment.load_run(run, "last").model
    assert int(model.optimizer.iterations) == 3 * 3  # 48 samples / 16 per batch, 3 epochs
    assert TPTConfig.load(os.path.join(run, "config.json")).epochs == 3


# ------------------------------------------------------------------ NaN validation


def test_a_nan_first_epoch_does_not_make_best_nan(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,val_r_l2,val_spearman\n0,1.0,2.0,nan\n1,0.9,1.5,0.25\n"
                   "2,0.8,1.2,0.125\n")
    assert experiment.best_logged(str(log)) == 0.25
    results = run_folder.finished_results(run_folder.RunPaths(str(tmp_path)))
    assert results["best"] == {"epoch": 2, "spearman": 0.25, "r_l2": 1.5, "spread_ratio": None}
    assert results["last"]["epoch"] == 3


# ------------------------------------------------------------------ --skip-bad


def test_skip_bad_drops_a_sample_everywhere_once_up_front(tmp_path, finished):
    """Features missing from the cache (skipped at extraction): the samples leave every split
    before training — a test video, and a training video that is also an exemplar — and are
    reported once."""
    import shutil

    from data_pipelines.io.feature_cache import FeatureCache

    cache = str(tmp_path / "cache")
    shutil.copytree(finished["cache"], cache)
    splits = finished["splits"]
    gone = [splits["train"][5].key, splits["test"][2].key]
    features = FeatureCache(cache, feature_dim=None, num_clips=None)
    for key in gone:
        os.remove(features.path(key))
    run = str(tmp_path / "run")
    results = experiment.train(finished["config"].replace(epochs=1), splits, run,
                               features_dir=cache, verbose=0, skip_bad=True)
    assert [key for key, _ in results["skipped"]] == sorted(gone)
    assert all("no features in" in message for _, message in results["skipped"])
    saved = experiment.load_samples(os.path.join(run, "samples.json"))
    assert len(saved["train"]) == 47 and len(saved["test"]) == 15
    assert not {s.key for items in saved.values() for s in items} & set(gone)


def test_skip_unreadable_drops_a_broken_video(tmp_path):
    from data_pipelines.samples import Sample

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    sample = Sample(key="broken", path=str(broken), score=50.0, difficulty=1.0, group="all")
    splits = {"train": [sample], "test": []}
    kept, skipped = experiment.skip_unreadable(splits, get_preset("custom"))
    assert kept == {"train": [], "test": []}
    assert [key for key, _ in skipped] == ["broken"] and "broken.mp4" in skipped[0][1]


# ------------------------------------------------------------------ full disk while backing up


def test_a_full_disk_during_the_backup_stops_cleanly_and_resumes(tmp_path, monkeypatch, finished):
    config, cache = finished["config"], finished["cache"]
    run = str(tmp_path / "run")
    real_savez = np.savez
    calls = []

    def savez_on_a_full_disk(handle, **arrays):
        calls.append(1)
        if len(calls) == 2:  # the second epoch's backup: half written, then ENOSPC
            handle.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(handle, **arrays)

    monkeypatch.setattr(backup.np, "savez", savez_on_a_full_disk)
    with pytest.raises(run_folder.DiskFullError, match=r"backup/state\.npz: no space left"):
        experiment.train(config, finished["splits"], run, features_dir=cache, verbose=0)
    assert backup.backup_epoch(os.path.join(run, "backup")) == 1  # the last good backup
    assert os.listdir(os.path.join(run, "backup")) == ["state.npz"]  # no half file
    monkeypatch.setattr(backup.np, "savez", real_savez)
    resumed = experiment.train(config, finished["splits"], run, features_dir=cache, verbose=0)
    assert resumed["epochs"] == 2
    model = experiment.load_run(run, "last").model
    assert int(model.optimizer.iterations) == 2 * 3


# ------------------------------------------------------------------ kills, Ctrl-C, Python = CLI
# Fresh processes, each as a user runs them: TensorFlow starts in each, as in `tpt train`.

_CLI = ["synthetic", "--epochs", "3", "--verbose", "0", "--set", "batch_size=8",
        "--set", "dropout=0.1", "--set", "feature_dim=16", "--set", "hidden_dim=16",
        "--set", "ffn_dim=16", "--set", "head_hidden_dim=16"]  # 50 steps per epoch, dropout on


def _env():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def _train_command(run, cache, *prefix):
    return [sys.executable, *prefix, "train", *_CLI, "--output", str(run), "--features", str(cache)]


def _train_process(run, cache, *prefix):
    prefix = prefix or ("-m", "tpt_keras.cli.main")
    return subprocess.run(_train_command(run, cache, *prefix), env=_env(), capture_output=True,
                          text=True, timeout=900)


def _all_weights(run):
    with zipfile.ZipFile(os.path.join(run, "last.keras")) as archive:
        archive.extract("model.weights.h5", run)
    import h5py

    arrays = {}
    with h5py.File(os.path.join(run, "model.weights.h5"), "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def _assert_same_weights(run, expected, name):
    actual = _all_weights(str(run))
    assert sorted(actual) == sorted(expected), name
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=f"{name}: {key}")


def _best_saves(log_csv):
    """Epochs (0-based) at which best.keras was written: each new maximum of val_spearman."""
    saves, best = [], -np.inf
    with open(log_csv) as handle:
        for row in csv.DictReader(handle):
            if float(row["val_spearman"]) > best:
                best = float(row["val_spearman"])
                saves.append(int(row["epoch"]))
    return saves


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves files
def uninterrupted(tmp_path_factory):
    """One fresh process (``tests/_cli_and_python.py``): `tpt train` of _CLI through the command
    line, then the same run with experiment.train_run and with experiment.train. The command
    line's run has the weights every other run must end with, in this process and in others."""
    root = tmp_path_factory.mktemp("uninterrupted")
    cache = root / "cache"
    script = os.path.join(REPO, "tests", "_cli_and_python.py")
    done = subprocess.run([sys.executable, script, str(root), str(cache), *_CLI], env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    weights = _all_weights(str(root / "cli"))
    assert len(weights) > 50
    return {"cache": cache, "run": root / "cli", "weights": weights, "root": root}


@pytest.mark.slow
def test_python_and_the_command_line_train_the_same_weights(uninterrupted):
    """`tpt train`, experiment.train_run and experiment.train in one process: every weight
    equal, bit for bit. (The kill and Ctrl-C tests below end other processes on the same bits.)"""
    for name in ("train_run", "train"):
        _assert_same_weights(uninterrupted["root"] / name, uninterrupted["weights"], name)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["best.keras", "state.npz"])
def test_killed_runs_resume_to_the_bits_of_an_uninterrupted_run(tmp_path, uninterrupted, suffix):
    """Killed with SIGKILL while best.keras is written (the last time the uninterrupted run wrote
    it; an earlier best.keras survives whole) or while the backup of epoch 2 is written; the
    same command again ends with the uninterrupted run's bits in every weight."""
    cache, run = uninterrupted["cache"], tmp_path / "run"
    saves = _best_saves(uninterrupted["run"] / "log.csv")
    occurrence, killed_in = (len(saves), saves[-1]) if suffix == "best.keras" else (2, 1)
    killer = os.path.join(REPO, "tests", "_kill_at.py")
    killed = _train_process(run, cache, killer, suffix, str(occurrence))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not os.path.exists(run / "last.keras")
    if suffix == "best.keras" and len(saves) > 1:
        experiment.load_run(str(run), "best")
    assert backup.backup_epoch(str(run / "backup")) == killed_in
    resumed = _train_process(run, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if killed_in:
        assert resumed.stdout.splitlines()[0] == (
            f"resuming {run} after epoch {killed_in} of 3 (same weights as an uninterrupted run)")
    _assert_same_weights(run, uninterrupted["weights"], suffix)
    with open(run / "log.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [0, 1, 2]
    assert not [f for f in os.listdir(run) if ".tmp-" in f]


@pytest.mark.slow
def test_ctrl_c_says_where_and_the_same_command_resumes(tmp_path, uninterrupted):
    """SIGINT once the first epoch is logged: one line, exit 130, no traceback; the rerun says
    that it resumes, from where, and ends with the uninterrupted run's weights."""
    import re
    import signal
    import time

    run = tmp_path / "run"
    process = subprocess.Popen(_train_command(run, uninterrupted["cache"], "-m", "tpt_keras.cli"),
                               env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while len(run_folder.read_log(str(run / "log.csv"))) < 1 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    match = re.fullmatch(r"interrupted in epoch (\d+); run the same command to resume",
                         err.strip().splitlines()[-1])
    assert match, err[-3000:]
    finished = backup.backup_epoch(str(run / "backup"))
    assert finished == int(match.group(1)) - 1 >= 1
    resumed = _train_process(run, uninterrupted["cache"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.splitlines()[0] == (
        f"resuming {run} after epoch {finished} of 3 (same weights as an uninterrupted run)")
    _assert_same_weights(run, uninterrupted["weights"], "ctrl-c")


def test_sigterm_in_a_run_is_a_keyboard_interrupt_that_names_the_epoch():
    """SIGTERM outside training stops at once; while training, the first signal waits for the
    next safe point (the epoch tracker raises there), and a second one stops at once."""
    import signal

    from tpt_keras.experiment import launch

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(launch.TrainingInterrupted,
                       match=r"^interrupted during start-up; run the same command to resume$"):
        with launch._interrupted_message():
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(launch.TrainingInterrupted,
                       match=r"^interrupted in epoch 5; run the same command to resume$"):
        with launch._interrupted_message() as where:
            where.update(step="epoch", epoch=4, defer=True)
            os.kill(os.getpid(), signal.SIGTERM)  # deferred: only noted
            assert where["requested"]
            tracker = launch._epoch_tracker(where)
            tracker.on_epoch_begin(4)  # the next safe point: epoch 5 begins (4 are backed up)
    with pytest.raises(launch.TrainingInterrupted, match="interrupted in epoch 2"):
        with launch._interrupted_message() as where:
            where.update(step="epoch", epoch=2, defer=True)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second one at once
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_run_config_without_the_update_fields_reads_as_one_batch_per_update(tmp_path):
    """A config.json written without accumulate_steps / loss_normalization / keep_last_batch
    describes a run of one batch per update, the whole batch's mean, full batches: it reads as
    such (so a custom run resumes), not with the faithful defaults (8, per replica, kept)."""
    import json

    from tpt_keras.config import get_preset

    values = get_preset("custom").to_dict()
    for name in ("accumulate_steps", "loss_normalization", "keep_last_batch"):
        del values[name]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    config = run_folder.load_saved_config(str(path))
    assert (config.accumulate_steps, config.loss_normalization, config.keep_last_batch) == (1, "global", False)
    assert config == get_preset("custom")
