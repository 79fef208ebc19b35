"""Initial weights per layer type and Adam's epsilon, against bounds computed here from fan-in.

PyTorch's defaults (the faithful presets, ``initialization="torch"``): ``nn.Linear`` / ``nn.Conv1d``
weights ``kaiming_uniform(a=sqrt(5))`` = U(+-1/sqrt(fan_in)) and biases U(+-1/sqrt(fan_in));
the decoder's matrices Xavier uniform U(+-sqrt(6 / (fan_in + fan_out))) with PyTorch-default
biases; ``nn.MultiheadAttention``: Xavier on the packed (3d, d) in-projection, zero biases;
LayerNorm ones / zeros; Adam epsilon 1e-8. The original's decoder then re-initialises every
parameter with two or more dimensions Xavier-uniform (its ``_reset_parameters``), the
``nn.Embedding`` queries included: U(+-sqrt(6 / (5 + 512))) = U(+-0.1077) at the real sizes.
"""

import math

import keras
import numpy as np
import pytest

from tpt_keras.config import PRESETS, get_preset
from tpt_keras.models.tpt_model import TPTModel
from tpt_keras.models.optimizer import build_optimizer

# The faithful sizes: clips 1024-d, d = 512, FFN 512, heads 128 wide, 16 intervals.
FEATURES, DIM, FFN, HEAD, INTERVALS = 1024, 512, 512, 128, 16


def intervals(n=INTERVALS):
    edges = np.linspace(0, 30, n // 2 + 1)
    positive = np.stack([edges[:-1], edges[1:]], 1)
    return np.concatenate([-positive[::-1, ::-1], positive])


@pytest.fixture(scope="module")
def torch_model():
    keras.utils.set_random_seed(1)
    return TPTModel(get_preset("mtl_aqa_dd"), intervals())


@pytest.fixture(scope="module")
def keras_model():
    keras.utils.set_random_seed(1)
    return TPTModel(get_preset("mtl_aqa_dd", initialization="keras"), intervals())


def values(variable):
    return np.asarray(variable, dtype=np.float64).reshape(-1)


def assert_uniform(variable, bound, name):
    """Samples of U(-bound, bound): inside, reaching close to it, the uniform's std bound/sqrt(3)."""
    w = values(variable)
    assert np.abs(w).max() <= bound * (1 + 1e-6), name
    # Reaching the bound: the largest of n uniform |w| is within bound / n of it, on average.
    assert np.abs(w).max() >= bound * (1 - 20.0 / w.size), name
    tolerance = 4 * math.sqrt(0.8 / (4 * w.size))  # 4 standard errors of a uniform's sample std
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=tolerance), name
    assert abs(w.mean()) <= 4 * bound / math.sqrt(3 * w.size), name


def xavier(fan_in, fan_out):
    return math.sqrt(6.0 / (fan_in + fan_out))


def linear_layers(model):
    """(name, Dense, fan_in, fan_out) of the pair encoder and the heads."""
    r = model.regressor
    return [("pair_inner", r.pair_inner, 2 * DIM, DIM), ("pair_outer", r.pair_outer, DIM, DIM),
            ("cls_head_hidden", r.cls_head_hidden, DIM, HEAD),
            ("cls_head_output", r.cls_head_output, HEAD, INTERVALS),
            ("reg_head_hidden", r.reg_head_hidden, DIM, HEAD),
            ("reg_head_output", r.reg_head_output, HEAD, INTERVALS)]


def decoder_layers(model):
    """(name, Dense, fan_in, fan_out) of the decoder's key / value / query / FFN projections."""
    out = []
    for index, layer in enumerate(model.part_encoder.decoder_layers):
        out += [(f"layer_{index}/key", layer.key_dense, FEATURES, DIM),
                (f"layer_{index}/value", layer.value_dense, FEATURES, DIM),
                (f"layer_{index}/query", layer.query_dense, DIM, DIM),
                (f"layer_{index}/ffn_inner", layer.ffn_inner, DIM, FFN),
                (f"layer_{index}/ffn_outer", layer.ffn_outer, FFN, DIM)]
    return out


def test_torch_pair_encoder_and_heads_are_pytorch_linear_defaults(torch_model):
    for name, dense, fan_in, _ in linear_layers(torch_model):
        assert_uniform(dense.kernel, 1 / math.sqrt(fan_in), name + "/kernel")
        assert_uniform(dense.bias, 1 / math.sqrt(fan_in), name + "/bias")


def test_torch_decoder_matrices_are_xavier_with_pytorch_biases(torch_model):
    for name, dense, fan_in, fan_out in decoder_layers(torch_model):
        assert_uniform(dense.kernel, xavier(fan_in, fan_out), name + "/kernel")
        assert_uniform(dense.bias, 1 / math.sqrt(fan_in), name + "/bias")


