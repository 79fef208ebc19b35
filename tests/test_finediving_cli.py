"""FineDiving end to end through the command line: a tiny
FineDiving-layout folder — annotation pickles holding a few real dives of
../shared/data/FineDiving, frames made here — extracts features, trains with step supervision,
evaluates with the parsing metric, exports a SavedModel whose signature takes the dive number
beside the difficulty, and scores a dive."""

import json
import math
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.io import decode
from tpt_keras.cli import main as cli
from tpt_keras import experiment
from data_pipelines.io import safe_pickle

pytestmark = pytest.mark.slow

TYPES = ("205b", "305b")  # two dive numbers that share difficulty 3.0: the group is not the DD
TINY = ["--set", "protocol.resize_height=32", "--set", "protocol.resize_width=32",
        "--set", "protocol.crop_size=32"]
MODEL = ["--set", "backbone=none", "--set", "hidden_dim=32", "--set", "ffn_dim=32",
         "--set", "head_hidden_dim=16", "--set", "num_heads=4", "--set", "batch_size=3",
         "--set", "step_weight=1.0", "--set", "num_exemplars=3"]


def _naive_boundaries(labels, num_clips=20, clip_len=8, stride=5):
    """Step boundaries in clip units by loops (the definition in docs/parsing.md)."""
    length = (num_clips - 1) * stride + clip_len
    sampled = [math.floor(i * (len(labels) - 1) / (length - 1)) for i in range(length)]
    step_of_frame = np.cumsum([0] + [int(a != b) for a, b in zip(labels[1:], labels[:-1])])
    bounds = []
    for j in range(step_of_frame[-1]):
        share = sum(sum(step_of_frame[sampled[t * stride + i]] <= j for i in range(clip_len)) / clip_len
                    for t in range(num_clips))
        bounds.append(share - 0.5)
    return bounds


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves files
def tiny_finediving(shared_data, tmp_path_factory):
    source = shared_data / "FineDiving"
    annotations = safe_pickle.load(source / "FineDiving_fine-grained_annotation.pkl")
    train_keys = safe_pickle.load(source / "train_split.pkl")
    test_keys = safe_pickle.load(source / "test_split.pkl")

    def pick(keys, count):
        chosen = []
        for action in TYPES:
            chosen += [k for k in keys if annotations[k]["action_type"] == action
                       and float(annotations[k]["difficulty"]) == 3.0][:count]
        return chosen

    train, test = pick(train_keys, 3), pick(test_keys, 1)
    assert len(train) == 6 and len(test) == 2
    root = tmp_path_factory.mktemp("tiny_finediving")
    folder, media = root / "Annotations", root / "frames"
    folder.mkdir()
    subset = {k: {field: annotations[k][field] for field in
                  ("action_type", "dive_score", "difficulty", "frames_labels")} for k in train + test}
    for name, value in (("FineDiving_fine-grained_annotation.pkl", subset),
                        ("train_split.pkl", list(train)), ("test_split.pkl", list(test))):
        with open(folder / name, "wb") as handle:
            pickle.dump(value, handle)
    rng = np.random.default_rng(0)
    for event, index in train + test:
        labels = np.asarray(annotations[(event, index)]["frames_labels"])
        # frames 1.jpg .. F.jpg, the brightness following the step label
        frames = (rng.integers(0, 40, (len(labels), 24, 32, 3)) + 5 * labels[:, None, None, None]).clip(0, 255)
        decode.write_frame_folder(str(media / event / str(index)), frames, pattern="{}.jpg")
    return {"annotations": str(folder), "media": str(media), "root": root, "train": train,
            "test": test, "labels": {k: list(annotations[k]["frames_labels"]) for k in test}}


def _load_each_export_once(monkeypatch):
    """From here on ``tf.saved_model.load`` loads each folder once: the test and every `tpt score`
    share one loaded export (loading its I3D graph takes seconds; what is scored is unchanged).
    Returns the folder of every call, so that the test can check that each load was shared."""
    loaded, calls, load = {}, [], tf.saved_model.load

    def once(path, *args, **kwargs):
        key = os.path.realpath(path)
        calls.append(key)
        if key not in loaded:
            loaded[key] = load(path, *args, **kwargs)
        return loaded[key]

    monkeypatch.setattr(tf.saved_model, "load", once)  # the module TensorFlow holds now
    return calls


