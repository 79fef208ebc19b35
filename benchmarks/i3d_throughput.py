"""I3D backbone throughput: the networks of this code side by side, against a measured matmul
floor, and beside the authors' PyTorch I3D when its folder is given.

    .venv/bin/python benchmarks/i3d_throughput.py            # fwd 4 x 8x224^2, fwd+bwd 2 x 8x64^2
    .venv/bin/python benchmarks/i3d_throughput.py --quick    # fwd 2 x 8x112^2, fwd+bwd 1 x 8x32^2
    .venv/bin/python benchmarks/i3d_throughput.py --original ../aqa_tpt   # + the authors' PyTorch I3D
    .venv/bin/python benchmarks/i3d_throughput.py --xla-table [--quick]   # XLA off vs on

Default: one table, the sides alternating call by call in one run (each side a persistent child
process, so that load from other processes hits every side alike; wall and process CPU seconds):
this code's training network, its inference network (batch norm folded,
:func:`tpt_keras.models.i3d.fold_batch_norm`), each with oneDNN off, and, with ``--original DIR`` (a
checkout of the authors' code; needs torch), the authors' PyTorch I3D on the same input
(``benchmarks/original.py``); every ratio is against a side timed in the same run. Then the
exemplar bank's head-only evaluation of ``--eval-videos`` x ``--exemplars`` pairs.

``--xla-table``:

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

# The user's oneDNN choice, read before anything here imports tpt_keras (which sets it when
# unset): the sides run with it, or as the package sets it.
USER_ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
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
    """One benchmark row, measured in this process (the package imported before TensorFlow, as a
    user's script does, so that its oneDNN setting applies)."""
    from tpt_keras.models.i3d import InceptionI3D

    import numpy as np
    import tensorflow as tf

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


# ------------------------------------------------------------------ side by side, in one run

SIDES = {
    "training": "this code, training network (batch norm unfolded)",
    "inference": "this code, inference network (batch norm folded)",
    "training-eigen": "this code, training network, oneDNN off",
    "inference-eigen": "this code, inference network, oneDNN off",
    "original": "the authors' PyTorch I3D",
}


def serve(variant: str, pass_: str, batch: int, frames: int, size: int) -> int:
    """A child that builds one network, warms up, then times one call per line read on stdin.

    Its first line is ``ready <oneDNN on?>``. The package is imported before TensorFlow, as a
    user's script does, so that each side runs with the oneDNN setting its own code makes."""
    from tpt_keras.models import i3d
    import numpy as np
    import tensorflow as tf

    model = i3d.InceptionI3D(include_top=False, weights=None, input_shape=(frames, size, size, 3))
    if variant.startswith("inference"):
        model = i3d.fold_batch_norm(model)
    video = tf.constant(np.random.RandomState(0).uniform(-1, 1, (batch, frames, size, size, 3))
                        .astype(np.float32))
    if pass_ == "forward":
        step = tf.function(lambda x: model(x, training=False))
    else:
        variables = model.trainable_variables

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True)))
            return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, variables)])

    np.asarray(step(video))
    from host import onednn_enabled

    print(f"ready {onednn_enabled()}", flush=True)
    for _ in sys.stdin:
        wall, cpu = time.perf_counter(), time.process_time()
        np.asarray(step(video))
        print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]), flush=True)
    return 0


def _start(repo: str, variant: str, pass_: str, batch: int, frames: int, size: int):
    command = [sys.executable, os.path.abspath(__file__), "--serve", variant, pass_, str(batch),
               str(frames), str(size)]
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if variant.endswith("-eigen"):
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    elif USER_ONEDNN is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = USER_ONEDNN
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=env, cwd=repo)
    words = child.stdout.readline().split()
    if not words or words[0] != "ready":
        child.kill()
        raise RuntimeError(f"benchmark side {variant} {pass_} in {repo} did not start")
    child.onednn = words[1]
    return child


def side_by_side(pass_: str, sides, batch: int, frames: int, size: int, rounds: int,
                 original_dir: str | None = None):
    """Median (wall, CPU) seconds per call of each side, alternating calls between sides."""
    import numpy as np

    import original

    children = {}
    try:
        for name in sides:  # one at a time: tracing does not overlap a timed call
            if name == "original":
                children[name] = original.start(
                    original_dir, "i3d-forward" if pass_ == "forward" else "i3d-backward",
                    batch=batch, frames=frames, size=size)
                children[name].onednn = "-"
            else:
                children[name] = _start(REPO, name, pass_, batch, frames, size)
        times = {name: [] for name in sides}
        for _ in range(rounds):
            for name, child in children.items():
                if name == "original":
                    times[name].append(child.time())
                    continue
                child.stdin.write("go\n")
                child.stdin.flush()
                times[name].append(json.loads(child.stdout.readline()))
    finally:
        for name, child in children.items():
            if name == "original":
                child.close()
            else:
                child.stdin.close()
                child.wait()
    return {name: (float(np.median([w for w, _ in values])), float(np.median([c for _, c in values])),
                   children[name].onednn) for name, values in times.items()}


