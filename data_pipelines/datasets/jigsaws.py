"""JIGSAWS (MUSDL protocol): ``label.pkl`` + ``splits.pkl`` → samples of one task and fold.

* ``label.pkl``: ``{"Suturing_B001": [6 GRS items], ...}`` (103 trials, all tasks);
* ``splits.pkl``: ``{"Suturing": [fold0, fold1, fold2, fold3], "Needle_Passing": ..., "Knot_Tying": ...}``,
  each fold a list of trial names. Fold ``k`` is the test set, the other three folds train.

Score: the sum of the 6 GRS items (6–30). Video: the left camera, ``{trial}_capture1``, looked up
under ``videos_root`` in this order (first existing wins; the first is used when paths are not
checked):

1. ``videos_root/{trial}_capture1/`` (a frame folder, MUSDL's layout)
2. ``videos_root/{trial}_capture1.avi`` / ``.mp4``
3. ``videos_root/{Task}/video/{trial}_capture1.avi`` (the official JIGSAWS archive layout)
"""

from __future__ import annotations

import math
import os

from data_pipelines.io import safe_pickle

from data_pipelines.samples import Sample
from data_pipelines.datasets import AnnotationError, MissingMediaError, require_file

TASKS = ("Suturing", "Needle_Passing", "Knot_Tying")
NUM_FOLDS = 4
NUM_GRS_ITEMS = 6


def task_name(task: str) -> str:
    """``"suturing"``/``"Suturing"`` → ``"Suturing"``; ``"needle_passing"`` → ``"Needle_Passing"``."""
    for name in TASKS:
        if task.lower().replace("-", "_") == name.lower():
            return name
    raise ValueError(f"unknown JIGSAWS task {task!r}; expected one of {TASKS}")


def candidate_paths(videos_root: str, trial: str, task: str) -> list[str]:
    """Where the left-camera video of ``trial`` may be, in lookup order."""
    base = f"{trial}_capture1"
    return [
        os.path.join(videos_root, base),
        os.path.join(videos_root, base + ".avi"),
        os.path.join(videos_root, base + ".mp4"),
        os.path.join(videos_root, task, "video", base + ".avi"),
    ]


def _score(labels: dict, trial: str, label_path: str, where: str) -> float:
    if trial not in labels:
        raise AnnotationError(f"{where}: trial {trial!r} has no entry in {label_path}")
    items = labels[trial]
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        raise AnnotationError(f"{label_path}, trial {trial}: GRS items are not numbers: {items!r}") from None
    if len(values) != NUM_GRS_ITEMS or not all(math.isfinite(v) for v in values):
        raise AnnotationError(f"{label_path}, trial {trial}: expected {NUM_GRS_ITEMS} GRS items, got {items!r}")
    return float(sum(values))


def load(annotation_dir: str, videos_root: str | None, task: str = "suturing", fold: int = 0,
         check_paths: bool = True) -> dict[str, list[Sample]]:
    """Read one JIGSAWS task and cross-validation fold.

    Args:
        annotation_dir: folder with ``label.pkl`` and ``splits.pkl``.
        videos_root: where the ``{trial}_capture1`` videos / frame folders are (see module
            docstring); None reads annotations only.
        task: ``"suturing"``, ``"needle_passing"`` or ``"knot_tying"`` (any case).
        fold: 0–3, the test fold.
        check_paths: raise :class:`MissingMediaError` (listing the places tried) when a trial's
            video is missing.

    Returns:
        ``{"train": [...], "test": [...]}``; train = the other three folds in fold order.
    """
    task = task_name(task)
    if not 0 <= int(fold) < NUM_FOLDS:
        raise ValueError(f"fold must be 0–{NUM_FOLDS - 1}, got {fold}")
    label_path = require_file(os.path.join(annotation_dir, "label.pkl"), "JIGSAWS label file")
    split_path = require_file(os.path.join(annotation_dir, "splits.pkl"), "JIGSAWS split file")
    labels = safe_pickle.load(label_path)
    splits = safe_pickle.load(split_path)
    if not isinstance(labels, dict):
        raise AnnotationError(f"{label_path}: expected a dict trial → GRS items, got {type(labels).__name__}")
    if not isinstance(splits, dict) or task not in splits:
        raise AnnotationError(f"{split_path}: no folds for task {task!r}")
    folds = splits[task]
    if not isinstance(folds, (list, tuple)) or len(folds) != NUM_FOLDS:
        raise AnnotationError(f"{split_path}, task {task}: expected {NUM_FOLDS} folds")
    result: dict[str, list[Sample]] = {"train": [], "test": []}
    for fold_index, trials in enumerate(folds):
        split = "test" if fold_index == int(fold) else "train"
        if not isinstance(trials, (list, tuple)):
            raise AnnotationError(f"{split_path}, task {task}, fold {fold_index}: expected a list of trial names")
        for position, trial in enumerate(trials):
            where = f"{split_path}, task {task}, fold {fold_index}, entry {position}"
            if not isinstance(trial, str):
                raise AnnotationError(f"{where}: trial name must be a string, got {trial!r}")
            score = _score(labels, trial, label_path, where)
            if videos_root is None:
                path = f"{trial}_capture1"
            else:
                candidates = candidate_paths(videos_root, trial, task)
                path = next((c for c in candidates if os.path.exists(c)), candidates[0])
                if check_paths and not os.path.exists(path):
                    raise MissingMediaError(f"{where}: no video for trial {trial}; tried {', '.join(candidates)}")
            result[split].append(Sample(key=trial, path=path, score=score, split=split))
    keys = [s.key for s in result["train"] + result["test"]]
    if len(set(keys)) != len(keys):
        raise AnnotationError(f"{split_path}, task {task}: a trial appears in more than one fold")
    return result


def from_request(request) -> dict[str, list[Sample]]:
    """:func:`load` for a :class:`data_pipelines.datasets.LoadRequest` (the registry's entry)."""
    return load(request.path, request.media_root, task=request.action_class, fold=request.fold,
                check_paths=request.check_paths)


def release_samples(annotation_dir: str, videos_root: str) -> dict[str, list[Sample]]:
    """Every trial of the release, one entry per task (its four folds together), paths under
    ``videos_root`` (not checked)."""
    tasks = safe_pickle.load(os.path.join(annotation_dir, "splits.pkl"))
    result = {}
    for task in (t for t in TASKS if t in tasks):
        splits = load(annotation_dir, videos_root, task=task, fold=0, check_paths=False)
        result[task] = splits["train"] + splits["test"]
    return result


def decoded_folder(sample: Sample, output: str) -> str:
    """Where a trial's decoded frames go: ``output/{trial}_capture1/``, the first place
    :func:`load` looks for them."""
    return os.path.join(output, f"{sample.key}_capture1")
