"""Bytes and paths → uint8 frames ``(T, H, W, 3)``.

Three sources, chosen by the path:

* a **frame folder**: its ``*.jpg``/``*.jpeg``/``*.png`` files sorted by name, numbers by value
  (``img_00001.jpg`` …; ``1.jpg, 2.jpg, 10.jpg`` as FineDiving names them),
  decoded with ``tf.io.decode_jpeg`` / ``tf.io.decode_png``; only the requested frames are decoded;
* a **GIF** (``.gif``): ``tf.io.decode_gif``;
* a **container video** (``.mp4 .avi .mov .webm .mkv .m4v``): PyAV (FFmpeg bundled in its wheel),
  streamed: frames are decoded in order up to the last requested one and only the requested ones
  are kept, so memory follows the clip layout, not the video's length.
  tensorflow-io is not used: its 0.37.1 wheel fails to load on TensorFlow ≥ 2.20 and its FFmpeg
  ops want a system FFmpeg 2.8–4.2.

Every failure raises :class:`VideoDecodeError` (a ``ValueError``) naming the file: a missing path,
an empty folder, a corrupt or truncated video or GIF, zero frames, frames of different sizes.
Nothing is ever zero-filled. Callers that prefer to skip bad samples pass a :class:`SkipLog`
(see :func:`read_frames_or_skip`): each skip is logged as a warning and counted.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from data_pipelines.io.headers import frame_sort_key  # noqa: F401 (the order of frame files; no TensorFlow there)

logger = logging.getLogger(__name__)

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v")
GIF_EXTENSIONS = (".gif",)

# A container whose decoder yields fewer frames than its header promises is truncated. Small
# shortfalls happen in healthy files (edit lists, a missing last B-frame), so only a shortfall
# above this many frames *and* this fraction of the promised count is an error; smaller ones warn.
TRUNCATION_TOLERANCE_FRAMES = 2
TRUNCATION_TOLERANCE_FRACTION = 0.05
# FFmpeg decoder threads per video when the caller does not say (0 = FFmpeg chooses). Inside a
# parallel tf.data map, 1 avoids oversubscribing the cores.
DEFAULT_VIDEO_THREADS = 0

Indices = Sequence[int] | np.ndarray | Callable[[int], "Sequence[int] | np.ndarray"] | None


class VideoDecodeError(ValueError):
    """A video, GIF or frame folder that cannot be turned into frames. ``path`` names it."""

    def __init__(self, path: str, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SkipLog:
    """Counts (thread-safely) the samples skipped in skip-bad-samples mode and warns for each.

    Attributes:
        count: number of skipped samples.
        items: ``[(path, message), ...]`` in the order they were skipped.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.items: list[tuple[str, str]] = []

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.items)

    def record(self, path: str, error: Exception) -> None:
        with self._lock:
            self.items.append((os.fspath(path), str(error)))
            count = len(self.items)
        logger.warning("skipping bad sample %s (%d skipped so far): %s", path, count, error)

    def __repr__(self) -> str:
        return f"SkipLog(count={self.count})"


def source_kind(path: str) -> str:
    """``"folder"``, ``"gif"`` or ``"video"`` for ``path``; raises :class:`VideoDecodeError` when the
    path is missing or its extension is not a known video format."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "folder"
    extension = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise VideoDecodeError(path, "no such file or frame folder")
    if extension in GIF_EXTENSIONS:
        return "gif"
    if extension in VIDEO_EXTENSIONS:
        return "video"
    raise VideoDecodeError(
        path,
        f"unknown video format '{extension}'; expected a frame folder, .gif or one of "
        f"{', '.join(VIDEO_EXTENSIONS)}",
    )


def list_frame_files(folder: str) -> list[str]:
    """The image files of a frame folder, sorted by file name with numbers compared by value
    (``img_00001.jpg`` first; ``1.jpg, 2.jpg, 10.jpg``).

    Raises:
        VideoDecodeError: the folder is missing or holds no .jpg/.jpeg/.png file.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise VideoDecodeError(folder, "frame folder does not exist")
    names = sorted((name for name in os.listdir(folder) if name.lower().endswith(FRAME_EXTENSIONS)),
                   key=frame_sort_key)
    if not names:
        raise VideoDecodeError(folder, "frame folder holds no .jpg/.jpeg/.png frames")
    return [os.path.join(folder, name) for name in names]


