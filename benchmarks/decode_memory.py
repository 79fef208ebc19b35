"""Does decoding a container video take memory in proportion to its length?

Writes H.264 .mp4 videos of 30, 200 and 2000 frames (256 × 256, moving gradients), then for each
measures the peak resident memory that reading one clip layout's frames adds to a process:

* **whole decode** (a naive decoder): every frame decoded to RGB and kept, then the needed ones
  selected;
* **streaming** (``decode.read_frames(path, indices)``): frames decoded in order up to the last
  needed one, only the needed ones kept;
* **whole video** (``decode.read_frames(path)``): the whole video, as a scorer that samples after decoding reads it;
* **tpt score** (:func:`tpt_keras.serving.scoring.read_test_frames` with the ``custom`` preset's
  protocol): what it reads now, the protocol's frames only.

The layout is 103 frames spread over the whole video (``linspace``, as the ``custom`` protocol
samples: 20 clips × 8 frames from 103 positions); a 30-frame video repeats frames, so it needs only
30 distinct ones. Each measurement runs in a fresh process (peak RSS cannot be reset), growth =
peak RSS (``VmHWM``) after the read − RSS before it, and both decoders run in the same invocation.

    python benchmarks/decode_memory.py            # 30 / 200 / 2000 frames of 256²
    python benchmarks/decode_memory.py --quick    # 30 / 300 frames of 128²
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

LAYOUT_FRAMES = 103


def layout(num_frames: int) -> np.ndarray:
    """The 103 frame positions of one clip layout over ``num_frames`` frames."""
    return np.linspace(0, num_frames - 1, LAYOUT_FRAMES).round().astype(np.int64)


def whole_decode(path: str, indices: np.ndarray) -> np.ndarray:
    """A naive decoder: every frame to RGB, kept, then selected."""
    import av

    with av.open(path) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return np.stack(frames)[indices]


def _status_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, KiB. (Not
    ``getrusage``'s ``ru_maxrss``: Linux carries it across ``exec``, so a child would report the
    parent's size.)"""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(mode: str, path: str, num_frames: int) -> None:
    """Child process: print the peak RSS growth (MiB) of one read."""
    from data_pipelines.io import decode

    import av  # noqa: F401  (loaded before the baseline, as a running pipeline has it)

    from tpt_keras.config import get_preset
    from tpt_keras.serving import scoring

    indices = layout(num_frames)
    protocol = get_preset("custom").protocol
    before = _status_kib("VmRSS")
    if mode == "whole":
        frames = whole_decode(path, indices)
    elif mode == "streaming":
        frames = decode.read_frames(path, indices)
    elif mode == "video":
        frames = decode.read_frames(path)
    else:
        frames, _ = scoring.read_test_frames(path, protocol)
    peak = _status_kib("VmHWM")
    assert frames.shape[0] == (num_frames if mode == "video" else LAYOUT_FRAMES)
    print(f"{(peak - before) / 1024:.1f}")


def write_video(path: str, num_frames: int, size: int) -> None:
    from data_pipelines.io import decode

    y, x = np.mgrid[0:size, 0:size]
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        frames[t, ..., 0] = (x + 3 * t) % 256
        frames[t, ..., 1] = (y + 2 * t) % 256
        frames[t, ..., 2] = (x + y + t) % 256
    decode.write_video(path, frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 / 300 frames of 128²")
    parser.add_argument("--measure", nargs=3, metavar=("MODE", "PATH", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure[0], args.measure[1], int(args.measure[2]))
        return
    lengths, size = ((30, 300), 128) if args.quick else ((30, 200, 2000), 256)
    frame_mib = size * size * 3 / 2**20
    print(f"peak RSS growth of reading one clip layout ({LAYOUT_FRAMES} positions) from an H.264 "
          f"{size}×{size} .mp4, MiB")
    print(f"{'frames':>7} {'distinct needed':>16} {'bound (needed × frame)':>23} {'whole decode':>13} "
          f"{'streaming':>10} {'tpt score, whole video':>30} {'tpt score':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for num_frames in lengths:
            path = os.path.join(folder, f"v{num_frames}.mp4")
            write_video(path, num_frames, size)
            results = {}
            for mode in ("whole", "streaming", "video", "score"):
                out = subprocess.run([sys.executable, __file__, "--measure", mode, path, str(num_frames)],
                                     capture_output=True, text=True, check=True)
                results[mode] = float(out.stdout.strip().splitlines()[-1])
            distinct = len(np.unique(layout(num_frames)))
            print(f"{num_frames:>7} {distinct:>16} {distinct * frame_mib:>23.1f} {results['whole']:>13.1f} "
                  f"{results['streaming']:>10.1f} {results['video']:>30.1f} {results['score']:>10.1f}")


if __name__ == "__main__":
    main()
