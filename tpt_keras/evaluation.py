"""Held-out evaluation of a TPTModel on an evaluation dataset (the ``predict_step`` contract).

* :func:`predict_scores`: predicted and true final scores over a whole dataset.
* :func:`evaluate`: ``{"spearman", "r_l2"}`` (R-l2 reported x100).
* :class:`ValidationSpearman`: a callback writing ``logs["val_spearman"]`` and
  ``logs["val_r_l2"]`` at the end of each evaluated epoch, so that ``ModelCheckpoint(monitor=
  "val_spearman", mode="max")`` and ``EarlyStopping`` can use them. Put it **before** those
  callbacks in the list: Keras hands the same ``logs`` dict to the callbacks in order.
"""

from __future__ import annotations

import keras
import numpy as np

from tpt_keras import metrics


def predict_scores(model, eval_dataset):
    """Predicted and true final scores for every query in ``eval_dataset``.

    Args:
        model: a compiled or uncompiled :class:`tpt_keras.model.TPTModel`.
        eval_dataset: iterable of evaluation batches (dicts with "query", "exemplars",
            "exemplar_scores", "exemplar_mask", "query_difficulty" and the true "score").

    Returns:
        (pred, true): two (N,) float64 arrays, in dataset order.
    """
    predictions, truths = [], []
    for batch in eval_dataset:
        if "score" not in batch:
            raise ValueError("evaluation batches need the true final 'score' of each query; "
                             f"received keys {sorted(batch)}.")
        outputs = model.predict_on_batch(batch)
        predictions.append(np.asarray(outputs["score"], dtype=np.float64).reshape(-1))
        truths.append(np.asarray(batch["score"], dtype=np.float64).reshape(-1))
    if not predictions:
        raise ValueError("eval_dataset is empty.")
    return np.concatenate(predictions), np.concatenate(truths)


def evaluate(model, eval_dataset) -> dict[str, float]:
    """``{"spearman": rho, "r_l2": relative L2 x 100}`` of ``model`` on ``eval_dataset``."""
    pred, true = predict_scores(model, eval_dataset)
    return {"spearman": metrics.spearman(pred, true), "r_l2": metrics.r_l2(pred, true)}


class ValidationSpearman(keras.callbacks.Callback):
    """Evaluate held-out Spearman / R-l2 at the end of epochs and add them to ``logs``.

    Args:
        eval_dataset: evaluation batches as for :func:`evaluate`.
        frequency: evaluate every ``frequency`` epochs (and always at the last one when known).
        prefix: key prefix (``"val_"`` gives ``val_spearman`` / ``val_r_l2``).

    Attributes:
        history: list of ``(epoch, {"spearman", "r_l2"})`` for every evaluated epoch.
    """

    def __init__(self, eval_dataset, frequency: int = 1, prefix: str = "val_"):
        super().__init__()
        if frequency < 1:
            raise ValueError(f"frequency must be >= 1; received {frequency!r}.")
        self.eval_dataset = eval_dataset
        self.frequency = frequency
        self.prefix = prefix
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.frequency and (last is None or epoch + 1 != last):
            return
        results = evaluate(self.model, self.eval_dataset)
        self.history.append((epoch, results))
        if logs is not None:
            for name, value in results.items():
                logs[self.prefix + name] = value
