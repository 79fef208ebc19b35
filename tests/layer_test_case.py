"""One contract check for every custom Keras layer (in the spirit of keras-hub's ``TestCase``).

``run_layer_test`` checks, for a layer class, its constructor arguments and example inputs:

1. sublayers are created in ``__init__``: building adds no sublayer attribute, and builds them all;
2. output shapes equal the expected ones, and ``compute_output_shape`` agrees;
3. ``get_config`` / ``from_config`` and ``serialize_keras_object`` round trips give an equal
   config and, with the same weights, the same outputs;
4. a functional model around the layer survives ``model.save`` / ``keras.saving.load_model``
   with the same outputs;
5. under ``mixed_float16`` and ``mixed_bfloat16`` every variable is float32 and every output is in
   the compute dtype, except the outputs listed as float32.

The expectations (shapes, dtypes) come from the test; the reference outputs from the layer itself
are only compared with those of its copies.
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np

MIXED_POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def _sublayer_attributes(layer):
    """Names of the attributes holding a layer or a list of layers."""
    names = set()
    for name, value in vars(layer).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if values and all(isinstance(v, keras.layers.Layer) for v in values):
            names.add(name)
    return names


def _sublayers(layer):
    for name in _sublayer_attributes(layer):
        value = getattr(layer, name)
        yield from (value if isinstance(value, (list, tuple)) else [value])


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


def _assert_same_outputs(first, second, atol=1e-6):
    first, second = keras.tree.flatten(first), keras.tree.flatten(second)
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=atol)


def run_layer_test(layer_cls, init_kwargs: dict, inputs: tuple, expected_output_shape,
                   float32_outputs: tuple = (), run_saving: bool = True,
                   run_mixed_precision: bool = True):
    """Check ``layer_cls(**init_kwargs)`` called on ``inputs`` against the Keras layer contract.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments (without ``dtype``).
        inputs: tuple of numpy arrays, the positional call arguments (each with a batch axis).
        expected_output_shape: a shape tuple, or a tuple of them for several outputs.
        float32_outputs: indices of the (flattened) outputs that stay float32 under mixed
            precision.
        run_saving: also check a ``.keras`` file round trip.
        run_mixed_precision: also check the two mixed policies.

    Returns:
        the layer (built and called once).
    """
    layer = layer_cls(**init_kwargs)
    before = _sublayer_attributes(layer)
    outputs = layer(*inputs, training=False)
    assert _sublayer_attributes(layer) == before, (
        f"{layer_cls.__name__} created sublayers outside __init__: "
        f"{sorted(_sublayer_attributes(layer) - before)}")
    unbuilt = [sub.name for sub in _sublayers(layer) if not sub.built]
    assert not unbuilt, f"{layer_cls.__name__}.build left sublayers unbuilt: {unbuilt}"

    # Output shapes.
    multiple = isinstance(expected_output_shape[0], tuple)
    expected = list(expected_output_shape) if multiple else [expected_output_shape]
    flat = keras.tree.flatten(outputs)
    assert [tuple(x.shape) for x in flat] == [tuple(shape) for shape in expected]
    computed = layer.compute_output_shape(*(x.shape for x in inputs))
    computed = list(computed) if multiple else [computed]
    assert [tuple(shape) for shape in computed] == [tuple(shape) for shape in expected]

    # Config round trips.
    config = layer.get_config()
    for clone in (layer_cls.from_config(config),
                  keras.saving.deserialize_keras_object(
                      keras.saving.serialize_keras_object(layer))):
        assert type(clone) is layer_cls
        assert clone.get_config() == config
        clone(*inputs, training=False)
        clone.set_weights(layer.get_weights())
        _assert_same_outputs(outputs, clone(*inputs, training=False))

    if run_saving:
        symbolic = [keras.Input(shape=x.shape[1:], batch_size=x.shape[0]) for x in inputs]
        model = keras.Model(symbolic, layer(*symbolic))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "layer.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        assert type(loaded.layers[-1]) is layer_cls
        _assert_same_outputs(outputs, loaded.predict_on_batch(list(inputs)))

    if run_mixed_precision:
        for policy, compute in MIXED_POLICIES.items():
            mixed = layer_cls(**init_kwargs, dtype=policy)
            mixed_outputs = keras.tree.flatten(mixed(*inputs, training=False))
            assert {_dtype(v) for v in mixed.weights} <= {"float32"}, policy
            dtypes = [_dtype(x) for x in mixed_outputs]
            assert dtypes == ["float32" if index in float32_outputs else compute
                              for index in range(len(dtypes))], policy
            assert all(np.all(np.isfinite(np.asarray(keras.ops.cast(x, "float32"))))
                       for x in mixed_outputs)
    return layer
