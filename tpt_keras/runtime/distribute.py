"""One `fit` for every distribution strategy, and the distributed datasets and predictions.

The strategies themselves, the learning-rate rule and determinism are in
:mod:`tpt_keras.runtime.strategies`; the backup in :mod:`tpt_keras.runtime.backup`.

One training entry point, :func:`fit`:

* default / one-device / mirrored: it is ``model.fit`` on a dataset made by
  ``strategy.distribute_datasets_from_function``.
* multi-worker: Keras 3 ``model.fit`` does not work under ``MultiWorkerMirroredStrategy``
  (keras-team/keras#20585), so :func:`fit` runs a small loop instead
  (:class:`tpt_keras.runtime.multi_worker.MultiWorkerLoop`): ``strategy.run(model.train_step)``
  in a ``tf.function``, logs mean-reduced over replicas, the same Keras callbacks.

Both paths back up with the same :class:`~tpt_keras.runtime.backup.TrainingBackup` callback (``fit(backup_dir=...)``): every
variable of the model (weights, non-trainable state, dropout seed states) and of the optimizer, and
the number of finished epochs, written atomically at each epoch end; a new ``fit`` on the same
folder restores it and continues with the next epoch, ending with the weights an uninterrupted run
ends with.

The dataset contract is the one of ``distribute_datasets_from_function``: ``train_ds_fn(
input_context)`` returns a ``tf.data.Dataset`` of **per-replica** batches (batch size
``input_context.get_per_replica_batch_size(global_batch)``), sharded by
``input_context.input_pipeline_id`` when ``input_context.num_input_pipelines > 1``. :func:`fit`
repeats it and runs a fixed number of steps per epoch, so that every replica and every worker takes
the same number of steps (a worker that stops early blocks the others in the all-reduce).

The model's custom ``train_step`` must do what Keras' own ``train_step`` does: divide the loss by
``num_replicas_in_sync`` before taking gradients (see :func:`tpt_keras.models.tpt_model.scale_loss_for_replicas`); the
optimizer *sums* gradients over replicas.

Example:

```python
strategy = strategies.make_strategy("mirrored", logical_cpus=2)  # before TensorFlow starts
with strategy.scope():
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(strategies.scale_learning_rate(1e-4, 8)))
history = fit(model, lambda ctx: make_dataset(ctx, global_batch=8), epochs=3,
              strategy=strategy, steps_per_epoch=10, backup_dir="/tmp/backup")
```
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tpt_keras.runtime import backup
from tpt_keras.runtime.multi_worker import MultiWorkerLoop
from tpt_keras.runtime.strategies import is_chief, is_multi_worker, local_input_context, local_replicas


def steps_per_epoch_of(train_ds_fn, strategy: tf.distribute.Strategy) -> int:
    """Global steps in one pass over this worker's shard: per-replica batches // local replicas;
    under multi-worker the smallest over all workers (every worker must take the same number of
    steps; all workers must call this together).

    Raises ValueError when the dataset's cardinality is unknown or infinite (pass
    ``steps_per_epoch`` to :func:`fit` then)."""
    cardinality = int(train_ds_fn(local_input_context(strategy)).cardinality())
    if cardinality < 0:
        raise ValueError(
            "The dataset's number of batches is unknown or infinite; pass `steps_per_epoch`."
        )
    steps = cardinality // local_replicas(strategy)
    if steps < 1:
        raise ValueError(
            f"The dataset has {cardinality} per-replica batches on this worker, fewer than its "
            f"{local_replicas(strategy)} replicas: not one full step."
        )
    if is_multi_worker(strategy):
        local = strategy.run(lambda: tf.constant([steps], tf.int64))
        steps = int(tf.reduce_min(strategy.gather(local, axis=0)))
    return steps


def distribute_dataset(strategy: tf.distribute.Strategy, dataset_fn, repeat: bool = False):
    """``strategy.distribute_datasets_from_function(dataset_fn)``, optionally repeated forever."""
    if repeat:
        return strategy.distribute_datasets_from_function(lambda ctx: dataset_fn(ctx).repeat())
    return strategy.distribute_datasets_from_function(dataset_fn)


def gather_predictions(strategy: tf.distribute.Strategy, per_replica):
    """All replicas' (and all workers') values concatenated on axis 0, as tensors.

    Use for metrics that need every prediction (Spearman over the evaluation set). ``per_replica``
    is a (nested structure of) ``PerReplica`` values returned by ``strategy.run`` or plain tensors
    (one replica). Replicas may hold different numbers of rows (the last, partial batch).
    Order: replica 0 of worker 0, replica 1 of worker 0, ..., replica 0 of worker 1, ...
    Under multi-worker every worker must call it (it is a collective) and all get the full result.
    """

    def gather(value):
        if isinstance(value, tf.distribute.DistributedValues) or is_multi_worker(strategy):
            return strategy.gather(value, axis=0)
        return tf.convert_to_tensor(value)

    return tf.nest.map_structure(gather, per_replica)


def predict_all(model: keras.Model, dataset_fn, strategy: tf.distribute.Strategy, step_fn=None):
    """Runs ``step_fn`` (default ``model.predict_step``) on every batch of
    ``distribute_dataset(strategy, dataset_fn)`` and returns the gathered outputs as numpy arrays,
    in the order of :func:`gather_predictions` per batch. For a one-replica strategy that is the
    dataset's order."""
    step_fn = step_fn or model.predict_step

    @tf.function
    def step(batch):
        return gather_predictions(strategy, strategy.run(step_fn, args=(batch,)))

    outputs = [step(batch) for batch in distribute_dataset(strategy, dataset_fn)]
    if not outputs:
        return None
    return tf.nest.map_structure(lambda *xs: np.concatenate([x.numpy() for x in xs]), *outputs)


