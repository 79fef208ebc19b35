"""Seconds per test video: the exemplar bank vs the original evaluation protocol.

The original evaluation runs the backbone on query *and* exemplar for each of the 10 pairs (20
video passes per test video). The bank encodes each exemplar once (its parts do not depend on the
query), so a test video costs one backbone pass plus 10 regressor calls. Both must give the same
scores. Runs the end-to-end model (Kinetics-400 I3D + TPT, the faithful preset's sizes) on random
frames; prints a table with the ratio measured in the same run.

    python benchmarks/inference.py                 # 112×112 clips, 3 test videos
    python benchmarks/inference.py --size 224      # the paper's size (~1 min per original video here)
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from host import host_line  # noqa: E402  (benchmarks/host.py)
from tpt_keras.config import get_preset  # noqa: E402
from tpt_keras.experiment.exemplar_bank import encode_all  # noqa: E402
from tpt_keras.models.i3d import InceptionI3D, default_jit_compile  # noqa: E402
from tpt_keras.models.tpt_model import TPTModel  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=112, help="clip height and width")
    parser.add_argument("--test-videos", type=int, default=3)
    parser.add_argument("--exemplars", type=int, default=10)
    parser.add_argument("--weights", default="kinetics400", help="'kinetics400' or 'none'")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    config = get_preset("mtl_aqa_dd", **{"protocol.crop_size": args.size})
    rng = np.random.default_rng(0)
    intervals = np.stack([np.linspace(-30, 26.25, 16), np.linspace(-26.25, 30, 16)], 1)
    backbone = InceptionI3D(include_top=False, weights=None if args.weights == "none" else args.weights)
    model = TPTModel(config, intervals, backbone=backbone)
    shape = (config.num_clips, config.clip_len, args.size, args.size, 3)
    queries = rng.uniform(-1, 1, (args.test_videos, *shape)).astype(np.float32)
    exemplars = rng.uniform(-1, 1, (args.exemplars, *shape)).astype(np.float32)
    targets = rng.uniform(10, 25, args.exemplars).astype(np.float32)
    difficulty = np.full(1, 3.2, np.float32)  # a typical dive
    encode = tf.function(lambda video: model.encode(video, training=False)[0],
                         jit_compile=default_jit_compile(), reduce_retracing=True)
    relative = tf.function(model.relative_scores, reduce_retracing=True)

    def aggregate(rel):
        """The original test rule: mean over exemplars of (relative + exemplar target) × query difficulty,
        in float64 so that the comparison sees the relative scores, not the final rounding."""
        return float(np.mean((rel.astype(np.float64) + targets) * float(difficulty[0])))

    def original(query):
        """20 video passes: query and exemplar together, once per pair (the authors' loop)."""
        rel = []
        for e in range(args.exemplars):
            parts = encode(np.stack([query, exemplars[e]]))  # (2, K, d)
            rel.append(float(relative(parts[1:], parts[:1])[0]))
        return aggregate(np.array(rel))

    def banked(query, bank):
        parts = encode(query[None])  # (1, K, d)
        rel = relative(bank, tf.repeat(parts, args.exemplars, axis=0))  # (E,)
        return aggregate(np.asarray(rel))

    # warm up both paths (tracing) on the first query
    original(queries[0])
    start = time.perf_counter()
    bank = encode_all(model, exemplars, batch_size=1)
    bank_seconds = time.perf_counter() - start
    banked(queries[0], bank)

    timings = {"original": [], "bank": []}
    scores = {"original": [], "bank": []}
    for query in queries:
        for name, run in (("original", lambda q: original(q)), ("bank", lambda q: banked(q, bank))):
            start = time.perf_counter()
            scores[name].append(run(query))
            timings[name].append(time.perf_counter() - start)
    difference = np.max(np.abs(np.array(scores["original"]) - np.array(scores["bank"])))
    per_video = {name: float(np.mean(values)) for name, values in timings.items()}
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print("\n" + host_line())
    print(f"end-to-end TPT (I3D {args.weights}), clips 20×8×{args.size}², {args.exemplars} "
          f"exemplars, {args.test_videos} test videos, {device}, XLA {default_jit_compile()}")
    print(f"{'protocol':<34} {'video passes':>12} {'s / test video':>15}")
    print(f"{'original (query+exemplar per pair)':<34} {2 * args.exemplars:>12} "
          f"{per_video['original']:>15.2f}")
    print(f"{'exemplar bank':<34} {1:>12} {per_video['bank']:>15.2f}")
    print(f"{'(bank built once: ' + str(args.exemplars) + ' exemplars)':<34} {args.exemplars:>12} "
          f"{bank_seconds:>15.2f}")
    print(f"speed-up: {per_video['original'] / per_video['bank']:.1f}×   "
          f"max |Δ score| = {difference:.2e}   scores: {np.round(scores['bank'], 4).tolist()}")


if __name__ == "__main__":
    main()
