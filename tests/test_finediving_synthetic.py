"""Synthetic features with real FineDiving step timing: the generated videos carry their source
dives' steps, scores and difficulties (checked against the raw pickles, computed naively)."""

import math

import numpy as np
import pytest

from data_pipelines.synthetic import finediving as sf
from data_pipelines.datasets import finediving
from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.io import safe_pickle


def _naive_boundaries(labels, num_clips=20, clip_len=8, stride=5):
    """Step boundaries on the clip grid, by loops: 103 frames at floor(linspace), clips of 8 from
    every 5th; boundary j = -1/2 + sum over clips of the share of frames in steps 0..j."""
    length = (num_clips - 1) * stride + clip_len
    last = len(labels) - 1
    sampled = [math.floor(i * last / (length - 1)) for i in range(length)]
    step_of_frame, step = [], 0
    for i, label in enumerate(labels):
        if i and label != labels[i - 1]:
            step += 1
        step_of_frame.append(step)
    bounds = []
    for j in range(step):
        total = 0.0
        for t in range(num_clips):
            clip = [sampled[t * stride + i] for i in range(clip_len)]
            total += sum(step_of_frame[f] <= j for f in clip) / clip_len
        bounds.append(total - 0.5)
    majority = []
    for t in range(num_clips):
        clip = [step_of_frame[sampled[t * stride + i]] for i in range(clip_len)]
        counts = [clip.count(j) for j in range(step + 1)]
        majority.append((counts.index(max(counts)), max(counts) / clip_len))
    return bounds, majority


@pytest.fixture(scope="module")
def real(shared_data):
    raw = safe_pickle.load(shared_data / "FineDiving" / "fine-grained_annotation_aqa.pkl")
    return finediving.load(shared_data / "FineDiving", None), raw


def test_generated_videos_carry_their_source_dives(real):
    splits, raw = real
    dives = splits["train"][:40]
    arrays = sf.make_step_features(dives, feature_dim=64, seed=5)
    signatures, _ = sf.world_directions(64)
    assert arrays["features"].shape == (40, 20, 64)
    checked = 0
    for n, dive in enumerate(dives):
        event, index = dive.key.split("/")
        labels = list(raw[(event, int(index))][4])
        bounds, majority = _naive_boundaries(labels)
        np.testing.assert_allclose(arrays["boundaries"][n], bounds, atol=1e-9)
        assert arrays["clip_steps"][n].tolist() == [j for j, _ in majority]
        # the feature of a clip that is mostly one step points at that step's label signature
        step_labels = [label for label, _ in dive.steps]
        for t, (j, share) in enumerate(majority):
            if share >= 0.75:
                assert np.argmax(signatures @ arrays["features"][n, t]) == step_labels[j]
                checked += 1
        # the steps' mean quality is the dive's standardised completeness
        assert np.mean(arrays["qualities"][n]) == pytest.approx(
            (dive.score / dive.difficulty - np.mean([d.score / d.difficulty for d in dives]))
            / np.std([d.score / d.difficulty for d in dives]))
    assert checked > 500


def test_cache_samples_are_the_real_dives(real, tmp_path):
    splits, raw = real
    result = sf.write_synthetic_finediving_cache(str(tmp_path / "cache"), splits, num_train=30,
                                                 num_test=10, seed=2)
    assert [len(result["train"]), len(result["test"])] == [30, 10]
    train_types = {s.group for s in result["train"]}
    for split, samples in result.items():
        for sample in samples:
            event, index = sample.key.split("/")
            action_type, score, difficulty, _, labels = raw[(event, int(index))]
            assert (sample.score, sample.difficulty, sample.group, sample.split) == (
                score, difficulty, action_type, split)
            assert [label for label, n in sample.steps for _ in range(n)] == list(labels)
            assert split == "train" or sample.group in train_types  # every test dive has exemplars
    cache = FeatureCache(str(tmp_path / "cache"), feature_dim=64, num_clips=20)
    expected = sf.make_step_features(splits["train"][:30], 64, seed=2,
                                     completeness_stats=_stats(result["train"]))["features"]
    np.testing.assert_allclose(cache.read_many([s.key for s in result["train"]]), expected)
    with pytest.raises(ValueError, match="feature cache made with other settings"):
        sf.write_synthetic_finediving_cache(str(tmp_path / "cache"), splits, num_train=31, num_test=10, seed=2)
    with pytest.raises(ValueError, match="feature_dim must be at least 44"):
        sf.make_step_features(splits["train"][:2], feature_dim=32)


def _stats(samples):
    values = np.array([s.score / s.difficulty for s in samples])
    return float(values.mean()), float(values.std())


@pytest.mark.slow
def test_trained_tpt_parses_clearly_better_than_uniform_attention(shared_data, tmp_path):
    """TPT trained a few epochs on the synthetic_finediving preset (the
    `tpt train synthetic_finediving` path) parses the test dives far better than uniform,
    untrained attention — whose figures the test computes itself: every part boundary at
    (T - 1) / 2 = 9.5, so the error of boundary b is |b - 9.5|."""
    from tpt_keras import experiment
    from tpt_keras.config import get_preset

    config = get_preset("synthetic_finediving", epochs=5)
    cache = str(tmp_path / "features")
    splits = experiment.synthetic_finediving_splits(config, str(shared_data / "FineDiving"), cache,
                                                    num_train=200, num_test=80)
    experiment.train(config, splits, str(tmp_path / "run"), features_dir=cache, verbose=0)
    row = experiment.evaluate_run(str(tmp_path / "run"), which="last")["runs"][0]
    model = row["parsing"]["model"]
    labels = {s.key: s.steps for s in splits["test"]}
    naive = [_naive_boundaries(list(np.repeat([l for l, _ in labels[s.key]], [n for _, n in labels[s.key]])))[0]
             for s in splits["test"]]
    uniform_mae = np.mean([abs(b - 9.5) for bounds in naive for b in bounds])
    assert row["parsing"]["uniform"]["boundary_mae"] == pytest.approx(uniform_mae)
    assert model["boundary_mae"] < 0.5 * uniform_mae  # measured: ~1.1 against ~3.4
    assert model["iou@0.5"] > 0.5  # uniform attention: 0.02
    assert row["spearman"] > 0.3
