"""Distribution strategies, the learning-rate rule and one `fit` for every strategy.

The paper trained with 8 GPUs x 3 pairs = a global batch of 24 pairs. Here one machine uses
`tf.distribute.MirroredStrategy` (several GPUs, or the CPU split into logical devices for tests) and
several machines use `tf.distribute.MultiWorkerMirroredStrategy`, configured by ``TF_CONFIG``.

One training entry point, :func:`fit`:

* default / one-device / mirrored: it is ``model.fit`` on a dataset made by
  ``strategy.distribute_datasets_from_function``.
* multi-worker: Keras 3 ``model.fit`` does not work under ``MultiWorkerMirroredStrategy``
  (keras-team/keras#20585), so :func:`fit` runs a small loop instead: ``strategy.run(
  model.train_step)`` in a ``tf.function``, logs mean-reduced over replicas, the same Keras
  callbacks.

Both paths back up with the same :class:`TrainingBackup` callback (``fit(backup_dir=...)``): every
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
``num_replicas_in_sync`` before taking gradients (see :func:`scale_loss_for_replicas`); the
optimizer *sums* gradients over replicas.

Example:

```python
strategy = make_strategy("mirrored", logical_cpus=2)   # before anything touches TensorFlow devices
with strategy.scope():
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(scale_learning_rate(1e-4, 8)))
history = fit(model, lambda ctx: make_dataset(ctx, global_batch=8), epochs=3,
              strategy=strategy, steps_per_epoch=10, backup_dir="/tmp/backup")
```
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

STRATEGY_NAMES = ("auto", "one-device", "mirrored", "multi-worker")
LR_RULES = ("sqrt", "linear", "constant")

# The paper's setting: 8 GPUs x 3 pairs, Adam with lr 1e-4 (backbone, decoder, pair encoder) and
# 1e-3 (heads). Learning rates given in a config are the ones for this global batch.
PAPER_GLOBAL_BATCH = 24
DEFAULT_LR_RULE = "sqrt"


# ---------------------------------------------------------------------------------------------
# Devices and strategies
# ---------------------------------------------------------------------------------------------


def configure_logical_cpus(num_devices: int) -> None:
    """Splits the (first) physical CPU into ``num_devices`` logical devices.

    Must run before TensorFlow initialises its devices (before the first op, variable or
    strategy). Calling it again with the same number afterwards is a no-op.

    Args:
        num_devices: number of logical CPU devices, >= 1.

    Raises:
        RuntimeError: TensorFlow already initialised its devices with a different split.
    """
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"`logical_cpus` must be a positive integer. Received: {num_devices!r}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
        )
    except RuntimeError as error:
        current = len(tf.config.list_logical_devices("CPU"))
        if current == num_devices:
            return
        raise RuntimeError(
            f"Cannot split the CPU into {num_devices} logical devices: TensorFlow has already "
            f"initialised {current} CPU device(s). Call make_strategy(logical_cpus=...) (or "
            "configure_logical_cpus) before any TensorFlow op, variable, model or strategy is "
            "created, e.g. at the very start of the program."
        ) from error


def tf_config() -> dict:
    """The parsed ``TF_CONFIG`` environment variable ({} when unset or empty)."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {raw!r}") from error