def test_self_attention_layer_norm_and_temperature(torch_model, keras_model):
    for model in (torch_model, keras_model):
        first = model.part_encoder.decoder_layers[0]
        attention = first.self_attention
        for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
            # Xavier on the packed (3d, d) in-projection: fan_in + fan_out = d + 3d.
            assert_uniform(dense.kernel, xavier(DIM, 3 * DIM), dense.name)
            assert not np.any(values(dense.bias))
        assert_uniform(attention.output_dense.kernel, xavier(DIM, DIM), "out_proj")
        assert not np.any(values(attention.output_dense.bias))
        for norm in (first.cross_norm, first.ffn_norm, first.self_norm):
            assert np.all(values(norm.gamma) == 1) and not np.any(values(norm.beta))
        assert float(first.temperature.numpy()) == pytest.approx(0.07)


def test_torch_queries_are_xavier_uniform(torch_model):
    queries = torch_model.part_encoder.query_embedding  # 5 x 512 = 2560 samples
    assert values(queries).size == 5 * DIM
    assert_uniform(queries, 0.10773, "query_embedding")  # sqrt(6 / 517) = 0.107728
    assert np.abs(values(queries)).max() <= 0.10773  # not N(0, 1): nothing beyond the bound


def test_every_decoder_matrix_is_checked_as_xavier(torch_model):
    """The original re-initialises every decoder parameter with >= 2 dimensions Xavier-uniform:
    each such variable here is one of the matrices checked above, at its Xavier bound."""
    decoder = torch_model.part_encoder
    bounds = {id(decoder.query_embedding): xavier(5, DIM)}
    for _, dense, fan_in, fan_out in decoder_layers(torch_model):
        bounds[id(dense.kernel)] = xavier(fan_in, fan_out)
    attention = decoder.decoder_layers[0].self_attention
    for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
        bounds[id(dense.kernel)] = xavier(DIM, 3 * DIM)
    bounds[id(attention.output_dense.kernel)] = xavier(DIM, DIM)
    matrices = [v for v in decoder.variables if len(v.shape) >= 2]
    assert len(matrices) == 1 + 2 * 5 + 4
    for variable in matrices:
        assert id(variable) in bounds, variable.path
        assert_uniform(variable, bounds[id(variable)], variable.path)


def test_keras_initialization_is_glorot_with_zero_biases(keras_model):
    for name, dense, fan_in, fan_out in linear_layers(keras_model) + decoder_layers(keras_model):
        assert_uniform(dense.kernel, xavier(fan_in, fan_out), name + "/kernel")
        assert not np.any(values(dense.bias)), name
    assert_uniform(keras_model.part_encoder.query_embedding, xavier(DIM, 5), "query_embedding")


@pytest.mark.parametrize("part_encoder, kernel_fan_in", [
    ("adaptive_pool", FEATURES),  # Dense on the pooled 1024-d clips
    ("temporal_conv", 4 * FEATURES),  # Conv1D, kernel floor(20 / 5) = 4 clips x 1024 channels
])
def test_torch_segment_encoders(part_encoder, kernel_fan_in):
    keras.utils.set_random_seed(2)
    model = TPTModel(get_preset("mtl_aqa_dd", part_encoder=part_encoder), intervals())
    layer = model.part_encoder.linear
    assert_uniform(layer.kernel, 1 / math.sqrt(kernel_fan_in), part_encoder + "/kernel")
    assert_uniform(layer.bias, 1 / math.sqrt(kernel_fan_in), part_encoder + "/bias")


def test_faithful_presets_use_pytorch_defaults_and_clean_ones_keras():
    expected = {"mtl_aqa_dd": ("torch", 1e-8), "mtl_aqa_nodd": ("torch", 1e-8),
                "aqa7": ("torch", 1e-8), "jigsaws": ("torch", 1e-8),
                "custom": ("keras", 1e-7), "synthetic": ("keras", 1e-7),
                "finediving": ("torch", 1e-8), "synthetic_finediving": ("keras", 1e-7)}
    assert {name: (cfg.initialization, cfg.adam_epsilon) for name, cfg in PRESETS.items()} == expected
    for name, (initialization, epsilon) in expected.items():
        assert build_optimizer(PRESETS[name]).epsilon == epsilon
        # The faithful presets also update as the original (8 micro-batches of 3 per step, the
        # per-interval means within each, the last partial batch kept).
        faithful = initialization == "torch"
        cfg = PRESETS[name]
        assert (cfg.accumulate_steps, cfg.loss_normalization, cfg.keep_last_batch) == (
            (8, "per_replica", True) if faithful else (1, "global", False)), name
        if faithful:
            assert cfg.batch_size == 24


def test_compiled_model_uses_the_configs_epsilon():
    model = TPTModel(get_preset("synthetic", adam_epsilon=3e-8), intervals())
    model.compile()
    assert model.optimizer.epsilon == 3e-8


def test_invalid_values_are_refused():
    with pytest.raises(ValueError, match="'xavier'"):
        get_preset("mtl_aqa_dd", initialization="xavier")
    with pytest.raises(ValueError, match="adam_epsilon"):
        get_preset("mtl_aqa_dd", adam_epsilon=0.0)
