"""Built-in synthetic *video* AQA data: rendered frames whose ordered phases carry the quality.

Each video shows ``num_phases`` consecutive phases of random length (like the take-off, flight and
entry of a dive). Phase ``k`` has its own background colour and a disc moving in its own
direction; the phase's quality ``q_k`` in [0, 1] sets how large the disc is and how smoothly it
moves (a poor phase is small and jittery). The score is a fixed weighted sum of the qualities::

    score = 100 * sum_k w_k * q_k / sum_k w_k,      w = (1, 2, 3, 2, 1)[:num_phases]

so a model must find each phase and judge it: the weights differ per phase and the phases have
random lengths, which an average over the whole video mixes up. Everything is seeded: the same
``seed`` gives byte-identical videos.

The dataset is written as JPEG frame folders plus a manifest CSV in the documented manifest
format (``path,score,split``), so it goes through exactly the same pipeline as a user's own data.
"""

from __future__ import annotations

import csv
import os

import numpy as np

PHASE_WEIGHTS = (1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 1.0)
_PHASE_COLOURS = np.array(
    [[40, 70, 160], [170, 60, 50], [60, 150, 70], [150, 140, 40], [120, 60, 150],
     [40, 140, 150], [150, 90, 40], [90, 90, 90]],
    dtype=np.float32,
)


def phase_boundaries(num_frames: int, num_phases: int, rng: np.random.Generator,
                     min_length: int = 8) -> np.ndarray:
    """Random ordered phase boundaries.

    Returns:
        int array (num_phases + 1,): 0 = b_0 < b_1 < ... < b_K = num_frames, every phase at least
        ``min_length`` frames long.
    """
    spare = num_frames - num_phases * min_length
    if spare < 0:
        raise ValueError(f"num_frames={num_frames} too short for {num_phases} phases of {min_length}")
    cuts = np.sort(rng.integers(0, spare + 1, size=num_phases - 1))
    lengths = np.diff(np.concatenate([[0], cuts, [spare]])) + min_length
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def score_from_qualities(qualities: np.ndarray) -> np.ndarray:
    """(..., K) qualities in [0, 1] → (...,) scores in [0, 100] (the weighted mean × 100)."""
    qualities = np.asarray(qualities, dtype=np.float64)
    weights = np.asarray(PHASE_WEIGHTS[: qualities.shape[-1]])
    return 100.0 * (qualities * weights).sum(-1) / weights.sum()


def render_video(qualities: np.ndarray, bounds: np.ndarray, size: int = 64,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Render one video.

    Args:
        qualities: (K,) per-phase quality in [0, 1].
        bounds: (K + 1,) phase boundaries from :func:`phase_boundaries`.
        size: frame height and width in pixels.
        rng: jitter noise source (seeded by the caller).

    Returns:
        uint8 array (bounds[-1], size, size, 3).
    """
    rng = rng or np.random.default_rng(0)
    num_frames = int(bounds[-1])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for k, quality in enumerate(qualities):
        start, stop = int(bounds[k]), int(bounds[k + 1])
        angle = 2.0 * np.pi * k / len(qualities)
        direction = np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)
        radius = size * (0.06 + 0.14 * quality)
        jitter = size * 0.12 * (1.0 - quality)
        for t in range(start, stop):
            progress = (t - start) / max(stop - start - 1, 1)  # 0 → 1 across the phase
            centre = size / 2 + direction * size * 0.3 * (progress - 0.5)
            centre = centre + rng.normal(0.0, 1.0, 2).astype(np.float32) * jitter
            inside = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius ** 2
            frame = np.broadcast_to(_PHASE_COLOURS[k % len(_PHASE_COLOURS)], (size, size, 3)).copy()
            frame[inside] = 235.0
            frames[t] = frame.astype(np.uint8)
    return frames


def make_synthetic_videos(num_videos: int, num_phases: int = 5, num_frames: tuple[int, int] = (96, 120),
                          size: int = 64, seed: int = 0):
    """Yield ``(index, frames uint8 (T, size, size, 3), score, qualities (K,), bounds (K+1,))``."""
    rng = np.random.default_rng(seed)
    for index in range(num_videos):
        length = int(rng.integers(num_frames[0], num_frames[1] + 1))
        bounds = phase_boundaries(length, num_phases, rng)
        qualities = rng.uniform(0.0, 1.0, num_phases)
        frames = render_video(qualities, bounds, size, rng)
        yield index, frames, float(score_from_qualities(qualities)), qualities, bounds


def write_synthetic_video_dataset(root: str, num_train: int = 60, num_test: int = 20, size: int = 64,
                                  num_phases: int = 5, seed: int = 0, progress: bool = True) -> str:
    """Write JPEG frame folders ``root/video_XXXX/img_00001.jpg`` and ``root/manifest.csv``.

    Returns the manifest path. Existing complete output (same arguments) is reused.
    """
    import tensorflow as tf  # only for JPEG encoding
    from tqdm.auto import tqdm

    os.makedirs(root, exist_ok=True)
    manifest = os.path.join(root, "manifest.csv")
    stamp = os.path.join(root, ".complete")
    signature = f"{num_train},{num_test},{size},{num_phases},{seed}"
    if os.path.exists(manifest) and os.path.exists(stamp) and open(stamp).read() == signature:
        return manifest
    total = num_train + num_test
    rows = []
    videos = make_synthetic_videos(total, num_phases=num_phases, size=size, seed=seed)
    for index, frames, score, _, _ in tqdm(videos, total=total, desc="rendering videos", disable=not progress):
        name = f"video_{index:04d}"
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for t, frame in enumerate(frames):
            tf.io.write_file(os.path.join(folder, f"img_{t + 1:05d}.jpg"),
                             tf.io.encode_jpeg(frame, quality=95))
        rows.append((name, f"{score:.4f}", "train" if index < num_train else "test"))
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score", "split"])
        writer.writerows(rows)
    with open(stamp, "w") as handle:
        handle.write(signature)
    return manifest
