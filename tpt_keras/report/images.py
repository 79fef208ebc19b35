"""Frames as images a page carries inside itself: ``data:image/jpeg;base64,…`` URIs."""

from __future__ import annotations

import base64
import io

import numpy as np

THUMBNAIL_WIDTH = 200  # pixels; smaller frames are enlarged (nearest neighbour) up to this


def thumbnail(frame, width: int = THUMBNAIL_WIDTH) -> np.ndarray:
    """uint8 (H, W, 3) → uint8 (h, width, 3): scaled to ``width`` keeping the aspect ratio
    (bilinear down, nearest neighbour up, so tiny frames stay sharp squares)."""
    from PIL import Image

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8 (height, width, 3), got {frame.dtype} {frame.shape}")
    height = max(1, round(frame.shape[0] * width / frame.shape[1]))
    resample = Image.NEAREST if width > frame.shape[1] else Image.BILINEAR
    return np.asarray(Image.fromarray(frame).resize((width, height), resample))


def data_uri(frame, width: int = THUMBNAIL_WIDTH, quality: int = 85) -> str:
    """A frame as a JPEG ``data:`` URI of :func:`thumbnail` size (a few kB)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(thumbnail(frame, width)).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
