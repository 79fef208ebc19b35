"""Video ops: the TensorFlow half of the video protocol — flip/resize/crop, clip windowing,
normalisation, and the in-graph twin of the temporal rule.

The protocol itself (which frames, which resize, crop, flip and normalisation) is one
:class:`data_pipelines.video.protocol.VideoProtocol`, owned by the config preset; its temporal rule is
numpy (:func:`data_pipelines.video.protocol.sample_frames`) because it runs *before* decoding (a frame
folder then decodes only the 103 or 160 frames it needs). The functions here take that object.

Randomness comes only from explicit seeds: temporal draws take a numpy seed, spatial draws a
stateless TensorFlow seed of shape (2,), so the same seed gives the same video whatever the
tf.data parallelism.

Clips: 103 frames → 20 clips of 8 with starts 0, 5, …, 95 (neighbours overlap by 3 frames);
160 frames → 20 non-overlapping clips (starts 0, 8, …, 152).

Spatial: one flip decision and one crop position per video, shared by all of its frames, drawn
only in training and only if the protocol allows them (``flip``, ``random_crop``); test is the
centre crop without flip. Resize and crop are computed in one ``ScaleAndTranslate`` pass that
evaluates only the crop window, equal to ``tf.image.resize`` followed by slicing (antialiased
bilinear by default, like PIL's resize in the original).

Execution options that do not change the values the model sees are keywords, not protocol
fields: ``uint8=True`` emits uint8 clips (the model normalises them on the accelerator),
``antialias``, ``xla`` (one fused kernel for crop + clips + normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from data_pipelines.video.protocol import NORMALIZATIONS, VideoProtocol, clip_indices, clip_starts

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def clip_shape(protocol: VideoProtocol) -> tuple[int, int, int, int, int]:
    """(num_clips, clip_len, crop, crop, 3) of one video."""
    return (protocol.num_clips, protocol.clip_len, protocol.crop_size, protocol.crop_size, 3)


def clip_dtype(uint8: bool = False) -> tf.DType:
    """float32 (normalised clips), or uint8 with ``uint8=True``."""
    return tf.uint8 if uint8 else tf.float32


def tf_temporal_indices(num_frames, spec: VideoProtocol, start: int = 0) -> tf.Tensor:
    """TensorFlow twin of :func:`temporal_indices` for a length known only at run time (inside an
    exported signature, where numpy cannot run).

    Args:
        num_frames: int32 scalar tensor, frames in the video (≥ 1).
        spec: the :class:`data_pipelines.video.protocol.VideoProtocol`.
        start: window start (ignored by linspace protocols).

    Returns:
        int32 (spec.num_frames,) indices.
    """
    length = spec.num_frames

    def linspace():
        # numpy's own float64 operations (position × ((T - 1) / (length - 1)), the last set to
        # T - 1), so that the floors are equal. A true division: in a graph, Grappler turns a
        # division by a constant into a product with its reciprocal (7 × (1/7) = 0.999…), and
        # tf.linspace gave frame 4 for 5; DivNoNan is left alone (the divisor is never 0).
        last = tf.cast(num_frames - 1, tf.float64)
        step = tf.math.divide_no_nan(last, tf.constant(float(max(length - 1, 1)), tf.float64))
        values = tf.range(length, dtype=tf.float64) * step
        if length > 1:
            values = tf.concat([values[:-1], last[tf.newaxis]], 0)
        return tf.cast(tf.floor(values), tf.int32)

    def window():
        first = tf.clip_by_value(tf.constant(start, tf.int32), 0, num_frames - length)
        return tf.range(first, first + length)

    if spec.sampling == "linspace":
        return linspace()
    return tf.cond(num_frames < length, linspace, window)


def window_clips(frames, starts: Sequence[int] | np.ndarray, clip_len: int = 8) -> tf.Tensor:
    """Cut clips out of a frame sequence.

    Args:
        frames: (T, H, W, C) array or tensor.
        starts: (num_clips,) first frame of each clip (e.g. :func:`clip_starts`).
        clip_len: frames per clip.

    Returns:
        (num_clips, clip_len, H, W, C) tensor of ``frames``' dtype.
    """
    starts = np.asarray(starts, dtype=np.int32)
    indices = starts[:, None] + np.arange(clip_len, dtype=np.int32)[None, :]  # (num_clips, clip_len)
    frames = tf.convert_to_tensor(frames)
    if frames.shape[0] is not None and indices.max() >= frames.shape[0]:
        raise ValueError(f"clips need {indices.max() + 1} frames, the video has {frames.shape[0]}")
    return tf.gather(frames, indices)  # (num_clips, clip_len, H, W, C)


# ---------------------------------------------------------------------------------------------
# Spatial (TensorFlow, stateless seeds)
# ---------------------------------------------------------------------------------------------
def _seed(seed) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    return seed


def flip_decision(seed, training: bool, prob: float = 0.5) -> tf.Tensor:
    """One horizontal-flip decision for a whole video: bool scalar (always False at test)."""
    if not training or prob <= 0:
        return tf.constant(False)
    return tf.random.stateless_uniform([], seed=_seed(seed)) < prob


def crop_offset(resized_hw: tuple[int, int], crop_size: int, training: bool, seed=None) -> tf.Tensor:
    """Top-left corner of the crop in the resized frame, shared by all frames.

    Training: uniform over every valid position (both ends included, like torchvision's
    RandomCrop). Test: the centre, ``round((size - crop) / 2)`` per axis (torchvision CenterCrop).

    Returns:
        int32 (2,): (y, x).
    """
    height, width = (int(v) for v in resized_hw)
    if crop_size > height or crop_size > width:
        raise ValueError(f"crop {crop_size} larger than the resized frame {height}×{width}")
    if not training:
        return tf.constant([int(round((height - crop_size) / 2.0)), int(round((width - crop_size) / 2.0))],
                           tf.int32)
    seeds = tf.random.experimental.stateless_split(_seed(seed), num=2)
    y = tf.random.stateless_uniform([], seed=seeds[0], minval=0, maxval=height - crop_size + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], seed=seeds[1], minval=0, maxval=width - crop_size + 1, dtype=tf.int32)
    return tf.stack([y, x])


def resize_crop(frames, resized_hw: tuple[int, int], offset, crop_size: int = 224, flip=False,
                antialias: bool = True) -> tf.Tensor:
    """Flip, resize to ``resized_hw`` and crop ``crop_size``² at ``offset`` in one pass.

    Equal to ``tf.image.resize(flip(frames), resized_hw, antialias=antialias)`` sliced at
    ``offset`` (bilinear, half-pixel centres), but only the crop is computed (a plain slice when
    the frames already have the resized size). Flipping before the resize equals cropping at the
    mirrored x offset and flipping the crop, which is what runs.

    Args:
        frames: uint8 or float (T, H, W, C).
        resized_hw: (height, width) of the virtual resized frame.
        offset: int (2,) top-left (y, x) of the crop in the resized frame.
        crop_size: crop side.
        flip: bool scalar (python or tensor): mirror left-right.
        antialias: triangle filter widened when downsampling (PIL-like).

    Returns:
        (T, crop_size, crop_size, C): uint8 for uint8 frames (resampled values rounded to the
        nearest integer, as PIL's uint8 resize in the original code), else float32.
    """
    frames = tf.convert_to_tensor(frames)
    out_h, out_w = (int(v) for v in resized_hw)
    out_dtype = tf.uint8 if frames.dtype == tf.uint8 else tf.float32
    flip = tf.cast(flip, tf.bool)
    in_hw = tf.shape(frames)[1:3]
    offset = tf.cast(offset, tf.int32)
    x = tf.where(flip, out_w - crop_size - offset[1], offset[1])  # flip-then-crop = mirrored crop, flipped

    def identity_resize():  # the frames already have the resized size: a plain crop, exactly equal
        crop = tf.slice(frames, tf.stack([0, offset[0], x, 0]), [-1, crop_size, crop_size, -1])
        return tf.cast(crop, out_dtype)

    def resample():
        crop = tf.raw_ops.ScaleAndTranslate(
            images=frames,
            size=tf.constant([crop_size, crop_size], tf.int32),
            scale=tf.constant([out_h, out_w], tf.float32) / tf.cast(in_hw, tf.float32),
            translation=-tf.cast(tf.stack([offset[0], x]), tf.float32),
            kernel_type="triangle",
            antialias=antialias,
        )  # (T, crop, crop, C) float32
        if out_dtype == tf.uint8:
            crop = tf.cast(tf.clip_by_value(tf.round(crop), 0.0, 255.0), tf.uint8)
        return crop

    same_size = tf.reduce_all(tf.equal(in_hw, [out_h, out_w]))
    crops = tf.cond(same_size, identity_resize, resample)
    crops = tf.cond(flip, lambda: tf.reverse(crops, axis=[2]), lambda: crops)
    crops.set_shape([frames.shape[0], crop_size, crop_size, frames.shape[-1]])
    return crops


def _affine(mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, bias) with ``normalised = pixel · scale + bias``."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
    if mode == "imagenet":  # (x/255 - mean)/std = x·(1/(255·std)) - mean/std
        mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
        return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)
    return np.full(3, 1.0 / 127.5, np.float32), np.full(3, -1.0, np.float32)


def normalize(frames, mode: str = "imagenet") -> tf.Tensor:
    """Pixels 0–255 (uint8 or float, channels last) → float32 model input of the same shape.

    ``"imagenet"``: ``(x/255 - mean) / std`` with ImageNet's mean/std (range about [-2.12, 2.64]);
    ``"inception"``: ``x/127.5 - 1`` in [-1, 1] (the I3D's Kinetics input range).

    Computed as one multiply-add over rows flattened to ``W·C`` values (a 3-wide channel broadcast
    is several times slower on CPU). Usable inside a model to normalise uint8 clips on device.
    """
    scale, bias = _affine(mode)
    frames = tf.convert_to_tensor(frames)
    static_shape = frames.shape
    values = tf.cast(frames, tf.float32)
    shape = tf.shape(values)
    width = shape[-2]
    rows = tf.reshape(values, tf.concat([shape[:-2], [-1]], axis=0))  # (..., W·C)
    rows = rows * tf.tile(scale, [width]) + tf.tile(bias, [width])
    out = tf.reshape(rows, shape)
    out.set_shape(static_shape)
    return out


@tf.function(jit_compile=True, reduce_retracing=True)
def _xla_window_normalize(frames, indices, scale, bias):
    """(T, H, W, C) uint8, (num_clips, clip_len) int32 → normalised float32 clips, one fused kernel."""
    return tf.cast(tf.gather(frames, indices), tf.float32) * scale + bias


def spatial_params(training: bool, seed=None, resized_hw: tuple[int, int] = (256, 455), crop_size: int = 224,
                   flip_prob: float = 0.5, random_crop: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """The per-video spatial decisions: (flip bool scalar, crop offset int32 (2,)).

    Training draws them from ``seed`` (flip with ``flip_prob``, a random crop position if
    ``random_crop``); test is no flip and the centre crop.
    """
    random = bool(training and (flip_prob > 0 or random_crop))
    if random and seed is None:
        raise ValueError("a seed is required for the random training transform")
    if random:
        flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(_seed(seed), num=2))
    else:
        flip_seed = crop_seed = None
    flip = flip_decision(flip_seed, random and flip_prob > 0, flip_prob)
    offset = crop_offset(resized_hw, crop_size, random and random_crop, crop_seed)
    return flip, offset


def spatial_transform(frames, training: bool, seed=None, resized_hw: tuple[int, int] = (256, 455),
                      crop_size: int = 224, antialias: bool = True, flip_prob: float = 0.5,
                      random_crop: bool = True) -> tf.Tensor:
    """Per-video flip + resize + crop (train: random flip and crop; test: centre crop, no flip).

    Args:
        frames: uint8 (T, H, W, 3).
        training: random augmentation (needs ``seed``) or the deterministic test transform.
        seed: stateless seed, int or int (2,).
        resized_hw, crop_size, antialias: see :func:`resize_crop`.
        flip_prob: training flip probability (0 = never).
        random_crop: training crop position random (else centre).

    Returns:
        (T, crop_size, crop_size, 3), uint8 for uint8 input; every frame flipped and cropped alike.
    """
    flip, offset = spatial_params(training, seed, resized_hw, crop_size, flip_prob, random_crop)
    return resize_crop(frames, resized_hw, offset, crop_size, flip=flip, antialias=antialias)


@tf.function(jit_compile=True, reduce_retracing=True)
def _xla_crop_window_normalize(frames, corner, flip, indices, scale, bias, crop_size):
    """Frames already at the resize size: crop at ``corner`` (mirrored when ``flip``), flip, cut
    clips and normalise in one fused XLA kernel. → float32 (num_clips, clip_len, crop, crop, C)."""
    size = tf.stack([tf.shape(frames)[0], crop_size, crop_size, tf.shape(frames)[3]])
    crop = tf.slice(frames, tf.stack([0, corner[0], corner[1], 0]), size)
    crop = tf.where(flip, tf.reverse(crop, axis=[2]), crop)
    return tf.cast(tf.gather(crop, indices), tf.float32) * scale + bias


def frames_to_clips(frames, protocol: VideoProtocol, training: bool, seed=None, fused: bool = False, *,
                    uint8: bool = False, antialias: bool = True, xla: bool | None = None) -> tf.Tensor:
    """Already temporally sampled frames → normalised clips.

    Order: flip/resize/crop on the sampled frames (uint8), then cut the clips and normalise them
    into float32 (one fused XLA kernel with ``xla``).

    Args:
        frames: uint8 (protocol.num_frames, H, W, 3) (from :func:`sample_frames`).
        protocol: the :class:`VideoProtocol` (clip layout, resize, crop, flip, normalisation).
        training: the protocol's random flip/crop, or the test transform (centre, no flip).
        seed: stateless seed for the spatial draws.
        fused: use the XLA kernel when ``xla`` is None (the readers pass True).
        uint8: emit uint8 clips 0–255 (normalised later on the accelerator) instead of float32.
        antialias: antialiased bilinear resize (PIL-like, as the original); False = plain bilinear.
        xla: force the fused XLA kernel on or off (None: ``fused``).

    Returns:
        float32 (num_clips, clip_len, crop, crop, 3), normalised (uint8 0–255 with ``uint8``).
    """
    spec = protocol
    resized_hw, crop_size = spec.resized_hw, spec.crop_size
    flip, offset = spatial_params(training, seed, resized_hw, crop_size, 0.5 if spec.flip else 0.0,
                                  spec.random_crop)
    starts = clip_starts(spec.num_frames, spec.num_clips, spec.clip_len, spec.clip_stride)
    indices = tf.constant(clip_indices(spec.num_frames, spec.num_clips, spec.clip_len, spec.clip_stride))

    def via_resize():
        cropped = resize_crop(frames, resized_hw, offset, crop_size, flip, antialias)  # (L, c, c, 3)
        if uint8:
            return window_clips(cropped, starts, spec.clip_len)  # (num_clips, clip_len, c, c, 3) uint8
        if use_xla:
            scale, bias = _affine(spec.normalization)
            return _xla_window_normalize(cropped, indices, tf.constant(scale), tf.constant(bias))
        return normalize(window_clips(cropped, starts, spec.clip_len), spec.normalization)

    frames = tf.convert_to_tensor(frames)
    use_xla = xla if xla is not None else fused
    if uint8 or not use_xla:
        clips = via_resize()
    else:  # frames already at the resize size (pre-extracted datasets): everything in one kernel
        scale, bias = _affine(spec.normalization)
        corner = tf.stack([offset[0], tf.where(flip, resized_hw[1] - crop_size - offset[1], offset[1])])
        same_size = tf.reduce_all(tf.equal(tf.shape(frames)[1:3], resized_hw))
        clips = tf.cond(same_size, lambda: _xla_crop_window_normalize(
            frames, corner, flip, indices, tf.constant(scale), tf.constant(bias), crop_size), via_resize)
    clips.set_shape(clip_shape(spec))
    return clips
