"""A tiny TPT-shaped model, its data, and the subprocess entry points of the distribution tests.

``TinyPairModel`` has the structure of ``tpt_keras.models.tpt_model.TPTModel``: a batch is a dict with
"query" / "exemplar" (B, T, D) features and "query_score" / "exemplar_score" (B,); ``call`` takes
that dict; ``train_step`` uses a ``GradientTape``, divides the loss by the replica count
(``scale_loss_for_replicas``), ``self.optimizer.scale_loss``, ``self.optimizer.apply`` and metric
trackers. No dropout, so that runs on different devices are comparable. It trains with SGD: unlike
Adam, SGD's update is proportional to the gradient, so a missing 1/replicas loss scaling shows as
different weights.

``TF_CONFIG`` must be set before TensorFlow starts, so a multi-worker worker runs as a script:

    python tests/_multiworker_worker.py multi-worker OUT.npz      # one worker; needs TF_CONFIG

The two-replica scenario (:func:`mirrored_scenario`) runs in the process that
``tests/test_distribute.py`` starts for every scenario on 2 logical CPUs.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tpt_keras.runtime import backup, distribute, strategies  # noqa: E402
from tpt_keras.models.tpt_model import scale_loss_for_replicas  # noqa: E402

CLIPS, FEATURES = 4, 6
NUM_PAIRS = 16
GLOBAL_BATCH = 8
EPOCHS = 2  # 2 steps per epoch: 4 steps in all
SEED = 3


class TinyPairModel(keras.Model):
    """Relative score of a (query, exemplar) pair from (B, T, D) features; TPTModel's step."""

    def __init__(self, hidden=8, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.encoder = keras.layers.Dense(hidden, activation="relu", name="encoder")
        self.head = keras.layers.Dense(1, name="head")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_tracker = keras.metrics.Mean(name="mae")

    def call(self, batch, training=False):
        query = ops_mean(self.encoder(batch["query"]))  # (B, hidden)
        exemplar = ops_mean(self.encoder(batch["exemplar"]))  # (B, hidden)
        relative = self.head(keras.ops.concatenate([exemplar, query], axis=-1))  # (B, 1)
        return keras.ops.squeeze(relative, -1)  # (B,)

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_tracker]

    def _loss(self, batch, training):
        predicted = self(batch, training=training)
        target = keras.ops.cast(batch["query_score"] - batch["exemplar_score"], "float32")
        error = keras.ops.cast(predicted, "float32") - target
        return keras.ops.mean(error**2), keras.ops.mean(keras.ops.abs(error))

    def train_step(self, batch):
        batch = _unpack(batch)
        with tf.GradientTape() as tape:
            loss, mae = self._loss(batch, training=True)
            scaled = self.optimizer.scale_loss(scale_loss_for_replicas(loss))
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        self.mae_tracker.update_state(mae)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, batch):
        batch = _unpack(batch)
        loss, mae = self._loss(batch, training=False)
        self.loss_tracker.update_state(loss)
        self.mae_tracker.update_state(mae)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


def _unpack(data):
    """The batch dict (``train_on_batch`` wraps it in an (x, y, sample_weight) tuple)."""
    return keras.utils.unpack_x_y_sample_weight(data)[0]


def ops_mean(x):
    return keras.ops.mean(x, axis=1)  # (B, T, H) -> (B, H)


def make_pairs(num_pairs=NUM_PAIRS, seed=SEED):
    """Deterministic numpy pairs: dict of arrays, first axis = pair."""
    rng = np.random.default_rng(seed)
    return {
        "query": rng.normal(size=(num_pairs, CLIPS, FEATURES)).astype("float32"),
        "exemplar": rng.normal(size=(num_pairs, CLIPS, FEATURES)).astype("float32"),
        "query_score": rng.uniform(0, 3, size=num_pairs).astype("float32"),
        "exemplar_score": rng.uniform(0, 3, size=num_pairs).astype("float32"),
    }


def dataset_fn(global_batch=GLOBAL_BATCH, pairs=None):
    """``fn(InputContext)``: this pipeline's shard, in per-replica batches.

    Pipeline i of n takes pairs i, i+n, ...; with batches of global_batch / replicas, one global
    step sees exactly the pairs one device would see in one batch of ``global_batch``."""
    pairs = make_pairs() if pairs is None else pairs

    def fn(context: tf.distribute.InputContext):
        dataset = tf.data.Dataset.from_tensor_slices(pairs)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
        if context.num_input_pipelines > 1:
            dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset.batch(context.get_per_replica_batch_size(global_batch), drop_remainder=True)

    return fn