def count_frames(path: str) -> int:
    """Number of frames. Cheap for frame folders (a directory listing) and container videos (packets
    are counted, nothing decoded); GIFs are decoded."""
    kind = source_kind(path)
    if kind == "folder":
        return len(list_frame_files(path))
    if kind == "video":
        return video_frame_count(path)
    return int(read_frames(path).shape[0])


def _resolve_indices(indices: Indices, num_frames: int, path: str) -> np.ndarray | None:
    if indices is None:
        return None
    if callable(indices):
        indices = indices(num_frames)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise VideoDecodeError(path, "no frame indices requested")
    if indices.min() < 0 or indices.max() >= num_frames:
        raise VideoDecodeError(
            path, f"frame indices {int(indices.min())}..{int(indices.max())} out of range for "
            f"{num_frames} frames")
    return indices


def _decode_image(file: str) -> np.ndarray:
    try:
        with open(file, "rb") as handle:
            data = handle.read()
        if file.lower().endswith(".png"):
            image = tf.io.decode_png(data, channels=3)
        else:  # INTEGER_ACCURATE matches PIL/libjpeg's default islow DCT.
            image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
    except OSError as error:
        raise VideoDecodeError(file, f"unreadable frame image ({error})") from None
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error)).splitlines()[0]
        raise VideoDecodeError(file, f"corrupt frame image ({message})") from None
    return image.numpy()


def _stack(frames: list[np.ndarray], path: str, names: Sequence[str] | None = None) -> np.ndarray:
    first = frames[0].shape
    for position, frame in enumerate(frames):
        if frame.shape != first:
            where = names[position] if names else f"frame {position}"
            raise VideoDecodeError(path, f"{where} has shape {frame.shape}, first frame {first}")
    return np.stack(frames).astype(np.uint8, copy=False)


def read_frame_folder(folder: str, indices: Indices = None) -> np.ndarray:
    """Decode a frame folder.

    Args:
        folder: directory of frame images, sorted by name.
        indices: frames to return (positions in the sorted list; repeats allowed), or a callable
            ``num_frames -> indices``; None for all. Only the needed files are decoded.

    Returns:
        uint8 (len(indices) or T, H, W, 3).
    """
    files = list_frame_files(folder)
    chosen = _resolve_indices(indices, len(files), folder)
    if chosen is None:
        chosen = np.arange(len(files))
    unique, inverse = np.unique(chosen, return_inverse=True)
    names = [files[i] for i in unique]
    decoded = _stack([_decode_image(file) for file in names], folder, names)
    return decoded[inverse]


def decode_gif_bytes(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """GIF bytes → uint8 (T, H, W, 3). A truncated file (tf.io.decode_gif would silently return
    the frames before the cut) is detected by its missing trailer byte and refused."""
    if not data[:6] in (b"GIF87a", b"GIF89a"):
        raise VideoDecodeError(source, "not a GIF file (bad header)")
    if data.rstrip(b"\0")[-1:] != b"\x3b":
        raise VideoDecodeError(source, "truncated GIF (no trailer byte 0x3B at the end)")
    try:
        frames = tf.io.decode_gif(data).numpy()
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error)).splitlines()[0]
        raise VideoDecodeError(source, f"corrupt GIF ({message})") from None
    if frames.shape[0] == 0:
        raise VideoDecodeError(source, "GIF holds zero frames")
    return frames


def read_gif(path: str, indices: Indices = None) -> np.ndarray:
    """Decode a GIF file. ``indices`` as in :func:`read_frame_folder`. Returns uint8 (T, H, W, 3)."""
    with open(path, "rb") as handle:
        frames = decode_gif_bytes(handle.read(), source=os.fspath(path))
    chosen = _resolve_indices(indices, frames.shape[0], path)
    return frames if chosen is None else frames[chosen]


