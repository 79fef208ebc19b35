"""MTL-AQA (split 0, as in the TPT code): annotation pickles → samples.

Files in ``annotation_dir`` (the public MTL-AQA release):

* ``augmented_final_annotations_dict.pkl``: ``{(video, dive): {"final_score", "difficulty",
  "start_frame", "end_frame", ...}}`` (1412 dives);
* ``train_split_0.pkl`` / ``test_split_0.pkl``: lists of ``(video, dive)`` (1059 / 353).

Frames: one folder per dive, ``frames_root/{video:02d}_{dive:02d}/*.jpg`` (sorted). The sample key
is the folder name, e.g. ``"01_12"``. Pickles are read with :mod:`data_pipelines.io.safe_pickle`.
"""

from __future__ import annotations

import os

from data_pipelines.io import safe_pickle

from data_pipelines.samples import Sample
from data_pipelines.datasets import AnnotationError, check_media, record_number, require_file, split_pairs

ANNOTATION_FILE = "augmented_final_annotations_dict.pkl"
SPLIT_FILES = {"train": "train_split_0.pkl", "test": "test_split_0.pkl"}


def dive_key(video: int, dive: int) -> str:
    """``(1, 12) → "01_12"``: the frame-folder name and sample key."""
    return f"{int(video):02d}_{int(dive):02d}"


def difficulty_group(difficulty: float) -> str:
    """The contrastive group of a difficulty: ``3.2 → "3.2"``, ``3 → "3.0"``."""
    return str(round(float(difficulty), 4))


def _optional_int(record: dict, field: str):
    value = record.get(field)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _whole_pair(video, dive) -> tuple[int, int]:
    pair = (int(video), int(dive))  # OverflowError for inf, ValueError for nan
    if pair != (video, dive):
        raise ValueError("not whole numbers")
    return pair


def _split_keys(path: str) -> list[tuple[int, int]]:
    return split_pairs(path, "a (video, dive) pair of whole numbers", _whole_pair)


def load(annotation_dir: str, frames_root: str | None, use_difficulty: bool = True, check_paths: bool = True,
         annotation_file: str = ANNOTATION_FILE, split_files: dict[str, str] | None = None) -> dict[str, list[Sample]]:
    """Read MTL-AQA annotations.

    Args:
        annotation_dir: folder with the pickles.
        frames_root: folder of per-dive frame folders; None reads annotations only (paths are then
            the bare folder names and are not checked).
        use_difficulty: group = difficulty (e.g. ``"3.2"``, the DD protocol); else group ``"all"``.
        check_paths: raise :class:`MissingMediaError` for a dive whose frame folder is missing.
        annotation_file, split_files: file names inside ``annotation_dir``.

    Returns:
        ``{"train": [...], "test": [...]}`` in the split files' order; ``score`` = final score,
        ``difficulty`` = DD.
    """
    annotation_path = require_file(os.path.join(annotation_dir, annotation_file), "MTL-AQA annotation pickle")
    annotations = safe_pickle.load(annotation_path)
    if not isinstance(annotations, dict):
        raise AnnotationError(f"{annotation_path}: expected a dict keyed by (video, dive), "
                              f"got {type(annotations).__name__}")
    result: dict[str, list[Sample]] = {}
    for split, file_name in (split_files or SPLIT_FILES).items():
        split_path = require_file(os.path.join(annotation_dir, file_name), f"MTL-AQA {split} split")
        samples = []
        for position, (video, dive) in enumerate(_split_keys(split_path)):
            record = annotations.get((video, dive))
            if record is None:
                raise AnnotationError(
                    f"{split_path}, entry {position}: dive ({video}, {dive}) is not in {annotation_path}")
            key = dive_key(video, dive)
            score = record_number(record, "final_score", annotation_path, (video, dive))
            difficulty = record_number(record, "difficulty", annotation_path, (video, dive))
            if difficulty <= 0:
                raise AnnotationError(
                    f"{annotation_path}, dive {(video, dive)}: difficulty must be > 0, got {difficulty}")
            path = key if frames_root is None else os.path.join(frames_root, key)
            if check_paths and frames_root is not None:
                check_media(path, split_path, f"entry {position} (dive {key})")
            samples.append(Sample(
                key=key, path=path, score=score, difficulty=difficulty,
                group=difficulty_group(difficulty) if use_difficulty else "all", split=split,
                start_frame=_optional_int(record, "start_frame"), end_frame=_optional_int(record, "end_frame"),
            ))
        result[split] = samples
    return result


def from_request(request) -> dict[str, list[Sample]]:
    """:func:`load` for a :class:`data_pipelines.datasets.LoadRequest` (the registry's entry)."""
    return load(request.path, request.media_root, use_difficulty=request.use_difficulty,
                check_paths=request.check_paths)


def release_samples(annotation_dir: str, media_root: str) -> dict[str, list[Sample]]:
    """Every annotated sample of the release by split, paths under ``media_root`` (not checked)."""
    return load(annotation_dir, media_root, check_paths=False)
