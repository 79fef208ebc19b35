"""Video ops: temporal sampling, clip windowing, flip/resize/crop, normalisation.

Small pure functions with shapes in their docstrings. Randomness comes only from explicit seeds:
temporal draws take a numpy seed, spatial draws a stateless TensorFlow seed of shape (2,), so the
same seed gives the same video whatever the tf.data parallelism.

Temporal sampling is numpy because it runs *before* decoding (a frame folder then decodes only the
103 or 160 frames it needs); the spatial ops are TensorFlow because they run inside tf.data maps.

Protocols (``PROTOCOLS``; SPEC §1):

=========  ======  ====================================================  ==========================
protocol   frames  temporal sampling                                     spatial (train / test)
=========  ======  ====================================================  ==========================
mtl_aqa    103     window ``frames[s:s+103]``; train ``s = 3 + randint(  flip p=.5 + random crop /
                   -3, 3)``; test query ``s = 0``; test exemplar          centre crop
                   ``s = test_exemplar_start`` (3 in the original code)
aqa7       103     ``frames[0:103]`` (``img_00001 … img_00103``)          flip + random / centre
jigsaws    160     ``linspace(0, T-1, 160)`` floored, whole video         centre crop, no flip
custom     103     ``linspace(0, T-1, 103)`` floored, whole video         flip + random / centre
=========  ======  ====================================================  ==========================

Short videos: a window that does not fit is moved left until it does (start
``min(s, T - length)``); a video with fewer frames than the window is resampled uniformly
(``linspace`` floored, so frames repeat). Never an error, never padding with black frames.

Clips: 103 frames → 20 clips of 8 with starts 0, 5, …, 95 (neighbours overlap by 3 frames);
160 frames → 20 non-overlapping clips (starts 0, 8, …, 152).

Spatial: one flip decision and one crop position per video, shared by all of its frames. Resize to
height 256 × width 455 (the intended size), or height 455 × width 256 with ``swap_resize=True``
(the original code's swapped tuple, a quirk). Resize and crop are computed in one
``ScaleAndTranslate`` pass that evaluates only the 224×224 window, equal to ``tf.image.resize``
followed by slicing (antialiased bilinear by default, like PIL's resize in the original).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# "inception" is another name for "i3d" ([-1, 1]); "none" keeps uint8 clips.
NORMALIZATIONS = ("imagenet", "i3d", "inception", "none")
SAMPLINGS = ("window", "linspace")
ROLES = ("query", "exemplar")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Temporal sampling and augmentation rules of one dataset family.

    Attributes:
        name: protocol name.
        num_clips, clip_len, clip_stride: the clip windowing; a video contributes
            ``num_frames = (num_clips - 1) · clip_stride + clip_len`` frames (103 or 160).
        sampling: ``"window"`` (contiguous window at a start) or ``"linspace"`` (uniform over the video).
        train_start, train_shift: training window start ``train_start + randint(-shift, shift)``.
        test_query_start, test_exemplar_start: window starts at test time.
        random_crop: random crop position in training (else the centre, always).
        flip: one random horizontal flip decision per training video (p = 0.5).
        resize_to: (height, width) before cropping.
    """

    name: str
    num_clips: int = 20
    clip_len: int = 8
    clip_stride: int = 5
    sampling: str = "window"
    train_start: int = 0
    train_shift: int = 0
    test_query_start: int = 0
    test_exemplar_start: int = 0
    random_crop: bool = True
    flip: bool = True
    resize_to: tuple[int, int] = (256, 455)

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if min(self.num_clips, self.clip_len, self.clip_stride) < 1 or self.train_shift < 0:
            raise ValueError(f"invalid clip layout or shift in {self}")

    @property
    def num_frames(self) -> int:
        """Frames one video contributes (103 for 20 clips of 8 with stride 5)."""
        return (self.num_clips - 1) * self.clip_stride + self.clip_len


