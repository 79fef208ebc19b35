"""Held-out evaluation of a TPTModel on an evaluation dataset (the ``predict_step`` contract).

* :func:`predict_scores`: predicted and true final scores over a whole dataset.
* :func:`evaluate`: ``{"spearman", "r_l2"}`` (R-l2 reported x100).
* :class:`ValidationSpearman`: a callback writing ``logs["val_spearman"]`` and
  ``logs["val_r_l2"]`` at the end of each evaluated epoch, so that ``ModelCheckpoint(monitor=
  "val_spearman", mode="max")`` and ``EarlyStopping`` can use them. Put it **before** those
  callbacks in the list: Keras hands the same ``logs`` dict to the callbacks in order.

Prediction runs ``model.predict_step`` in a ``tf.function`` (one per model, cached) called outside
any replica context, not ``model.predict_on_batch``: under ``MirroredStrategy`` (``tpt train
--strategy mirrored``) Keras runs a plain batch on every replica and concatenates, so
``predict_on_batch`` returns every row once per replica. Called from a callback during ``fit`` (in
the strategy's scope, cross-replica context), the function reads the mirrored weights and returns
the batch's rows once.
"""

from __future__ import annotations


import keras
import numpy as np
import tensorflow as tf

from tpt_keras.models.compiled import cached_function
from tpt_keras.ops import metrics



def predict_function(model):
    """A callable ``batch -> model.predict_step(batch)`` that returns each row of ``batch`` once,
    whatever the distribution strategy in scope.

    A ``tf.function`` (``reduce_retracing``, XLA when ``model.jit_compile``), created once per model
    and cached; ``model.predict_step`` itself, eagerly, when ``model.run_eagerly``. Call it outside
    ``strategy.run`` (from ordinary code or a callback). An object without ``predict_step`` (a
    stand-in for a model) gets its ``predict_on_batch``.
    """
    if not hasattr(model, "predict_step"):
        return model.predict_on_batch
    if getattr(model, "run_eagerly", False):
        return model.predict_step
    jit_compile = bool(getattr(model, "jit_compile", False))
    return cached_function(model, ("predict", jit_compile), lambda m, batch: m.predict_step(batch),
                           autograph=False, jit_compile=jit_compile)


def predict_scores(model, eval_dataset):
    """Predicted and true final scores for every query in ``eval_dataset``.

    Rows are predicted by :func:`predict_function` (each once, also under ``MirroredStrategy``).

    Args:
        model: a compiled or uncompiled :class:`tpt_keras.models.tpt_model.TPTModel`.
        eval_dataset: iterable of evaluation batches (dicts with "query", "exemplars",
            "exemplar_scores", "exemplar_mask", "query_difficulty" and the true "score").

    Returns:
        (pred, true): two (N,) float64 arrays, in dataset order.
    """
    predict = predict_function(model)
    predictions, truths = [], []
    for batch in eval_dataset:
        if "score" not in batch:
            raise ValueError("evaluation batches need the true final 'score' of each query; "
                             f"received keys {sorted(batch)}.")
        outputs = predict(batch)
        predictions.append(np.asarray(outputs["score"], dtype=np.float64).reshape(-1))
        truths.append(np.asarray(batch["score"], dtype=np.float64).reshape(-1))
    if not predictions:
        raise ValueError("eval_dataset is empty.")
    return np.concatenate(predictions), np.concatenate(truths)


def evaluate(model, eval_dataset) -> dict[str, float]:
    """``{"spearman": rho, "r_l2": relative L2 x 100, "spread_ratio": std(pred) / std(true)}``
    of ``model`` on ``eval_dataset`` (:func:`tpt_keras.ops.metrics.spread_ratio`: below
    ``metrics.COLLAPSE_FRACTION`` the model has collapsed)."""
    pred, true = predict_scores(model, eval_dataset)
    return {"spearman": metrics.spearman(pred, true), "r_l2": metrics.r_l2(pred, true),
            "spread_ratio": metrics.spread_ratio(pred, true)}


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
