"""TPT train-step time: float32 vs mixed_float16 vs mixed_bfloat16, XLA off vs on.

Two paths, each configuration in a fresh process (a crash or a timeout is a row, not the end):

* ``features``: precomputed clip features (B, T, 1024) -> decoder -> regressor, the paper's model
  sizes (d = 512, K = 5, 2 layers, 16 intervals), ``--batch`` pairs (24, the paper's global batch).
* ``i3d``: frames (B, T, 8, S, S, 3) -> InceptionI3D (random init, frozen BN statistics) -> TPT,
  end to end as the paper fine-tunes it. Default sizes: on GPU the paper's per-GPU step (3 pairs x
  20 clips x 224 px); on CPU a tiny one (1 pair x 5 clips x 112 px; 5 = K, the fewest clips).

On CPU the I3D rows under mixed_float16 / mixed_bfloat16 are skipped unless ``--all``: they are
hundreds of times slower, or crash / produce NaN (``benchmarks/precision_cpu.py``).

``--fit``: instead, ``model.fit`` against the compiled train function it calls, on the same
cached-feature batches, in one process, the sides alternating (medians of ``--rounds``; wall and
process CPU time, so that a wait shows apart from work).

Usage:
    python benchmarks/train_step.py                # prints a markdown table with the device name
    python benchmarks/train_step.py --fit --steps 50 --rounds 5   # fit vs the step alone
    python benchmarks/train_step.py --fit --original ../aqa_tpt     # + the authors' PyTorch step
    python benchmarks/train_step.py --paths features --steps 20
    python benchmarks/train_step.py --all --timeout 120
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
PATHS = ("features", "i3d")


# ------------------------------------------------------------------ child side


def _pairs(path, batch, clips, size, feature_dim, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    if path == "features":
        shape = (batch, clips, feature_dim)
    else:
        shape = (batch, clips, 8, size, size, 3)
    return {
        "query": rng.uniform(-1, 1, size=shape).astype("float32"),
        "exemplar": rng.uniform(-1, 1, size=shape).astype("float32"),
        "query_score": rng.uniform(5, 25, size=batch).astype("float32"),
        "exemplar_score": rng.uniform(5, 25, size=batch).astype("float32"),
        "query_difficulty": np.ones(batch, "float32"),
    }


def child(path, policy, jit, batch, clips, size, steps, max_seconds):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from tpt_keras.config import get_preset
    from tpt_keras.ops.groups import compute_intervals
    from tpt_keras.models.tpt_model import TPTModel

    keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    config = get_preset("mtl_aqa_dd", batch_size=batch, **{"protocol.num_clips": clips},
                        backbone="none" if path == "features" else "i3d")
    backbone = None
    if path == "i3d":
        from tpt_keras.models.i3d import InceptionI3D

        backbone = InceptionI3D(include_top=False, weights=None)
    data = _pairs(path, batch, clips, size, config.feature_dim)
    targets = np.concatenate([data["query_score"], data["exemplar_score"]])
    intervals = compute_intervals(targets, num_intervals=config.num_intervals,
                                  max_value=config.score_max)
    model = TPTModel(config, intervals, backbone=backbone)
    model.compile(jit_compile=jit)

    start = time.perf_counter()
    logs = model.train_on_batch(data, return_dict=True)  # trace (+ XLA compile) + one step
    first = time.perf_counter() - start
    losses = [float(logs["loss"])]
    times = []
    budget = time.perf_counter() + max_seconds
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(float(model.train_on_batch(data, return_dict=True)["loss"]))
        times.append(time.perf_counter() - start)
        if time.perf_counter() > budget:
            break
    print(RESULT_TAG + json.dumps({
        "first_s": first, "step_s": float(np.median(times)) if times else None,
        "steps": len(times), "finite": bool(np.all(np.isfinite(losses))),
        "loss_scaled": isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
    }), flush=True)


# ------------------------------------------------------------------ fit vs the step it runs


def _autotuned(reader):
    """The pipeline with tf.data's defaults: the autotuner on (its model thread makes deleting an
    iterator wait for its next wake-up, up to a minute), AUTOTUNE parallelism and prefetch."""
    import contextlib
    from unittest import mock

    import tensorflow as tf

    readers_options = reader._options  # the readers' own, before the patch below replaces it

    def options():  # the readers' own options, with the autotuner back on
        options = readers_options()
        options.autotune.enabled = True
        return options

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(reader, "_options", options))
    stack.enter_context(mock.patch.object(reader, "PARALLEL_CALLS", tf.data.AUTOTUNE))
    stack.enter_context(mock.patch.object(reader, "PREFETCH_BATCHES", tf.data.AUTOTUNE))
    return stack


def fit_vs_step(steps, rounds, batch, clips, original_dir=None):
    """``model.fit`` on the feature pipeline against the compiled train function on the same
    batches, alternating in one process; prints a table of medians (wall and process CPU time).
    With ``original_dir`` (a checkout of the authors' code) the authors' PyTorch train step on
    the same sizes alternates with them, in its own process (``benchmarks/original.py``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import contextlib
    import tempfile

    import numpy as np

    from data_pipelines.tfdata import reader
    from tpt_keras import experiment
    from tpt_keras.experiment import training
    from tpt_keras.config import get_preset

    config = get_preset("mtl_aqa_dd", batch_size=batch, backbone="none", **{"protocol.num_clips": clips})
    cache = tempfile.mkdtemp(prefix="tpt_fit_bench_")
    splits = experiment.synthetic_splits(config, cache, num_train=400, num_test=20)
    model = experiment.build_model(config, splits["train"])
    training._build(model, config, cache)
    batches = list(experiment.pair_dataset(config, splits["train"], cache).take(steps))
    model.make_train_function()

    def step_alone():
        logs = None
        for data in batches:
            logs = model.train_function(iter([data]))
        float(logs["loss"])

    import keras

    class TrainEnd(keras.callbacks.Callback):  # no batch hooks: Keras' async dispatch stays on
        def on_train_end(self, logs=None):
            self.time = time.perf_counter()

    teardown = {}  # side -> seconds from on_train_end until fit returned

    def fit(callbacks=(), autotuned=False):
        def run():  # a new pipeline per call, as every tpt train / tune / evaluate makes one
            end = TrainEnd()
            with _autotuned(reader) if autotuned else contextlib.nullcontext():
                dataset = experiment.pair_dataset(config, splits["train"], cache)
                model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                          callbacks=[*callbacks, end])
            teardown.setdefault(run, []).append(time.perf_counter() - end.time)
        return run

    sides = {
        "compiled train function alone (same batches, in memory)": step_alone,
        "model.fit, feature pipeline (autotuner off)": fit(),
        "model.fit + non-finite-loss callback (as tpt train)": fit([training._stop_on_non_finite_loss()]),
        "model.fit, autotuned pipeline (tf.data's default)": fit(autotuned=True),
    }
    pytorch = None
    if original_dir:
        import original

        pytorch = original.start(original_dir, "head-step", batch=batch, clips=clips,
                                 d_model=config.hidden_dim, parts=config.num_queries)
        sides[f"the authors' PyTorch train step ({pytorch.description})"] = pytorch
    for side in sides.values():  # warm-up: tracing, pipeline start
        if side is not pytorch:
            side()
    teardown.clear()
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            if side is pytorch:  # timed in its own process, one call per step
                calls = [pytorch.time() for _ in range(steps)]
                times[name].append((sum(w for w, _ in calls), sum(c for _, c in calls)))
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            side()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    if pytorch is not None:
        pytorch.close()
    print(host_line())
    print(f"# {steps} train steps of {batch} pairs ({clips} clips x {config.feature_dim} features, "
          f"K {config.num_queries}, d {config.hidden_dim}), medians of {rounds} alternating rounds")
    print()
    print("| what | wall s | wall / step alone | process CPU s | CPU / step alone "
          "| fit's return after training ended, s (max) |")
    print("|---|---|---|---|---|---|")
    reference = None
    for name, values in times.items():
        wall = float(np.median([w for w, _ in values]))
        cpu = float(np.median([c for _, c in values]))
        reference = reference or (wall, cpu)
        waits = teardown.get(sides[name])
        wait = f"{np.median(waits):.2f} ({max(waits):.2f})" if waits else "-"
        print(f"| {name} | {wall:.2f} | {wall / reference[0]:.2f} | {cpu:.2f} | "
              f"{cpu / reference[1]:.2f} | {wait} |", flush=True)
    if pytorch is not None:
        reference = np.median([w for w, _ in times[list(times)[-1]]])
        print("\nPyTorch / this (wall, same run): " + ", ".join(
            f"{name.split(' (')[0]} {reference / np.median([w for w, _ in times[name]]):.2f}x"
            for name in list(times)[:3]))
    print("\nload average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return 0


# ------------------------------------------------------------------ parent side


def run_isolated(args, timeout):
    """Runs this file with ``args`` in a fresh process; a non-finite loss is a status too."""
    row = isolated.run_isolated(__file__, args, timeout, RESULT_TAG)
    if row["status"] == "ok" and not row["finite"]:
        row["status"] = "non-finite loss"
    return row


def device_name():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return "gpu", f"{details.get('device_name', 'GPU')} (compute capability " \
                      f"{details.get('compute_capability')}), {len(gpus)} visible"
    name = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            name = next(line.split(":", 1)[1].strip() for line in file
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "cpu", f"{name}, {os.cpu_count()} logical cores"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--xla", nargs="+", choices=("off", "on"), default=["off", "on"])
    parser.add_argument("--batch", type=int, default=24, help="features path: pairs per step")
    parser.add_argument("--clips", type=int, default=20, help="features path: clips per video")
    parser.add_argument("--i3d-batch", type=int, help="i3d path: pairs (GPU 3, CPU 1)")
    parser.add_argument("--i3d-clips", type=int, help="i3d path: clips (GPU 20, CPU 5 = K)")
    parser.add_argument("--i3d-size", type=int, help="i3d path: frame size (GPU 224, CPU 112)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="timed-steps budget")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per configuration")
    parser.add_argument("--all", action="store_true",
                        help="on CPU, also run the I3D rows known to be very slow or to crash")
    parser.add_argument("--fit", action="store_true",
                        help="model.fit vs the compiled train function (features path)")
    parser.add_argument("--rounds", type=int, default=5, help="--fit: alternating rounds")
    parser.add_argument("--original", metavar="DIR",
                        help="--fit: also time the authors' PyTorch train step, from a checkout "
                             "of their code (needs torch); without it no PyTorch ratio is printed")
    parser.add_argument("--child", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.fit:
        return fit_vs_step(args.steps, args.rounds, args.batch, args.clips, args.original)

    if args.child:
        path, policy, jit, batch, clips, size, steps, max_seconds = args.child
        return child(path, policy, jit == "on", int(batch), int(clips), int(size), int(steps),
                     float(max_seconds))

    kind, name = device_name()
    i3d_batch = args.i3d_batch or (3 if kind == "gpu" else 1)
    i3d_clips = args.i3d_clips or (20 if kind == "gpu" else 5)
    i3d_size = args.i3d_size or (224 if kind == "gpu" else 112)
    shapes = {
        "features": (args.batch, args.clips, 0, f"{args.batch} pairs x {args.clips} clips x 1024"),
        "i3d": (i3d_batch, i3d_clips, i3d_size,
                f"{i3d_batch} pairs x {i3d_clips} clips x 8 x {i3d_size}^2 frames"),
    }
    print(host_line())
    print(f"# device: {name}")
    print()
    print("| path | input | policy | XLA | status | first step (s) | step (ms) | pairs/s | "
          "vs float32 same XLA | loss scaling |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.paths:
        batch, clips, size, described = shapes[path]
        reference = {}
        for xla in args.xla:
            for policy in args.policies:
                if (kind == "cpu" and path == "i3d" and policy != "float32" and not args.all):
                    row = {"status": "skipped on CPU (see precision_cpu.py; --all runs it)"}
                else:
                    row = run_isolated(["--child", path, policy, xla, str(batch), str(clips),
                                        str(size), str(args.steps), str(args.max_seconds)],
                                       args.timeout)
                step = row.get("step_s")
                if policy == "float32" and step:
                    reference[xla] = step
                ratio = f"{reference[xla] / step:.2f}x" if step and reference.get(xla) else "-"
                print(f"| {path} | {described} | {policy} | {xla} | {row['status']} | "
                      f"{row['first_s']:.1f} | " if "first_s" in row else
                      f"| {path} | {described} | {policy} | {xla} | {row['status']} | - | ",
                      end="")
                print(f"{step * 1000:.1f} | {batch / step:.1f} | {ratio} | "
                      f"{row.get('loss_scaled', '-')} |" if step else "- | - | - | - |",
                      flush=True)
    print()
    print("vs float32 same XLA: float32 step time / this step time (> 1 is faster).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
