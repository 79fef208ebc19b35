"""What a frame or a video is, read from its header, without TensorFlow and without decoding pixels
(``tpt prepare`` checks whole releases with it in seconds); a full decode only on request.

* :func:`image_size`: a JPEG's or PNG's width and height from its first bytes (JPEG: the start
  of frame segment; PNG: the IHDR chunk); an empty file, another format or a cut header is a
  :class:`HeaderError` naming the file.
* :func:`video_info`: a container video's frame count (its video packets, counted without decoding)
  and frame size, with PyAV.
* :func:`decode_image` / :func:`decode_video`: the full decode (Pillow / PyAV), for ``--deep``.
* :func:`frame_sort_key`: the order of frame files, numbers compared by value (``2.jpg`` before
  ``10.jpg``): the order in which :mod:`data_pipelines.io.decode` reads a frame folder.
"""

from __future__ import annotations

import os
import re
import struct

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_HEADER_BYTES = 1 << 16


class HeaderError(ValueError):
    """A frame or video whose header cannot be read; the message starts with the path."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def frame_sort_key(name: str) -> tuple:
    """Sort key of a file name: digit runs compare as numbers, so ``2.jpg`` comes before
    ``10.jpg``; zero-padded names (``img_00001.jpg``) keep their lexical order."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


def _jpeg_size(data: bytes, path: str) -> tuple[int, int]:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise HeaderError(path, f"corrupt JPEG header (no marker at byte {position})")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD9:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in _SOF_MARKERS:
            if position + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            if not (width and height):
                raise HeaderError(path, f"JPEG header gives a {width}×{height} image")
            return width, height
        position += 2 + length
    raise HeaderError(path, "JPEG header ends before the image size (truncated file)")


def image_size(path: str) -> tuple[int, int]:
    """``(width, height)`` of a JPEG or PNG from its header.

    Raises:
        HeaderError: empty file, neither JPEG nor PNG, or a header cut short (names the file).
        OSError: the file cannot be opened.
    """
    with open(path, "rb") as handle:
        data = handle.read(_HEADER_BYTES)
    if not data:
        raise HeaderError(path, "empty file")
    if data.startswith(_JPEG_MAGIC):
        return _jpeg_size(data, path)
    if data.startswith(_PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise HeaderError(path, "PNG header cut short")
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    kind = "PNG" if path.lower().endswith(".png") else "JPEG"
    raise HeaderError(path, f"not a {kind} image (first bytes {data[:8]!r})")


def decode_image(path: str) -> tuple[int, int]:
    """Decode every pixel of a JPEG/PNG (Pillow); ``(width, height)``, or HeaderError."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's errors for broken files
        raise HeaderError(path, f"cannot decode the image ({error})") from None


def video_info(path: str, decode: bool = False) -> tuple[int, int, int]:
    """``(frames, width, height)`` of a container video: video packets counted without decoding,
    or, with ``decode``, every frame decoded and counted (PyAV).

    Raises:
        HeaderError: not a readable video, no video stream, or no frames (names the file).
    """
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise HeaderError(path, "no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if decode:
                frames = sum(1 for _ in container.decode(stream))
            else:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
    except HeaderError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as error:
        raise HeaderError(path, f"not a readable video ({type(error).__name__}: {error})") from None
    if frames == 0:
        raise HeaderError(path, "the video has no frames")
    return frames, width, height


def decode_video(path: str) -> tuple[int, int, int]:
    """:func:`video_info` with every frame decoded."""
    return video_info(path, decode=True)


def is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS
