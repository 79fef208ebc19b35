"""Part encoders: TPT's decoder and the part-generation ablations of Tables 4-5, behind one switch.

Every part encoder maps clip features (B, T, D) to ``(parts (B, K, d), attention (B, L, T, K))``,
so the regressor and the model never know which one they got. ``attention[b, l, :, k]`` is the
weight each clip has in part k (it sums to 1 over time).

``config.part_encoder``:

* ``"decoder"``: :class:`tpt_keras.layers.decoder.TemporalParsingDecoder` (TPT). Its options cover the
  rest of the ablations: ``rank_weight=0`` / ``sparsity_weight=0`` (Table 4), the diversity loss
  instead of the ranking loss (``rank_weight=0, diversity_weight>0``, Table 5b), positional
  encodings on clips / queries (Table 5c).
* ``"holistic"``: the baseline of Table 4: one part = mean over all clips, projected to d.
* ``"adaptive_pool"``: Table 5a, K parts = adaptive average pooling of the clips into K segments
  (PyTorch ``adaptive_avg_pool1d`` bins), each projected to d.
* ``"temporal_conv"``: Table 5a, K parts = a temporal convolution with kernel = stride =
  floor(T/K) (the first K outputs), i.e. learned weights inside each segment.

The three ablations are one layer, :class:`SegmentPartEncoder`: fixed temporal segments, either
averaged then projected (``pooling="average"``; holistic is the one-segment case) or convolved.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from tpt_keras.layers import initializers
from tpt_keras.layers.decoder import TemporalParsingDecoder

POOLINGS = ("average", "conv")


def adaptive_pooling_matrix(num_clips: int, num_parts: int) -> np.ndarray:
    """Averaging weights of adaptive average pooling of T clips into K bins.

    Bin k covers clips [floor(k T / K), ceil((k + 1) T / K)) (PyTorch's rule; bins may overlap
    when K does not divide T).

    Returns:
        (T, K) float32, each column summing to 1.
    """
    weights = np.zeros((num_clips, num_parts), np.float32)
    for k in range(num_parts):
        start = (k * num_clips) // num_parts
        end = -((-(k + 1) * num_clips) // num_parts)  # ceil
        weights[start:end, k] = 1.0 / (end - start)
    return weights


def strided_segment_matrix(num_clips: int, num_parts: int) -> np.ndarray:
    """Which clips the strided convolution (kernel = stride = floor(T/K)) sees for each part.

    Returns:
        (T, K) float32: column k is 1/s on clips [k s, (k + 1) s), s = floor(T / K).
    """
    stride = num_clips // num_parts
    weights = np.zeros((num_clips, num_parts), np.float32)
    for k in range(num_parts):
        weights[k * stride:(k + 1) * stride, k] = 1.0 / stride
    return weights


@keras.saving.register_keras_serializable(package="tpt_keras")
class SegmentPartEncoder(layers.Layer):
    """Parts from fixed temporal segments (the holistic / adaptive-pool / temporal-conv ablations).

    Args:
        num_parts: K (1 gives the holistic baseline with ``pooling="average"``).
        hidden_dim: d, the part size.
        num_clips: T, the clips per video (the segments depend on it).
        pooling: "average" (mean inside each adaptive bin, then Dense(d)) or "conv" (Conv1D with
            d filters, kernel = stride = floor(T / K), first K outputs).
        initialization: "torch" (PyTorch's ``nn.Linear`` / ``nn.Conv1d`` default: weights and
            biases U(+-1/sqrt(fan_in))) or "keras" (Glorot, zero biases).

    Call arguments:
        clips: (B, T, D).

    Returns:
        parts (B, K, d); attention (B, 1, T, K): the fixed segment weights.

    Example:
        >>> holistic = SegmentPartEncoder(num_parts=1, hidden_dim=64, num_clips=20)
        >>> parts, weights = holistic(ops.ones((2, 20, 1024)))  # (2, 1, 64), (2, 1, 20, 1)
    """

    def __init__(self, num_parts: int, hidden_dim: int, num_clips: int, pooling: str = "average",
                 initialization: str = "torch", **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; received {pooling!r}.")
        if num_parts < 1:
            raise ValueError(f"num_parts must be positive; received {num_parts!r}.")
        if num_clips < num_parts:
            raise ValueError(f"Cannot cut {num_clips} clips into {num_parts} parts.")
        self.num_parts = num_parts
        self.hidden_dim = hidden_dim
        self.num_clips = num_clips
        self.pooling = pooling
        self.initialization = initializers.check_initialization(initialization)
        kernel = initializers.linear_kernel(initialization)
        if pooling == "average":
            self._segments = adaptive_pooling_matrix(num_clips, num_parts)  # (T, K)
            self.linear = layers.Dense(hidden_dim, kernel_initializer=kernel,
                                       dtype=self.dtype_policy, name="projection")
        else:
            self._segments = strided_segment_matrix(num_clips, num_parts)
            stride = num_clips // num_parts
            self.linear = layers.Conv1D(hidden_dim, kernel_size=stride, strides=stride,
                                        kernel_initializer=kernel, dtype=self.dtype_policy,
                                        name="convolution")

    def build(self, clips_shape):
        if clips_shape[1] not in (None, self.num_clips):
            raise ValueError(f"SegmentPartEncoder was made for {self.num_clips} clips; received "
                             f"shape {tuple(clips_shape)}.")
        if self.pooling == "average":
            input_shape = tuple(clips_shape[:1]) + (self.num_parts, clips_shape[-1])
        else:
            input_shape = tuple(clips_shape[:1]) + (self.num_clips, clips_shape[-1])
        initializers.build_linear(self.linear, input_shape, self.initialization)

    def call(self, clips, training=None):
        segments = ops.cast(self._segments, self.compute_dtype)  # (T, K)
        if self.pooling == "average":
            pooled = ops.einsum("btd,tk->bkd", clips, segments)  # (B, K, D)
            parts = self.linear(pooled)  # (B, K, d)
        else:
            parts = self.linear(clips)[:, : self.num_parts]  # (B, K, d)
        batch = ops.shape(clips)[0]
        attention = ops.broadcast_to(ops.cast(self._segments, "float32")[None, None],
                                     (batch, 1) + self._segments.shape)  # (B, 1, T, K)
        return parts, attention

    def compute_output_shape(self, clips_shape):
        return ((clips_shape[0], self.num_parts, self.hidden_dim),
                (clips_shape[0], 1, clips_shape[1], self.num_parts))

    def get_config(self):
        config = super().get_config()
        config.update({"num_parts": self.num_parts, "hidden_dim": self.hidden_dim,
                       "num_clips": self.num_clips, "pooling": self.pooling,
                       "initialization": self.initialization})
        return config


def build_part_encoder(config, dtype=None, name: str = "part_encoder") -> layers.Layer:
    """The part encoder selected by ``config.part_encoder`` (a :class:`TPTConfig`)."""
    kind = config.part_encoder
    if kind == "decoder":
        return TemporalParsingDecoder(
            num_queries=config.num_queries, num_layers=config.num_layers,
            hidden_dim=config.hidden_dim, ffn_dim=config.ffn_dim, num_heads=config.num_heads,
            dropout=config.dropout, temperature_init=config.temperature_init,
            attention_scale=config.attention_scale, self_attention=config.self_attention,
            clip_positional_encoding=config.clip_positional_encoding,
            query_positional_encoding=config.query_positional_encoding,
            rank_margin=config.rank_margin, rank_weight=config.rank_weight,
            sparsity_weight=config.sparsity_weight, diversity_weight=config.diversity_weight,
            diversity_sigma=config.diversity_sigma, initialization=config.initialization,
            dtype=dtype, name=name)
    segments = {"holistic": (1, "average"), "adaptive_pool": (config.num_queries, "average"),
                "temporal_conv": (config.num_queries, "conv")}
    if kind not in segments:
        raise ValueError(f"Unknown part_encoder {kind!r}.")
    num_parts, pooling = segments[kind]
    return SegmentPartEncoder(num_parts, config.hidden_dim, config.num_clips, pooling,
                              initialization=config.initialization, dtype=dtype, name=name)
