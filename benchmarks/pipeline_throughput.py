"""How much does the video pipeline cost on top of decoding?

Writes a few synthetic videos (103 frames of 455×256, as JPEG frame folders and as H.264 .mp4),
then measures with 1 and 2 threads:

* **raw decode**: ``decode.read_frames`` of every frame, in a tf.data map;
* **full pipeline**: ``reader.video_clips_dataset(training=True)``: decode → MTL-AQA temporal
  window → one flip + random crop 224 per video → 20 clips × 8 frames → ImageNet normalisation
  to float32 (the default output);
* **uint8 pipeline**: the same with ``uint8=True`` (uint8 clips, normalised on the
  accelerator),

and prints videos/s, clips/s, CPU ms per video and the ratios pipeline / raw (goal ≥ 0.8), by wall
time and by CPU time (the CPU ratio is what the pipeline costs on a machine that others share). Threads = the tf.data
private thread pool size and the map parallelism; each op and FFmpeg decoder runs single-threaded.
The three measurements of a row are interleaved over several rounds and the best round of each is
reported, which keeps the ratio meaningful on a shared machine.

    python benchmarks/pipeline_throughput.py            # 8 videos per kind, 2 passes, 3 rounds
    python benchmarks/pipeline_throughput.py --quick    # 4 videos per kind, 1 pass, 2 rounds
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_pipelines import decode, reader  # noqa: E402
from host import host_line  # noqa: E402  (benchmarks/host.py)
from data_pipelines.samples import Sample  # noqa: E402

NUM_FRAMES, HEIGHT, WIDTH = 103, 256, 455


def synthetic_frames(seed: int) -> np.ndarray:
    """uint8 (103, 256, 455, 3): a moving disc over a textured gradient (compresses like real video)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([xx / WIDTH * 200, yy / HEIGHT * 200, (xx + yy) / (WIDTH + HEIGHT) * 255], -1)
    texture = rng.normal(0, 12, (HEIGHT // 4, WIDTH // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:HEIGHT, :WIDTH]
    frames = np.empty((NUM_FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(NUM_FRAMES):
        cx, cy = 40 + 3.5 * t, HEIGHT / 2 + 60 * np.sin(t / 12)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < 30**2)[..., None]
        frames[t] = np.clip(np.where(disc, 240.0, base + texture + rng.normal(0, 3, (HEIGHT, WIDTH, 3))), 0, 255)
    return frames


def make_videos(root: str, count: int) -> dict[str, list[Sample]]:
    """``count`` JPEG folders and ``count`` mp4s under ``root`` (reused when present)."""
    kinds = {"jpeg folder": [], "mp4 (H.264)": []}
    for index in range(count):
        folder, video = os.path.join(root, f"{index:02d}_01"), os.path.join(root, f"video_{index:02d}.mp4")
        if not (os.path.isdir(folder) and os.path.exists(video)):
            frames = synthetic_frames(index)
            decode.write_frame_folder(folder, frames)
            decode.write_video(video, frames)
        kinds["jpeg folder"].append(Sample(key=f"{index:02d}_01", path=folder, score=50.0))
        kinds["mp4 (H.264)"].append(Sample(key=f"video_{index:02d}", path=video, score=50.0))
    return kinds


def _with_threads(dataset: tf.data.Dataset, threads: int) -> tf.data.Dataset:
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    options.autotune.cpu_budget = threads
    return dataset.with_options(options)


def raw_decode_dataset(samples, threads: int) -> tf.data.Dataset:
    paths = tf.data.Dataset.from_tensor_slices([s.path for s in samples])
    frames = paths.map(decode.tf_read_frames, num_parallel_calls=threads, deterministic=True)
    return _with_threads(frames.prefetch(2), threads)


def pipeline_dataset(samples, threads: int, uint8: bool = False) -> tf.data.Dataset:
    dataset = reader.video_clips_dataset(samples, "mtl_aqa", training=True, seed=1, uint8=uint8)
    return _with_threads(dataset, threads)


def uint8_pipeline_dataset(samples, threads: int) -> tf.data.Dataset:
    return pipeline_dataset(samples, threads, uint8=True)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def measure(dataset_fn, samples, threads: int, passes: int) -> tuple[float, float]:
    """(videos per second of wall time, CPU milliseconds per video) over ``passes`` passes, after one
    warm-up element. CPU time is what a video costs whatever else runs on the machine."""
    dataset = dataset_fn(samples, threads)
    next(iter(dataset))  # build functions, warm caches
    count, start, cpu = 0, time.perf_counter(), _cpu_seconds()
    for _ in range(passes):
        for _ in dataset:
            count += 1
    return count / (time.perf_counter() - start), 1000.0 * (_cpu_seconds() - cpu) / count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 videos per kind, 1 pass, 2 rounds")
    parser.add_argument("--videos", type=int, default=None, help="videos per kind (default 8, quick 4)")
    parser.add_argument("--passes", type=int, default=None, help="passes per measurement (default 2, quick 1)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds, best kept (default 3, quick 2)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--root", default=None, help="where to write the videos (default: a temp folder)")
    args = parser.parse_args(argv)
    count = args.videos or (4 if args.quick else 8)
    passes = args.passes or (1 if args.quick else 2)
    rounds = args.rounds or (2 if args.quick else 3)
    decode.DEFAULT_VIDEO_THREADS = 1  # thread counts below are the only parallelism
    root = args.root or tempfile.mkdtemp(prefix="tpt_pipeline_bench_")
    kinds = make_videos(root, count)
    print(host_line())
    print(f"{count} videos per kind, {NUM_FRAMES} frames of {WIDTH}×{HEIGHT}, {passes} passes, best of "
          f"{rounds} rounds, {os.cpu_count()} CPUs, TF {tf.__version__}")
    print("| source | threads | raw decode videos/s (CPU ms/video) | float32 pipeline videos/s, clips/s "
          "(CPU ms/video) | float32 / raw: wall, CPU | uint8 pipeline videos/s, clips/s (CPU ms/video) "
          "| uint8 / raw: wall, CPU |")
    print("|" + "---|" * 7)
    for kind, samples in kinds.items():
        for threads in (int(t) for t in args.threads.split(",")):
            rates = {raw_decode_dataset: 0.0, pipeline_dataset: 0.0, uint8_pipeline_dataset: 0.0}
            costs = {dataset_fn: float("inf") for dataset_fn in rates}
            for _ in range(rounds):
                for dataset_fn in rates:
                    rate, cost = measure(dataset_fn, samples, threads, passes)
                    rates[dataset_fn], costs[dataset_fn] = max(rates[dataset_fn], rate), min(costs[dataset_fn], cost)
            (raw, full, small), (raw_ms, full_ms, small_ms) = rates.values(), costs.values()
            print(f"| {kind} | {threads} | {raw:.2f} ({raw_ms:.0f}) | {full:.2f}, {full * 20:.0f} ({full_ms:.0f}) "
                  f"| {full / raw:.2f}, {raw_ms / full_ms:.2f} | {small:.2f}, {small * 20:.0f} ({small_ms:.0f}) "
                  f"| {small / raw:.2f}, {raw_ms / small_ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
