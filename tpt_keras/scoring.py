"""``tpt score``: score one video with a run folder or an exported SavedModel, and draw its
attention map with the frame each part attends to most (like the paper's Fig. 3–4).

Both sources run the same serving function (:class:`tpt_keras.export.Serving`): a run folder
builds it in process, a SavedModel folder loads it with ``tf.saved_model.load``.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf


def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def load_scorer(model_path: str):
    """A callable ``(frames uint8 (T, H, W, 3), difficulty list) -> dict of outputs`` running
    the serving function of a SavedModel folder or of a run folder."""
    if is_saved_model(model_path):
        function = tf.saved_model.load(model_path).signatures["serving_default"]
    else:
        from tpt_keras.export import serving_from_run

        function = serving_from_run(model_path).score

    def scorer(frames, difficulty):
        return function(frames=tf.constant(frames, tf.uint8),
                        difficulty=tf.constant(difficulty, tf.float32, shape=[len(difficulty)]))

    return scorer


def score_video(video: str, model_path: str, difficulty: float | None = None,
                picture: str | None = None) -> dict:
    """Score ``video`` (file, GIF or frame folder) and write the attention picture.

    Returns:
        dict with "score", "exemplar_scores" (list), "spread" (std over exemplars), "attention"
        (T, K) list, "top_clips", "picture".
    """
    from data_pipelines import decode
    from tpt_keras import visualize

    frames = decode.read_frames(video)
    scorer = load_scorer(model_path)
    outputs = scorer(frames, [] if difficulty is None else [float(difficulty)])
    outputs = {name: np.asarray(value) for name, value in outputs.items()}
    score = float(outputs["score"])
    if not np.isfinite(score):
        raise ValueError(f"{video}: the model produced a non-finite score")
    per_exemplar = outputs["exemplar_scores"].astype(float)
    attention = outputs["attention"]
    picture = picture or os.path.splitext(video.rstrip("/"))[0] + "_attention.png"
    visualize.plot_attention(attention, picture,
                             clip_frames=frames[outputs["clip_frames"]],
                             title=f"{os.path.basename(video.rstrip('/'))}: score {score:.2f}")
    return {"video": video, "score": score, "exemplar_scores": per_exemplar.tolist(),
            "spread": float(per_exemplar.std()), "attention": attention.tolist(),
            "top_clips": outputs["top_clips"].tolist(), "picture": picture}


def format_score(result: dict) -> str:
    scores = result["exemplar_scores"]
    return (f"{result['video']}: score {result['score']:.3f} "
            f"(± {result['spread']:.3f} over {len(scores)} exemplars, range "
            f"{min(scores):.2f} – {max(scores):.2f})\n"
            f"parts attend most to clips {result['top_clips']}; picture: {result['picture']}")