PROTOCOLS = {
    "mtl_aqa": Protocol("mtl_aqa", train_start=3, train_shift=3),
    "aqa7": Protocol("aqa7"),
    # JIGSAWS videos are 640×480: 341×256 keeps 4:3 (no public TPT code; MUSDL protocol).
    "jigsaws": Protocol("jigsaws", clip_stride=8, sampling="linspace", random_crop=False, flip=False,
                        resize_to=(256, 341)),
    "custom": Protocol("custom", sampling="linspace"),
}

# VideoOptions fields that override the protocol's (None = keep the protocol's value).
_PROTOCOL_OVERRIDES = ("num_clips", "clip_len", "clip_stride", "sampling", "train_start", "train_shift",
                       "test_query_start", "test_exemplar_start", "random_crop", "flip")


def get_protocol(name: str) -> Protocol:
    """The :class:`Protocol` called ``name``; ValueError listing the known ones otherwise."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """Every setting of the video → clips transform: a protocol plus optional overrides.

    Attributes:
        protocol: ``"mtl_aqa"``, ``"aqa7"``, ``"jigsaws"`` or ``"custom"`` (see module docstring).
        swap_resize: swap the resize's height and width, as the original code did (quirk): the
            intended height 256 × width 455 becomes height 455 × width 256.
        resize_to: intended (height, width); None takes the protocol's. Swapped if ``swap_resize``.
        crop_size: square crop side (224).
        normalization: ``"imagenet"`` (mean/std of SPEC §1), ``"i3d"`` / ``"inception"`` (pixels
            to [-1, 1]), or ``"none"``: uint8 clips 0–255, 4× smaller, for models that call
            :func:`normalize` on the accelerator (the fast path; see docs/pipelines.md).
        antialias: antialiased bilinear resize (PIL-like, as the original); False = plain bilinear.
        xla: cut the clips and normalise them in one XLA-compiled kernel (same values, about 3×
            less CPU for the float32 output, the pipeline's main cost after decoding). None (the
            default): fused inside the readers (``data_pipelines.reader``), plain TF ops elsewhere
            (so a SavedModel that calls :func:`frames_to_clips` needs no XLA at serving time).
        num_clips, clip_len, clip_stride, sampling, train_start, train_shift, test_query_start,
        test_exemplar_start, random_crop, flip: override the protocol's value when not None
            (see :class:`Protocol`). ``test_exemplar_start=3`` reproduces the original MTL-AQA
            code (test exemplars use frames 3..105, a quirk); the default 0 treats exemplars
            like the query.
    """

    protocol: str = "mtl_aqa"
    swap_resize: bool = False
    resize_to: tuple[int, int] | None = None
    crop_size: int = 224
    normalization: str = "imagenet"
    antialias: bool = True
    xla: bool | None = None
    num_clips: int | None = None
    clip_len: int | None = None
    clip_stride: int | None = None
    sampling: str | None = None
    train_start: int | None = None
    train_shift: int | None = None
    test_query_start: int | None = None
    test_exemplar_start: int | None = None
    random_crop: bool | None = None
    flip: bool | None = None

    def __post_init__(self):
        _ = self.spec  # validates the protocol and its overrides
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        height, width = self.output_resize
        if self.crop_size < 1 or self.crop_size > min(height, width):
            raise ValueError(f"crop_size={self.crop_size} does not fit the resize {height}×{width}")

    @property
    def spec(self) -> Protocol:
        """The protocol with this object's overrides applied."""
        overrides = {name: getattr(self, name) for name in _PROTOCOL_OVERRIDES if getattr(self, name) is not None}
        return dataclasses.replace(get_protocol(self.protocol), **overrides)

    @property
    def output_resize(self) -> tuple[int, int]:
        """(height, width) frames are resized to before cropping."""
        height, width = self.resize_to if self.resize_to is not None else get_protocol(self.protocol).resize_to
        return (int(width), int(height)) if self.swap_resize else (int(height), int(width))

    @property
    def clip_dtype(self) -> tf.DType:
        """float32, or uint8 with ``normalization="none"``."""
        return tf.uint8 if self.normalization == "none" else tf.float32

    @property
    def clip_shape(self) -> tuple[int, int, int, int, int]:
        """(num_clips, clip_len, crop, crop, 3) of one video."""
        spec = self.spec
        return (spec.num_clips, spec.clip_len, self.crop_size, self.crop_size, 3)