def build_model(strategy, learning_rate=0.1):
    """The model and its optimizer, created in ``strategy.scope()`` with fixed initial weights."""
    with strategy.scope():
        keras.utils.set_random_seed(SEED)
        model = TinyPairModel()
        model(make_pairs(2))  # build
        model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.5))
    return model


# ------------------------------------------------------------------ the real TPTModel, tiny


def make_tpt_pairs(num_pairs=NUM_PAIRS, seed=SEED, clips=6, features=8):
    """TPTModel's pair batch contract, as numpy arrays."""
    rng = np.random.default_rng(seed)
    return {
        "query": rng.normal(size=(num_pairs, clips, features)).astype("float32"),
        "exemplar": rng.normal(size=(num_pairs, clips, features)).astype("float32"),
        "query_score": rng.uniform(5, 25, size=num_pairs).astype("float32"),
        "exemplar_score": rng.uniform(5, 25, size=num_pairs).astype("float32"),
        "query_difficulty": np.ones(num_pairs, "float32"),
    }


def tiny_tpt_config(**overrides):
    from tpt_keras.config import get_preset

    settings = dict(feature_dim=8, hidden_dim=8, ffn_dim=8, num_heads=2, head_hidden_dim=8,
                    num_queries=3, dropout=0.0)
    settings["protocol.num_clips"] = 6
    settings.update(overrides)
    return get_preset("synthetic", **settings)


def build_tpt_model(strategy, config=None, optimizer=None):
    """A tiny TPTModel (synthetic preset, no dropout), in the scope; its own optimizer by default."""
    from tpt_keras.ops.groups import compute_intervals
    from tpt_keras.models.tpt_model import TPTModel

    config = config or tiny_tpt_config()
    pairs = make_tpt_pairs()
    targets = np.concatenate([pairs["query_score"], pairs["exemplar_score"]])
    intervals = compute_intervals(targets, num_intervals=config.num_intervals, max_value=30.0)
    with strategy.scope():
        keras.utils.set_random_seed(SEED)
        model = TPTModel(config, intervals)
        model.compile(optimizer=optimizer() if optimizer else None)
    return model


def train_tpt(strategy, prefix, epochs=EPOCHS, sgd_without_reg=False):
    """The tiny TPTModel through fit(): weights and logged losses, keyed ``{prefix}_tpt_...``.

    ``sgd_without_reg``: train with SGD and without the per-interval regression loss (whose
    per-replica normalisation differs from one device's), keyed ``{prefix}_tptsgd_...``: every
    remaining term is a batch mean, so this isolates the step's replica loss scaling."""
    config, optimizer = None, None
    if sgd_without_reg:
        config = tiny_tpt_config(reg_weight=0.0)
        optimizer = lambda: keras.optimizers.SGD(0.1)  # noqa: E731
        prefix = prefix + "_tptsgd"
    else:
        prefix = prefix + "_tpt"
    model = build_tpt_model(strategy, config, optimizer)
    record = RecordLogs()
    distribute.fit(model, dataset_fn(pairs=make_tpt_pairs()), epochs=epochs, callbacks=[record],
                   strategy=strategy, verbose=0)
    results = {f"{prefix}_batch_losses": np.array(record.batch_losses)}
    for name in record.batch_logs[0]:
        results[f"{prefix}_log_{name}"] = np.array([logs[name] for logs in record.batch_logs])
    for name, value in weights_of(model).items():
        results[f"{prefix}_{name}"] = value
    return results


def weights_of(model):
    return {f"w{i}": np.asarray(w.numpy()) for i, w in enumerate(model.trainable_weights)}


