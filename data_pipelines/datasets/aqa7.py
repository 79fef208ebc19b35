"""AQA-7: ``consolidated_{train,test}_list.mat`` → samples of one action class.

Each .mat holds one (N, 3) matrix of rows ``[class 1–6, index, score × 100]`` (803 train / 303
test rows). Scores are divided by 100 and normalised per class to 0–100 with the original code's
per-class ranges (``SCORE_RANGES``):
``score = (raw - low) / (high - low) * 100``.

Frames: ``frames_root/{class}-out/{index:03d}/img_{i:05d}.jpg``, i = 1..103. Key:
``"{class}_{index:03d}"`` (e.g. ``"diving_054"``); group: the class name.
"""

from __future__ import annotations

import math
import os

import numpy as np

from data_pipelines.samples import Sample
from data_pipelines.datasets import AQA7_CLASSES, AnnotationError, check_media, require_file

CLASSES = AQA7_CLASSES
SCORE_RANGES = {
    "diving": (21.6, 102.6),
    "gym_vault": (12.3, 16.87),
    "ski_big_air": (8.0, 50.0),
    "snowboard_big_air": (8.0, 50.0),
    "sync_diving_3m": (46.2, 104.88),
    "sync_diving_10m": (49.8, 99.36),
}
SPLIT_FILES = {"train": "consolidated_train_list.mat", "test": "consolidated_test_list.mat"}


def normalise_score(raw: float, action_class: str) -> float:
    """Raw judged score (already /100) → 0–100 within the class's range."""
    low, high = SCORE_RANGES[action_class]
    return (float(raw) - low) / (high - low) * 100.0


def denormalise_score(score: float, action_class: str) -> float:
    """Inverse of :func:`normalise_score`."""
    low, high = SCORE_RANGES[action_class]
    return float(score) / 100.0 * (high - low) + low


def read_list(path: str) -> np.ndarray:
    """The (N, 3) float64 matrix of a consolidated list file."""
    require_file(path, "AQA-7 consolidated list")
    import scipy.io  # here: a slow import that only AQA-7 files need

    try:
        contents = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises several types for a broken .mat
        raise AnnotationError(f"{path}: not a readable .mat file ({type(error).__name__}: {error})") from None
    matrices = [value for name, value in contents.items() if not name.startswith("__")]
    if len(matrices) != 1:
        raise AnnotationError(f"{path}: expected exactly one matrix, found {len(matrices)}")
    matrix = np.asarray(matrices[0])
    if np.iscomplexobj(matrix):
        raise AnnotationError(f"{path}: the matrix holds complex numbers ({matrix.dtype}); expected real "
                              "[class, index, score×100] rows")
    if matrix.ndim != 2 or matrix.shape[1] != 3 or not np.issubdtype(matrix.dtype, np.number):
        raise AnnotationError(f"{path}: expected an (N, 3) numeric matrix [class, index, score×100], "
                              f"got {matrix.dtype} {matrix.shape}")
    return matrix.astype(np.float64)


def _resolve_classes(action_class: str) -> tuple[str, ...]:
    if action_class == "all":
        return CLASSES
    if action_class not in CLASSES:
        raise ValueError(f"unknown AQA-7 class {action_class!r}; expected one of {CLASSES} or 'all'")
    return (action_class,)


def load(annotation_dir: str, frames_root: str | None, action_class: str = "diving",
         check_paths: bool = True) -> dict[str, list[Sample]]:
    """Read the AQA-7 lists for one class (``"all"``: every class, grouped by class).

    Args:
        annotation_dir: folder with ``consolidated_{train,test}_list.mat``.
        frames_root: folder holding ``{class}-out/``; None reads annotations only.
        action_class: one of :data:`CLASSES` or ``"all"``.
        check_paths: raise :class:`MissingMediaError` for a row whose frame folder is missing.

    Returns:
        ``{"train": [...], "test": [...]}`` in file order; ``score`` normalised to 0–100.
    """
    wanted = _resolve_classes(action_class)
    result: dict[str, list[Sample]] = {}
    for split, file_name in SPLIT_FILES.items():
        path = os.path.join(annotation_dir, file_name)
        matrix = read_list(path)
        if len(matrix) == 0:
            raise AnnotationError(f"{path}: the list has no rows (an empty {matrix.shape} matrix); "
                                  "expected one [class, index, score×100] row per video: replace it "
                                  "with the consolidated list of the AQA-7 release")
        samples, seen = [], set()
        for row_number, (class_id, index, score) in enumerate(matrix, start=1):
            row = f"row {row_number} {[float(v) for v in (class_id, index, score)]}"
            if not all(math.isfinite(v) for v in (class_id, index, score)):
                raise AnnotationError(f"{path}, {row}: not finite")
            if class_id != int(class_id) or not 1 <= class_id <= len(CLASSES):
                raise AnnotationError(f"{path}, {row}: class must be an integer 1–{len(CLASSES)}")
            if index != int(index) or index < 0:
                raise AnnotationError(f"{path}, {row}: index must be a non-negative integer")
            name = CLASSES[int(class_id) - 1]
            if name not in wanted:
                continue
            key = f"{name}_{int(index):03d}"
            if key in seen:
                raise AnnotationError(f"{path}, {row}: duplicate sample {key}")
            seen.add(key)
            relative = os.path.join(f"{name}-out", f"{int(index):03d}")
            media = relative if frames_root is None else os.path.join(frames_root, relative)
            if check_paths and frames_root is not None:
                check_media(media, path, row)
            samples.append(Sample(key=key, path=media, score=normalise_score(score / 100.0, name),
                                  group=name, split=split))
        if not samples:
            ids = ", ".join(f"{CLASSES.index(name) + 1} ({name})" for name in wanted)
            raise AnnotationError(f"{path}: no row of class {ids}; every {split} video of the "
                                  "class is missing from the list: choose another --class or "
                                  "replace the file with the AQA-7 release's list")
        result[split] = samples
    return result


def from_request(request) -> dict[str, list[Sample]]:
    """:func:`load` for a :class:`data_pipelines.datasets.LoadRequest` (the registry's entry)."""
    return load(request.path, request.media_root, action_class=request.action_class,
                check_paths=request.check_paths)


def release_samples(annotation_dir: str, media_root: str) -> dict[str, list[Sample]]:
    """Every annotated sample of the release (all six classes) by split, paths under
    ``media_root`` (not checked)."""
    return load(annotation_dir, media_root, action_class="all", check_paths=False)