def test_train_evaluate_export_score(tiny_finediving, monkeypatch, capsys):
    data = tiny_finediving
    root = data["root"]
    cache, run = str(root / "features"), str(root / "run")
    source = ["--annotations", data["annotations"], "--media-root", data["media"]]
    assert cli.main(["extract-features", "finediving", *source, "--cache", cache,
                     "--batch-size", "4", *TINY]) == 0
    assert cli.main(["train", "finediving", *source, "--features", cache, "--output", run,
                     "--epochs", "1", "--verbose", "0", *TINY, *MODEL]) == 0
    assert "step_loss" in open(os.path.join(run, "log.csv")).readline()
    capsys.readouterr()

    # evaluate: the parsing metric beside its baselines, in the JSON and in the table
    assert cli.main(["evaluate", run, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["runs"][0]
    parsing = row["parsing"]
    naive = [_naive_boundaries(data["labels"][k]) for k in data["test"]]
    uniform_mae = np.mean([abs(b - 9.5) for bounds in naive for b in bounds])  # every p at 9.5
    assert parsing["model"]["videos"] == 2
    assert parsing["model"]["boundaries"] == sum(len(b) for b in naive)
    assert parsing["uniform"]["boundary_mae"] == pytest.approx(uniform_mae)
    assert 0.0 <= parsing["model"]["boundary_mae"] <= 10.0
    assert os.path.isfile(row["attention_plot"])
    assert cli.main(["evaluate", run]) == 0
    table = capsys.readouterr().out
    assert "parsing metric over 2 test videos" in table and "equal parts" in table

    # export: the signature takes the dive number beside the difficulty
    base = str(root / "saved_models")
    assert cli.main(["export", run, "--name", "fd", "--base-dir", base]) == 0
    capsys.readouterr()
    path = os.path.join(base, "fd", "1")
    info = json.load(open(os.path.join(path, "tpt_export.json")))
    loaded_exports = _load_each_export_once(monkeypatch)
    assert info["inputs"] == ["frames", "difficulty", "group"]
    assert info["groups"] == sorted(TYPES)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    loaded = experiment.load_run(run)
    predicted = experiment.predict_split(loaded)
    for (event, index), pred in zip(data["test"], predicted["pred"]):
        frames = tf.constant(decode.read_frames(os.path.join(data["media"], event, str(index))))
        action = next(s.group for s in loaded.splits["test"] if s.key == f"{event}/{index}")
        by_group = {name: float(signature(frames=frames, difficulty=tf.constant([3.0]),
                                          group=tf.constant(name))["score"]) for name in TYPES}
        # the dive's own type picks the exemplars `tpt evaluate` uses: the same score
        assert by_group[action] == pytest.approx(float(pred), abs=1e-3)
        # the other type's exemplars give another score: the group input is used
        other = next(name for name in TYPES if name != action)
        assert abs(by_group[other] - by_group[action]) > 1e-4
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown group.*205b, 305b"):
        signature(frames=frames, difficulty=tf.constant([3.0]), group=tf.constant("9999z"))

    # score: --group is optional beside --difficulty, checked, and the picture shows the steps
    event, index = data["test"][0]
    video = os.path.join(data["media"], event, str(index))
    action = loaded.splits["test"][0].group
    assert cli.main(["score", video, "--model", path, "--difficulty", "3.0", "--group", action,
                     "--picture", str(root / "dive.png"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] == pytest.approx(float(predicted["pred"][0]), abs=1e-3)
    np.testing.assert_allclose(result["steps"], naive[0], atol=1e-9)
    assert cli.main(["score", video, "--model", path, "--difficulty", "3.0", "--group", "9999z"]) == 2
    assert "one of 205b, 305b" in capsys.readouterr().err
    assert cli.main(["score", video, "--model", path, "--difficulty", "3.0",
                     "--picture", str(root / "dive2.png")]) == 0
    # this test's load and the first `tpt score`'s: the unknown group is refused from
    # tpt_export.json before any model loads, and the last score reuses the loaded export
    assert loaded_exports == [os.path.realpath(path)] * 2