def num_tf_config_workers() -> int:
    """Number of tasks (chief + workers) in ``TF_CONFIG``'s cluster; 0 when unset."""
    cluster = tf_config().get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def make_strategy(name: str = "auto", logical_cpus: int | None = None) -> tf.distribute.Strategy:
    """Creates the distribution strategy.

    Args:
        name: one of ``STRATEGY_NAMES``.
            ``"auto"``: multi-worker if ``TF_CONFIG`` names more than one task, else mirrored if
            more than one GPU (or more than one logical CPU was asked for) is visible, else
            TensorFlow's default strategy (no distribution: plain ``model.fit``).
            ``"one-device"``: ``OneDeviceStrategy`` on the first GPU, or the CPU.
            ``"mirrored"``: ``MirroredStrategy`` over all GPUs; without GPUs, over all logical
            CPU devices (see ``logical_cpus``).
            ``"multi-worker"``: ``MultiWorkerMirroredStrategy``; needs ``TF_CONFIG``.
        logical_cpus: if given, first split the CPU into this many logical devices
            (:func:`configure_logical_cpus`), so that ``"mirrored"`` can run on a CPU-only machine.
            Must be used before TensorFlow initialises its devices.

    Returns:
        A ``tf.distribute.Strategy``.
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"`name` must be one of {STRATEGY_NAMES}. Received: {name!r}")
    if logical_cpus is not None:
        configure_logical_cpus(logical_cpus)
    gpus = tf.config.list_physical_devices("GPU")

    if name == "auto":
        if num_tf_config_workers() > 1:
            name = "multi-worker"
        elif len(gpus) > 1 or (not gpus and (logical_cpus or 1) > 1):
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()

    if name == "one-device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    # multi-worker
    if num_tf_config_workers() < 1:
        raise ValueError(
            "strategy 'multi-worker' needs the TF_CONFIG environment variable (cluster and task), "
            "see docs/scale.md. TF_CONFIG is unset or names no worker."
        )
    implementation = (
        tf.distribute.experimental.CommunicationImplementation.NCCL
        if gpus
        else tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation
        )
    )


def make_deterministic() -> bool:
    """Make a one-replica run bit-identical between processes: TensorFlow runs independent ops
    one at a time (``inter_op_parallelism_threads = 1``; each op still uses every core).

    With several ops in flight, the gradients of the TPT decoder's first layer differ in the
    last bits from one step to the next on the same inputs (measured on CPU; op determinism and
    oneDNN off do not remove it), and Adam grows such differences into different runs. Must run
    before TensorFlow initialises; returns False (and changes nothing) when it is too late.
    Not for mirrored or multi-worker strategies, whose replicas must run concurrently."""
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        return tf.config.threading.get_inter_op_parallelism_threads() == 1
    return True


def will_have_one_replica(name: str = "auto", logical_cpus: int | None = None) -> bool:
    """Whether :func:`make_strategy` with these arguments gives a one-replica strategy (known
    before TensorFlow initialises its devices)."""
    if name == "one-device":
        return True
    if name != "auto" or num_tf_config_workers() > 1 or (logical_cpus or 1) > 1:
        return False
    return len(tf.config.list_physical_devices("GPU")) <= 1


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True for ``MultiWorkerMirroredStrategy`` (which Keras 3 ``model.fit`` cannot drive)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True on the worker that writes checkpoints and logs (always True on one machine)."""
    if strategy is not None and not is_multi_worker(strategy):
        return True
    task = tf_config().get("task", {})
    task_type, task_id = task.get("type"), task.get("index", 0)
    if task_type in (None, "chief"):
        return True
    has_chief = bool(tf_config().get("cluster", {}).get("chief"))
    return task_type == "worker" and task_id == 0 and not has_chief


# ---------------------------------------------------------------------------------------------
# Batch size and learning rate
# ---------------------------------------------------------------------------------------------


def global_batch_size(per_replica_batch: int, strategy: tf.distribute.Strategy) -> int:
    """Global batch = per-replica batch x ``strategy.num_replicas_in_sync``."""
    return int(per_replica_batch) * int(strategy.num_replicas_in_sync)


def lr_multiplier(
    global_batch: int, reference_batch: int = PAPER_GLOBAL_BATCH, rule: str = DEFAULT_LR_RULE
) -> float:
    """Factor by which learning rates tuned at ``reference_batch`` change at ``global_batch``.

    Rules (``LR_RULES``):

    * ``"sqrt"`` (default): ``sqrt(global / reference)``. The square-root rule is the one derived
      for Adam-type optimizers (Malladi et al., "On the SDEs and Scaling Rules for Adaptive
      Gradient Algorithms", NeurIPS 2022); TPT trains with Adam.
    * ``"linear"``: ``global / reference`` (Goyal et al. 2017, derived for SGD).
    * ``"constant"``: 1, the paper's learning rates whatever the batch.

    At the paper's global batch of 24 every rule gives 1: the paper's learning rates.
    """
    if rule not in LR_RULES:
        raise ValueError(f"`rule` must be one of {LR_RULES}. Received: {rule!r}")
    if global_batch < 1 or reference_batch < 1:
        raise ValueError(
            f"Batch sizes must be >= 1. Received: global_batch={global_batch}, "
            f"reference_batch={reference_batch}"
        )
    ratio = global_batch / reference_batch
    return {"sqrt": math.sqrt(ratio), "linear": ratio, "constant": 1.0}[rule]


def scale_learning_rate(
    learning_rate: float,
    global_batch: int,
    reference_batch: int = PAPER_GLOBAL_BATCH,
    rule: str = DEFAULT_LR_RULE,
) -> float:
    """``learning_rate`` (tuned at ``reference_batch``) scaled to ``global_batch`` by ``rule``."""
    return float(learning_rate) * lr_multiplier(global_batch, reference_batch, rule)


