"""How long does scoring a session of videos take, with and without the report page?

Scores a folder of short videos (H.264 .mp4, 96–120 frames at 25 fps, rendered synthetic dives)
with ``tpt_keras.serving.scoring.score_session``: one loaded model for the whole folder, one video
in memory at a time. Three ways, in one process:

* **session, no report** — score and timeline of each video (``tpt score FOLDER --json``);
* **session + report** — the same plus each part's thumbnail and the HTML page
  (``tpt score FOLDER --report PAGE.html``);
* **one call per video** — ``score_video`` on a few of them, which loads the model and draws the
  attention PNG every time (``tpt score VIDEO`` in a loop, without the process start).

The model is the exported SavedModel of a small features-mode run on rendered videos (what
``make demo`` trains, smaller), built once under ``--work`` and reused; ``--model`` takes yours.

    python benchmarks/score_session.py                 # 40 videos of 64²
    python benchmarks/score_session.py --videos 8      # quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rss_mib() -> float:
    """Resident memory of this process now, MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build_model(work: str) -> str:
    """The SavedModel of a small run on rendered videos (reused when already there)."""
    from data_pipelines.synthetic import videos as synthetic_videos
    from tpt_keras import experiment
    from tpt_keras.serving import export
    from tpt_keras.tools import demo

    saved = os.path.join(work, "saved", "tpt", "1")
    if os.path.isfile(os.path.join(saved, "saved_model.pb")):
        return saved
    print("building the model once (a small run on rendered videos) …", flush=True)
    manifest = synthetic_videos.write_synthetic_video_dataset(
        os.path.join(work, "train_videos"), num_train=14, num_test=6, size=32, seed=3, progress=False)
    config = demo.video_config(2, frame_size=32, hidden_dim=32, ffn_dim=32, head_hidden_dim=16,
                               batch_size=7)
    splits = experiment.load_splits(config, manifest)
    cache = os.path.join(work, "features")
    experiment.extract_features(config, splits["train"] + splits["test"], cache, batch_size=4,
                                progress=False)
    run_dir = os.path.join(work, "run")
    if not os.path.isfile(os.path.join(run_dir, "best.keras")):
        experiment.train(config, splits, run_dir, features_dir=cache, verbose=0)
    return export.export_run(run_dir, base_dir=os.path.join(work, "saved"))


def write_videos(folder: str, count: int, size: int) -> list[str]:
    """``count`` rendered .mp4 videos in ``folder`` (reused when already there)."""
    from data_pipelines.io import decode
    from data_pipelines.synthetic import videos as synthetic_videos

    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"dive_{i:03d}.mp4") for i in range(count)]
    if not all(os.path.isfile(p) for p in paths):
        for index, frames, *_ in synthetic_videos.make_synthetic_videos(count, size=size, seed=7):
            decode.write_video(paths[index], frames, fps=25)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40, help="videos in the session (default 40)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width (default 64)")
    parser.add_argument("--single", type=int, default=3, help="videos scored one call each (default 3)")
    parser.add_argument("--model", help="run folder or SavedModel (default: built under --work)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "tpt_score_session"),
                        help="folder for the built model and the videos (reused)")
    args = parser.parse_args()

    from tpt_keras.serving import scoring

    model = args.model or build_model(args.work)
    folder = os.path.join(args.work, f"session_{args.videos}_{args.size}")
    paths = write_videos(folder, args.videos, args.size)
    rows = []
    for what, report in (("session, no report", None),
                         ("session + report", os.path.join(args.work, "session.html"))):
        start = time.perf_counter()
        session = scoring.score_session([folder], model, report=report, progress=False)
        total = time.perf_counter() - start
        per_video = [video["seconds"] for video in session["videos"]]
        rows.append((what, len(per_video), total, statistics.median(per_video), rss_mib()))
        if report:
            page_kib = os.path.getsize(report) / 1024
    start, per_video = time.perf_counter(), []
    for path in paths[:args.single]:
        began = time.perf_counter()
        scoring.score_video(path, model, picture=os.path.join(args.work, "single.png"))
        per_video.append(time.perf_counter() - began)
    rows.append(("one call per video (loads the model)", len(per_video), time.perf_counter() - start,
                 statistics.median(per_video), rss_mib()))
    print(f"# {args.videos} videos of {args.size}² (.mp4, 96–120 frames), model {model}; "
          f"page {page_kib:.0f} KiB ({page_kib / args.videos:.1f} KiB per video)")
    print("| what | videos | total s (with model load) | s / video (median) | RSS after, MiB |")
    print("|---|---:|---:|---:|---:|")
    for what, count, total, median, rss in rows:
        print(f"| {what} | {count} | {total:.1f} | {median:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