def _check_count(path: str, got: int, expected: int, what: str) -> None:
    """Refuse ``got`` frames where ``expected`` were listed beyond the tolerance; warn below it."""
    shortfall = expected - got
    if shortfall > max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE_FRACTION * expected):
        raise VideoDecodeError(path, f"truncated video: {what} {got} of the {expected} frames its header lists")
    if shortfall > 0:
        logger.warning("%s: %s %d of the %d frames its header lists", path, what, got, expected)


def _open_video_stream(av, container, path: str, threads: int | None):
    if not container.streams.video:
        raise VideoDecodeError(path, "file holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = int(DEFAULT_VIDEO_THREADS if threads is None else threads)
    return stream


def _video_errors(av):
    return (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError)


def video_frame_count(path: str) -> int:
    """Frames of a container video without decoding any: the video packets are counted (one frame
    each), and checked against the count the header lists (a truncated file has fewer).

    Raises:
        VideoDecodeError: unreadable, no video stream, zero frames, or truncated.
    """
    import av

    path = os.fspath(path)
    try:
        with av.open(path) as container:
            stream = _open_video_stream(av, container, path, 1)
            listed = int(stream.frames or 0)
            packets = sum(1 for packet in container.demux(stream) if packet.size)
    except VideoDecodeError:
        raise
    except _video_errors(av) as error:
        raise VideoDecodeError(path, f"corrupt or unreadable video ({type(error).__name__}: {error})") from None
    if packets == 0:
        raise VideoDecodeError(path, "video decodes to zero frames (corrupt or truncated)")
    if listed:
        _check_count(path, packets, listed, "holds")
    return packets


def _decode_positions(path: str, wanted: np.ndarray | None, threads: int | None) -> tuple[dict, int]:
    """Decode from the start up to the last ``wanted`` position (sorted unique; None = all),
    keeping only those frames: ``({position: uint8 (H, W, 3)}, frames decoded)``."""
    import av

    keep: dict[int, np.ndarray] = {}
    wanted_set = None if wanted is None else set(int(i) for i in wanted)
    last = None if wanted is None else int(wanted[-1])
    decoded = 0
    try:
        with av.open(path) as container:
            stream = _open_video_stream(av, container, path, threads)
            for position, frame in enumerate(container.decode(stream)):
                decoded = position + 1
                if wanted_set is None or position in wanted_set:
                    keep[position] = frame.to_ndarray(format="rgb24")
                if last is not None and position >= last:
                    break
    except VideoDecodeError:
        raise
    except _video_errors(av) as error:
        raise VideoDecodeError(path, f"corrupt or unreadable video ({type(error).__name__}: {error})") from None
    return keep, decoded


def read_video(path: str, indices: Indices = None, threads: int | None = None) -> np.ndarray:
    """Decode a container video with PyAV (first video stream, RGB), keeping only the frames asked for.

    The frame count comes from counting the video packets (:func:`video_frame_count`, no decoding);
    the frames are then decoded in order up to the last requested one, and only the requested ones
    are converted to RGB and kept. Memory is therefore bounded by the number of distinct requested
    frames (× H × W × 3 bytes, plus FFmpeg's few reference frames), not by the video's length.

    Args:
        path: .mp4/.avi/.mov/.webm/.mkv/.m4v file.
        indices: as in :func:`read_frame_folder`; None decodes and keeps every frame.
        threads: FFmpeg decoder threads; 0 lets FFmpeg choose; None = ``DEFAULT_VIDEO_THREADS``.

    Returns:
        uint8 (len(indices) or T, H, W, 3).
    """
    path = os.fspath(path)
    num_frames = video_frame_count(path)
    for _ in range(2):  # a second pass only when fewer frames decode than there are packets
        chosen = _resolve_indices(indices, num_frames, path)
        wanted = None if chosen is None else np.unique(chosen)
        keep, decoded = _decode_positions(path, wanted, threads)
        if decoded == 0:
            raise VideoDecodeError(path, "video decodes to zero frames (corrupt or truncated)")
        complete = decoded == num_frames if wanted is None else len(keep) == len(wanted)
        if complete:
            break
        _check_count(path, decoded, num_frames, "decoded")  # fewer frames than packets: truncated?
        num_frames = decoded
    else:
        raise VideoDecodeError(path, "frame count changed between two decodes")
    positions = sorted(keep) if chosen is None else [int(i) for i in chosen]
    return _stack([keep[i] for i in positions], path)


def read_frames(path: str, indices: Indices = None) -> np.ndarray:
    """Decode a frame folder, GIF or container video to uint8 ``(T, H, W, 3)``.

    Args:
        path: frame folder, ``.gif`` or container video.
        indices: optional frame selection (int sequence, repeats allowed) or a callable
            ``num_frames -> indices`` (e.g. a temporal sampler from ``video_ops``). Frame folders
            decode only the selected files.

    Returns:
        uint8 array (T, H, W, 3), T = len(indices) when given.

    Raises:
        VideoDecodeError: naming ``path`` (missing, empty, corrupt, truncated, zero frames).
    """
    path = os.fspath(path)
    kind = source_kind(path)
    if kind == "folder":
        return read_frame_folder(path, indices)
    if kind == "gif":
        return read_gif(path, indices)
    return read_video(path, indices)


def read_frames_with_indices(path: str, indices: Indices) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_frames`, returning also the frame numbers read: (uint8 (N, H, W, 3), int64 (N,)).
    A callable ``indices`` is resolved with the video's frame count (as :func:`read_frames` does)."""
    resolved = []

    def record(num_frames):
        chosen = indices(num_frames) if callable(indices) else indices
        resolved.append(np.asarray(chosen, np.int64).reshape(-1))
        return resolved[-1]

    frames = read_frames(path, record)
    return frames, resolved[-1]


def frame_times(path: str, frame_numbers) -> np.ndarray | None:
    """Seconds from the start of ``path`` of the given frame numbers, when the source knows its
    timing: a container video by its average frame rate (PyAV), a GIF by its frames' display
    durations; None for a frame folder, or a source without timing (a GIF whose delays are 0).

    Returns:
        float64 (len(frame_numbers),) or None.
    """
    frame_numbers = np.asarray(frame_numbers, np.int64).reshape(-1)
    kind = source_kind(path)
    if kind == "video":
        rate = frame_rate(path)
        return frame_numbers / rate if rate else None
    if kind == "gif":
        starts = gif_frame_starts(path)
        if starts is None or frame_numbers.max(initial=0) >= len(starts):
            return None
        return starts[frame_numbers]
    return None


def frame_rate(path: str) -> float | None:
    """Frames per second of ``path``: a container video's average rate (PyAV), a GIF's frame
    count over its total display time; None for a frame folder or a source without timing."""
    kind = source_kind(path)
    if kind == "video":
        import av

        try:
            with av.open(os.fspath(path)) as container:
                stream = _open_video_stream(av, container, path, 1)
                rate = stream.average_rate or stream.guessed_rate
        except _video_errors(av):
            return None
        return float(rate) if rate else None
    if kind == "gif":
        starts = gif_frame_starts(path)
        if starts is None or len(starts) < 2 or starts[-1] <= 0:
            return None
        return (len(starts) - 1) / float(starts[-1])
    return None


def gif_frame_starts(path: str) -> np.ndarray | None:
    """Start time in seconds of each frame of a GIF (the cumulative display durations of the
    frames before it), or None when the GIF sets no durations. Read with Pillow (a dependency
    of matplotlib); None when it is missing."""
    try:
        from PIL import Image
    except ImportError:
        return None
    durations = []
    with Image.open(os.fspath(path)) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            durations.append(float(image.info.get("duration") or 0.0) / 1000.0)
    if not any(durations):
        return None
    return np.concatenate([[0.0], np.cumsum(durations)[:-1]])


def read_frames_or_skip(path: str, indices: Indices = None, skip_log: SkipLog | None = None):
    """:func:`read_frames`, but with a ``skip_log`` a :class:`VideoDecodeError` is recorded (warning
    + count) and None returned. Without a ``skip_log`` errors propagate."""
    try:
        return read_frames(path, indices)
    except VideoDecodeError as error:
        if skip_log is None:
            raise
        skip_log.record(path, error)
        return None


def unreadable(paths: Sequence[str]) -> dict[str, str]:
    """``{path: VideoDecodeError text}`` for the sources that cannot be read, found cheaply with
    :func:`count_frames` (a frame folder's listing, a video's packets; GIFs are decoded), without
    decoding any frame of a video. A check before training with skip-bad-samples, so that a bad
    video is left out of every list (queries and exemplars) once, up front."""
    bad = {}
    for path in dict.fromkeys(os.fspath(p) for p in paths):
        try:
            count_frames(path)
        except VideoDecodeError as error:
            bad[path] = str(error)
    return bad


def decode_error_in(error: BaseException) -> str | None:
    """The one-line :class:`VideoDecodeError` text (``"PATH: reason"``) that a TensorFlow error raised
    by a tf.data worker carries in its message, or None. For a command's one-line error report."""
    if isinstance(error, VideoDecodeError):
        return str(error)
    marker = "VideoDecodeError: "
    for line in str(error).splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip()
    return None


def tf_read_frames(path: tf.Tensor) -> tf.Tensor:
    """Graph-friendly :func:`read_frames`: scalar string tensor → uint8 tensor (T, H, W, 3).

    Wraps the Python decoder in ``tf.numpy_function``; a decode error surfaces as a TensorFlow
    error whose message contains the :class:`VideoDecodeError` text (with the file name).
    """

    def _read(path_bytes):
        return read_frames(path_bytes.decode("utf-8"))

    from data_pipelines.io import tf_python

    frames = tf_python.numpy_function(_read, [path], tf.uint8, name="read_frames")
    frames.set_shape([None, None, None, 3])
    return frames


# ---------------------------------------------------------------------------------------------
# Writers (tests, benchmarks, converting a user's videos to frame folders)
# ---------------------------------------------------------------------------------------------
def write_frame_folder(folder: str, frames, pattern: str = "img_{:05d}.jpg", first: int = 1,
                       quality: int = 95) -> list[str]:
    """Write uint8 (T, H, W, 3) frames as ``folder/img_00001.jpg …`` (PNG if ``pattern`` ends .png).

    Returns the written paths in order.
    """
    os.makedirs(folder, exist_ok=True)
    paths = []
    for offset, frame in enumerate(np.asarray(frames, dtype=np.uint8)):
        path = os.path.join(folder, pattern.format(first + offset))
        data = tf.io.encode_png(frame) if path.lower().endswith(".png") else tf.io.encode_jpeg(frame, quality=quality)
        tf.io.write_file(path, data)
        paths.append(path)
    return paths


def write_video(path: str, frames, fps: int = 25, codec: str | None = None) -> str:
    """Encode uint8 (T, H, W, 3) frames with PyAV. ``codec`` defaults to libx264 for .mp4/.mkv/.mov
    and mpeg4 otherwise; pixel format yuv420p, or yuv444p for an odd width or height (4:2:0 needs
    even sizes; e.g. 455×256). Returns ``path``."""
    import av

    frames = np.asarray(frames, dtype=np.uint8)
    extension = os.path.splitext(path)[1].lower()
    codec = codec or ("libx264" if extension in (".mp4", ".mkv", ".mov", ".m4v") else "mpeg4")
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = int(frames.shape[1]), int(frames.shape[2])
        odd = frames.shape[1] % 2 or frames.shape[2] % 2
        stream.pix_fmt = "yuv444p" if odd and codec == "libx264" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