# ---------------------------------------------------------------------------------------------
# Temporal (numpy)
# ---------------------------------------------------------------------------------------------
def clip_starts(num_frames: int = 103, num_clips: int = 20, clip_len: int = 8, stride: int = 5) -> np.ndarray:
    """First frame of each clip.

    Returns:
        int32 (num_clips,): ``0, stride, …, (num_clips-1)·stride``; defaults give 0, 5, …, 95.

    Raises:
        ValueError: the last clip would run past ``num_frames``.
    """
    starts = np.arange(num_clips, dtype=np.int32) * int(stride)
    if num_clips < 1 or clip_len < 1 or starts[-1] + clip_len > num_frames:
        raise ValueError(
            f"{num_clips} clips of {clip_len} frames with stride {stride} need "
            f"{(num_clips - 1) * stride + clip_len} frames, only {num_frames} given")
    return starts


def clip_indices(num_frames: int = 103, num_clips: int = 20, clip_len: int = 8, stride: int = 5) -> np.ndarray:
    """Frame index of every clip position: int32 (num_clips, clip_len)."""
    starts = clip_starts(num_frames, num_clips, clip_len, stride)
    return starts[:, None] + np.arange(clip_len, dtype=np.int32)[None, :]


def linspace_indices(num_frames: int, length: int) -> np.ndarray:
    """Uniform sampling over the whole video: ``floor(linspace(0, num_frames-1, length))``.

    Returns:
        int64 (length,), non-decreasing, first 0 and last ``num_frames - 1``; repeats frames when
        the video is shorter than ``length``.
    """
    if num_frames < 1:
        raise ValueError("num_frames must be ≥ 1")
    return np.floor(np.linspace(0, num_frames - 1, length)).astype(np.int64)


def window_indices(num_frames: int, start: int, length: int) -> np.ndarray:
    """A contiguous window ``start … start+length-1``.

    If the window runs past the end it moves left to ``num_frames - length``; if the video is
    shorter than ``length`` it is resampled uniformly (:func:`linspace_indices`).

    Returns:
        int64 (length,).
    """
    if num_frames < length:
        return linspace_indices(num_frames, length)
    start = int(min(max(int(start), 0), num_frames - length))
    return np.arange(start, start + length, dtype=np.int64)


def window_start(protocol: str | Protocol, training: bool, role: str = "query", seed=None) -> int:
    """The window start ``s`` of a ``"window"`` protocol.

    Training: ``train_start + randint(-train_shift, train_shift)`` (both ends included, numpy
    ``seed``); MTL-AQA: ``3 + randint(-3, 3)``. Test: ``test_query_start`` for the query,
    ``test_exemplar_start`` for an exemplar (both 0 unless overridden; 3 for exemplars in the
    original MTL-AQA code). ``"linspace"`` protocols ignore the start.
    """
    spec = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if training:
        if spec.train_shift == 0:
            return int(spec.train_start)
        rng = np.random.default_rng(seed)
        return int(spec.train_start + rng.integers(-spec.train_shift, spec.train_shift + 1))
    return int(spec.test_exemplar_start if role == "exemplar" else spec.test_query_start)


def temporal_indices(num_frames: int, protocol: str | Protocol, start: int = 0) -> np.ndarray:
    """The frames a protocol takes from a video of ``num_frames`` frames.

    Args:
        num_frames: frames available (T).
        protocol: protocol name or :class:`Protocol`.
        start: window start (from :func:`window_start`); ignored by ``"linspace"`` protocols.

    Returns:
        int64 (protocol.num_frames,) indices into the video.
    """
    spec = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if spec.sampling == "linspace":
        return linspace_indices(num_frames, spec.num_frames)
    return window_indices(num_frames, start, spec.num_frames)


