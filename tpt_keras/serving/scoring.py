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
import functools
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


def check_export_arguments(model_path: str, difficulty: float | None, group: str | None) -> None:
    """:func:`check_arguments` against an export's ``tpt_export.json`` (its inputs, groups and
    accepted difficulties), without TensorFlow: a wrong ``--difficulty`` or ``--group`` is
    refused before the model loads. A run folder is checked once its model is built."""
    info_path = os.path.join(model_path, "tpt_export.json")
    if not (is_saved_model(model_path) and os.path.isfile(info_path)):
        return
    with open(info_path, encoding="utf-8") as handle:
        info = json.load(handle)
    bounds = info.get("difficulty_range")
    check_arguments(info.get("inputs") or ["frames"], info.get("groups") or ["all"], difficulty,
                    group, tuple(bounds) if bounds else None)


def load_scorer(model_path: str) -> Scorer:
    """The :class:`Scorer` of a SavedModel folder or of a run folder.

    The last SavedModel loaded is kept: scoring video after video with one export (each
    :func:`score_video` call) loads it once. One written again since is loaded again."""
    if is_saved_model(model_path):
        return _load_saved_scorer(os.path.abspath(model_path), _written(model_path))
    from tpt_keras.serving.export import serving_from_run

    serving = serving_from_run(model_path)
    return Scorer(serving.score, serving.inputs, serving.groups, serving.model.config.dataset,
                  serving.difficulty_bounds, serving.protocol)


def _written(model_path: str) -> tuple:
    """When and how large the SavedModel's graph and variables were written (the cache's key)."""
    files = ("saved_model.pb", os.path.join("variables", "variables.index"), "tpt_export.json")
    stats = [os.stat(os.path.join(model_path, name)) for name in files
             if os.path.exists(os.path.join(model_path, name))]
    return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)


