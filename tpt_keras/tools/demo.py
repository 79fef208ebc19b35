"""``make demo``: the whole user path on built-in data, on 2 CPU cores in a few minutes.

1. Synthetic clip features (``data_pipelines.synthetic.features``): train TPT and the holistic
   average-pool baseline, print held-out Spearman and R-ℓ2.
2. Synthetic *videos* (``data_pipelines.synthetic.videos``, rendered frames whose ordered phases
   carry the quality): extract real Kinetics-400 I3D features, train TPT and the baseline on them,
   evaluate on the test protocol, export a TF Serving SavedModel, reload it in a fresh Python
   process that imports only TensorFlow, and score a held-out video with its attention picture
   (and the real diving clip from ``../shared/data/samples`` when it is there).

Everything lands under ``demo_output/`` (override with ``--output``); a second run reuses the
rendered videos, the feature cache and finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

HERE = os.path.dirname(os.path.abspath(__file__))
DIVING_GIF = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "samples",
                                           "diving_sample.gif"))

FRESH_PROCESS_CHECK = r"""
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
frames = np.load(sys.argv[2])
out = loaded.signatures["serving_default"](frames=tf.constant(frames))  # no DD: frames only
assert "tpt_keras" not in sys.modules
print(json.dumps({"score": float(out["score"]), "modules_ok": True}))
"""


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def _table(rows) -> str:
    lines = [f"{'model':<34} {'Spearman':>9} {'R-l2 x100':>10}"]
    lines += [f"{name:<34} {rho:>9.4f} {rl2:>10.4f}" for name, rho, rl2 in rows]
    return "\n".join(lines)


def feature_demo(output: str, epochs: int) -> list:
    """Part 1: TPT vs the holistic baseline on synthetic clip features."""
    from tpt_keras import experiment
    from tpt_keras.config import get_preset

    rows = []
    for name, overrides in (("TPT (temporal parsing decoder)", {}),
                            ("holistic average-pool baseline", {"part_encoder": "holistic"})):
        config = get_preset("synthetic", **overrides)
        config = config.replace(epochs=epochs) if epochs else config
        cache = os.path.join(output, "synthetic_features")
        splits = experiment.synthetic_splits(config, cache)
        run_dir = os.path.join(output, "runs", "features_" + config.part_encoder)
        experiment.train(config, splits, run_dir, features_dir=cache, verbose=2)
        result = experiment.evaluate_run(run_dir, which="last")["runs"][0]
        rows.append((name, result["spearman"], result["r_l2"]))
    return rows


def video_config(epochs: int, frame_size: int = 64, **overrides):
    """The ``custom`` preset as a user would set it for small rendered videos: its protocol as
    is (linspace over the whole video, flip + random crop in training) except the resize, set to
    the videos' ``frame_size`` (resize and crop to frame_size²), exactly what
    ``--set protocol.resize_height=64 --set protocol.resize_width=64 --set protocol.crop_size=64``
    does; a features-mode model small enough for CPU."""
    from tpt_keras.config import get_preset

    settings = {
        "protocol.resize_height": frame_size, "protocol.resize_width": frame_size,
        "protocol.crop_size": frame_size, "backbone": "none",
        "hidden_dim": 128, "ffn_dim": 128, "head_hidden_dim": 64, "num_heads": 4, "dropout": 0.0,
        "learning_rate": 1e-3, "head_learning_rate": 1e-3, "batch_size": 16, "epochs": epochs,
        "seed": 0}
    return get_preset("custom", **{**settings, **overrides})


def video_demo(output: str, epochs: int, num_train: int, num_test: int,
               seeds: int = 1) -> tuple[list, str, list]:
    """Part 2: rendered videos → Kinetics I3D features → TPT / baseline → evaluate.

    Returns the rows of seed 0, its TPT run folder, and with ``seeds`` > 1 the rows of every
    seed: ``(name, seed, Spearman, R-l2)``."""
    from data_pipelines.synthetic import videos as synthetic_videos
    from tpt_keras import experiment

    manifest = synthetic_videos.write_synthetic_video_dataset(
        os.path.join(output, "synthetic_videos"), num_train=num_train, num_test=num_test, size=64)
    config = video_config(epochs)
    splits = experiment.load_splits(config, manifest)
    cache = os.path.join(output, "video_features")
    samples = splits["train"] + splits["test"]
    _, report = experiment.extract_features(config, samples, cache, batch_size=4)
    print(f"features: {len(report.written)} extracted, {len(report.skipped_existing)} cached")
    rows, per_seed, tpt_run = [], [], None
    for name, overrides in (("TPT on Kinetics I3D features", {}),
                            ("holistic baseline, same features", {"part_encoder": "holistic"})):
        for seed in range(seeds):
            config = video_config(epochs, seed=seed, **overrides)
            run_dir = os.path.join(output, "runs", "video_" + config.part_encoder
                                   + (f"_seed_{seed}" if seed else ""))
            experiment.train(config, splits, run_dir, features_dir=cache, verbose=2)
            result = experiment.evaluate_run(run_dir, which="last")["runs"][0]
            per_seed.append((name, seed, result["spearman"], result["r_l2"]))
            if seed == 0:
                rows.append((name, result["spearman"], result["r_l2"]))
                tpt_run = tpt_run or run_dir
    return rows, tpt_run, per_seed


def seeds_table(per_seed) -> str:
    """Per model: each seed's Spearman, their mean ± std (ddof 1) and the mean R-l2."""
    import numpy as np

    names = list(dict.fromkeys(name for name, *_ in per_seed))
    seeds = sorted({seed for _, seed, *_ in per_seed})
    lines = [f"{'model':<34} " + " ".join(f"{'seed ' + str(s):>8}" for s in seeds)
             + f" {'mean ± std':>16} {'R-l2 x100':>10}"]
    for name in names:
        rhos = [rho for n, _, rho, _ in per_seed if n == name]
        rl2 = [value for n, _, _, value in per_seed if n == name]
        lines.append(f"{name:<34} " + " ".join(f"{rho:>8.4f}" for rho in rhos)
                     + f" {np.mean(rhos):>8.4f} ± {np.std(rhos, ddof=1):.4f} {np.mean(rl2):>10.4f}")
    return "\n".join(lines)


