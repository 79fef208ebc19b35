"""Part-aware contrastive regressor: NumPy parity, fusion options, float32 heads, serialisation."""

import keras
import numpy as np
import pytest

from layer_test_case import run_layer_test
from tpt_keras.layers.regressor import HEAD_GROUP, PartAwareRegressor

B, K, DIM, N = 4, 3, 8, 6


def parts(seed):
    return np.random.default_rng(seed).standard_normal((B, K, DIM)).astype(np.float32)


def np_dense(x, layer):
    kernel, bias = (np.asarray(w) for w in layer.get_weights())
    return x @ kernel + bias


def np_regressor(regressor, a, b):
    """The part-aware regressor written out: shared MLP per part on [a_k; b_k], mean over parts, two heads."""
    pairs = np.concatenate([a, b], axis=-1)  # (B, K, 2d)
    relative = np_dense(np.maximum(np_dense(pairs, regressor.pair_inner), 0), regressor.pair_outer)
    features = relative.mean(1)
    logits = np_dense(np.maximum(np_dense(features, regressor.cls_head_hidden), 0),
                      regressor.cls_head_output)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    regression = 1 / (1 + np.exp(-np_dense(np.maximum(np_dense(features, regressor.reg_head_hidden), 0),
                                           regressor.reg_head_output)))
    return log_probs, regression


def test_matches_numpy_reference_and_outputs_are_distributions():
    regressor = PartAwareRegressor(DIM, num_intervals=N, head_hidden_dim=5, dropout=0.5)
    a, b = parts(0), parts(1)
    log_probs, regression = regressor(a, b, training=False)
    ref_log_probs, ref_regression = np_regressor(regressor, a, b)
    np.testing.assert_allclose(np.asarray(log_probs), ref_log_probs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(regression), ref_regression, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(np.asarray(log_probs)).sum(-1), np.ones(B), rtol=1e-5)
    assert np.all((np.asarray(regression) > 0) & (np.asarray(regression) < 1))
    assert tuple(log_probs.shape) == (B, N) == regressor.compute_output_shape((B, K, DIM))[0]


def test_order_of_the_pair_matters():
    regressor = PartAwareRegressor(DIM, num_intervals=N)
    a, b = parts(0), parts(1)
    forward, _ = regressor(a, b)
    backward, _ = regressor(b, a)
    assert not np.allclose(np.asarray(forward), np.asarray(backward))


def test_pooled_fusion_equals_part_wise_on_mean_parts():
    pooled = PartAwareRegressor(DIM, num_intervals=N, fusion="pooled")
    part_wise = PartAwareRegressor(DIM, num_intervals=N)
    a, b = parts(0), parts(1)
    pooled(a, b)
    part_wise(a, b)
    part_wise.set_weights(pooled.get_weights())
    expected = part_wise(a.mean(1, keepdims=True), b.mean(1, keepdims=True))
    for x, y in zip(pooled(a, b), expected):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_heads_are_float32_and_tagged_for_the_optimizer():
    regressor = PartAwareRegressor(DIM, num_intervals=N, dtype="mixed_float16")
    log_probs, regression = regressor(parts(0), parts(1))
    assert keras.backend.standardize_dtype(log_probs.dtype) == "float32"
    assert keras.backend.standardize_dtype(regression.dtype) == "float32"
    assert keras.backend.standardize_dtype(regressor.pair_inner.compute_dtype) == "float16"
    tagged = [w for w in regressor.weights if getattr(w, "learning_rate_group", None) == HEAD_GROUP]
    assert len(tagged) == 8  # 2 heads x 2 Dense x (kernel, bias)
    expected = {id(w) for layer in (regressor.cls_head_hidden, regressor.cls_head_output,
                                    regressor.reg_head_hidden, regressor.reg_head_output)
                for w in (layer.kernel, layer.bias)}
    assert {id(w) for w in tagged} == expected
    assert all(layer.learning_rate_group == HEAD_GROUP for layer in regressor.head_layers)
    assert not hasattr(regressor.pair_inner.kernel, "learning_rate_group")


def test_renaming_a_head_layer_keeps_its_learning_rate():
    """The optimizer reads the tag, not the name: a head under another name keeps the head rate,
    and a non-head layer named like a head keeps the base rate."""
    from tpt_keras.models.optimizer import MultiRateAdam

    class Renamed(PartAwareRegressor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cls_head_hidden = keras.layers.Dense(self.head_hidden_dim, name="renamed")
            self.pair_inner = keras.layers.Dense(DIM, name="cls_head_like")

    regressor = Renamed(DIM, num_intervals=N)
    regressor(parts(0), parts(1))
    assert "cls_head" in regressor.pair_inner.kernel.path
    assert "cls_head" not in regressor.cls_head_hidden.kernel.path
    optimizer = MultiRateAdam(1e-4, group_multipliers={HEAD_GROUP: 10.0})
    optimizer.build(regressor.trainable_variables)
    assert optimizer.multiplier_for(regressor.cls_head_hidden.kernel) == 10.0
    assert optimizer.multiplier_for(regressor.pair_inner.kernel) == 1.0
    before = [np.asarray(w).copy() for w in regressor.trainable_variables]
    grads = [np.ones(w.shape, np.float32) for w in regressor.trainable_variables]
    optimizer.apply(grads, regressor.trainable_variables)
    steps = {id(w): float(np.abs(np.asarray(w) - b).max())
             for w, b in zip(regressor.trainable_variables, before)}
    assert steps[id(regressor.cls_head_hidden.kernel)] == pytest.approx(1e-3, rel=1e-3)
    assert steps[id(regressor.pair_inner.kernel)] == pytest.approx(1e-4, rel=1e-3)


@pytest.mark.parametrize("init_kwargs", [
    dict(hidden_dim=DIM, num_intervals=N, head_hidden_dim=7, fusion="pooled"),
    dict(hidden_dim=DIM, num_intervals=N, head_hidden_dim=7, initialization="keras"),
])
def test_keras_layer_contract(init_kwargs):
    # Both outputs come from the float32 heads, also under mixed precision.
    run_layer_test(PartAwareRegressor, init_kwargs, (parts(0), parts(1)), ((B, N), (B, N)),
                   float32_outputs=(0, 1))


def test_invalid_fusion():
    with pytest.raises(ValueError, match="'concat'"):
        PartAwareRegressor(DIM, fusion="concat")
    with pytest.raises(ValueError, match="'xavier'"):
        PartAwareRegressor(DIM, initialization="xavier")