def tf_temporal_indices(num_frames, spec: Protocol, start: int = 0) -> tf.Tensor:
    """TensorFlow twin of :func:`temporal_indices` for a length known only at run time (inside an
    exported signature, where numpy cannot run).

    Args:
        num_frames: int32 scalar tensor, frames in the video (≥ 1).
        spec: the :class:`data_pipelines.video_ops.Protocol`.
        start: window start (ignored by linspace protocols).

    Returns:
        int32 (spec.num_frames,) indices.
    """
    length = spec.num_frames

    def linspace():
        values = tf.linspace(tf.constant(0.0, tf.float64), tf.cast(num_frames - 1, tf.float64), length)
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


def resize_size(swap_resize: bool = False) -> tuple[int, int]:
    """(height, width) of the resize: (256, 455) intended, (455, 256) with the original's swap."""
    return (455, 256) if swap_resize else (256, 455)


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
    if mode not in NORMALIZATIONS or mode == "none":
        raise ValueError(f"normalization must be 'imagenet', 'i3d' or 'inception', got {mode!r}")
    if mode == "imagenet":  # (x/255 - mean)/std = x·(1/(255·std)) - mean/std
        mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
        return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)
    return np.full(3, 1.0 / 127.5, np.float32), np.full(3, -1.0, np.float32)


def normalize(frames, mode: str = "imagenet") -> tf.Tensor:
    """Pixels 0–255 (uint8 or float, channels last) → float32 model input of the same shape.

    ``"imagenet"``: ``(x/255 - mean) / std`` with SPEC's mean/std (range about [-2.12, 2.64]);
    ``"i3d"`` (alias ``"inception"``): ``x/127.5 - 1`` in [-1, 1].

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


def frames_to_clips(frames, options: VideoOptions, training: bool, seed=None, fused: bool = False) -> tf.Tensor:
    """Already temporally sampled frames → normalised clips.

    Order: flip/resize/crop on the sampled frames (uint8), then cut the 20 clips and normalise them
    into float32 (one fused XLA kernel with ``options.xla``).

    Args:
        frames: uint8 (protocol.num_frames, H, W, 3) (from :func:`temporal_indices`).
        options: the :class:`VideoOptions`.
        training: the protocol's random flip/crop, or the test transform.
        seed: stateless seed for the spatial draws.
        fused: use the XLA kernel when ``options.xla`` is None (the readers pass True).

    Returns:
        float32 (num_clips, clip_len, crop, crop, 3), normalised (uint8 0–255 with
        ``normalization="none"``).
    """
    spec = options.spec
    resized_hw, crop_size = options.output_resize, options.crop_size
    flip, offset = spatial_params(training, seed, resized_hw, crop_size, 0.5 if spec.flip else 0.0,
                                  spec.random_crop)
    starts = clip_starts(spec.num_frames, spec.num_clips, spec.clip_len, spec.clip_stride)
    indices = tf.constant(clip_indices(spec.num_frames, spec.num_clips, spec.clip_len, spec.clip_stride))

    def via_resize():
        cropped = resize_crop(frames, resized_hw, offset, crop_size, flip, options.antialias)  # (L, c, c, 3)
        if options.normalization == "none":
            return window_clips(cropped, starts, spec.clip_len)  # (num_clips, clip_len, c, c, 3) uint8
        if use_xla:
            scale, bias = _affine(options.normalization)
            return _xla_window_normalize(cropped, indices, tf.constant(scale), tf.constant(bias))
        return normalize(window_clips(cropped, starts, spec.clip_len), options.normalization)

    frames = tf.convert_to_tensor(frames)
    use_xla = options.xla if options.xla is not None else fused
    if options.normalization == "none" or not use_xla:
        clips = via_resize()
    else:  # frames already at the resize size (pre-extracted datasets): everything in one kernel
        scale, bias = _affine(options.normalization)
        corner = tf.stack([offset[0], tf.where(flip, resized_hw[1] - crop_size - offset[1], offset[1])])
        same_size = tf.reduce_all(tf.equal(tf.shape(frames)[1:3], resized_hw))
        clips = tf.cond(same_size, lambda: _xla_crop_window_normalize(
            frames, corner, flip, indices, tf.constant(scale), tf.constant(bias), crop_size), via_resize)
    clips.set_shape(options.clip_shape)
    return clips