def serve_demo(output: str, run_dir: str) -> None:
    """Export, reload in a fresh process, score a held-out video and the real dive, and write
    the report page of every held-out video and the dive."""
    import numpy as np

    from data_pipelines.io import decode
    from tpt_keras import experiment
    from tpt_keras.serving import export, scoring

    saved = os.path.join(output, "saved_models", "tpt_demo")
    version = 1 + max([int(v) for v in os.listdir(saved) if v.isdigit()], default=0) \
        if os.path.isdir(saved) else 1
    path = export.export_run(run_dir, name="tpt_demo", version=version,
                             base_dir=os.path.join(output, "saved_models"), which="last")
    print(f"SavedModel: {path}")
    test = experiment.load_samples(os.path.join(run_dir, "samples.json"))["test"][0]
    frames_file = os.path.join(output, "held_out_frames.npy")
    np.save(frames_file, decode.read_frames(test.path))
    fresh = subprocess.run([sys.executable, "-c", FRESH_PROCESS_CHECK, path, frames_file],
                           capture_output=True, text=True, check=True)
    fresh_score = json.loads(fresh.stdout.strip().splitlines()[-1])["score"]
    result = scoring.score_video(test.path, path,
                                 picture=os.path.join(output, "held_out_attention.png"))
    print(f"fresh TensorFlow-only process: score {fresh_score:.3f}")
    print(scoring.format_score(result) + f"   (true score {test.score:.2f})")
    if abs(fresh_score - result["score"]) > 1e-3:
        raise SystemExit("the reloaded SavedModel disagrees with in-process scoring")
    if os.path.exists(DIVING_GIF):
        dive = scoring.score_video(DIVING_GIF, path, picture=os.path.join(output, "diving_attention.png"))
        print("real dive (a model trained on synthetic videos: the score is illustrative):")
        print(scoring.format_score(dive))
    tests = experiment.load_samples(os.path.join(run_dir, "samples.json"))["test"]
    items = [scoring.VideoItem(sample.path, true_score=sample.score) for sample in tests]
    if os.path.exists(DIVING_GIF):
        items.append(scoring.VideoItem(DIVING_GIF))
    session = scoring.score_session(items, path, report=os.path.join(output, "report.html"),
                                    progress=False)
    print(f"report of {len(session['videos'])} videos (the held-out test videos and the real "
          f"dive), one page to open in a browser: {session['report']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--feature-epochs", type=int, help="default: the synthetic preset's")
    parser.add_argument("--video-epochs", type=int, default=60)
    parser.add_argument("--videos", type=int, default=150, help="training videos to render")
    parser.add_argument("--test-videos", type=int, default=30)
    parser.add_argument("--video-seeds", type=int, default=1,
                        help="train the video part's two models with seeds 0..N-1 and print "
                             "Spearman per seed and mean ± std (the seed-0 results as without)")
    args = parser.parse_args(argv)
    start = time.time()
    os.makedirs(args.output, exist_ok=True)
    from tpt_keras.runtime import startup

    startup.import_tensorflow()  # without the start-up noise of a machine without a GPU
    import tensorflow as tf

    # The demo trains and encodes with four models in one process; TensorFlow's notice that
    # tf.functions were traced again (one per model) is not for the reader of the demo.
    tf.get_logger().setLevel("ERROR")

    _banner("1/3 synthetic clip features: TPT vs the holistic baseline")
    feature_rows = feature_demo(args.output, args.feature_epochs)
    _banner("2/3 synthetic videos → Kinetics-400 I3D features → TPT vs baseline")
    video_rows, tpt_run, per_seed = video_demo(args.output, args.video_epochs, args.videos,
                                               args.test_videos, seeds=args.video_seeds)
    _banner("3/3 export for TF Serving, reload in a fresh process, score held-out videos")
    serve_demo(args.output, tpt_run)

    _banner("held-out results (test split, last epoch, 10 exemplars)")
    print("synthetic clip features")
    print(_table(feature_rows))
    print("\nsynthetic videos, real Kinetics-400 I3D features")
    print(_table(video_rows))
    if args.video_seeds > 1:
        print(f"\nsynthetic videos, Spearman over {args.video_seeds} seeds")
        print(seeds_table(per_seed))
    print(f"\ndone in {time.time() - start:.0f} s; everything is in {args.output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
