"""Synthetic clip features: the generator's definition, the cache it is written to, and a short
training run in which TPT beats the holistic average-pool baseline on held-out videos."""

import time

import keras
import numpy as np
import pytest
from scipy import stats

from data_pipelines.tfdata import reader
from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.samples import target
from data_pipelines.synthetic.features import (
    make_synthetic_features,
    random_phase_bounds,
    write_synthetic_cache,
)


def test_generator_definition():
    data = make_synthetic_features(50, num_clips=20, feature_dim=32, num_phases=5, seed=3)
    assert data["features"].shape == (50, 20, 32) and data["features"].dtype == np.float32
    bounds = data["phase_bounds"]
    assert bounds.shape == (50, 6)
    assert np.all(bounds[:, 0] == 0) and np.all(bounds[:, -1] == 20)
    assert np.diff(bounds, axis=1).min() >= 2
    # Score = clip(15 + 5 * sum_k q_k / sqrt(5), 0, 30) x difficulty; groups name the difficulty.
    raw = np.clip(15 + 5 * data["qualities"].sum(1) / np.sqrt(5), 0, 30)
    np.testing.assert_allclose(data["raw_scores"], raw, rtol=1e-5)
    np.testing.assert_allclose(data["scores"], raw * data["difficulty"], rtol=1e-5)
    assert np.isin(data["difficulty"], np.float32([3.0, 3.2, 3.4, 3.6])).all()
    assert all(g == f"{d:g}" for g, d in zip(data["groups"], data["difficulty"]))
    # Seeded.
    again = make_synthetic_features(50, num_clips=20, feature_dim=32, num_phases=5, seed=3)
    for key in data:
        np.testing.assert_array_equal(data[key], again[key])
    other = make_synthetic_features(50, num_clips=20, feature_dim=32, num_phases=5, seed=4)
    assert not np.array_equal(data["features"], other["features"])


def phase_means(data):
    """(N, K, D) mean feature of each phase, from the true boundaries."""
    bounds = data["phase_bounds"]
    return np.stack([np.stack([video[b[k]:b[k + 1]].mean(0) for k in range(len(b) - 1)])
                     for video, b in zip(data["features"], bounds)])


def test_same_world_across_seeds():
    a = make_synthetic_features(200, feature_dim=16, seed=1)
    b = make_synthetic_features(200, feature_dim=16, seed=2)
    c = make_synthetic_features(200, feature_dim=16, seed=2, world_seed=99)
    sig_a, sig_b, sig_c = (phase_means(x).mean(0) for x in (a, b, c))  # ~ 2 * s_k
    cosine = lambda x, y: (x * y).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1)
    assert cosine(sig_a, sig_b).min() > 0.95
    assert np.abs(cosine(sig_a, sig_c)).max() < 0.8


def test_parts_carry_the_score_and_the_clip_mean_does_not():
    train = make_synthetic_features(2000, feature_dim=16, seed=1)
    test = make_synthetic_features(500, feature_dim=16, seed=2)

    def held_out_rho(features):
        x_train = np.concatenate([features(train), np.ones((2000, 1))], 1)
        weights = np.linalg.lstsq(x_train, train["raw_scores"], rcond=None)[0]
        x_test = np.concatenate([features(test), np.ones((500, 1))], 1)
        return stats.spearmanr(x_test @ weights, test["raw_scores"])[0]

    holistic = held_out_rho(lambda d: d["features"].mean(1))
    parts = held_out_rho(lambda d: phase_means(d).reshape(len(d["features"]), -1))
    # Alternating quality directions: the clip mean sees sum_k (-1)^k len_k q_k / T only.
    assert holistic < 0.35
    assert parts > 0.97


def test_random_phase_bounds_cover_all_compositions():
    rng = np.random.default_rng(0)
    bounds = random_phase_bounds(3000, 6, 3, 1, rng)  # lengths (a, b, c), a+b+c = 6, >= 1: 10 ways
    lengths = {tuple(x) for x in np.diff(bounds, axis=1)}
    assert len(lengths) == 10
    with pytest.raises(ValueError, match="cannot hold"):
        random_phase_bounds(1, 5, 3, 2, rng)


def test_cache_holds_the_generated_videos_as_samples(tmp_path):
    splits = write_synthetic_cache(str(tmp_path), 12, 5, feature_dim=8, num_clips=6,
                                   num_phases=2, seed=3)
    cache = FeatureCache(str(tmp_path), feature_dim=None, num_clips=None)
    train = make_synthetic_features(12, num_clips=6, feature_dim=8, num_phases=2, seed=3)
    test = make_synthetic_features(5, num_clips=6, feature_dim=8, num_phases=2, seed=4)
    for samples, arrays in ((splits["train"], train), (splits["test"], test)):
        np.testing.assert_array_equal(cache.read_many([s.key for s in samples]), arrays["features"])
        np.testing.assert_allclose([s.score for s in samples], arrays["scores"], rtol=1e-6)
        np.testing.assert_allclose([target(s, True) for s in samples], arrays["raw_scores"],
                                   rtol=1e-5)
        assert [s.group for s in samples] == list(arrays["groups"])
    no_dd = write_synthetic_cache(str(tmp_path), 12, 5, feature_dim=8, num_clips=6,
                                  num_phases=2, seed=3, use_difficulty=False)
    assert {s.group for s in no_dd["train"]} == {"all"}
    with pytest.raises(ValueError, match="synthetic feature cache made with"):
        write_synthetic_cache(str(tmp_path), 12, 5, feature_dim=8, num_clips=6, num_phases=3)


@pytest.mark.slow
def test_tpt_beats_the_holistic_baseline_on_held_out_videos(tmp_path):
    from tpt_keras.config import get_preset
    from tpt_keras.experiment.callbacks import evaluate
    from tpt_keras.ops.groups import compute_intervals
    from tpt_keras.models.tpt_model import TPTModel

    cfg = get_preset("synthetic")
    splits = write_synthetic_cache(str(tmp_path), 400, 150, feature_dim=cfg.feature_dim,
                                   num_clips=cfg.num_clips, seed=11)
    cache = FeatureCache(str(tmp_path), feature_dim=None, num_clips=None)
    train, test = splits["train"], splits["test"]
    intervals = compute_intervals([target(s, True) for s in train], [s.group for s in train],
                                  max_value=cfg.score_max)
    evaluation_data = reader.feature_eval_dataset(cache, test, train, 50, use_difficulty=True,
                                                  num_exemplars=cfg.num_exemplars, seed=cfg.seed)
    results = {}
    for part_encoder in ("decoder", "holistic"):
        keras.utils.set_random_seed(cfg.seed)
        model = TPTModel(cfg.replace(part_encoder=part_encoder), intervals)
        model.compile()
        start = time.time()
        model.fit(reader.feature_pair_dataset(cache, train, cfg.batch_size, True, seed=cfg.seed),
                  epochs=cfg.epochs, steps_per_epoch=reader.steps_per_epoch(400, cfg.batch_size),
                  verbose=0, shuffle=False)
        results[part_encoder] = evaluate(model, evaluation_data)
        print(part_encoder, results[part_encoder], f"{time.time() - start:.1f} s")
    tpt, holistic = results["decoder"], results["holistic"]
    # Measured through the cache and readers, seed 11: TPT 0.924, holistic 0.149 (an earlier
    # in-memory pipeline, seeds 1-3 and 11: TPT 0.89-0.93, holistic 0.06-0.27).
    assert tpt["spearman"] > 0.75
    assert tpt["spearman"] - holistic["spearman"] > 0.4
    assert tpt["r_l2"] < holistic["r_l2"]
