"""Initial weights: Keras' defaults, or the PyTorch defaults the authors' code trained from.

``initialization="torch"`` (the faithful presets) gives every layer what the original PyTorch code
gives it (``fan_in`` = inputs per output unit: input features, times the kernel size for a
convolution):

* pair encoder, heads, segment encoders (``nn.Linear`` / ``nn.Conv1d`` defaults): weights and
  biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``kaiming_uniform(a=sqrt(5))`` for the weights);
* decoder key / value / query / FFN (``nn.Linear`` whose matrices the decoder re-initialises):
  Xavier (Glorot) uniform weights, biases U(-1/sqrt(fan_in), 1/sqrt(fan_in));
* decoder self-attention (``nn.MultiheadAttention``): Xavier-uniform weights (q, k, v as one
  packed (3d, d) matrix), zero biases;
* LayerNorm: ones and zeros;
* learnable queries (``nn.Embedding``, re-initialised by the decoder): Xavier uniform,
  U(-sqrt(6 / (K + d)), sqrt(6 / (K + d))).

The original's decoder re-initialises every decoder parameter with two or more dimensions
Xavier-uniform (its ``_reset_parameters``): the key / value / query / FFN matrices, the
self-attention's packed in-projection and out-projection, and the queries; vectors (biases,
LayerNorm, the temperature) keep their module's own start.

``initialization="keras"`` (the clean presets): Glorot-uniform matrices and queries, zero biases.
The self-attention and LayerNorm are the same in both.
"""

from __future__ import annotations

import math

import keras

from tpt_keras.config import INITIALIZATIONS


def check_initialization(initialization: str) -> str:
    """``initialization`` itself, or ValueError quoting it."""
    if initialization not in INITIALIZATIONS:
        raise ValueError(f"initialization must be one of {INITIALIZATIONS}; received "
                         f"{initialization!r}.")
    return initialization


def linear_kernel(initialization: str) -> keras.initializers.Initializer:
    """Kernel initializer of a plain linear layer (an ``nn.Linear`` / ``nn.Conv1d`` in the original).

    PyTorch's ``kaiming_uniform(a=sqrt(5))`` has gain sqrt(2 / (1 + 5)) and bound
    gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in): Keras' variance scaling with scale 1/3.
    """
    if check_initialization(initialization) == "torch":
        return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in",
                                                  distribution="uniform")
    return keras.initializers.GlorotUniform()


def query_embedding(initialization: str) -> keras.initializers.Initializer:
    """Initializer of the learnable (K, d) queries: Xavier (Glorot) uniform, U(+-sqrt(6 / (K + d))).

    Under "torch" too: the original's ``nn.Embedding`` draws N(0, 1), but its decoder then
    re-initialises every parameter with two or more dimensions Xavier-uniform, the queries
    included (0.108 for K = 5, d = 512)."""
    check_initialization(initialization)
    return keras.initializers.GlorotUniform()


def build_linear(layer, input_shape, initialization: str) -> None:
    """Build a ``Dense`` or ``Conv1D`` sublayer; under "torch" its bias is first set to PyTorch's
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (fan_in = input features x kernel size), under "keras" it
    keeps the layer's own (zeros).

    Args:
        layer: an unbuilt ``keras.layers.Dense`` or ``keras.layers.Conv1D``.
        input_shape: the shape it is built for, last axis known.
        initialization: "torch" or "keras".
    """
    if check_initialization(initialization) == "torch" and layer.use_bias:
        fan_in = int(input_shape[-1]) * math.prod(getattr(layer, "kernel_size", ()) or (1,))
        bound = 1.0 / math.sqrt(fan_in)
        layer.bias_initializer = keras.initializers.RandomUniform(-bound, bound)
    layer.build(input_shape)
