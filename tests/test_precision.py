"""Mixed precision: the resolver's decisions, and train steps under mixed_float16 / bfloat16.

No Conv3D backward under bfloat16 here: it segfaults in oneDNN on CPU (docs/scale.md).
"""

import keras
import numpy as np
import pytest

from _multiworker_worker import (
    TinyPairModel,
    build_tpt_model,
    make_pairs,
    make_tpt_pairs,
)
from tpt_keras.runtime import precision


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test starts and ends with the float32 global policy."""
    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


# ------------------------------------------------------------------ resolver


def test_auto_on_cpu_trains_in_float32_without_xla():
    assert precision.resolve_precision("auto", device="cpu", purpose="train") == "float32"
    assert precision.resolve_jit_compile("auto", device="cpu") is False
    assert precision.resolve_jit_compile("auto", device="gpu") is True
    assert precision.resolve_jit_compile("on", device="cpu") is True
    assert precision.resolve_jit_compile("off", device="gpu") is False


def test_auto_on_cpu_inference_uses_bfloat16_only_with_native_support(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert precision.resolve_precision("auto", "cpu", "inference") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert precision.resolve_precision("auto", "cpu", "inference") == "float32"
    assert precision.resolve_precision("auto", "cpu", "train") == "float32"


def test_this_cpu_flags_match_proc_cpuinfo():
    with open("/proc/cpuinfo", encoding="utf-8") as file:
        text = file.read()
    expected = any(f" {flag}" in text for flag in precision.BF16_CPU_FLAGS)
    assert precision.cpu_supports_bfloat16() is expected


@pytest.mark.parametrize(
    "capability, policy",
    [((9, 0), "mixed_bfloat16"), ((8, 0), "mixed_bfloat16"), ((7, 5), "mixed_float16"),
     ((6, 1), "float32"), (None, "mixed_float16")],
)
def test_auto_on_gpu_follows_compute_capability(monkeypatch, capability, policy):
    monkeypatch.setattr(precision, "gpu_compute_capability", lambda: capability)
    assert precision.resolve_precision("auto", device="gpu", purpose="train") == policy
    assert precision.resolve_precision("auto", device="/GPU:0", purpose="inference") == policy


def test_explicit_modes_are_obeyed_with_warnings_on_cpu():
    assert precision.resolve_precision("off", "gpu") == "float32"
    with pytest.warns(UserWarning, match="hundreds of times slower"):
        assert precision.resolve_precision("float16", "cpu") == "mixed_float16"
    with pytest.warns(UserWarning, match="segmentation fault"):
        assert precision.resolve_precision("bfloat16", "cpu", "train") == "mixed_bfloat16"


def test_bad_arguments_are_quoted():
    with pytest.raises(ValueError, match="'half'"):
        precision.resolve_precision("half")
    with pytest.raises(ValueError, match="'eval'"):
        precision.resolve_precision("auto", "cpu", purpose="eval")
    with pytest.raises(ValueError, match="'tpu'"):
        precision.resolve_device("tpu")
    with pytest.raises(ValueError, match="'yes'"):
        precision.resolve_jit_compile("yes")


# ------------------------------------------------------------------ train steps


def _dtypes(model):
    return {variable.dtype for variable in model.trainable_weights}


def _check_loss_scaling(optimizer, policy):
    if policy == "mixed_float16":
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        scale = float(optimizer.dynamic_scale.numpy())
        assert scale > 1.0  # 2**15 initially; halved on every overflowing step
        np.testing.assert_allclose(float(optimizer.scale_loss(keras.ops.ones(()))), scale)
    else:
        assert not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_tiny_model_trains_under_mixed_precision(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = TinyPairModel()
    model(make_pairs(2))
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    before = [np.array(w.numpy()) for w in model.trainable_weights]
    batch = make_pairs(8)
    logs = [model.train_on_batch(batch, return_dict=True) for _ in range(3)]

    assert model.encoder.compute_dtype == policy.split("_")[1]
    assert _dtypes(model) == {"float32"}
    assert all(np.isfinite(entry["loss"]) for entry in logs)
    assert logs[-1]["loss"] < logs[0]["loss"]  # it learns
    changed = [not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed)
    _check_loss_scaling(model.optimizer, policy)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_tpt_model_trains_under_mixed_precision(policy):
    import tensorflow as tf

    keras.mixed_precision.set_dtype_policy(policy)
    model = build_tpt_model(tf.distribute.get_strategy())
    batch = make_tpt_pairs(8)
    logs = [model.train_on_batch(batch, return_dict=True) for _ in range(2)]

    assert model.dtype_policy.name == policy
    assert _dtypes(model) == {"float32"}
    assert all(np.isfinite(value) for entry in logs for value in entry.values())
    outputs = model(batch, training=False)
    assert keras.backend.standardize_dtype(outputs["log_probs"].dtype) == "float32"
    _check_loss_scaling(model.optimizer, policy)


def test_float32_and_bfloat16_forward_agree_on_the_tiny_model():
    """Same weights, two policies: bfloat16's 8-bit mantissa stays within 2 % here."""
    batch = make_pairs(8)
    keras.utils.set_random_seed(0)
    reference = TinyPairModel()
    expected = np.asarray(reference(batch))
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    low = TinyPairModel()
    low(batch)
    low.set_weights(reference.get_weights())
    actual = np.asarray(keras.ops.cast(low(batch), "float32"))
    np.testing.assert_allclose(actual, expected, rtol=0.02, atol=0.02 * np.abs(expected).max())
