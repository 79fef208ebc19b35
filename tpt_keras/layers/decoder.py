"""The temporal parsing decoder: K learnable queries attend over T clip features.

Per layer, with memory x = the raw clip features (B, T, D) and decoder state s (B, K, d):

1. key = Dense(d)(x), value = Dense(d)(x)   (separate projections in each layer)
2. query = Dense(d)(s + q_embed)
3. A = softmax over TIME of key . query^T / d / tau   (B, T, K); tau learnable per layer
   (``attention_scale="sqrt_d"`` divides by sqrt(d) instead: the clean option)
4. s = LayerNorm(s + Dropout(A^T . value))          (no output projection)
5. s = LayerNorm(s + Dropout(FFN(s)))               (d -> ffn -> d, ReLU)
6. first layer only, after the FFN (quirk): s = LayerNorm(s + Dropout(MHA_8(s + q, s + q, s)))
   (``self_attention="every_layer"``: in every layer, before the cross attention, as DETR)

The state starts at zeros. The decoder returns the parts (B, K, d) and the stacked attention maps
(B, L, T, K), in float32. Its attention losses (ranking and sparsity, or diversity, of every
layer's map) are computed in one place, :meth:`TemporalParsingDecoder.attention_losses`, from
those returned maps: ``TPTModel`` calls it on the maps of its forward pass, and so does any other
training step. The layer adds no loss itself (``add_loss``): under ``tf.distribute`` Keras keeps
added losses in one list shared by every replica thread.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from tpt_keras.config import ATTENTION_SCALES, SELF_ATTENTION_MODES
from tpt_keras.layers import initializers
from tpt_keras.ops import losses as tpt_losses

LAYER_NORM_EPSILON = 1e-5


def sinusoidal_encoding(positions, dim: int):
    """Transformer sine/cosine encoding of (possibly fractional) positions.

    Args:
        positions: (P,) positions.
        dim: encoding size (even or odd).

    Returns:
        (P, dim) float32: [sin(p w_0), cos(p w_0), sin(p w_1), ...], w_i = 10000^(-2i/dim).
    """
    positions = ops.cast(ops.reshape(positions, (-1, 1)), "float32")  # (P, 1)
    index = ops.arange(dim, dtype="float32")  # (dim,)
    frequency = ops.exp(-(2.0 * ops.floor(index / 2.0)) * (math.log(10000.0) / dim))
    angle = positions * frequency[None, :]  # (P, dim)
    even = ops.equal(ops.mod(ops.arange(dim), 2), 0)
    return ops.where(even[None, :], ops.sin(angle), ops.cos(angle))


@keras.saving.register_keras_serializable(package="tpt_keras")
class PartSelfAttention(layers.Layer):
    """Multi-head self-attention over the K parts (PyTorch ``nn.MultiheadAttention`` layout).

    q, k, v projections (with bias), scaled dot-product per head with softmax in float32,
    dropout on the attention weights, output projection.

    Args:
        hidden_dim: d.
        num_heads: heads; must divide d.
        dropout: dropout on the attention weights.

    Example:
        >>> attention = PartSelfAttention(64, num_heads=8)
        >>> out = attention(x + pos, x + pos, x)  # (B, K, 64)
    """

    def __init__(self, hidden_dim: int, num_heads: int = 8, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim!r}) must be divisible by num_heads "
                             f"({num_heads!r}).")
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.dropout = dropout
        # PyTorch applies Xavier-uniform to the packed (3d, d) in-projection: bound sqrt(3 / 2d),
        # i.e. Glorot with scale 0.5 for each (d, d) part.
        packed = keras.initializers.VarianceScaling(scale=0.5, mode="fan_avg", distribution="uniform")
        self.query_dense = layers.Dense(hidden_dim, kernel_initializer=packed,
                                        dtype=self.dtype_policy, name="query")
        self.key_dense = layers.Dense(hidden_dim, kernel_initializer=packed,
                                      dtype=self.dtype_policy, name="key")
        self.value_dense = layers.Dense(hidden_dim, kernel_initializer=packed,
                                        dtype=self.dtype_policy, name="value")
        self.output_dense = layers.Dense(hidden_dim, dtype=self.dtype_policy, name="output")
        self.attention_dropout = layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, query_shape, key_shape=None, value_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        value_shape = query_shape if value_shape is None else value_shape
        self.query_dense.build(query_shape)
        self.key_dense.build(key_shape)
        self.value_dense.build(value_shape)
        self.output_dense.build(tuple(query_shape[:-1]) + (self.hidden_dim,))

    def _split_heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.num_heads, self.hidden_dim // self.num_heads))
        return ops.transpose(x, (0, 2, 1, 3))  # (B, h, K, d/h)

    def call(self, query, key, value, training=None):
        head_dim = self.hidden_dim // self.num_heads
        q = self._split_heads(self.query_dense(query))  # (B, h, K, d/h)
        k = self._split_heads(self.key_dense(key))
        v = self._split_heads(self.value_dense(value))
        logits = ops.matmul(ops.cast(q, "float32"), ops.transpose(ops.cast(k, "float32"), (0, 1, 3, 2)))
        weights = ops.softmax(logits / math.sqrt(head_dim), axis=-1)  # (B, h, K, K)
        weights = self.attention_dropout(ops.cast(weights, self.compute_dtype), training=training)
        out = ops.matmul(weights, v)  # (B, h, K, d/h)
        out = ops.transpose(out, (0, 2, 1, 3))
        batch, length = ops.shape(out)[0], ops.shape(out)[1]
        out = ops.reshape(out, (batch, length, self.hidden_dim))  # (B, K, d)
        return self.output_dense(out)

    def compute_output_shape(self, query_shape, key_shape=None, value_shape=None):
        return tuple(query_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "num_heads": self.num_heads,
                       "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="tpt_keras")
class TemporalParsingDecoderLayer(layers.Layer):
    """One decoder layer: temperature cross attention over time, FFN, optional self-attention.

    Args:
        hidden_dim: d.
        ffn_dim: FFN hidden width.
        num_heads: heads of the part self-attention.
        dropout: dropout rate everywhere.
        temperature_init: initial tau.
        attention_scale: "d" (quirk) or "sqrt_d".
        self_attention_position: "after_ffn" (TPT's first layer), "before_cross" (DETR) or
            "none".
        initialization: "torch" (biases of the Dense layers U(+-1/sqrt(fan_in)), PyTorch's
            default, as the original code) or "keras" (zero biases); weights are Glorot uniform
            in both.

    Call arguments:
        memory: (B, T, D) clip features used for values.
        state: (B, K, d) decoder state.
        query_pos: (B, K, d) or (K, d) query embedding added to the state for queries/keys.
        key_memory: optional (B, T, D) clip features used for the keys (memory + positional
            encoding); defaults to ``memory``.

    Returns:
        (state (B, K, d), attention (B, T, K) float32).

    Example:
        >>> layer = TemporalParsingDecoderLayer(64, 64, self_attention_position="after_ffn")
        >>> state, attention = layer(clips, ops.zeros((2, 5, 64)), query_embed)
    """

    def __init__(self, hidden_dim: int, ffn_dim: int, num_heads: int = 8, dropout: float = 0.1,
                 temperature_init: float = 0.07, attention_scale: str = "d",
                 self_attention_position: str = "none", initialization: str = "torch", **kwargs):
        super().__init__(**kwargs)
        if attention_scale not in ATTENTION_SCALES:
            raise ValueError(f"attention_scale must be one of {ATTENTION_SCALES}; received "
                             f"{attention_scale!r}.")
        if self_attention_position not in ("after_ffn", "before_cross", "none"):
            raise ValueError("self_attention_position must be 'after_ffn', 'before_cross' or "
                             f"'none'; received {self_attention_position!r}.")
        self.hidden_dim = hidden_dim
        self.ffn_dim = ffn_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.temperature_init = temperature_init
        self.attention_scale = attention_scale
        self.self_attention_position = self_attention_position
        self.initialization = initializers.check_initialization(initialization)

        def dense(units, name):
            return layers.Dense(units, kernel_initializer="glorot_uniform",
                                dtype=self.dtype_policy, name=name)

        def norm(name):
            return layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy,
                                             name=name)

        self.key_dense = dense(hidden_dim, "key")
        self.value_dense = dense(hidden_dim, "value")
        self.query_dense = dense(hidden_dim, "query")
        self.cross_dropout = layers.Dropout(dropout, dtype=self.dtype_policy)
        self.cross_norm = norm("cross_norm")
        self.ffn_inner = dense(ffn_dim, "ffn_inner")
        self.ffn_inner_dropout = layers.Dropout(dropout, dtype=self.dtype_policy)
        self.ffn_outer = dense(hidden_dim, "ffn_outer")
        self.ffn_dropout = layers.Dropout(dropout, dtype=self.dtype_policy)
        self.ffn_norm = norm("ffn_norm")
        if self_attention_position != "none":
            self.self_attention = PartSelfAttention(hidden_dim, num_heads, dropout,
                                                    dtype=self.dtype_policy, name="self_attention")
            self.self_dropout = layers.Dropout(dropout, dtype=self.dtype_policy)
            self.self_norm = norm("self_norm")
        else:
            self.self_attention = None

    def build(self, memory_shape, state_shape=None, query_pos_shape=None, key_memory_shape=None):
        memory_shape = tuple(memory_shape)
        state_shape = (memory_shape[0], None, self.hidden_dim)
        self.temperature = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.temperature_init),
            dtype="float32", autocast=False, name="temperature")
        def build_dense(layer, input_shape):
            initializers.build_linear(layer, input_shape, self.initialization)

        build_dense(self.key_dense, memory_shape)
        build_dense(self.value_dense, memory_shape)
        build_dense(self.query_dense, state_shape)
        self.cross_norm.build(state_shape)
        build_dense(self.ffn_inner, state_shape)
        build_dense(self.ffn_outer, state_shape[:-1] + (self.ffn_dim,))
        self.ffn_norm.build(state_shape)
        if self.self_attention is not None:
            self.self_attention.build(state_shape, state_shape, state_shape)
            self.self_norm.build(state_shape)

    def _self_attend(self, state, query_pos, training):
        with_pos = state + query_pos
        update = self.self_attention(with_pos, with_pos, state, training=training)
        return self.self_norm(state + self.self_dropout(update, training=training))

    def call(self, memory, state, query_pos, key_memory=None, training=None):
        query_pos = ops.cast(query_pos, self.compute_dtype)
        if self.self_attention_position == "before_cross":
            state = self._self_attend(state, query_pos, training)
        key = self.key_dense(memory if key_memory is None else key_memory)  # (B, T, d)
        value = self.value_dense(memory)  # (B, T, d)
        query = self.query_dense(state + query_pos)  # (B, K, d)
        scale = float(self.hidden_dim) if self.attention_scale == "d" else math.sqrt(self.hidden_dim)
        logits = ops.matmul(ops.cast(key, "float32"),
                            ops.transpose(ops.cast(query, "float32"), (0, 2, 1)))  # (B, T, K)
        logits = logits / scale / self.temperature
        attention = ops.softmax(logits, axis=1)  # over time: (B, T, K), float32
        update = ops.matmul(ops.transpose(ops.cast(attention, self.compute_dtype), (0, 2, 1)),
                            value)  # (B, K, d)
        state = self.cross_norm(state + self.cross_dropout(update, training=training))
        hidden = self.ffn_inner_dropout(ops.relu(self.ffn_inner(state)), training=training)
        state = self.ffn_norm(state + self.ffn_dropout(self.ffn_outer(hidden), training=training))
        if self.self_attention_position == "after_ffn":
            state = self._self_attend(state, query_pos, training)
        return state, attention

    def compute_output_shape(self, memory_shape, state_shape=None, query_pos_shape=None,
                             key_memory_shape=None):
        batch, time = memory_shape[0], memory_shape[1]
        num_queries = None if state_shape is None else state_shape[1]
        return (batch, num_queries, self.hidden_dim), (batch, time, num_queries)

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_dim": self.hidden_dim, "ffn_dim": self.ffn_dim, "num_heads": self.num_heads,
            "dropout": self.dropout, "temperature_init": self.temperature_init,
            "attention_scale": self.attention_scale,
            "self_attention_position": self.self_attention_position,
            "initialization": self.initialization,
        })
        return config


@keras.saving.register_keras_serializable(package="tpt_keras")
class TemporalParsingDecoder(layers.Layer):
    """TPT's decoder: K learnable queries -> K temporal part representations.

    Args:
        num_queries: K.
        num_layers: L.
        hidden_dim: d.
        ffn_dim: FFN width.
        num_heads: heads of the part self-attention.
        dropout: dropout rate.
        temperature_init: initial learnable temperature of each layer.
        attention_scale: "d" (quirk) or "sqrt_d".
        self_attention: "first_layer_after_ffn" (quirk), "every_layer" or "none".
        clip_positional_encoding: add a sinusoidal encoding of the clip index to the memory used
            for keys (Table 5c ablation).
        query_positional_encoding: add the sinusoidal encoding of floor(T/K) * i to query i
            (Table 5c ablation).
        rank_margin, rank_weight, sparsity_weight, diversity_weight, diversity_sigma: the
            attention losses of every layer (:meth:`attention_losses`); weight 0 switches one off.
        initialization: "torch" (every matrix, the queries included, Xavier uniform; Dense
            biases U(+-1/sqrt(fan_in)): the original code's start) or "keras" (zero biases).

    Call arguments:
        clips: (B, T, D) clip features.

    Returns:
        parts: (B, K, d); attention: (B, L, T, K) float32, each [b, l, :, k] summing to 1.

    Example:
        >>> decoder = TemporalParsingDecoder(num_queries=5, num_layers=2, hidden_dim=64, ffn_dim=64)
        >>> parts, attention = decoder(ops.ones((2, 20, 1024)))  # (2, 5, 64), (2, 2, 20, 5)
    """

    def __init__(self, num_queries: int = 5, num_layers: int = 2, hidden_dim: int = 512,
                 ffn_dim: int = 512, num_heads: int = 8, dropout: float = 0.1,
                 temperature_init: float = 0.07, attention_scale: str = "d",
                 self_attention: str = "first_layer_after_ffn",
                 clip_positional_encoding: bool = False, query_positional_encoding: bool = False,
                 rank_margin: float = 3.2, rank_weight: float = 1.0,
                 sparsity_weight: float = 0.05, diversity_weight: float = 0.0,
                 diversity_sigma: float = 1.0, initialization: str = "torch", **kwargs):
        super().__init__(**kwargs)
        if self_attention not in SELF_ATTENTION_MODES:
            raise ValueError(f"self_attention must be one of {SELF_ATTENTION_MODES}; received "
                             f"{self_attention!r}.")
        for name, value in (("num_queries", num_queries), ("num_layers", num_layers),
                            ("hidden_dim", hidden_dim), ("ffn_dim", ffn_dim)):
            if value < 1:
                raise ValueError(f"{name} must be positive; received {value!r}.")
        self.num_queries = num_queries
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.ffn_dim = ffn_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.temperature_init = temperature_init
        self.attention_scale = attention_scale
        self.self_attention = self_attention
        self.clip_positional_encoding = clip_positional_encoding
        self.query_positional_encoding = query_positional_encoding
        self.rank_margin = rank_margin
        self.rank_weight = rank_weight
        self.sparsity_weight = sparsity_weight
        self.diversity_weight = diversity_weight
        self.diversity_sigma = diversity_sigma
        self.initialization = initializers.check_initialization(initialization)

        def position(index):
            if self_attention == "every_layer":
                return "before_cross"
            if self_attention == "first_layer_after_ffn" and index == 0:
                return "after_ffn"
            return "none"

        self.decoder_layers = [
            TemporalParsingDecoderLayer(
                hidden_dim, ffn_dim, num_heads=num_heads, dropout=dropout,
                temperature_init=temperature_init, attention_scale=attention_scale,
                self_attention_position=position(index), initialization=initialization,
                dtype=self.dtype_policy,
                name=f"layer_{index}")
            for index in range(num_layers)
        ]

    def build(self, clips_shape):
        clips_shape = tuple(clips_shape)
        self.query_embedding = self.add_weight(
            shape=(self.num_queries, self.hidden_dim),
            initializer=initializers.query_embedding(self.initialization),
            name="query_embedding")
        for layer in self.decoder_layers:
            layer.build(clips_shape, (clips_shape[0], self.num_queries, self.hidden_dim))

    def call(self, clips, training=None):
        batch = ops.shape(clips)[0]
        num_clips = ops.shape(clips)[1]
        query_pos = ops.cast(self.query_embedding, self.compute_dtype)  # (K, d)
        if self.query_positional_encoding:
            positions = (num_clips // self.num_queries) * ops.arange(self.num_queries)
            query_pos = query_pos + ops.cast(sinusoidal_encoding(positions, self.hidden_dim),
                                             self.compute_dtype)
        query_pos = ops.broadcast_to(query_pos[None], (batch, self.num_queries, self.hidden_dim))
        key_memory = None
        if self.clip_positional_encoding:
            encoding = sinusoidal_encoding(ops.arange(num_clips), ops.shape(clips)[-1])  # (T, D)
            key_memory = clips + ops.cast(encoding, clips.dtype)[None]
        state = ops.zeros_like(query_pos)  # (B, K, d)
        attentions = []
        for layer in self.decoder_layers:
            state, attention = layer(clips, state, query_pos, key_memory=key_memory,
                                     training=training)
            attentions.append(attention)
        return state, ops.stack(attentions, axis=1)  # (B, L, T, K)

    def attention_losses(self, attention):
        """The attention losses of a batch, from the maps :meth:`call` returned.

        Args:
            attention: (B, L, T, K) attention maps (every layer).

        Returns:
            (total, terms): ``terms`` the unweighted float32 scalars summed over layers,
            "rank_loss" and "sparsity_loss" (and "diversity_loss" when its weight is non-zero),
            each a batch mean; ``total`` = sum of weight x term (rank_weight, sparsity_weight,
            diversity_weight).
        """
        losses = {"rank_loss": (self.rank_weight,
                                lambda a: tpt_losses.ranking_loss(a, self.rank_margin)),
                  "sparsity_loss": (self.sparsity_weight, tpt_losses.sparsity_loss)}
        if self.diversity_weight:
            losses["diversity_loss"] = (
                self.diversity_weight, lambda a: tpt_losses.diversity_loss(a, self.diversity_sigma))
        total = ops.zeros((), "float32")
        terms = {}
        for name, (weight, loss_fn) in losses.items():
            terms[name] = sum(loss_fn(attention[:, layer]) for layer in range(self.num_layers))
            if weight:
                total = total + weight * terms[name]
        return total, terms

    def compute_output_shape(self, clips_shape):
        batch, time = clips_shape[0], clips_shape[1]
        return ((batch, self.num_queries, self.hidden_dim),
                (batch, self.num_layers, time, self.num_queries))

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_queries": self.num_queries, "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim, "ffn_dim": self.ffn_dim, "num_heads": self.num_heads,
            "dropout": self.dropout, "temperature_init": self.temperature_init,
            "attention_scale": self.attention_scale, "self_attention": self.self_attention,
            "clip_positional_encoding": self.clip_positional_encoding,
            "query_positional_encoding": self.query_positional_encoding,
            "rank_margin": self.rank_margin, "rank_weight": self.rank_weight,
            "sparsity_weight": self.sparsity_weight, "diversity_weight": self.diversity_weight,
            "diversity_sigma": self.diversity_sigma, "initialization": self.initialization,
        })
        return config
