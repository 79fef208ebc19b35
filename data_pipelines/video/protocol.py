"""The video protocol: which frames of a video become clips, and how they are resized, cropped,
flipped and normalised. One frozen object, owned by the config preset.

Pure python + numpy (no TensorFlow): :class:`VideoProtocol`, its validation and JSON form, the
named protocols of each dataset family (:data:`PROTOCOLS`), and the temporal rule — the frame
indices a video of ``T`` frames gives for a role (query / exemplar), training or test, and a seed.
The TensorFlow spatial ops that apply the rest live in :mod:`data_pipelines.video.video_ops`.

Named protocols (``docs/pipelines.md`` holds the same table; ``tests/test_protocol_table.py``
holds it again, written independently, and checks every preset against it):

=========  ======================================  ===========  ===========  ==================
protocol   frames (T = video length)               clips        resize h×w   spatial train/test
=========  ======================================  ===========  ===========  ==================
mtl_aqa    window of 103; train start 3 ± 3;       20×8, st. 5  455×256 (*)  flip + random crop
           test query start 0, exemplar start 3 (*)                           / centre
aqa7       window of 103 from frame 0 (no jitter)  20×8, st. 5  455×256 (*)  flip + random crop
                                                                             / centre
jigsaws    floor(linspace(0, T-1, 160))            20×8, st. 8  256×341      centre crop, no flip
custom     floor(linspace(0, T-1, 103))            20×8, st. 5  256×455      flip + random crop
                                                                             / centre
finediving floor(linspace(0, T-1, 103))            20×8, st. 5  256×455      flip + random crop
                                                                             / centre
=========  ======================================  ===========  ===========  ==================

(*) Quirks of the authors' code, kept by name: ``swap_resize=True`` resizes to height
``resize_width`` × width ``resize_height`` (their swapped ``(455, 256)`` size tuple; intended
256 × 455); ``test_exemplar_start=3`` gives test exemplars frames 3..105 while the query uses
0..102. Crops are 224 and normalisation is ImageNet mean/std everywhere.

Short videos: a window that does not fit is moved left until it does (start ``min(s, T - n)``);
a video with fewer frames than the window is resampled by ``floor(linspace(0, T-1, n))`` (frames
repeat). Never an error, never black padding.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import numpy as np

SAMPLINGS = ("window", "linspace")
NORMALIZATIONS = ("imagenet", "inception")  # ImageNet mean/std; "inception": pixels to [-1, 1]
ROLES = ("query", "exemplar")


@dataclasses.dataclass(frozen=True)
class VideoProtocol:
    """Every rule of the video → clips transform. Frozen: derive variants with :meth:`replace`.

    Attributes:
        sampling: ``"window"`` (consecutive frames from a start) or ``"linspace"`` (frames spread
            uniformly over the whole video, ``floor(linspace(0, T-1, num_frames))``).
        train_start, train_jitter: training window start ``train_start + randint(-j, j)`` (both
            ends included); window sampling only.
        test_query_start, test_exemplar_start: window starts at test time (quirk: 3 for
            exemplars in the authors' MTL-AQA code).
        num_clips, clip_len, clip_stride: clips per video, frames per clip, offset between clip
            starts; a video gives ``(num_clips - 1) * clip_stride + clip_len`` frames (103, 160).
        resize_height, resize_width: the intended resize before cropping.
        swap_resize: (quirk) resize to height ``resize_width`` × width ``resize_height``.
        crop_size: side of the square crop.
        random_crop: random crop position in training (else the centre, always).
        flip: one random horizontal flip decision (p = 0.5) per training video.
        normalization: one of :data:`NORMALIZATIONS`.
    """

    sampling: str
    train_start: int
    train_jitter: int
    test_query_start: int
    test_exemplar_start: int
    num_clips: int
    clip_len: int
    clip_stride: int
    resize_height: int
    resize_width: int
    swap_resize: bool
    crop_size: int
    random_crop: bool
    flip: bool
    normalization: str

    def __post_init__(self):
        for name, allowed in (("sampling", SAMPLINGS), ("normalization", NORMALIZATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"protocol.{name} must be one of {allowed}; "
                                 f"received {getattr(self, name)!r}.")
        for name in ("swap_resize", "random_crop", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"protocol.{name} must be a bool; received {getattr(self, name)!r}.")
        for name, low in (("num_clips", 1), ("clip_len", 1), ("clip_stride", 1), ("resize_height", 1),
                          ("resize_width", 1), ("crop_size", 1), ("train_start", 0),
                          ("train_jitter", 0), ("test_query_start", 0), ("test_exemplar_start", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"protocol.{name} must be an int >= {low}; received {value!r}.")
        if self.train_jitter > self.train_start:
            raise ValueError(f"protocol.train_jitter ({self.train_jitter}) must not exceed "
                             f"train_start ({self.train_start}): the window would start before frame 0.")
        if self.crop_size > min(self.resized_hw):
            raise ValueError(f"protocol.crop_size ({self.crop_size}) does not fit the resize "
                             f"{self.resized_hw[0]}×{self.resized_hw[1]}.")

    # ---------------------------------------------------------------- derived
    @property
    def num_frames(self) -> int:
        """Frames one video gives: ``(num_clips - 1) * clip_stride + clip_len`` (103 / 160)."""
        return (self.num_clips - 1) * self.clip_stride + self.clip_len

    @property
    def resized_hw(self) -> tuple[int, int]:
        """(height, width) frames are actually resized to (swapped with ``swap_resize``)."""
        if self.swap_resize:
            return (self.resize_width, self.resize_height)
        return (self.resize_height, self.resize_width)

    # ---------------------------------------------------------------- (de)serialisation
    def replace(self, **overrides) -> "VideoProtocol":
        """A copy with ``overrides`` (validated; unknown names raise ValueError with a hint)."""
        check_fields(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "VideoProtocol":
        """Build from a complete dict (as :meth:`to_dict` writes): unknown or missing fields raise."""
        if not isinstance(values, dict):
            raise ValueError(f"protocol must be a dict; received {type(values).__name__}.")
        check_fields(values)
        missing = [name for name in FIELDS if name not in values]
        if missing:
            raise ValueError(f"protocol is missing field(s): {', '.join(missing)}.")
        return cls(**values)


FIELDS = tuple(field.name for field in dataclasses.fields(VideoProtocol))


def check_fields(values) -> None:
    """ValueError naming every key of ``values`` that is not a protocol field (with a hint)."""
    unknown = [key for key in values if key not in FIELDS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"Unknown protocol field(s): {', '.join(hints)}; known: {', '.join(FIELDS)}.")


# The clip grid of every named protocol but JIGSAWS' (stride 8): 20 clips of 8 frames, a clip
# every 5 frames, so a video gives 103 frames. The one place these numbers are written.
NUM_CLIPS = 20
CLIP_LEN = 8
CLIP_STRIDE = 5
NUM_FRAMES = (NUM_CLIPS - 1) * CLIP_STRIDE + CLIP_LEN  # 103

# The named protocols of the dataset families (every field written out; see the module table).
PROTOCOLS: dict[str, VideoProtocol] = {
    "mtl_aqa": VideoProtocol(
        sampling="window", train_start=3, train_jitter=3, test_query_start=0, test_exemplar_start=3,
        num_clips=NUM_CLIPS, clip_len=CLIP_LEN, clip_stride=CLIP_STRIDE, resize_height=256, resize_width=455,
        swap_resize=True, crop_size=224, random_crop=True, flip=True, normalization="imagenet"),
    "aqa7": VideoProtocol(
        sampling="window", train_start=0, train_jitter=0, test_query_start=0, test_exemplar_start=0,
        num_clips=NUM_CLIPS, clip_len=CLIP_LEN, clip_stride=CLIP_STRIDE, resize_height=256, resize_width=455,
        swap_resize=True, crop_size=224, random_crop=True, flip=True, normalization="imagenet"),
    # JIGSAWS videos are 640×480: 256×341 keeps 4:3 (MUSDL's protocol; no public TPT code).
    "jigsaws": VideoProtocol(
        sampling="linspace", train_start=0, train_jitter=0, test_query_start=0, test_exemplar_start=0,
        num_clips=NUM_CLIPS, clip_len=CLIP_LEN, clip_stride=CLIP_LEN, resize_height=256, resize_width=341,
        swap_resize=False, crop_size=224, random_crop=False, flip=False, normalization="imagenet"),
    "custom": VideoProtocol(
        sampling="linspace", train_start=0, train_jitter=0, test_query_start=0, test_exemplar_start=0,
        num_clips=NUM_CLIPS, clip_len=CLIP_LEN, clip_stride=CLIP_STRIDE, resize_height=256, resize_width=455,
        swap_resize=False, crop_size=224, random_crop=True, flip=True, normalization="imagenet"),
    # FineDiving frame folders are already trimmed to the dive: 103 frames spread over the whole
    # dive (the FineDiving reference samples 96, which does not cut into 20 overlapping clips of 8),
    # the MTL-AQA spatial protocol without its quirks.
    "finediving": VideoProtocol(
        sampling="linspace", train_start=0, train_jitter=0, test_query_start=0, test_exemplar_start=0,
        num_clips=NUM_CLIPS, clip_len=CLIP_LEN, clip_stride=CLIP_STRIDE, resize_height=256, resize_width=455,
        swap_resize=False, crop_size=224, random_crop=True, flip=True, normalization="imagenet"),
}


def get_protocol(protocol: str | VideoProtocol) -> VideoProtocol:
    """``protocol`` itself, or the named one of :data:`PROTOCOLS` (ValueError listing them)."""
    if isinstance(protocol, VideoProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


# ---------------------------------------------------------------------------------------------
# Temporal rule (numpy)
# ---------------------------------------------------------------------------------------------
def clip_starts(num_frames: int = NUM_FRAMES, num_clips: int = NUM_CLIPS, clip_len: int = CLIP_LEN,
                stride: int = CLIP_STRIDE) -> np.ndarray:
    """First frame of each clip: int32 (num_clips,) ``0, stride, …``; defaults give 0, 5, …, 95.

    Raises:
        ValueError: the last clip would run past ``num_frames``.
    """
    starts = np.arange(num_clips, dtype=np.int32) * int(stride)
    if num_clips < 1 or clip_len < 1 or starts[-1] + clip_len > num_frames:
        raise ValueError(
            f"{num_clips} clips of {clip_len} frames with stride {stride} need "
            f"{(num_clips - 1) * stride + clip_len} frames, only {num_frames} given")
    return starts


def clip_indices(num_frames: int = NUM_FRAMES, num_clips: int = NUM_CLIPS, clip_len: int = CLIP_LEN,
                 stride: int = CLIP_STRIDE) -> np.ndarray:
    """Frame index of every clip position: int32 (num_clips, clip_len)."""
    starts = clip_starts(num_frames, num_clips, clip_len, stride)
    return starts[:, None] + np.arange(clip_len, dtype=np.int32)[None, :]


def linspace_indices(num_frames: int, length: int) -> np.ndarray:
    """``floor(linspace(0, num_frames-1, length))``: int64 (length,), first 0, last T-1; frames
    repeat when the video is shorter than ``length``."""
    if num_frames < 1:
        raise ValueError("num_frames must be ≥ 1")
    return np.floor(np.linspace(0, num_frames - 1, length)).astype(np.int64)


def window_indices(num_frames: int, start: int, length: int) -> np.ndarray:
    """``start … start+length-1`` (int64 (length,)), moved left to fit, or linspace-resampled when
    the video is shorter than ``length``."""
    if num_frames < length:
        return linspace_indices(num_frames, length)
    start = int(min(max(int(start), 0), num_frames - length))
    return np.arange(start, start + length, dtype=np.int64)


def window_start(protocol: str | VideoProtocol, training: bool, role: str = "query", seed=None) -> int:
    """The window start: training ``train_start + randint(-train_jitter, train_jitter)`` (numpy
    ``seed``); test ``test_query_start`` or ``test_exemplar_start`` by ``role``."""
    spec = get_protocol(protocol)
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if training:
        if spec.train_jitter == 0:
            return int(spec.train_start)
        rng = np.random.default_rng(seed)
        return int(spec.train_start + rng.integers(-spec.train_jitter, spec.train_jitter + 1))
    return int(spec.test_exemplar_start if role == "exemplar" else spec.test_query_start)


def temporal_indices(num_frames: int, protocol: str | VideoProtocol, start: int = 0) -> np.ndarray:
    """The frames taken from a video of ``num_frames`` frames for a window ``start`` (ignored by
    linspace sampling): int64 (protocol.num_frames,)."""
    spec = get_protocol(protocol)
    if spec.sampling == "linspace":
        return linspace_indices(num_frames, spec.num_frames)
    return window_indices(num_frames, start, spec.num_frames)


def sample_frames(num_frames: int, protocol: str | VideoProtocol, role: str = "query",
                  training: bool = False, seed=None) -> np.ndarray:
    """The frames a video of ``num_frames`` frames gives for ``role`` (query / exemplar),
    training (random start from ``seed``) or test: int64 (protocol.num_frames,)."""
    spec = get_protocol(protocol)
    return temporal_indices(num_frames, spec, window_start(spec, training, role, seed))


def clip_middle_positions(protocol: str | VideoProtocol) -> np.ndarray:
    """Position, within the sampled frames, of the middle frame of each clip: int (num_clips,)."""
    spec = get_protocol(protocol)
    return np.arange(spec.num_clips) * spec.clip_stride + spec.clip_len // 2
