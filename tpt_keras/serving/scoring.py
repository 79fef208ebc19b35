"""``tpt score``: score one video with a run folder or an exported SavedModel, and draw its
attention map with the frame each part attends to most (like the paper's Fig. 3–4).

Both sources run the same serving function (:class:`tpt_keras.serving.export.Serving`): a run folder
builds it in process, a SavedModel folder loads it with ``tf.saved_model.load``. The function's
inputs follow the model (``frames``; ``difficulty`` for a model with difficulty degrees; ``group``
for one without them trained on several groups, and, optional, for one with difficulty whose groups
are not the difficulties, FineDiving's dive numbers): a missing or superfluous one is refused
before any work, naming the option.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np


def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


@dataclasses.dataclass
class Scorer:
    """A serving function and what it needs.

    Attributes:
        function: ``(**inputs) -> dict of outputs``.
        inputs: its input names (``frames`` and optionally ``difficulty`` or ``group``).
        groups: the training groups (the AQA-7 class of a one-class model).
        dataset: the run's dataset (None when an export does not say).
        difficulty_range: (low, high) accepted difficulties, or None.
        protocol: the run's video protocol (a VideoProtocol or its dict), or None (an export that
            does not record it: the whole video is read).
    """

    function: object
    inputs: list
    groups: list
    dataset: str | None
    difficulty_range: tuple | None
    protocol: object = None

    def __call__(self, frames, difficulty: float | None = None, group: str | None = None):
        import tensorflow as tf

        check_arguments(self.inputs, self.groups, difficulty, group, self.difficulty_range)
        kwargs = {"frames": tf.constant(frames, tf.uint8)}
        if "difficulty" in self.inputs:
            kwargs["difficulty"] = tf.constant([float(difficulty)], tf.float32)
        if "group" in self.inputs:
            kwargs["group"] = tf.constant(group or "", tf.string)
        from tpt_keras.serving.client import call_signature

        return call_signature(self.function, kwargs)


def check_arguments(inputs, groups, difficulty, group, difficulty_range=None) -> None:
    """Refuse, in one line, a ``--difficulty`` / ``--group`` the model needs and lacks or has no
    use for (the signature checks again, for TF Serving clients)."""
    if "difficulty" in inputs:
        span = f" (trained on {difficulty_range[0] * 2:g}–{difficulty_range[1] / 2:g})" \
            if difficulty_range else ""
        if difficulty is None:
            raise ValueError(f"this model was trained with difficulty degrees: pass --difficulty DD{span}")
        if not np.isfinite(difficulty) or difficulty <= 0:
            raise ValueError(f"--difficulty must be a finite number > 0, got {difficulty}")
        if difficulty_range and not difficulty_range[0] <= difficulty <= difficulty_range[1]:
            raise ValueError(f"--difficulty {difficulty:g} is outside the accepted "
                             f"[{difficulty_range[0]:g}, {difficulty_range[1]:g}] (half the smallest "
                             f"to twice the largest training difficulty){span}")
    elif difficulty is not None:
        raise ValueError("this model was trained without difficulty degrees: drop --difficulty")
    if "group" in inputs:
        optional = "difficulty" in inputs  # a group beside the difficulty (FineDiving dive number)
        if group is None and optional:
            return
        if group is not None and group not in groups:
            raise ValueError(f"--group {group!r} is not a group of this model's training set: it "
                             f"must be one of {', '.join(groups)}")
        if group is None:
            raise ValueError("this model's exemplars depend on the video's group: pass --group, "
                             f"one of {', '.join(groups)}")
    elif group is not None:
        rule = "by the difficulty" if "difficulty" in inputs else f"from its only group {groups[0]!r}"
        raise ValueError(f"this model chooses its exemplars {rule}: drop --group")


def load_scorer(model_path: str) -> Scorer:
    """The :class:`Scorer` of a SavedModel folder or of a run folder."""
    if is_saved_model(model_path):
        from tpt_keras.serving import client

        served = client.load(model_path)
        return Scorer(served.signature, served.inputs, served.groups, served.dataset,
                      served.difficulty_range, served.protocol)
    from tpt_keras.serving.export import serving_from_run

    serving = serving_from_run(model_path)
    return Scorer(serving.score, serving.inputs, serving.groups, serving.model.config.dataset,
                  serving.difficulty_bounds, serving.protocol)


def known_steps(video: str, model_path: str):
    """The annotated steps of ``video`` when the model's run knows them: a sample of the run
    (the run folder itself, or the one named in an export's ``tpt_export.json``) whose frame
    folder is ``video`` and which has step labels (FineDiving).

    Returns:
        (boundaries (J - 1,) in clip units on the run's clip grid, (J,) step labels) or None.
    """
    from tpt_keras import experiment

    run_dir = model_path
    if is_saved_model(model_path):
        info_path = os.path.join(model_path, "tpt_export.json")
        if not os.path.isfile(info_path):
            return None
        with open(info_path, encoding="utf-8") as handle:
            run_dir = json.load(handle).get("run") or ""
    paths = experiment.RunPaths(run_dir)
    if not (os.path.isfile(paths.samples) and os.path.isfile(paths.config)):
        return None
    target = os.path.realpath(video)
    for items in experiment.load_samples(paths.samples).values():
        for sample in items:
            if sample.steps and sample.path and os.path.realpath(sample.path) == target:
                from tpt_keras.config import TPTConfig

                config = TPTConfig.load(paths.config)
                return (experiment.sample_boundaries(config, sample),
                        [label for label, _ in sample.steps])
    return None


def read_test_frames(video: str, protocol):
    """The frames the run's test protocol takes from ``video`` (the query's), decoded alone so
    that memory follows the protocol's frame count, not the video's length: uint8 (N, H, W, 3) and
    int64 (N,) their frame numbers. Without a protocol (an export that does not record it), the
    whole video. The serving signature samples the N frames again, which takes them all."""
    from data_pipelines.io import decode
    from data_pipelines.video import protocol as protocol_lib

    if protocol is None:
        frames = decode.read_frames(video)
        return frames, np.arange(len(frames))
    if isinstance(protocol, dict):
        protocol = protocol_lib.VideoProtocol.from_dict(protocol)
    start = protocol_lib.window_start(protocol, training=False, role="query")
    return decode.read_frames_with_indices(
        video, lambda count: protocol_lib.temporal_indices(count, protocol, start))


STEP_TABLE = "Sub_action_Types_Table.pkl"  # FineDiving's {label: sub-action name}


def named_steps(labels, video: str) -> list:
    """Step labels → FineDiving's sub-action names (``4`` → ``"Inward"``) from its table
    ``Sub_action_Types_Table.pkl``, found in a folder above ``video`` or in its ``Annotations/``
    (the release's layout); the labels themselves when there is no table."""
    from data_pipelines.io import safe_pickle

    folder = os.path.dirname(os.path.abspath(os.path.normpath(video)))
    for _ in range(6):
        for candidate in (os.path.join(folder, STEP_TABLE),
                          os.path.join(folder, "Annotations", STEP_TABLE)):
            if os.path.isfile(candidate):
                table = safe_pickle.load(candidate)
                if isinstance(table, dict):
                    return [str(table.get(int(label), label)) for label in labels]
        folder = os.path.dirname(folder)
    return list(labels)


def default_picture(video: str) -> str:
    """``<video name>_attention.png`` in the current folder (never beside the video: dataset
    folders are often read-only)."""
    return os.path.splitext(os.path.basename(os.path.normpath(video)))[0] + "_attention.png"


def score_video(video: str, model_path: str, difficulty: float | None = None,
                picture: str | None = None, group: str | None = None, scale: str = "judges",
                on_score=None) -> dict:
    """Score ``video`` (file, GIF or frame folder) and write the attention picture.

    Args:
        scale: ``"judges"`` or ``"normalised"`` (:mod:`tpt_keras.experiment.score_scale`) for "score".
        on_score: called with the result (without "picture") as soon as the score is known,
            before the picture is drawn (the CLI prints it there).

    Returns:
        dict with "score" (on ``scale``), "scale", "scores" (both scales), "exemplar_scores"
        (list, on ``scale``), "spread" (std over exemplars), "attention" (T, K) list,
        "top_clips", "picture", "steps" (the annotated step boundaries drawn as a band under
        the attention map, when the run knows the video's steps: :func:`known_steps`; else None).
    """
    from data_pipelines.io import decode
    from tpt_keras.experiment import score_scale

    if scale not in score_scale.SCALES:
        raise ValueError(f"--scale must be one of {', '.join(score_scale.SCALES)}, got {scale!r}")
    picture = picture or default_picture(video)
    scorer = load_scorer(model_path)
    check_arguments(scorer.inputs, scorer.groups, difficulty, group, scorer.difficulty_range)
    frames, frame_numbers = read_test_frames(video, scorer.protocol)
    outputs = scorer(frames, difficulty, group)
    outputs = {name: np.asarray(value) for name, value in outputs.items()}
    score = float(outputs["score"])
    if not np.isfinite(score):
        raise ValueError(f"{video}: the model produced a non-finite score")
    dataset = scorer.dataset or "custom"
    cls = group or scorer.groups[0]
    per_exemplar = outputs["exemplar_scores"].astype(float)
    judges = score_scale.to_judges([score, *per_exemplar], cls, dataset)
    shown = judges if scale == "judges" else np.array([score, *per_exemplar])
    result = {"video": video, "score": float(shown[0]), "scale": scale,
              "scale_description": score_scale.describe(scale, dataset),
              "scores": {"judges": float(judges[0]), "normalised": score},
              "exemplar_scores": shown[1:].tolist(), "spread": float(shown[1:].std()),
              "attention": outputs["attention"].tolist(),
              "top_clips": outputs["top_clips"].tolist()}
    if on_score is not None:
        on_score(result)
    from tpt_keras import visualize

    steps = known_steps(video, model_path)
    numbers = frame_numbers[outputs["clip_frames"]]  # the middle frame of each clip, in the video
    picture = visualize.plot_attention(
        outputs["attention"], picture, clip_frames=frames[outputs["clip_frames"]],
        clip_frame_numbers=numbers, clip_seconds=decode.frame_times(video, numbers),
        title=f"{os.path.basename(os.path.normpath(video))}: score {shown[0]:.2f}",
        step_boundaries=steps[0] if steps else None,
        step_labels=named_steps(steps[1], video) if steps else None)
    result["steps"] = steps[0].tolist() if steps else None
    result["picture"] = picture
    return result


def format_score(result: dict) -> str:
    """The score line (``result`` without a picture is printed before the picture exists)."""
    scores = result["exemplar_scores"]
    return (f"{result['video']}: score {result['score']:.3f} on the {result['scale_description']} "
            f"(± {result['spread']:.3f} over {len(scores)} exemplars, range "
            f"{min(scores):.2f} – {max(scores):.2f})\n"
            f"parts attend most to clips {result['top_clips']}"
            + (f"; picture: {result['picture']}" if result.get("picture") else ""))
