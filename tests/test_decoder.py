"""Temporal parsing decoder and part encoders: NumPy parity, attention invariants, added losses,
serialisation, mixed precision."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from layer_test_case import run_layer_test
from tpt_keras.ops import losses
from tpt_keras.config import get_preset
from tpt_keras.layers.decoder import (
    PartSelfAttention,
    TemporalParsingDecoder,
    TemporalParsingDecoderLayer,
    sinusoidal_encoding,
)
from tpt_keras.layers.part_encoders import (
    SegmentPartEncoder,
    adaptive_pooling_matrix,
    build_part_encoder,
    strided_segment_matrix,
)

B, T, D, K, DIM = 3, 12, 10, 4, 16


def clips(seed=0, batch=B):
    return np.random.default_rng(seed).standard_normal((batch, T, D)).astype(np.float32)


def small_decoder(**kwargs):
    options = dict(num_queries=K, num_layers=2, hidden_dim=DIM, ffn_dim=24, num_heads=4,
                   dropout=0.1)
    options.update(kwargs)
    return TemporalParsingDecoder(**options)


# ----------------------------------------------------------------------------- NumPy reference
def np_dense(x, layer):
    kernel, bias = (np.asarray(w) for w in layer.get_weights())
    return x @ kernel + bias


def np_layer_norm(x, layer, eps=1e-5):
    gamma, beta = (np.asarray(w) for w in layer.get_weights())
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def np_self_attention(attention, query, key, value):
    heads = attention.num_heads
    def split(x):  # (B, K, d) -> (B, K, h, d/h)
        return x.reshape(x.shape[0], x.shape[1], heads, -1)
    q, k, v = (split(np_dense(x, layer)) for x, layer in (
        (query, attention.query_dense), (key, attention.key_dense), (value, attention.value_dense)))
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    out = np.einsum("bhqk,bkhd->bqhd", np_softmax(scores, -1), v)
    return np_dense(out.reshape(out.shape[0], out.shape[1], -1), attention.output_dense)


def np_decoder(decoder, x):
    """The decoder written out directly (inference mode): queries, temperature cross-attention, FFN."""
    pos = np.asarray(decoder.query_embedding)[None].repeat(len(x), 0)  # (B, K, d)
    if decoder.query_positional_encoding:
        positions = (x.shape[1] // decoder.num_queries) * np.arange(decoder.num_queries)
        pos = pos + np.asarray(sinusoidal_encoding(positions, decoder.hidden_dim))[None]
    key_x = x
    if decoder.clip_positional_encoding:
        key_x = x + np.asarray(sinusoidal_encoding(np.arange(x.shape[1]), x.shape[2]))[None]
    state = np.zeros_like(pos)
    maps = []
    for layer in decoder.decoder_layers:
        def self_attend(state):
            update = np_self_attention(layer.self_attention, state + pos, state + pos, state)
            return np_layer_norm(state + update, layer.self_norm)
        if layer.self_attention_position == "before_cross":
            state = self_attend(state)
        key = np_dense(key_x, layer.key_dense)
        value = np_dense(x, layer.value_dense)
        query = np_dense(state + pos, layer.query_dense)
        scale = decoder.hidden_dim if decoder.attention_scale == "d" else math.sqrt(decoder.hidden_dim)
        logits = key @ query.transpose(0, 2, 1) / scale / float(layer.temperature.numpy())
        attention = np_softmax(logits, axis=1)  # over time
        state = np_layer_norm(state + attention.transpose(0, 2, 1) @ value, layer.cross_norm)
        hidden = np.maximum(np_dense(state, layer.ffn_inner), 0)
        state = np_layer_norm(state + np_dense(hidden, layer.ffn_outer), layer.ffn_norm)
        if layer.self_attention_position == "after_ffn":
            state = self_attend(state)
        maps.append(attention)
    return state, np.stack(maps, 1)


@pytest.mark.parametrize("options", [
    dict(),  # faithful: /d, self-attention after the FFN of layer 0 only
    dict(attention_scale="sqrt_d", self_attention="every_layer"),
    dict(self_attention="none", num_layers=3),
    dict(clip_positional_encoding=True, query_positional_encoding=True),
])
def test_decoder_matches_numpy_reference(options):
    decoder = small_decoder(**options)
    x = clips()
    decoder(x)  # build
    for index, layer in enumerate(decoder.decoder_layers):
        layer.temperature.assign(0.5 + 0.25 * index)  # the temperature is used, per layer
    parts, attention = decoder(x, training=False)
    ref_parts, ref_attention = np_decoder(decoder, x)
    np.testing.assert_allclose(np.asarray(attention), ref_attention, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(parts), ref_parts, rtol=1e-4, atol=1e-4)


def test_self_attention_placement():
    faithful = small_decoder(num_layers=3)
    assert [layer.self_attention_position for layer in faithful.decoder_layers] == [
        "after_ffn", "none", "none"]
    assert faithful.decoder_layers[1].self_attention is None
    clean = small_decoder(num_layers=3, self_attention="every_layer")
    assert {layer.self_attention_position for layer in clean.decoder_layers} == {"before_cross"}


def test_shapes_and_attention_sums_to_one_over_time():
    decoder = small_decoder(num_layers=3)
    parts, attention = decoder(clips(), training=True)
    assert tuple(parts.shape) == (B, K, DIM)
    assert tuple(attention.shape) == (B, 3, T, K)
    assert decoder.compute_output_shape((B, T, D)) == ((B, K, DIM), (B, 3, T, K))
    assert keras.backend.standardize_dtype(attention.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(attention).sum(axis=2), np.ones((B, 3, K)), rtol=1e-5)
    assert np.all(np.asarray(attention) >= 0)


def test_decoder_state_starts_at_zero_and_queries_are_weights():
    decoder = small_decoder()
    decoder(clips())
    names = sorted(weight.path.split("/")[-1] for weight in decoder.weights
                   if "layer_" not in weight.path)
    assert names == ["query_embedding"]
    assert tuple(decoder.query_embedding.shape) == (K, DIM)
    temperatures = [w for w in decoder.trainable_weights if w.path.endswith("temperature")]
    assert [float(w.numpy()) for w in temperatures] == pytest.approx([0.07, 0.07])


def test_sinusoidal_encoding_values():
    encoding = np.asarray(sinusoidal_encoding(np.array([0.0, 1.0]), 4))
    # Frequencies 1, 1, 10000^(-1/2) = 0.01, 0.01; even columns sin, odd cos.
    np.testing.assert_allclose(encoding, [[0, 1, 0, 1],
                                          [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]],
                               rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- attention losses
def expected_terms(attention, margin=3.2):
    """(rank, sparsity) of a (B, L, T, K) stack, summed over layers, from the pure functions."""
    rank = sum(float(losses.ranking_loss(attention[:, l], margin)) for l in range(attention.shape[1]))
    sparsity = sum(float(losses.sparsity_loss(attention[:, l])) for l in range(attention.shape[1]))
    return rank, sparsity


def test_attention_losses_of_every_layer_weighted():
    decoder = small_decoder(rank_weight=2.0, sparsity_weight=0.5, rank_margin=1.5)
    _, attention = decoder(clips())
    total, terms = decoder.attention_losses(attention)
    rank, sparsity = expected_terms(np.asarray(attention), 1.5)
    assert sorted(terms) == ["rank_loss", "sparsity_loss"]
    assert float(terms["rank_loss"]) == pytest.approx(rank, rel=1e-5)
    assert float(terms["sparsity_loss"]) == pytest.approx(sparsity, rel=1e-5)
    assert float(total) == pytest.approx(2.0 * rank + 0.5 * sparsity, rel=1e-5)
    # The layer adds no loss itself: the terms are computed in one place.
    assert decoder.losses == []


def test_zero_weights_switch_losses_off_and_diversity_replaces_rank():
    decoder = small_decoder(rank_weight=0.0, sparsity_weight=0.0)
    _, attention = decoder(clips())
    total, terms = decoder.attention_losses(attention)
    assert float(total) == 0.0 and float(terms["rank_loss"]) > 0  # logged, not counted
    decoder = small_decoder(rank_weight=0.0, sparsity_weight=0.0, diversity_weight=1.5,
                            diversity_sigma=2.0)
    _, attention = decoder(clips())
    total, terms = decoder.attention_losses(attention)
    expected = sum(float(losses.diversity_loss(np.asarray(attention)[:, l], 2.0)) for l in range(2))
    assert float(terms["diversity_loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(total) == pytest.approx(1.5 * expected, rel=1e-5)


# ----------------------------------------------------------------------------- part encoders
def test_pooling_matrices():
    # Adaptive bins of 5 clips into 3: [0, 2), [1, 4), [3, 5) (PyTorch's floor/ceil rule).
    np.testing.assert_allclose(adaptive_pooling_matrix(5, 3), [
        [1 / 2, 0, 0], [1 / 2, 1 / 3, 0], [0, 1 / 3, 0], [0, 1 / 3, 1 / 2], [0, 0, 1 / 2]])
    np.testing.assert_allclose(adaptive_pooling_matrix(4, 1), np.full((4, 1), 0.25))
    segments = strided_segment_matrix(20, 3)  # stride 6: [0, 6), [6, 12), [12, 18)
    np.testing.assert_allclose(segments.sum(0), [1, 1, 1])
    assert segments[17, 2] == pytest.approx(1 / 6) and segments[18:].sum() == 0


def test_holistic_part_is_projected_mean():
    encoder = SegmentPartEncoder(1, DIM, T)
    x = clips()
    parts, attention = encoder(x)
    np.testing.assert_allclose(np.asarray(parts)[:, 0], np_dense(x.mean(1), encoder.linear),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(attention), np.full((B, 1, T, 1), 1 / T), rtol=1e-6)


def test_adaptive_pool_parts():
    encoder = SegmentPartEncoder(K, DIM, T, "average")
    x = clips()
    parts, _ = encoder(x)
    step = T // K
    manual = np.stack([x[:, k * step:(k + 1) * step].mean(1) for k in range(K)], 1)
    np.testing.assert_allclose(np.asarray(parts), np_dense(manual, encoder.linear),
                               rtol=1e-5, atol=1e-5)


def test_temporal_conv_parts():
    encoder = SegmentPartEncoder(5, DIM, T, "conv")  # T = 12, K = 5: kernel = stride = 2, 5 of 6 outputs
    x = clips()
    parts, attention = encoder(x)
    kernel, bias = (np.asarray(w) for w in encoder.linear.get_weights())  # (2, D, d)
    manual = np.stack([np.einsum("bsd,sde->be", x[:, 2 * k:2 * k + 2], kernel) + bias
                       for k in range(5)], 1)
    np.testing.assert_allclose(np.asarray(parts), manual, rtol=1e-5, atol=1e-5)
    assert tuple(attention.shape) == (B, 1, T, 5)


@pytest.mark.parametrize("kind, cls, parts", [
    ("decoder", TemporalParsingDecoder, 5), ("holistic", SegmentPartEncoder, 1),
    ("adaptive_pool", SegmentPartEncoder, 5), ("temporal_conv", SegmentPartEncoder, 5)])
def test_build_part_encoder(kind, cls, parts):
    cfg = get_preset("synthetic", part_encoder=kind, feature_dim=D, hidden_dim=DIM, ffn_dim=DIM,
                     **{"protocol.num_clips": T})
    encoder = build_part_encoder(cfg)
    assert isinstance(encoder, cls)
    out, attention = encoder(clips())
    assert tuple(out.shape) == (B, parts, DIM)
    np.testing.assert_allclose(np.asarray(attention).sum(2), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- Keras contract
STATE = np.random.default_rng(3).standard_normal((B, K, DIM)).astype(np.float32)
DECODER_OPTIONS = dict(num_queries=K, num_layers=2, hidden_dim=DIM, ffn_dim=24, num_heads=4)


@pytest.mark.parametrize("layer_cls, init_kwargs, inputs, expected_shape, float32_outputs", [
    (TemporalParsingDecoder,
     dict(DECODER_OPTIONS, attention_scale="sqrt_d", self_attention="every_layer",
          query_positional_encoding=True, diversity_weight=0.3),
     (clips(),), ((B, K, DIM), (B, 2, T, K)), (1,)),
    (TemporalParsingDecoder, dict(DECODER_OPTIONS, initialization="keras"),
     (clips(),), ((B, K, DIM), (B, 2, T, K)), (1,)),
    (TemporalParsingDecoderLayer,
     dict(hidden_dim=DIM, ffn_dim=24, num_heads=4, attention_scale="sqrt_d",
          self_attention_position="after_ffn"),
     (clips(), STATE, STATE), ((B, K, DIM), (B, T, K)), (1,)),
    (PartSelfAttention, dict(hidden_dim=DIM, num_heads=4), (STATE, STATE, STATE), (B, K, DIM), ()),
    (SegmentPartEncoder, dict(num_parts=K, hidden_dim=DIM, num_clips=T, pooling="conv"),
     (clips(),), ((B, K, DIM), (B, 1, T, K)), (1,)),
    (SegmentPartEncoder, dict(num_parts=1, hidden_dim=DIM, num_clips=T, initialization="keras"),
     (clips(),), ((B, 1, DIM), (B, 1, T, 1)), (1,)),
])
def test_keras_layer_contract(layer_cls, init_kwargs, inputs, expected_shape, float32_outputs):
    run_layer_test(layer_cls, init_kwargs, inputs, expected_shape, float32_outputs)


def test_segment_encoder_refuses_another_number_of_clips():
    with pytest.raises(ValueError, match="made for 12 clips"):
        SegmentPartEncoder(K, DIM, T)(np.zeros((1, T + 1, D), np.float32))
    with pytest.raises(ValueError, match="Cannot cut 3 clips into 4 parts"):
        SegmentPartEncoder(4, DIM, 3)


def test_invalid_arguments_quote_the_value():
    with pytest.raises(ValueError, match="'sideways'"):
        small_decoder(self_attention="sideways")
    with pytest.raises(ValueError, match="'cube'"):
        TemporalParsingDecoderLayer(DIM, DIM, attention_scale="cube")
    with pytest.raises(ValueError, match="divisible"):
        PartSelfAttention(10, num_heads=4)
    with pytest.raises(ValueError, match="'max'"):
        SegmentPartEncoder(2, DIM, T, "max")
    with pytest.raises(ValueError, match="'xavier'"):
        small_decoder(initialization="xavier")


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_values_follow_float32(policy):
    reference = small_decoder(dropout=0.0)
    x = clips()
    ref_parts, ref_attention = reference(x)
    decoder = small_decoder(dropout=0.0, dtype=policy)
    decoder(x)
    decoder.set_weights(reference.get_weights())
    parts, attention = decoder(x)
    compute = "float16" if policy == "mixed_float16" else "bfloat16"
    total, terms = decoder.attention_losses(attention)
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32"
               for v in [total, *terms.values()])
    np.testing.assert_allclose(np.asarray(attention).sum(2), 1.0, rtol=1e-5)
    tolerance = 2e-2 if compute == "float16" else 1e-1
    np.testing.assert_allclose(np.asarray(attention), np.asarray(ref_attention), atol=tolerance)
    np.testing.assert_allclose(np.asarray(ops.cast(parts, "float32")), np.asarray(ref_parts),
                               atol=10 * tolerance)