class RecordLogs(keras.callbacks.Callback):
    """Keeps every log the loop hands to callbacks."""

    def __init__(self):
        super().__init__()
        self.batch_losses, self.epoch_losses, self.epochs_begun = [], [], []
        self.batch_logs, self.val_losses = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_begun.append(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self.batch_losses.append(float(logs["loss"]))
        self.batch_logs.append({name: float(value) for name, value in logs.items()})

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_losses.append(float(logs["loss"]))
        if "val_loss" in logs:
            self.val_losses.append(float(logs["val_loss"]))


class Interrupt(keras.callbacks.Callback):
    """Raises at the start of epoch ``at`` (simulates a job killed there)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


def train(strategy, workdir, prefix, epochs=EPOCHS):
    """fit() with recorded logs, a ModelCheckpoint, and an interrupted + resumed backup run.

    Files go to ``workdir`` under names starting with ``prefix`` (workers of one cluster share
    them: the chief writes, the others read the backup). Returns arrays keyed ``{prefix}_...``."""
    results = {}
    record = RecordLogs()
    checkpoint_path = os.path.join(workdir, f"{prefix}_checkpoint.weights.h5")
    model = build_model(strategy)
    distribute.fit(
        model,
        dataset_fn(),
        epochs=epochs,
        callbacks=[record, keras.callbacks.ModelCheckpoint(checkpoint_path, save_weights_only=True)],
        strategy=strategy,
        validation_ds_fn=dataset_fn(),
        verbose=0,
    )
    for name, value in weights_of(model).items():
        results[f"{prefix}_{name}"] = value
    results[f"{prefix}_batch_losses"] = np.array(record.batch_losses)
    results[f"{prefix}_epoch_losses"] = np.array(record.epoch_losses)
    results[f"{prefix}_val_losses"] = np.array(record.val_losses)
    if strategies.is_chief(strategy):
        reloaded = TinyPairModel()
        reloaded(make_pairs(2))
        reloaded.load_weights(checkpoint_path)
        for name, value in weights_of(reloaded).items():
            results[f"{prefix}_checkpoint_{name}"] = value

    # Interrupted at the start of the last epoch, then resumed by a fresh model.
    backup_dir = os.path.join(workdir, f"{prefix}_backup")
    interrupted = build_model(strategy)
    try:
        distribute.fit(
            interrupted,
            dataset_fn(),
            epochs=epochs,
            callbacks=[Interrupt(epochs - 1)],
            strategy=strategy,
            backup_dir=backup_dir,
            verbose=0,
        )
    except KeyboardInterrupt:
        pass
    results[f"{prefix}_backup_epoch"] = np.array(backup.backup_epoch(backup_dir))
    resumed = build_model(strategy)
    resumed_record = RecordLogs()
    distribute.fit(
        resumed,
        dataset_fn(),
        epochs=epochs,
        callbacks=[resumed_record],
        strategy=strategy,
        backup_dir=backup_dir,
        verbose=0,
    )
    results[f"{prefix}_resumed_epochs"] = np.array(resumed_record.epochs_begun)
    for name, value in weights_of(resumed).items():
        results[f"{prefix}_resumed_{name}"] = value

    # Predictions of every pair, gathered across replicas (and workers).
    results[f"{prefix}_predictions"] = distribute.predict_all(
        model, dataset_fn(global_batch=4), strategy
    )
    return results


def mirrored_scenario(strategy, workdir):
    """The tiny model on ``strategy`` (2 logical CPUs) and on one device, and the refused re-split
    of the CPU; arrays keyed ``mirrored_...``, ``one_...``, ``resplit_error``."""
    results = {"replicas": np.array(strategy.num_replicas_in_sync)}
    results.update(train(strategy, workdir, "mirrored"))
    results.update(train(strategies.make_strategy("one-device"), workdir, "one"))
    strategies.configure_logical_cpus(2)  # the split in place: a no-op
    try:
        strategies.configure_logical_cpus(3)
        results["resplit_error"] = np.array("")
    except RuntimeError as error:
        results["resplit_error"] = np.array(str(error))
    return results


def main(argv):
    mode, out = argv[1], argv[2]
    workdir = os.path.dirname(os.path.abspath(out))
    if mode == "multi-worker":
        strategy = strategies.make_strategy("auto")
        assert strategies.is_multi_worker(strategy), type(strategy)
        results = {"replicas": np.array(strategy.num_replicas_in_sync)}
        results.update(train(strategy, workdir, "multi"))
        try:
            distribute.fit(build_model(strategy), dataset_fn(), epochs=1, strategy=strategy,
                           callbacks=[keras.callbacks.BackupAndRestore(workdir)], verbose=0)
            results["backup_callback_error"] = np.array("")
        except ValueError as error:
            results["backup_callback_error"] = np.array(str(error))
        results.update(train_tpt(strategy, "multi"))
        results.update(train_tpt(strategy, "multi", sgd_without_reg=True))
        # After all collective work, so that the other worker does not wait.
        if strategy.cluster_resolver.task_id == 0:  # the one-device reference, once
            results.update(train(strategies.make_strategy("one-device"), workdir, "one"))

    else:
        raise SystemExit(f"unknown mode {mode!r}")
    np.savez(out, **results)
    print("done", out, flush=True)


if __name__ == "__main__":
    main(sys.argv)