@functools.lru_cache(maxsize=1)
def _load_saved_scorer(model_path: str, written: tuple) -> Scorer:
    from tpt_keras.serving import client

    served = client.load(model_path)
    return Scorer(served.signature, served.inputs, served.groups, served.dataset,
                  served.difficulty_range, served.protocol)


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
    that memory follows the protocol's frame count, not the video's length: uint8 (N, H, W, 3),
    int64 (N,) their frame numbers in the video, and the video's frame count. Without a protocol
    (an export that does not record it), the whole video. The serving signature samples the N
    frames again, which takes them all."""
    from data_pipelines.io import decode
    from data_pipelines.video import protocol as protocol_lib

    if protocol is None:
        frames = decode.read_frames(video)
        return frames, np.arange(len(frames)), len(frames)
    if isinstance(protocol, dict):
        protocol = protocol_lib.VideoProtocol.from_dict(protocol)
    start = protocol_lib.window_start(protocol, training=False, role="query")
    counted = []

    def indices(count):
        counted.append(count)
        return protocol_lib.temporal_indices(count, protocol, start)

    frames, numbers = decode.read_frames_with_indices(video, indices)
    return frames, numbers, counted[-1]


STEP_TABLE = "Sub_action_Types_Table.pkl"  # FineDiving's {label: sub-action name}


def find_step_names(video: str) -> dict | None:
    """FineDiving's ``{step label: sub-action name}`` (``4`` → ``"Inward"``) from its table
    ``Sub_action_Types_Table.pkl``, found in a folder above ``video`` or in its ``Annotations/``
    (the release's layout); None when there is no table (the labels are shown)."""
    from data_pipelines.io import safe_pickle

    folder = os.path.dirname(os.path.abspath(os.path.normpath(video)))
    for _ in range(6):
        for candidate in (os.path.join(folder, STEP_TABLE),
                          os.path.join(folder, "Annotations", STEP_TABLE)):
            if os.path.isfile(candidate):
                table = safe_pickle.load(candidate)
                if isinstance(table, dict):
                    return {int(label): str(name) for label, name in table.items()}
        folder = os.path.dirname(folder)
    return None


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
        the attention map, when the run knows the video's steps: :func:`known_steps`; else None),
        the timeline of :func:`video_timeline` ("parts" with their centres, peaks and bands in
        frames and seconds, …) and "model" (:func:`model_card`).
    """
    from data_pipelines.io import decode
    from tpt_keras.experiment import score_scale

    if scale not in score_scale.SCALES:
        raise ValueError(f"--scale must be one of {', '.join(score_scale.SCALES)}, got {scale!r}")
    picture = picture or default_picture(video)
    scorer = load_scorer(model_path)
    check_arguments(scorer.inputs, scorer.groups, difficulty, group, scorer.difficulty_range)
    frames, frame_numbers, num_frames = read_test_frames(video, scorer.protocol)
    outputs = scorer(frames, difficulty, group)
    result, outputs = score_result(video, outputs, scorer, group, scale)
    if on_score is not None:
        on_score(result)
    from tpt_keras import visualize

    steps = known_steps(video, model_path)
    names = find_step_names(video) if steps else None
    numbers = frame_numbers[outputs["clip_frames"]]  # the middle frame of each clip, in the video
    picture = visualize.plot_attention(
        outputs["attention"], picture, clip_frames=frames[outputs["clip_frames"]],
        clip_frame_numbers=numbers, clip_seconds=decode.frame_times(video, numbers),
        title=f"{os.path.basename(os.path.normpath(video))}: score {result['score']:.2f}",
        step_boundaries=steps[0] if steps else None,
        step_labels=[(names or {}).get(int(label), label) for label in steps[1]] if steps else None)
    result["steps"] = steps[0].tolist() if steps else None
    result["picture"] = picture
    result.update(video_timeline(video, num_frames, numbers, outputs["attention"], steps,
                                 decode.frame_rate(video), names),
                  model=model_card(model_path))
    return result


def format_score(result: dict) -> str:
    """The score line (``result`` without a picture is printed before the picture exists)."""
    scores = result["exemplar_scores"]
    return (f"{result['video']}: score {result['score']:.3f} on the {result['scale_description']} "
            f"(± {result['spread']:.3f} over {len(scores)} exemplars, range "
            f"{min(scores):.2f} – {max(scores):.2f})\n"
            f"parts attend most to clips {result['top_clips']}"
            + (f"; picture: {result['picture']}" if result.get("picture") else ""))


# ---------------------------------------------------------------------------------------------
# Several videos with one loaded model, and what a report page shows of each.
# ---------------------------------------------------------------------------------------------
def score_result(video: str, outputs: dict, scorer: Scorer, group: str | None, scale: str):
    """The serving function's ``outputs`` → (the result dict of :func:`score_video` without
    picture, steps and timeline; the outputs as numpy arrays)."""
    from tpt_keras.experiment import score_scale

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
    return result, outputs


def video_timeline(video: str, num_frames: int, clip_frames, attention, steps,
                   fps: float | None, step_names: dict | None = None) -> dict:
    """Where each part looks in ``video``'s own time (:mod:`tpt_keras.report.timeline`).

    Args:
        num_frames: frames of the video.
        clip_frames: (T,) the middle frame of each clip, as frame numbers of the video.
        attention: (T, K) the video's cross-attention.
        steps: :func:`known_steps` or None.
        fps: frames per second (``decode.frame_rate``) or None when unknown.
        step_names: optional ``{label: name}`` of the step labels (FineDiving:
            :func:`find_step_names`); else the labels are shown.

    Returns:
        dict: ``name``, ``num_frames``, ``fps``, ``clip_frames`` (T,), ``parts`` (per part: centre
        in clips / frames / seconds, peak attention, the thumbnail's frame, the band),
        ``step_labels`` and ``step_spans`` (None without annotated steps).
    """
    from tpt_keras.report import timeline

    clip_frames = np.asarray(clip_frames).astype(int)
    spans = labels = None
    if steps:
        labels = [str((step_names or {}).get(label, label)) for label in steps[1]]
        spans = timeline.step_spans(steps[0], labels, clip_frames, num_frames, fps)
    return {"name": os.path.basename(os.path.normpath(video)), "num_frames": int(num_frames),
            "fps": fps, "clip_frames": clip_frames.tolist(),
            "parts": timeline.part_summary(attention, clip_frames, num_frames, fps),
            "step_labels": labels, "step_spans": spans}


def _run_facts(run_dir: str, which: str) -> tuple[str, list]:
    """The title and facts of a run folder: its name, data, size and training figures."""
    from tpt_keras import experiment
    from tpt_keras.config import TPTConfig
    from tpt_keras.runtime import run_folder

    paths = experiment.RunPaths(run_dir)
    config = TPTConfig.load(paths.config)
    facts = [("run", os.path.abspath(run_dir)), ("checkpoint", which),
             ("dataset", config.dataset + (" with difficulty degrees" if config.use_difficulty else "")),
             ("parts (queries)", str(config.num_queries)), ("exemplars", str(config.num_exemplars))]
    if os.path.isfile(paths.samples):
        splits = experiment.load_samples(paths.samples)
        facts.append(("videos", ", ".join(f"{len(items)} {name}" for name, items in splits.items())))
        try:
            validation = experiment.validation_split(splits)
        except ValueError:
            validation = None
        if validation and os.path.isfile(paths.log):
            log = run_folder.finished_results(paths)
            if log["best"]:
                facts.append((f"training log ({validation} split)",
                              f"Spearman ρ {log['best']['spearman']:.4f}, "
                              f"R-ℓ2 {log['best']['r_l2']:.4f} (best epoch {log['best']['epoch']} of "
                              f"{log['epochs']}); last epoch ρ {log['last']['spearman']:.4f}"))
    return experiment.run_name(config), facts


def model_card(model_path: str, which: str = "best") -> dict:
    """``{"title", "facts": [[label, text], …]}``: what the model is, from the run folder (its
    ``which`` checkpoint) or from an export's ``tpt_export.json`` (and the run it names, when
    that folder is still there)."""
    try:
        if not is_saved_model(model_path):
            title, facts = _run_facts(model_path, which)
            return {"title": title, "facts": [list(f) for f in facts]}
        info_path = os.path.join(model_path, "tpt_export.json")
        info = {}
        if os.path.isfile(info_path):
            with open(info_path, encoding="utf-8") as handle:
                info = json.load(handle)
        facts = [("exported model", os.path.abspath(model_path))]
        title = info.get("dataset") or "exported model"
        run_dir = info.get("run") or ""
        if os.path.isfile(os.path.join(run_dir, "config.json")):
            title, more = _run_facts(run_dir, info.get("checkpoint", "best"))
            facts += more
        else:
            facts += [("dataset", str(info.get("dataset"))), ("groups", ", ".join(info.get("groups") or []))]
        return {"title": title, "facts": [list(f) for f in facts]}
    except (OSError, ValueError, KeyError) as error:  # a card is no reason to refuse to score
        return {"title": os.path.basename(os.path.normpath(model_path)),
                "facts": [["model", os.path.abspath(model_path)], ["details", f"unreadable: {error}"]]}


@dataclasses.dataclass
class VideoItem:
    """One video of a session: its path and what the model needs or the page shows of it."""

    path: str
    difficulty: float | None = None
    group: str | None = None
    true_score: float | None = None


def _is_frame_folder(path: str) -> bool:
    from data_pipelines.io import decode

    return any(name.lower().endswith(decode.FRAME_EXTENSIONS) for name in os.listdir(path))


def _is_video_file(name: str) -> bool:
    from data_pipelines.io import decode

    return name.lower().endswith(decode.VIDEO_EXTENSIONS + decode.GIF_EXTENSIONS)


def read_session_manifest(path: str) -> list[VideoItem]:
    """A CSV of videos to score, read as a training manifest is
    (:func:`data_pipelines.datasets.manifest.read_rows`): header ``path`` and, optional,
    ``difficulty``, ``group``, ``score`` (the judges' score, shown beside the prediction) — a
    training manifest works as is (its other columns are ignored)."""
    from data_pipelines.datasets import manifest

    items = [VideoItem(video, manifest.number(values, "difficulty", path, line),
                       values.get("group") or None, manifest.number(values, "score", path, line))
             for line, values, video in manifest.read_rows(path, required=("path",), allowed=None)]
    if not items:
        raise ValueError(f"{path}: no videos listed")
    return items


def session_items(inputs, difficulty: float | None = None, group: str | None = None) -> list[VideoItem]:
    """The videos of ``tpt score``'s arguments, in order: each argument is a video file, a GIF
    or a frame folder (one video); a folder of videos (files, GIFs, frame folders inside, by
    name); a glob pattern; a ``.csv`` session manifest (:func:`read_session_manifest`); or a
    :class:`VideoItem` (from Python: e.g. held-out samples with their true scores).
    ``difficulty`` and ``group`` apply to every video whose manifest row does not set them."""
    import glob

    if isinstance(inputs, (str, VideoItem)):
        inputs = [inputs]
    items = []
    for entry in inputs:
        if isinstance(entry, VideoItem):
            items.append(dataclasses.replace(entry))
        elif entry.lower().endswith(".csv") and os.path.isfile(entry):
            items += read_session_manifest(entry)
        elif os.path.isdir(entry) and not _is_frame_folder(entry):
            inside = sorted(os.path.join(entry, name) for name in os.listdir(entry)
                            if _is_video_file(name) or (os.path.isdir(os.path.join(entry, name))
                                                        and _is_frame_folder(os.path.join(entry, name))))
            if not inside:
                raise ValueError(f"{entry}: no videos, GIFs or frame folders inside")
            items += [VideoItem(path) for path in inside]
        elif os.path.exists(entry):
            items.append(VideoItem(entry))
        elif glob.has_magic(entry):
            matches = sorted(glob.glob(entry))
            if not matches:
                raise ValueError(f"{entry}: the pattern matches no file")
            items += [VideoItem(path) for path in matches]
        else:
            raise FileNotFoundError(f"{entry}: no such video, frame folder, folder or manifest")
    for item in items:
        item.difficulty = difficulty if item.difficulty is None else item.difficulty
        item.group = group if item.group is None else item.group
    return items


def is_session(inputs) -> bool:
    """True when ``tpt score``'s arguments name more than one video: several arguments, a
    manifest, a folder of videos (not a frame folder) or a glob pattern the shell left as is."""
    import glob

    def several(entry: str) -> bool:
        if entry.lower().endswith(".csv") and os.path.isfile(entry):
            return True
        if os.path.isdir(entry):
            return not _is_frame_folder(entry)
        return not os.path.exists(entry) and glob.has_magic(entry)

    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    return len(inputs) > 1 or any(several(entry) for entry in inputs)


def score_loaded(scorer: Scorer, item: VideoItem, model_path: str, scale: str = "judges",
                 thumbnails: bool = True, step_names: dict | None = None) -> dict:
    """Score one video with an already loaded :class:`Scorer`: the result of :func:`score_video`
    (without its picture) plus the timeline (:func:`video_timeline`), the true score, difficulty
    and group when known, and, with ``thumbnails``, each part's most attended frame as a JPEG
    ``data:`` URI (``thumbnails``; the only field the JSON leaves out). The decoded frames are
    dropped before it returns: a session holds one video at a time."""
    from data_pipelines.io import decode

    frames, frame_numbers, num_frames = read_test_frames(item.path, scorer.protocol)
    outputs = scorer(frames, item.difficulty, item.group)
    result, outputs = score_result(item.path, outputs, scorer, item.group, scale)
    steps = known_steps(item.path, model_path)
    if steps and step_names is None:
        step_names = find_step_names(item.path)
    result["steps"] = steps[0].tolist() if steps else None
    result.update(video_timeline(item.path, num_frames, frame_numbers[outputs["clip_frames"]],
                                 outputs["attention"], steps, decode.frame_rate(item.path),
                                 step_names))
    result.update(true_score=item.true_score, difficulty=item.difficulty, group=item.group)
    if thumbnails:
        result["thumbnails"] = part_thumbnails(frames, frame_numbers, result["parts"])
    return result


def part_thumbnails(frames, frame_numbers, parts) -> list[str]:
    """Per part, its most attended frame as a JPEG ``data:`` URI (each distinct frame encoded
    once). ``frames`` (N, H, W, 3) are the decoded frames, ``frame_numbers`` (N,) their numbers
    in the video; every part's thumbnail frame is one of them (a clip's middle frame)."""
    from tpt_keras.report import images

    position = {int(number): i for i, number in reversed(list(enumerate(frame_numbers)))}
    encoded: dict[int, str] = {}
    for part in parts:
        frame = int(part["thumbnail_frame"])
        if frame not in encoded:
            encoded[frame] = images.data_uri(frames[position[frame]])
    return [encoded[int(part["thumbnail_frame"])] for part in parts]


def score_session(inputs, model_path: str, report: str | None = None,
                  difficulty: float | None = None, group: str | None = None,
                  scale: str = "judges", progress: bool = True,
                  step_names: dict | None = None) -> dict:
    """Score every video of ``inputs`` (:func:`session_items`) with one loaded model, one video
    in memory at a time, and write the report page when ``report`` is given.

    Unreadable videos are skipped and listed (the page names them); wrong ``--difficulty`` /
    ``--group`` for the model is refused before any video is read. ``step_names`` names the
    annotated steps (:func:`video_timeline`).

    Returns:
        ``{"model": card, "videos": [result, …], "skipped": [{"video", "error"}], "report": path
        or None, "seconds": wall time}``; each result as :func:`score_loaded` (with its
        thumbnails; :func:`session_json` drops them) and its ``seconds``.
    """
    import sys
    import time

    from data_pipelines.io import decode
    from tpt_keras.experiment import score_scale

    if scale not in score_scale.SCALES:
        raise ValueError(f"--scale must be one of {', '.join(score_scale.SCALES)}, got {scale!r}")
    items = session_items(inputs, difficulty, group)
    if report:
        folder = os.path.dirname(os.path.abspath(report))
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(f"--report {report}: {folder} is a file, not a folder")
    start = time.perf_counter()
    scorer = load_scorer(model_path)
    for item in items:
        try:
            check_arguments(scorer.inputs, scorer.groups, item.difficulty, item.group,
                            scorer.difficulty_range)
        except ValueError as error:
            raise ValueError(f"{item.path}: {error}") from None
    card = model_card(model_path)
    videos, skipped = [], []
    for index, item in enumerate(items, start=1):
        began = time.perf_counter()
        try:
            result = score_loaded(scorer, item, model_path, scale, thumbnails=bool(report),
                                  step_names=step_names)
        except (decode.VideoDecodeError, FileNotFoundError) as error:
            skipped.append({"video": item.path, "error": str(error)})
            if progress:
                print(f"[{index}/{len(items)}] skipped {item.path}: {error}", file=sys.stderr, flush=True)
            continue
        result["seconds"] = time.perf_counter() - began
        videos.append(result)
        if progress:
            print(f"[{index}/{len(items)}] {result['name']}: score {result['score']:.2f} "
                  f"± {result['spread']:.2f} ({time.perf_counter() - began:.1f} s)",
                  file=sys.stderr, flush=True)
    if not videos:
        raise ValueError("no video could be scored: " + "; ".join(
            f"{s['video']}: {s['error']}" for s in skipped))
    session = {"model": card, "videos": videos, "skipped": skipped, "report": None}
    if report:
        from tpt_keras import report as pages

        session["report"] = pages.write_score_report(session, report)
    session["seconds"] = time.perf_counter() - start
    return session


def session_json(session: dict) -> dict:
    """``session`` without the thumbnails' image data (their frame numbers stay, per part)."""
    return {**session, "videos": [{k: v for k, v in video.items() if k != "thumbnails"}
                                  for video in session["videos"]]}


def format_session(session: dict) -> str:
    """Terminal lines of a session: one per video, the skipped ones, and where the page is."""
    lines = []
    for video in session["videos"]:
        truth = (f" (true {video['true_score']:.2f})" if video.get("true_score") is not None else "")
        lines.append(f"{video['video']}: {video['score']:.3f} ± {video['spread']:.3f}{truth}")
    if session["videos"]:
        lines.append(f"{len(session['videos'])} videos, scores on the "
                     f"{session['videos'][0]['scale_description']}")
    lines += [f"skipped {s['video']}: {s['error']}" for s in session["skipped"]]
    if session.get("report"):
        lines.append(f"report: {session['report']}")
    return "\n".join(lines)
