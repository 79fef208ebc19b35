"""FineDiving (Xu et al., CVPR 2022): annotation pickles → samples with per-frame step labels.

Files in ``annotation_dir`` (the release's ``Annotations/`` folder):

* ``FineDiving_fine-grained_annotation.pkl``: ``{(event, index): {"action_type" (dive number,
  e.g. "407c"), "dive_score", "difficulty", "frames_labels" (one step label per frame of the
  dive), "steps_transit_frames", "sub-action_types"}}`` (3000 dives);
* ``train_split.pkl`` / ``test_split.pkl``: lists of ``(event, index)`` (2251 / 749).

Frames: ``media_root/{event}/{index}/*.jpg``, already trimmed to the dive, one file per labelled
frame, named by frame number (sorted numerically by :mod:`data_pipelines.io.decode`). Key:
``"{event}/{index}"``. Group: the action type (exemplars are dives of the same dive number).
Score: ``dive_score``; difficulty: the dive's degree of difficulty (the regression target with
difficulty is ``dive_score / difficulty``, the "completeness", 0–30). Steps: ``frames_labels``
run-length encoded (:func:`data_pipelines.video.steps.label_runs`); the release's
``steps_transit_frames`` is not used (a few entries disagree with ``frames_labels``, e.g. -1).
Pickles are read with :mod:`data_pipelines.io.safe_pickle`.
"""

from __future__ import annotations

import os

import numpy as np

from data_pipelines.io import safe_pickle

from data_pipelines.samples import Sample
from data_pipelines.video.steps import label_runs
from data_pipelines.datasets import AnnotationError, check_media, record_number, require_file, split_pairs

ANNOTATION_FILE = "FineDiving_fine-grained_annotation.pkl"
SPLIT_FILES = {"train": "train_split.pkl", "test": "test_split.pkl"}


def dive_key(event: str, index: int) -> str:
    """``("01", 12) → "01/12"``: the sample key (the frame folder relative to the media root)."""
    return f"{event}/{int(index)}"


def _split_keys(path: str) -> list[tuple[str, int]]:
    return split_pairs(path, "an (event, index) pair", lambda event, index: (str(event), int(index)))


def _record(annotations: dict, key: tuple[str, int], source: str) -> dict:
    """The checked fields of one dive: action_type, dive_score, difficulty, steps."""
    record = annotations[key]
    fields = ("action_type", "dive_score", "difficulty", "frames_labels")
    missing = [field for field in fields if not isinstance(record, dict) or field not in record]
    if missing:
        raise AnnotationError(f"{source}, dive {key}: missing field(s) {missing}")
    difficulty = record_number(record, "difficulty", source, key)
    if difficulty <= 0:
        raise AnnotationError(f"{source}, dive {key}: difficulty must be > 0, got {difficulty}")
    labels = np.asarray(record["frames_labels"])
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise AnnotationError(f"{source}, dive {key}: 'frames_labels' must be a non-empty list of "
                              f"integer labels, got {record['frames_labels']!r:.80}")
    return {"action_type": str(record["action_type"]), "score": record_number(record, "dive_score", source, key),
            "difficulty": difficulty, "steps": label_runs(labels)}


def load(annotation_dir: str, media_root: str | None, check_paths: bool = True,
         annotation_file: str = ANNOTATION_FILE, split_files: dict[str, str] | None = None) -> dict[str, list[Sample]]:
    """Read FineDiving annotations.

    Args:
        annotation_dir: folder with the pickles.
        media_root: folder of ``{event}/{index}/`` frame folders; None reads annotations only
            (paths are then the bare keys and are not checked).
        check_paths: raise :class:`MissingMediaError` for a dive whose frame folder is missing.
        annotation_file, split_files: file names inside ``annotation_dir``.

    Returns:
        ``{"train": [...], "test": [...]}`` in the split files' order; ``score`` = dive score,
        ``difficulty`` = degree of difficulty, ``group`` = action type, ``steps`` = run-length
        encoded per-frame step labels.
    """
    annotation_path = require_file(os.path.join(annotation_dir, annotation_file), "FineDiving annotation pickle")
    annotations = safe_pickle.load(annotation_path)
    if not isinstance(annotations, dict):
        raise AnnotationError(f"{annotation_path}: expected a dict keyed by (event, index), "
                              f"got {type(annotations).__name__}")
    try:
        annotations = {(str(event), int(index)): value for (event, index), value in annotations.items()}
    except (TypeError, ValueError):
        raise AnnotationError(f"{annotation_path}: every key must be an (event, index) pair") from None
    result: dict[str, list[Sample]] = {}
    for split, file_name in (split_files or SPLIT_FILES).items():
        split_path = require_file(os.path.join(annotation_dir, file_name), f"FineDiving {split} split")
        samples = []
        for position, key in enumerate(_split_keys(split_path)):
            if key not in annotations:
                raise AnnotationError(f"{split_path}, entry {position}: dive {key} is not in {annotation_path}")
            fields = _record(annotations, key, annotation_path)
            name = dive_key(*key)
            path = name if media_root is None else os.path.join(media_root, key[0], str(key[1]))
            if check_paths and media_root is not None:
                check_media(path, split_path, f"entry {position} (dive {name})")
            samples.append(Sample(key=name, path=path, score=fields["score"], difficulty=fields["difficulty"],
                                  group=fields["action_type"], split=split, steps=fields["steps"]))
        result[split] = samples
    return result


def step_names(annotation_dir: str, annotation_file: str = ANNOTATION_FILE) -> dict[int, str]:
    """``{label: name}`` of the step labels used in the annotation file (``4 → "Inward"``)."""
    path = require_file(os.path.join(annotation_dir, annotation_file), "FineDiving annotation pickle")
    names: dict[int, str] = {}
    for record in safe_pickle.load(path).values():
        for label, name in (record.get("sub-action_types") or {}).items():
            names[int(label)] = str(name)
    return dict(sorted(names.items()))


def from_request(request) -> dict[str, list[Sample]]:
    """:func:`load` for a :class:`data_pipelines.datasets.LoadRequest` (the registry's entry)."""
    return load(request.path, request.media_root, check_paths=request.check_paths)


def release_samples(annotation_dir: str, media_root: str) -> dict[str, list[Sample]]:
    """Every annotated sample of the release by split, paths under ``media_root`` (not checked)."""
    return load(annotation_dir, media_root, check_paths=False)