def scale_loss_for_replicas(loss):
    """``loss / num_replicas_in_sync`` of the current strategy: what a custom ``train_step`` takes
    gradients of (before ``optimizer.scale_loss``). The optimizer sums gradients over replicas, so
    the sum of the per-replica means divided by the replica count is the global-batch mean.
    Log the unscaled loss. A no-op with one replica."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return loss * tf.cast(1.0 / replicas, loss.dtype)


# ---------------------------------------------------------------------------------------------
# Datasets and predictions
# ---------------------------------------------------------------------------------------------


def _local_input_context(strategy: tf.distribute.Strategy) -> tf.distribute.InputContext:
    """The input context that ``distribute_datasets_from_function`` gives this worker."""
    if is_multi_worker(strategy):
        resolver = strategy.cluster_resolver
        cluster = resolver.cluster_spec().as_dict()
        chiefs = len(cluster.get("chief", []))
        num_workers = chiefs + len(cluster.get("worker", []))
        # The chief is input pipeline 0, worker i is i + (number of chiefs), as in tf.distribute.
        worker_id = 0 if resolver.task_type == "chief" else chiefs + int(resolver.task_id or 0)
        return tf.distribute.InputContext(
            max(num_workers, 1), worker_id, strategy.num_replicas_in_sync
        )
    return tf.distribute.InputContext(1, 0, strategy.num_replicas_in_sync)


def _local_replicas(strategy: tf.distribute.Strategy) -> int:
    """Replicas on this worker (equal on every worker for the mirrored strategies)."""
    context = _local_input_context(strategy)
    return max(context.num_replicas_in_sync // context.num_input_pipelines, 1)


def steps_per_epoch_of(train_ds_fn, strategy: tf.distribute.Strategy) -> int:
    """Global steps in one pass over this worker's shard: per-replica batches // local replicas;
    under multi-worker the smallest over all workers (every worker must take the same number of
    steps; all workers must call this together).

    Raises ValueError when the dataset's cardinality is unknown or infinite (pass
    ``steps_per_epoch`` to :func:`fit` then)."""
    cardinality = int(train_ds_fn(_local_input_context(strategy)).cardinality())
    if cardinality < 0:
        raise ValueError(
            "The dataset's number of batches is unknown or infinite; pass `steps_per_epoch`."
        )
    steps = cardinality // _local_replicas(strategy)
    if steps < 1:
        raise ValueError(
            f"The dataset has {cardinality} per-replica batches on this worker, fewer than its "
            f"{_local_replicas(strategy)} replicas: not one full step."
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


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


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
    strategy = strategy or model.distribute_strategy
    if model.distribute_strategy is not strategy:
        raise ValueError(
            "The model was not created under `strategy.scope()` (its distribute_strategy is "
            f"{type(model.distribute_strategy).__name__}, the strategy passed is "
            f"{type(strategy).__name__}). Build and compile the model inside strategy.scope()."
        )
    if steps_per_epoch is None:
        steps_per_epoch = steps_per_epoch_of(train_ds_fn, strategy)
    if validation_ds_fn is not None and validation_steps is None:
        validation_steps = steps_per_epoch_of(validation_ds_fn, strategy)
    callbacks = list(callbacks or [])
    if is_multi_worker(strategy) and any(
            isinstance(cb, keras.callbacks.BackupAndRestore) for cb in callbacks):
        raise ValueError(
            "keras.callbacks.BackupAndRestore restores the weights on one worker only under "
            "MultiWorkerMirroredStrategy (the workers would diverge). Pass fit(backup_dir=...) "
            "instead."
        )
    if backup_dir is not None:
        backup = TrainingBackup(backup_dir, write=is_chief(strategy))
        _build_variables(model, train_ds_fn, strategy)
        restored = backup.restore(model)
        if restored is not None:
            initial_epoch = restored
        callbacks.append(backup)  # last: the backup commits an epoch once everything else ran
    train_ds = distribute_dataset(strategy, train_ds_fn, repeat=True)
    val_ds = None
    if validation_ds_fn is not None:
        val_ds = distribute_dataset(strategy, validation_ds_fn, repeat=True)

    if not is_multi_worker(strategy):
        return model.fit(
            train_ds,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            validation_data=val_ds,
            validation_steps=validation_steps,
            initial_epoch=initial_epoch,
            verbose=verbose,
            shuffle=False,  # the pipelines shuffle (deterministically, per epoch)
        )
    return _fit_multi_worker(
        model,
        train_ds_fn,
        train_ds,
        epochs,
        callbacks,
        strategy,
        steps_per_epoch,
        val_ds,
        validation_steps,
        initial_epoch,
        verbose,
    )


def backup_epoch(backup_dir: str) -> int:
    """The number of finished epochs in ``backup_dir``'s :class:`TrainingBackup` (the epoch a run
    resumes at); 0 without a backup. Use it to start the data pipeline at the right epoch before
    calling :func:`fit`. A damaged backup raises a ValueError naming the file."""
    return TrainingBackup(backup_dir).finished_epochs()


class TrainingBackup(keras.callbacks.Callback):
    """The state a run needs to continue exactly: every variable of the model (``model.variables``:
    weights, non-trainable state such as BN statistics, and the dropout layers' seed states) and of
    the optimizer (step count, moments), and the number of finished epochs.

    One file, ``DIRECTORY/state.npz``, replaced atomically at the end of every epoch (temporary
    file, fsync, rename: a kill leaves the previous epoch's backup). The data pipelines' order is a
    function of (seed, epoch), so the epoch is the whole data position.

    Args:
        directory: the backup folder.
        write: False on the workers that only restore (multi-worker: the chief writes).
    """

    FILE = "state.npz"

    def __init__(self, directory: str, write: bool = True):
        super().__init__()
        self.directory = directory
        self.path = os.path.join(directory, self.FILE)
        self.write = write

    def _load(self):
        if not os.path.exists(self.path):
            return None
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except Exception as error:  # zipfile.BadZipFile, ValueError, OSError, EOFError
            raise ValueError(
                f"{self.path}: damaged training backup ({type(error).__name__}: {error}); delete "
                f"{self.directory} to train this run again from its first epoch") from None

    def finished_epochs(self) -> int:
        state = self._load()
        if state is None:
            return 0
        if "finished_epochs" not in state:
            raise ValueError(f"{self.path}: damaged training backup (no finished_epochs); "
                             f"delete {self.directory} to train this run again from its first epoch")
        return int(state["finished_epochs"])

    @staticmethod
    def _variables(model):
        return [("model", v) for v in model.variables] + [
            ("optimizer", v) for v in model.optimizer.variables]

    def restore(self, model) -> int | None:
        """Load the backup into ``model`` (built, optimizer built); the finished epochs, or None
        without a backup."""
        state = self._load()
        if state is None:
            return None
        variables = self._variables(model)
        names = [f"{owner}_{i:04d}" for i, (owner, _) in enumerate(variables)]
        stored = sorted(name for name in state if name != "finished_epochs")
        if sorted(names) != stored:
            raise ValueError(f"{self.path}: the backup holds {len(stored)} variables, this model "
                             f"has {len(names)}: it belongs to another model; delete "
                             f"{self.directory} to start over")
        for name, (_, variable) in zip(names, variables):
            value = state[name]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{self.path}: {variable.path} has shape {value.shape} in the "
                                 f"backup, {tuple(variable.shape)} in the model; delete "
                                 f"{self.directory} to start over")
            variable.assign(value)
        return int(state["finished_epochs"])

    def save(self, model, finished_epochs: int) -> None:
        from tpt_keras import run_folder

        arrays = {f"{owner}_{i:04d}": np.asarray(keras.ops.convert_to_numpy(v))
                  for i, (owner, v) in enumerate(self._variables(model))}
        arrays["finished_epochs"] = np.asarray(finished_epochs, np.int64)
        os.makedirs(self.directory, exist_ok=True)
        with run_folder.atomic_path(self.path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)
            run_folder.fault_point("backup_before_replace")

    def on_epoch_end(self, epoch, logs=None):
        if self.write:
            self.save(self.model, epoch + 1)


def _build_variables(model, train_ds_fn, strategy) -> None:
    """Create the model's and the optimizer's variables (one eager call on a local batch), before
    a backup is restored into them and before the multi-worker loop's ``tf.function``."""
    if not model.built:
        first = next(iter(train_ds_fn(_local_input_context(strategy)).take(1)))
        with strategy.scope():
            model(first)
    if not model.optimizer.built:
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)


_FILE_WRITING_CALLBACKS = (
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


def _fit_multi_worker(
    model,
    train_ds_fn,
    train_ds,
    epochs,
    callbacks,
    strategy,
    steps_per_epoch,
    val_ds,
    validation_steps,
    initial_epoch,
    verbose,
):
    """The loop ``model.fit`` would run, written out for ``MultiWorkerMirroredStrategy``."""
    if not is_chief(strategy):
        callbacks = [cb for cb in callbacks if not (isinstance(cb, _FILE_WRITING_CALLBACKS)
                                                    or getattr(cb, "chief_only", False))]
    _build_variables(model, train_ds_fn, strategy)  # outside tf.function

    @tf.function
    def train_function(iterator):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        return _mean_over_replicas(strategy, logs)

    @tf.function
    def test_function(iterator):
        logs = strategy.run(model.test_step, args=(next(iterator),))
        return _mean_over_replicas(strategy, logs)

    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    model.stop_training = False
    iterator = iter(train_ds)
    val_iterator = iter(val_ds) if val_ds is not None else None
    callback_list.on_train_begin()
    epoch_logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        logs = {}
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = _to_floats(train_function(iterator))
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        if val_iterator is not None:
            model.reset_metrics()
            callback_list.on_test_begin()
            val_logs = {}
            for step in range(validation_steps):
                callback_list.on_test_batch_begin(step)
                val_logs = _to_floats(test_function(val_iterator))
                callback_list.on_test_batch_end(step, val_logs)
            callback_list.on_test_end(val_logs)
            epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)
    return model.history
