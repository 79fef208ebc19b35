"""Metrics with hand-computed answers; evaluation helpers and the ValidationSpearman callback."""

import math

import keras
import numpy as np
import pytest

from tpt_keras.experiment import callbacks as evaluation
from tpt_keras.ops import metrics


def test_spearman_known_answers():
    assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert metrics.spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # Ties: true ranks [1, 2, 3.5, 5, 3.5]; rho = 8 / sqrt(10 * 9.5).
    assert metrics.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    # Monotone transforms do not matter.
    assert metrics.spearman(np.exp([0.1, 0.5, 0.2]), [1, 3, 2]) == pytest.approx(1.0)


def test_r_l2_known_answer():
    # Spread 5 - 1 = 4; errors 0, -1, -2 -> (0 + 1/16 + 4/16) / 3 = 5/48, x 100.
    assert metrics.r_l2([1, 2, 3], [1, 3, 5]) == pytest.approx(100 * 5 / 48)
    assert metrics.r_l2([1, 3, 5], [1, 3, 5]) == 0.0
    with pytest.raises(ValueError, match="equal"):
        metrics.r_l2([1, 2], [3, 3])


def test_fisher_z_mean_known_answers():
    assert metrics.fisher_z_mean([0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.fisher_z_mean([0.0, 0.9]) == pytest.approx(0.6267890062732584)
    assert metrics.fisher_z_mean([-0.3, 0.3]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="1.5"):
        metrics.fisher_z_mean([0.2, 1.5])


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        metrics.spearman([1, 2, 3], [1, 2])


class ScoreEcho:
    """Stands in for a model: predicts query_difficulty * 10 (so the answer is known)."""

    def predict_on_batch(self, batch):
        return {"score": np.asarray(batch["query_difficulty"]) * 10.0}


def test_evaluate_with_a_known_predictor():
    batches = [{"query_difficulty": np.array([1.0, 2.0]), "score": np.array([12.0, 18.0])},
               {"query_difficulty": np.array([3.0]), "score": np.array([35.0])}]
    pred, true = evaluation.predict_scores(ScoreEcho(), batches)
    np.testing.assert_array_equal(pred, [10, 20, 30])
    np.testing.assert_array_equal(true, [12, 18, 35])
    result = evaluation.evaluate(ScoreEcho(), batches)
    assert result["spearman"] == pytest.approx(1.0)
    # Spread 23; errors -2, 2, -5 -> (4 + 4 + 25) / 3 / 529 x 100.
    assert result["r_l2"] == pytest.approx(100 * 33 / 3 / 529)
    with pytest.raises(ValueError, match="'score'"):
        evaluation.predict_scores(ScoreEcho(), [{"query_difficulty": np.array([1.0])}])


def test_validation_spearman_feeds_model_checkpoint(tmp_path):
    from data_pipelines.tfdata import reader
    from data_pipelines.io.feature_cache import FeatureCache
    from data_pipelines.samples import target
    from data_pipelines.synthetic.features import write_synthetic_cache
    from tpt_keras.config import get_preset
    from tpt_keras.ops.groups import compute_intervals
    from tpt_keras.models.tpt_model import TPTModel

    cfg = get_preset("synthetic", feature_dim=8, hidden_dim=8, ffn_dim=8, num_heads=2,
                     head_hidden_dim=8, num_queries=2, num_layers=1, **{"protocol.num_clips": 10})
    splits = write_synthetic_cache(str(tmp_path / "cache"), 24, 12, feature_dim=8, num_clips=10,
                                   num_phases=2, seed=1)
    cache = FeatureCache(str(tmp_path / "cache"), feature_dim=None, num_clips=None)
    train, test = splits["train"], splits["test"]
    intervals = compute_intervals([target(s, True) for s in train], [s.group for s in train],
                                  max_value=cfg.score_max)
    model = TPTModel(cfg, intervals)
    model.compile(run_eagerly=True)
    evaluation_data = reader.feature_eval_dataset(cache, test, train, 6, use_difficulty=True,
                                                  num_exemplars=3, seed=0)
    callback = evaluation.ValidationSpearman(evaluation_data)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"),
                                                 monitor="val_spearman", mode="max",
                                                 save_best_only=True, save_weights_only=True)
    history = model.fit(reader.feature_pair_dataset(cache, train, 8, True, seed=12), epochs=2,
                        steps_per_epoch=3, verbose=0, shuffle=False,
                        callbacks=[callback, checkpoint])
    assert len(history.history["val_spearman"]) == 2 and len(history.history["val_r_l2"]) == 2
    assert [epoch for epoch, _ in callback.history] == [0, 1]
    # The last logged values are those of the final weights.
    final = evaluation.evaluate(model, evaluation_data)
    assert history.history["val_spearman"][-1] == pytest.approx(final["spearman"])
    assert history.history["val_r_l2"][-1] == pytest.approx(final["r_l2"])
    assert (tmp_path / "best.weights.h5").exists()
