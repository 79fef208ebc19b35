"""Which scale a printed score is on: the judges' (as published) or the training target's.

A dataset whose registry record has ``to_judges`` (:mod:`data_pipelines.datasets.registry`: AQA-7,
normalised per class to 0–100 by ``data_pipelines.datasets.aqa7``) trains on a normalised scale;
every other dataset trains on the judges' scale itself. ``tpt score`` and ``tpt evaluate`` print
the judges' scale by default (``--scale judges``) and say so; ``--scale normalised`` prints the
training scale. For datasets without a normalisation both are the same number.
"""

from __future__ import annotations

import numpy as np

from data_pipelines import datasets

SCALES = ("judges", "normalised")


def _record(dataset: str):
    """The dataset's registry record; None when it is not registered in this process (a model
    of a user's dataset scored elsewhere): its scores are then shown on the training scale."""
    return datasets.REGISTRY.get(dataset)


def has_normalisation(dataset: str) -> bool:
    """True where the training scores are not the judges' scores (AQA-7)."""
    record = _record(dataset)
    return record is not None and record.to_judges is not None


def to_judges(scores, classes, dataset: str) -> np.ndarray:
    """(N,) training-scale scores → the judges' scale; ``classes`` (N,) the class of each (the
    sample's group). Unchanged for datasets without a normalisation."""
    scores = np.asarray(scores, np.float64)
    if not has_normalisation(dataset):
        return scores
    convert = _record(dataset).judges_scale()
    classes = np.broadcast_to(np.asarray(classes, object), scores.shape)
    judged = []
    for score, name in zip(scores.ravel(), classes.ravel()):
        try:
            judged.append(convert(score, name))
        except KeyError:
            raise ValueError(f"no {datasets.get(dataset).title} score range for class {name!r}: "
                             "cannot convert to the judges' scale (use --scale normalised)") from None
    return np.array(judged, np.float64).reshape(scores.shape)


def describe(scale: str, dataset: str) -> str:
    """A few words for output: which scale the numbers are on."""
    record = _record(dataset)
    if record is None:
        return f"training scale (dataset {dataset!r} is not registered here)"
    if record.to_judges is None:
        return "judges' scale"
    if scale == "judges":
        return f"judges' scale (converted from the {record.training_scale} training scale)"
    return f"{record.training_scale} scale (the training targets)"
