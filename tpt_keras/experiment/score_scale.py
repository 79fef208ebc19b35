"""Which scale a printed score is on: the judges' (as published) or the training target's.

AQA-7 trains on scores normalised per class to 0–100 (``data_pipelines.datasets.aqa7``); every
other dataset trains on the judges' scale itself. ``tpt score`` and ``tpt evaluate`` print the
judges' scale by default (``--scale judges``) and say so; ``--scale normalised`` prints the
training scale. For datasets without a normalisation both are the same number.
"""

from __future__ import annotations

import numpy as np

SCALES = ("judges", "normalised")


def has_normalisation(dataset: str) -> bool:
    """True where the training scores are not the judges' scores (AQA-7)."""
    return dataset == "aqa7"


def to_judges(scores, classes, dataset: str) -> np.ndarray:
    """(N,) training-scale scores → the judges' scale; ``classes`` (N,) the AQA-7 class of each
    (the sample's group). Unchanged for datasets without a normalisation."""
    scores = np.asarray(scores, np.float64)
    if not has_normalisation(dataset):
        return scores
    from data_pipelines.datasets import aqa7

    classes = np.broadcast_to(np.asarray(classes, object), scores.shape)
    unknown = sorted({c for c in classes.ravel() if c not in aqa7.SCORE_RANGES})
    if unknown:
        raise ValueError(f"no AQA-7 score range for class {unknown[0]!r}: cannot convert to the "
                         "judges' scale (use --scale normalised)")
    return np.array([aqa7.denormalise_score(s, c) for s, c in zip(scores.ravel(), classes.ravel())]
                    ).reshape(scores.shape)


def describe(scale: str, dataset: str) -> str:
    """A few words for output: which scale the numbers are on."""
    if not has_normalisation(dataset):
        return "judges' scale"
    if scale == "judges":
        return "judges' scale (converted from the per-class 0–100 training scale)"
    return "per-class normalised 0–100 scale (the training targets)"
