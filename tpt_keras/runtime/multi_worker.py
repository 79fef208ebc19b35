"""The training loop for ``tf.distribute.MultiWorkerMirroredStrategy``.

Keras 3 ``model.fit`` does not work under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585),
so :func:`tpt_keras.runtime.distribute.fit` runs :class:`MultiWorkerLoop` there instead: the loop
``model.fit`` would run, written out with public APIs only — ``strategy.run(model.train_step)`` in a
``tf.function``, logs mean-reduced over replicas, the same Keras callbacks through
``keras.callbacks.CallbackList``. Callbacks that write files run on the chief only.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tpt_keras.runtime import strategies

FILE_WRITING_CALLBACKS = (
    keras.callbacks.ModelCheckpoint,
    keras.callbacks.CSVLogger,
    keras.callbacks.TensorBoard,
)


def _mean_over_replicas(strategy, per_replica_logs):
    return {
        name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
        for name, value in per_replica_logs.items()
    }


def _to_floats(logs):
    return {name: float(value) for name, value in logs.items()}


class MultiWorkerLoop:
    """``model.fit``'s epochs, steps and callbacks under a multi-worker strategy.

    Args:
        model: a compiled model built under ``strategy.scope()``, its variables and its
            optimizer's created (outside any ``tf.function``).
        strategy: the ``MultiWorkerMirroredStrategy``.
        callbacks: Keras callbacks; on a worker that is not the chief, those that write files
            (``ModelCheckpoint``, ``CSVLogger``, ``TensorBoard``, or any with a true
            ``chief_only`` attribute) are left out.
        steps_per_epoch: global training steps per epoch (the same on every worker).
        validation_steps: steps of each validation pass (with ``run(val_ds=...)``).
        verbose: as in ``model.fit``.
    """

    def __init__(self, model, strategy, *, callbacks=(), steps_per_epoch: int,
                 validation_steps: int | None = None, verbose="auto"):
        self.model = model
        self.strategy = strategy
        if not strategies.is_chief(strategy):
            callbacks = [cb for cb in callbacks if not (isinstance(cb, FILE_WRITING_CALLBACKS)
                                                        or getattr(cb, "chief_only", False))]
        self.callbacks = list(callbacks)
        self.steps_per_epoch = steps_per_epoch
        self.validation_steps = validation_steps
        self.verbose = verbose

    def _step_function(self, step):
        strategy = self.strategy

        @tf.function
        def function(iterator):
            return _mean_over_replicas(strategy, strategy.run(step, args=(next(iterator),)))

        return function

    def run(self, train_ds, *, epochs: int, initial_epoch: int = 0, val_ds=None):
        """Train from ``initial_epoch`` to ``epochs`` on the distributed datasets (repeated);
        the ``keras.callbacks.History`` of the run."""
        model = self.model
        callback_list = keras.callbacks.CallbackList(
            self.callbacks, add_history=True, add_progbar=self.verbose != 0,
            verbose=self.verbose, epochs=epochs, steps=self.steps_per_epoch, model=model)
        train_function = self._step_function(model.train_step)
        test_function = self._step_function(model.test_step)
        model.stop_training = False
        iterator = iter(train_ds)
        val_iterator = iter(val_ds) if val_ds is not None else None
        callback_list.on_train_begin()
        epoch_logs = {}
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            epoch_logs = self._train_epoch(callback_list, train_function, iterator)
            if val_iterator is not None:
                epoch_logs.update(self._validate(callback_list, test_function, val_iterator))
            callback_list.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
        callback_list.on_train_end(epoch_logs)
        return model.history

    def _train_epoch(self, callback_list, train_function, iterator) -> dict:
        logs = {}
        for step in range(self.steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = _to_floats(train_function(iterator))
            callback_list.on_train_batch_end(step, logs)
            if self.model.stop_training:
                break
        return dict(logs)

    def _validate(self, callback_list, test_function, val_iterator) -> dict:
        self.model.reset_metrics()
        callback_list.on_test_begin()
        val_logs = {}
        for step in range(self.validation_steps):
            callback_list.on_test_batch_begin(step)
            val_logs = _to_floats(test_function(val_iterator))
            callback_list.on_test_batch_end(step, val_logs)
        callback_list.on_test_end(val_logs)
        return {f"val_{name}": value for name, value in val_logs.items()}