def head_only_evaluation(videos: int, exemplars: int, rounds: int) -> float:
    """Seconds for the exemplar bank's head-only evaluation: ``videos`` cached query features
    against a bank of ``exemplars`` encoded exemplars each (the paper's sizes: 20 clips, K 5)."""
    import numpy as np

    from tpt_keras.config import get_preset
    from tpt_keras.ops.groups import compute_intervals
    from tpt_keras.models.tpt_model import TPTModel

    config = get_preset("mtl_aqa_dd", backbone="none")
    rng = np.random.default_rng(0)
    intervals = compute_intervals(rng.uniform(5, 25, 200).astype(np.float32),
                                  num_intervals=config.num_intervals, max_value=config.score_max)
    model = TPTModel(config, intervals)
    data = {
        "query": rng.normal(size=(videos, config.num_clips, config.feature_dim)).astype(np.float32),
        "exemplars": rng.normal(size=(videos, exemplars, config.num_clips, config.feature_dim))
        .astype(np.float32),
        "exemplar_scores": rng.uniform(5, 25, (videos, exemplars)).astype(np.float32),
        "exemplar_mask": np.ones((videos, exemplars), np.float32),
        "query_difficulty": np.ones(videos, np.float32),
    }
    model.predict(data, batch_size=8, verbose=0)  # trace
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        model.predict(data, batch_size=8, verbose=0)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main_side_by_side(args) -> int:
    sys.path.insert(0, REPO)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tpt_keras  # noqa: F401  (before TensorFlow: the floor is measured as this code runs)
    from host import host_line

    size = args.size or (112 if args.quick else 224)
    batch = args.batch or (2 if args.quick else 4)
    rounds = args.rounds or (2 if args.quick else 3)
    # Forward+backward runs smaller clips so that the whole benchmark stays within minutes.
    backward = (args.backward_size or (32 if args.quick else 64), args.backward_batch or (1 if args.quick else 2))
    print(host_line())
    rates = measure_floor(3)
    floor = rates.pop("floor")
    print(f"# matmul 4096^2 float32: " + ", ".join(f"{n} {r:.0f}" for n, r in rates.items())
          + f" GFLOP/s -> floor {floor:.0f} GFLOP/s; medians of {rounds} alternating rounds; "
          f"fwd: {batch} clips of {args.frames}x{size}^2 per call, fwd+bwd: {backward[1]} clips of "
          f"{args.frames}x{backward[0]}^2; 27.8 GFLOP per 8x224^2 clip forward")
    print()
    reference = "original" if args.original else "training"
    print(f"| pass | network | oneDNN | s / call (wall) | CPU s / call | {reference} / this (wall) "
          f"| {reference} / this (CPU) | GFLOP/s (wall) | floor / this |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pass_ in args.passes:
        sides = (["training", "inference", "inference-eigen"] if pass_ == "forward"
                 else ["training", "training-eigen"]) + (["original"] if args.original else [])
        pass_size, pass_batch = (size, batch) if pass_ == "forward" else backward
        result = side_by_side(pass_, sides, pass_batch, args.frames, pass_size, rounds,
                              args.original)
        flops = (27.8 * (pass_size / 224) ** 2 * args.frames / 8 * pass_batch
                 * (1 if pass_ == "forward" else 3))  # conv GFLOP (see conv_flops)
        for name in sides:
            wall, cpu, onednn = result[name]
            print(f"| {'fwd' if pass_ == 'forward' else 'fwd+bwd'} | {SIDES[name]} | {onednn} | {wall:.2f} | "
                  f"{cpu:.2f} | {result[reference][0] / wall:.2f}x | {result[reference][1] / cpu:.2f}x "
                  f"| {flops / wall:.0f} | {floor / (flops / wall):.2f} |", flush=True)
    seconds = head_only_evaluation(args.eval_videos, args.exemplars, rounds)
    print(f"\nexemplar bank, head-only evaluation of {args.eval_videos} test videos x "
          f"{args.exemplars} exemplars (cached features): {seconds:.2f} s")
    print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8x112x112, batch 1 and 4, 2 repeats")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=None, help="224 (112 with --quick)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="--xla-table: 1 20 (1 4 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (3; 2 with --quick)")
    parser.add_argument("--xla", choices=["off", "on", "both"], default="both")
    parser.add_argument("--passes", nargs="+", choices=["forward", "backward"], default=["forward", "backward"])
    parser.add_argument("--json", help="also write the rows to this file (--xla-table)")
    parser.add_argument("--xla-table", action="store_true",
                        help="the XLA off/on table of this code instead of the side-by-side one")
    parser.add_argument("--original", metavar="DIR",
                        help="side by side: also time the authors' PyTorch I3D, from a checkout "
                             "of their code (needs torch)")
    parser.add_argument("--batch", type=int, help="side by side, forward: clips per call (4; 2 with --quick)")
    parser.add_argument("--backward-size", type=int, help="side by side, fwd+bwd: frame size (64; 32 with --quick)")
    parser.add_argument("--backward-batch", type=int, help="side by side, fwd+bwd: clips per call (2; 1 with --quick)")
    parser.add_argument("--rounds", type=int, help="side by side: alternating rounds (3; 2 with --quick)")
    parser.add_argument("--eval-videos", type=int, default=353, help="head-only evaluation: test videos")
    parser.add_argument("--exemplars", type=int, default=10)
    parser.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_one(*json.loads(args.child))))
        return 0
    if args.serve:
        variant, pass_, batch, frames, size = args.serve
        return serve(variant, pass_, int(batch), int(frames), int(size))
    if not args.xla_table:
        return main_side_by_side(args)

    size = args.size or (112 if args.quick else 224)
    batches = args.batches or ([1, 4] if args.quick else [1, 20])
    repeats = args.repeats or (2 if args.quick else 3)
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.xla]

    sys.path.insert(0, REPO)
    from tpt_keras.models.i3d import default_jit_compile

    import tensorflow as tf

    device = _device_name()
    rates = measure_floor(repeats)
    floor = rates.pop("floor")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from host import host_line

    print(host_line())
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
