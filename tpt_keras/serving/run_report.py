"""``tpt evaluate RUN --report PAGE.html``: what a researcher looks at after a run, as one page.

The test table of :func:`tpt_keras.experiment.evaluate_run`, predicted against true scores, the
parsing metric when the videos have annotated steps, and the videos with the largest errors, each
with its timeline (:mod:`tpt_keras.report`). The per-video predictions are the ones the table was
computed from (:func:`evaluate_with_report` keeps them while ``evaluate_run`` predicts).
"""

from __future__ import annotations

import os

import numpy as np

WORST = 10


def _frames_of(sample, spec):
    """The test protocol's frames of a test video (decoded alone: memory follows the protocol,
    not the video), their frame numbers and the video's frame count, or None when the video
    cannot be read (features-only runs)."""
    from data_pipelines.io import decode
    from tpt_keras.serving import scoring

    if not sample.path or not os.path.exists(sample.path):
        return None
    try:
        return scoring.read_test_frames(sample.path, spec)
    except decode.VideoDecodeError:
        return None


def worst_video(sample, attention, boundaries, pred: float, true: float, per_exemplar,
                scale_description: str, spec, run_name: str) -> dict:
    """The page's dict of one test video (:func:`tpt_keras.report.pages.video_section`): its
    timeline from the video's frames when it can be read, else on the clip axis."""
    from tpt_keras.serving import scoring

    from data_pipelines.io import decode
    from data_pipelines.video import protocol

    attention = np.asarray(attention, np.float64)  # (T, K)
    read = _frames_of(sample, spec)
    note = None
    if read is None:
        note = (f"{sample.path or sample.key}: video not readable here; positions are in clips "
                "(one 'frame' per clip)")
        num_frames, clip_frames = attention.shape[0], np.arange(attention.shape[0])
    else:
        frames, frame_numbers, num_frames = read
        clip_frames = frame_numbers[protocol.clip_middle_positions(spec)]
    steps = (boundaries, [label for label, _ in sample.steps]) if boundaries is not None else None
    video = scoring.video_timeline(sample.path or sample.key, num_frames, clip_frames, attention,
                                   steps, None if note else decode.frame_rate(sample.path))
    video.update(name=sample.key, video=sample.path, score=float(pred), true_score=float(true),
                 exemplar_scores=[float(v) for v in per_exemplar], spread=float(np.std(per_exemplar)),
                 scale_description=scale_description, attention=attention.tolist(),
                 group=sample.group, run=run_name, note=note)
    if not note:
        video["thumbnails"] = scoring.part_thumbnails(frames, frame_numbers, video["parts"])
    return video


def evaluation(run_dirs, results: dict, predictions: dict, which: str = "best",
               split: str = "test", scale: str = "judges", worst: int = WORST) -> dict:
    """The dict of :func:`tpt_keras.report.pages.evaluation_page` for ``results`` of
    :func:`tpt_keras.experiment.evaluate_run` on ``run_dirs`` (same arguments), with
    ``predictions``: ``{run_dir: (Run, predict_split outputs)}`` of that evaluation."""
    from tpt_keras.experiment import score_scale
    from tpt_keras.serving import scoring

    if isinstance(run_dirs, str):
        run_dirs = [run_dirs]
    panels, candidates = [], []
    for run_dir, row in zip(run_dirs, results["runs"]):
        run, outputs = predictions[run_dir]
        by_key = {s.key: s for s in run.splits[split]}
        convert = ((lambda v, g: score_scale.to_judges(v, g, run.config.dataset)) if scale == "judges"
                   else (lambda v, g: np.asarray(v, np.float64)))
        pred = convert(outputs["pred"], outputs["groups"])
        true = convert(outputs["true"], outputs["groups"])
        panels.append({"name": row["name"], "pred": pred.tolist(), "true": true.tolist(), "links": None})
        for i, key in enumerate(outputs["keys"]):
            mask = np.asarray(outputs["mask"][i]) > 0
            per_exemplar = convert(np.asarray(outputs["per_exemplar"][i])[mask],
                                   [outputs["groups"][i]] * int(mask.sum()))
            candidates.append((abs(pred[i] - true[i]), len(panels) - 1, i, run, by_key[key],
                               outputs["attention"][i, -1], outputs["boundaries"][i],
                               pred[i], true[i], per_exemplar, row))
    candidates.sort(key=lambda c: -c[0])
    videos = []
    for rank, (_, panel, i, run, sample, attention, boundaries, p, t, per_ex, row) in enumerate(candidates[:worst]):
        videos.append(worst_video(sample, attention, boundaries, p, t, per_ex, row["scale_description"],
                                  run.config.protocol, row["name"]))
        links = panels[panel]["links"] or [None] * len(panels[panel]["pred"])
        links[i] = f"worst-{rank + 1}"
        panels[panel]["links"] = links
    title = (f"Evaluation of {results['runs'][0]['name']}" if len(run_dirs) == 1
             else f"Evaluation of {len(run_dirs)} runs")
    return {"title": f"{title} ({split}, {which} checkpoint)",
            "models": [scoring.model_card(run_dir, which) for run_dir in run_dirs],
            "runs": results["runs"], "average": results["average"], "panels": panels,
            "worst": videos}


def evaluate_with_report(run_dirs, path: str, which: str = "best", split: str = "test",
                         plot: str | None = None, progress: bool = False, scale: str = "judges",
                         skip_bad: bool = False) -> tuple[dict, str]:
    """:func:`tpt_keras.experiment.evaluate_run` (same arguments) and the page of its results
    written to ``path``, drawn from the predictions the evaluation made (each run predicted once).
    Returns ``(results, page path)``."""
    from tpt_keras import experiment, report

    if isinstance(run_dirs, str):
        run_dirs = [run_dirs]
    predictions = {}
    results = experiment.evaluate_run(
        run_dirs, which=which, split=split, plot=plot, progress=progress, scale=scale,
        skip_bad=skip_bad,
        on_predictions=lambda run_dir, run, outputs: predictions.__setitem__(run_dir, (run, outputs)))
    page = report.write_evaluation_report(
        evaluation(run_dirs, results, predictions, which, split, scale), path)
    return results, page