def fit(
    model: keras.Model,
    train_ds_fn,
    epochs: int,
    callbacks=None,
    strategy: tf.distribute.Strategy | None = None,
    steps_per_epoch: int | None = None,
    validation_ds_fn=None,
    validation_steps: int | None = None,
    initial_epoch: int = 0,
    backup_dir: str | None = None,
    verbose="auto",
):
    """Trains ``model`` under ``strategy``: ``model.fit`` on one machine, a small loop on several.

    Args:
        model: a compiled ``keras.Model`` whose variables (and optimizer) were created inside
            ``strategy.scope()``; its ``call`` takes a batch as the dataset yields it.
        train_ds_fn: ``fn(tf.distribute.InputContext) -> tf.data.Dataset`` of per-replica batches
            (see the module docstring). It is repeated; an epoch is ``steps_per_epoch`` steps.
        epochs: index of the last epoch + 1, as in ``model.fit``.
        callbacks: Keras callbacks. Under multi-worker, callbacks that write files
            (``ModelCheckpoint``, ``CSVLogger``, ``TensorBoard``, or any with a true
            ``chief_only`` attribute) run on the chief only, all others on every worker, and
            ``BackupAndRestore`` is refused (use ``backup_dir``).
        strategy: defaults to the strategy the model was created under.
        steps_per_epoch: global steps per epoch; default: one pass over this worker's shard
            (:func:`steps_per_epoch_of`).
        validation_ds_fn: like ``train_ds_fn`` for ``model.test_step``; evaluated after each epoch,
            ``validation_steps`` steps (default one pass), logs prefixed ``val_``.
        initial_epoch: epoch to start from (overridden by a backup in ``backup_dir``).
        backup_dir: a folder for :class:`TrainingBackup`: restored (every variable of model
            and optimizer) before training, written by the chief after every epoch, kept after
            the run (so that a later ``fit`` with more epochs continues it). Under multi-worker
            it must be on a file system that every worker can read.
        verbose: as in ``model.fit``.

    Returns:
        The ``keras.callbacks.History`` of the run.
    """
    strategy = _checked_strategy(model, strategy)
    if steps_per_epoch is None:
        steps_per_epoch = steps_per_epoch_of(train_ds_fn, strategy)
    if validation_ds_fn is not None and validation_steps is None:
        validation_steps = steps_per_epoch_of(validation_ds_fn, strategy)
    callbacks = _checked_callbacks(callbacks, strategy)
    build_variables(model, train_ds_fn, strategy)
    if backup_dir is not None:
        saver = backup.TrainingBackup(backup_dir, write=is_chief(strategy))
        restored = saver.restore(model)
        if restored is not None:
            initial_epoch = restored
        callbacks.append(saver.callback())  # last: the backup commits an epoch once everything else ran
    train_ds = distribute_dataset(strategy, train_ds_fn, repeat=True)
    val_ds = None
    if validation_ds_fn is not None:
        val_ds = distribute_dataset(strategy, validation_ds_fn, repeat=True)

    if not is_multi_worker(strategy):
        return model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                         validation_data=val_ds, validation_steps=validation_steps,
                         initial_epoch=initial_epoch, verbose=verbose,
                         shuffle=False)  # the pipelines shuffle (deterministically, per epoch)
    loop = MultiWorkerLoop(model, strategy, callbacks=callbacks, steps_per_epoch=steps_per_epoch,
                           validation_steps=validation_steps, verbose=verbose)
    return loop.run(train_ds, epochs=epochs, initial_epoch=initial_epoch, val_ds=val_ds)


def _checked_strategy(model: keras.Model, strategy):
    """``strategy`` (default: the model's), refused when the model was not created under it."""
    strategy = strategy or model.distribute_strategy
    if model.distribute_strategy is not strategy:
        raise ValueError(
            "The model was not created under `strategy.scope()` (its distribute_strategy is "
            f"{type(model.distribute_strategy).__name__}, the strategy passed is "
            f"{type(strategy).__name__}). Build and compile the model inside strategy.scope()."
        )
    return strategy


def _checked_callbacks(callbacks, strategy) -> list:
    """The callbacks as a new list; ``BackupAndRestore`` refused under multi-worker."""
    callbacks = list(callbacks or [])
    if is_multi_worker(strategy) and any(
            isinstance(cb, keras.callbacks.BackupAndRestore) for cb in callbacks):
        raise ValueError(
            "keras.callbacks.BackupAndRestore restores the weights on one worker only under "
            "MultiWorkerMirroredStrategy (the workers would diverge). Pass fit(backup_dir=...) "
            "instead."
        )
    return callbacks


def build_variables(model, train_ds_fn, strategy) -> None:
    """Create the model's and the optimizer's variables (one eager call on a local batch), before
    a backup is restored into them and before the first step is traced: a ``tf.function`` that
    creates variables is traced twice (Keras builds the optimizer inside the first trace when the
    model was not created under a strategy's scope), which doubles the start-up of a run."""
    if not model.built:
        first = next(iter(train_ds_fn(local_input_context(strategy)).take(1)))
        with strategy.scope():
            model(first)
    if not model.optimizer.built:
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
