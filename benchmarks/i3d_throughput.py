"""I3D backbone throughput: clips/s, GFLOP/s against a measured matmul floor, peak memory.

    .venv/bin/python benchmarks/i3d_throughput.py            # 8x224x224, batch 1 and 20
    .venv/bin/python benchmarks/i3d_throughput.py --quick    # 8x112x112, batch 1 and 4, fewer reps

For every combination of XLA (``jit_compile``) off/on, batch size and pass (forward;
forward+backward, i.e. a training step's gradient of all trainable variables), a fresh
subprocess builds ``InceptionI3D(include_top=False, weights=None)`` (float32), traces a
``tf.function``, runs it once to warm up (reported as "first call", tracing and XLA compilation
included) and then times ``--repeats`` calls (median). A fresh process per row makes the peak
memory of each row its own: ``resource.getrusage(...).ru_maxrss`` on CPU (peak resident set of the
whole process, TensorFlow itself included), ``tf.config.experimental.get_memory_info`` peak on GPU.

FLOPs are counted from the model's conv layers (2 x multiply-adds; 27.8 GFLOP per 8x224x224 clip
forward); forward+backward counts 3x forward (input and weight gradients). The floor is the
GFLOP/s of a float32 4096x4096 matmul measured in the same run on the same device. Runs unchanged
on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conv_flops(model) -> float:
    """Forward FLOPs (2 x multiply-adds) of all Conv3D layers of a model with a static input shape."""
    import keras
    import numpy as np

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv3D):
            out_shape = layer.output.shape  # (B, T, H, W, C_out)
            total += np.prod(out_shape[1:]) * np.prod(layer.kernel.shape[:4])
    return 2.0 * float(total)


def _device_name() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU ({details.get('device_name', gpus[0].name)})"
    return f"CPU ({os.cpu_count()} cores)"


def _peak_memory_gib(gpu: bool) -> float:
    if gpu:
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _time(function, argument, repeats):
    import numpy as np

    start = time.perf_counter()
    np.asarray(function(argument))  # first call: tracing (+ XLA compilation) and the run
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(function(argument))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def measure_floor(repeats: int) -> dict:
    """GFLOP/s of float32 4096x4096 matmuls on the default device: ``tf.matmul``, the same product
    as a 1x1x1 Conv3D (the oneDNN / cuDNN kernels the network uses) and, on CPU, numpy's BLAS.
    The floor is the best of them."""
    import numpy as np
    import tensorflow as tf

    n = 4096
    flops = 2.0 * n**3
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    rates = {}
    matmul = tf.function(lambda x: tf.reduce_sum(tf.matmul(x, b)))  # reduce: tiny transfer
    rates["tf.matmul"] = flops / _time(matmul, a, max(repeats, 3))[1] / 1e9
    pixels = tf.reshape(a, (1, 1, 64, 64, n))  # 4096 positions x 4096 channels
    kernel = tf.reshape(b, (1, 1, 1, n, n))
    conv = tf.function(lambda x: tf.reduce_sum(tf.nn.conv3d(x, kernel, [1] * 5, "SAME")))
    rates["1x1x1 conv3d"] = flops / _time(conv, pixels, max(repeats, 3))[1] / 1e9
    if not tf.config.list_physical_devices("GPU"):
        a_np, b_np = a.numpy(), b.numpy()
        rates["numpy"] = flops / _time(lambda x: x @ b_np, a_np, max(repeats, 3))[1] / 1e9
    rates["floor"] = max(rates.values())
    return rates


def run_one(jit: bool, batch: int, pass_: str, frames: int, size: int, repeats: int) -> dict:
    """One benchmark row, measured in this process."""
    import numpy as np
    import tensorflow as tf

    from tpt_keras.i3d import InceptionI3D

    gpu = bool(tf.config.list_physical_devices("GPU"))
    model = InceptionI3D(include_top=False, weights=None, input_shape=(frames, size, size, 3))
    video = tf.constant(np.random.RandomState(0).uniform(-1, 1, (batch, frames, size, size, 3)).astype(np.float32))
    if pass_ == "forward":

        @tf.function(jit_compile=jit)
        def step(x):
            return model(x, training=False)

    else:
        variables = model.trainable_variables

        @tf.function(jit_compile=jit)
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True)))
            gradients = tape.gradient(loss, variables)
            return tf.add_n([tf.reduce_sum(g) for g in gradients])  # forces every gradient

    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    first, seconds = _time(step, video, repeats)
    flops = conv_flops(model) * batch * (1 if pass_ == "forward" else 3)
    return {
        "jit": jit,
        "batch": batch,
        "pass": pass_,
        "first_call_s": first,
        "step_s": seconds,
        "clips_per_s": batch / seconds,
        "gflops_per_s": flops / seconds / 1e9,
        "peak_mem_gib": _peak_memory_gib(gpu),
    }


def _child(args_list):
    """Run one row in a fresh interpreter; return its dict."""
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(args_list)]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark row {args_list} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8x112x112, batch 1 and 4, 2 repeats")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=None, help="224 (112 with --quick)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="1 20 (1 4 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (3; 2 with --quick)")
    parser.add_argument("--xla", choices=["off", "on", "both"], default="both")
    parser.add_argument("--passes", nargs="+", choices=["forward", "backward"], default=["forward", "backward"])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_one(*json.loads(args.child))))
        return 0

    size = args.size or (112 if args.quick else 224)
    batches = args.batches or ([1, 4] if args.quick else [1, 20])
    repeats = args.repeats or (2 if args.quick else 3)
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.xla]

    sys.path.insert(0, REPO)
    import tensorflow as tf

    from tpt_keras.i3d import default_jit_compile

    device = _device_name()
    rates = measure_floor(repeats)
    floor = rates.pop("floor")
    print(f"I3D backbone (include_top=False), float32, {args.frames}x{size}x{size} clips, {device}, TensorFlow {tf.__version__}")
    print(
        "floor, 4096x4096 float32 matmul: "
        + ", ".join(f"{name} {rate:.0f}" for name, rate in rates.items())
        + f" GFLOP/s -> {floor:.0f}; load average before: {os.getloadavg()[0]:.1f}"
    )
    header = "| XLA | batch | pass | clips/s | s/step | GFLOP/s | % of floor | peak mem GiB | first call s |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    rows = []
    for jit in jits:
        for batch in batches:
            for pass_ in args.passes:
                row = _child([jit, batch, pass_, args.frames, size, repeats])
                rows.append(row)
                print(
                    f"| {'on' if jit else 'off'} | {batch} | {'fwd' if pass_ == 'forward' else 'fwd+bwd'} "
                    f"| {row['clips_per_s']:.2f} | {row['step_s']:.2f} | {row['gflops_per_s']:.0f} "
                    f"| {100 * row['gflops_per_s'] / floor:.0f}% | {row['peak_mem_gib']:.1f} "
                    f"| {row['first_call_s']:.1f} |",
                    flush=True,
                )
    print(f"load average after: {os.getloadavg()[0]:.1f} (other processes share these cores)")
    if len(jits) == 2:
        by_key = {(r["jit"], r["batch"], r["pass"]): r["step_s"] for r in rows}
        ratios = [by_key[(True, b, p)] / by_key[(False, b, p)] for b in batches for p in args.passes]
        faster = "XLA off" if statistics.geometric_mean(ratios) > 1 else "XLA on"
        print(
            f"XLA on / XLA off step time: {', '.join(f'{r:.2f}x' for r in ratios)} -> faster here: {faster}; "
            f"default_jit_compile() = {default_jit_compile()}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": device, "floor_gflops": floor, "matmul_gflops": rates, "frames": args.frames, "size": size, "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
