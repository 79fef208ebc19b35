"""tpt_keras.experiment.{strategies,distribute,backup,multi_worker}: strategies, the learning-rate rule, fit() under every strategy.

Logical CPU devices and TF_CONFIG must be set before TensorFlow starts, so the scenarios run in
subprocesses and the tests compare the arrays they save. Every comparison is against one device
with the same global batch. Every scenario on 2 logical CPUs (the tiny model of
``tests/_multiworker_worker.py``, TPTModel's losses, ``evaluation.predict_scores`` and ``fit``
steps) runs in one process: ``python tests/test_distribute.py two-replicas FOLDER``; the
accumulation scenario on 4 logical CPUs in another (``accumulate OUT.npz``); each multi-worker
worker in its own (see ``_tpt_script_main`` at the end).
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import _multiworker_worker as worker
from tpt_keras.runtime import backup, distribute, strategies
from tpt_keras.models.tpt_model import scale_loss_for_replicas, sum_over_replicas

WORKER = os.path.abspath(worker.__file__)
REPO = os.path.dirname(os.path.dirname(WORKER))
TIMEOUT_S = 540  # under pytest-timeout's 600 s: a loaded machine is slow, not broken
# float32 sums in a different order (two replicas, then the all-reduce): a few ulps per step.
ATOL = 1e-6


# ------------------------------------------------------------------ helpers


def _env(**extra):
    # One thread inside each op: the replicas (2 or 4 logical CPUs, or 2 worker processes)
    # already run side by side on the machine's cores; what the scenarios compare does not
    # depend on how an op is split.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               TF_NUM_INTRAOP_THREADS="1",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _weights(results, prefix):
    keys = sorted(k for k in results if k.startswith(prefix + "_w"))
    assert keys, f"no weights under {prefix!r}"
    return [results[k] for k in keys]


def _assert_same_weights(actual, expected, atol=ATOL, rtol=0.0):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, atol=atol, rtol=rtol)


# ------------------------------------------------------------------ in-process unit tests


def test_learning_rate_rules_keep_the_papers_rate_at_batch_24():
    for rule in strategies.LR_RULES:
        assert strategies.scale_learning_rate(1e-4, 24, rule=rule) == pytest.approx(1e-4)
    assert strategies.scale_learning_rate(1e-4, 6, rule="sqrt") == pytest.approx(0.5e-4)
    assert strategies.scale_learning_rate(1e-4, 6, rule="linear") == pytest.approx(0.25e-4)
    assert strategies.scale_learning_rate(1e-3, 96, rule="constant") == pytest.approx(1e-3)
    assert strategies.DEFAULT_LR_RULE == "sqrt"
    with pytest.raises(ValueError, match="'cubic'"):
        strategies.lr_multiplier(8, rule="cubic")


def test_global_batch_and_default_strategy():
    strategy = strategies.make_strategy("auto")  # no TF_CONFIG, no GPU, no logical CPUs
    assert strategy is tf.distribute.get_strategy()
    assert strategies.global_batch_size(3, strategy) == 3
    assert not strategies.is_multi_worker(strategy)
    assert strategies.is_chief(strategy)
    with pytest.raises(ValueError, match="'ring'"):
        strategies.make_strategy("ring")


def test_tf_config_parsing_and_chief(monkeypatch):
    def set_tf_config(cluster, index):
        task = {"type": "worker", "index": index}
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))

    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    set_tf_config(cluster, 1)
    assert strategies.num_tf_config_workers() == 3
    assert not strategies.is_chief()
    set_tf_config(cluster, 0)
    assert strategies.is_chief()
    set_tf_config({"chief": ["z:0"], **cluster}, 0)
    assert strategies.num_tf_config_workers() == 4
    assert not strategies.is_chief()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        strategies.tf_config()
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategies.make_strategy("multi-worker")


def test_fit_on_the_default_strategy_equals_model_fit():
    strategy = tf.distribute.get_strategy()
    ours = worker.build_model(strategy)
    record = worker.RecordLogs()
    distribute.fit(ours, worker.dataset_fn(), epochs=2, callbacks=[record], strategy=strategy,
                   validation_ds_fn=worker.dataset_fn(), verbose=0)

    plain = worker.build_model(strategy)
    pairs = worker.make_pairs()
    dataset = tf.data.Dataset.from_tensor_slices(pairs).batch(worker.GLOBAL_BATCH)
    history = plain.fit(dataset, epochs=2, validation_data=dataset, verbose=0)

    np.testing.assert_allclose(record.epoch_losses, history.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(record.val_losses, history.history["val_loss"], rtol=1e-6)
    assert len(record.batch_losses) == 2 * worker.NUM_PAIRS // worker.GLOBAL_BATCH
    _assert_same_weights([w.numpy() for w in ours.trainable_weights],
                         [w.numpy() for w in plain.trainable_weights], atol=0)


def test_fit_refuses_a_model_built_outside_the_strategy():
    model = worker.build_model(tf.distribute.get_strategy())
    other = tf.distribute.OneDeviceStrategy("/cpu:0")
    with pytest.raises(ValueError, match="strategy.scope"):
        distribute.fit(model, worker.dataset_fn(), epochs=1, strategy=other)


def test_steps_per_epoch_needs_a_finite_dataset():
    strategy = tf.distribute.get_strategy()
    assert distribute.steps_per_epoch_of(worker.dataset_fn(), strategy) == 2
    with pytest.raises(ValueError, match="steps_per_epoch"):
        distribute.steps_per_epoch_of(lambda ctx: worker.dataset_fn()(ctx).repeat(), strategy)


def test_backup_epoch_without_a_backup_is_zero(tmp_path):
    assert backup.backup_epoch(str(tmp_path / "missing")) == 0
    assert backup.backup_epoch(str(tmp_path)) == 0


def test_gather_predictions_on_one_replica_is_the_identity():
    strategy = tf.distribute.get_strategy()
    values = {"score": tf.constant([1.0, 2.0, 3.0])}
    gathered = distribute.gather_predictions(strategy, values)
    np.testing.assert_array_equal(gathered["score"].numpy(), [1.0, 2.0, 3.0])


# ------------------------------------------------------------------ MirroredStrategy, 2 logical CPUs


def _run_tpt_script(mode, out, timeout=TIMEOUT_S):
    done = subprocess.run([sys.executable, os.path.abspath(__file__), mode, str(out)], env=_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"{mode} script failed:\n{done.stdout[-3000:]}\n"
                                  f"{done.stderr[-6000:]}")
    return out


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves files
def two_replicas(tmp_path_factory):
    """One subprocess on 2 logical CPUs for every two-replica scenario of this file (one
    TensorFlow start): a folder of ``NAME.npz``, one per scenario."""
    return _run_tpt_script("two-replicas", tmp_path_factory.mktemp("two_replicas"))


@pytest.fixture(scope="session")
def mirrored(two_replicas):
    """The tiny model trained on 1 device and on 2 logical CPU replicas."""
    return dict(np.load(two_replicas / "mirrored.npz"))


def test_mirrored_matches_one_device(mirrored):
    assert int(mirrored["replicas"]) == 2
    np.testing.assert_allclose(mirrored["mirrored_batch_losses"], mirrored["one_batch_losses"],
                               rtol=1e-6)
    _assert_same_weights(_weights(mirrored, "mirrored"), _weights(mirrored, "one"))
    # The weights moved (so equality is not trivial): 4 SGD steps from the same start.
    assert mirrored["one_batch_losses"][-1] < mirrored["one_batch_losses"][0]


def test_mirrored_callbacks_see_the_global_logs(mirrored):
    """Batch logs are the running mean over the epoch; the epoch log is the last batch's."""
    batch = mirrored["mirrored_batch_losses"].reshape(worker.EPOCHS, -1)
    np.testing.assert_allclose(mirrored["mirrored_epoch_losses"], batch[:, -1], rtol=1e-6)
    for name in ("epoch_losses", "val_losses"):
        assert len(mirrored[f"one_{name}"]) == worker.EPOCHS
        np.testing.assert_allclose(mirrored[f"mirrored_{name}"], mirrored[f"one_{name}"], rtol=1e-6)


def test_mirrored_model_checkpoint_and_backup_resume(mirrored):
    final = _weights(mirrored, "mirrored")
    _assert_same_weights(_weights(mirrored, "mirrored_checkpoint"), final, atol=0)
    # Interrupted at the start of the last epoch; the resumed run starts there ...
    assert int(mirrored["mirrored_backup_epoch"]) == worker.EPOCHS - 1
    np.testing.assert_array_equal(mirrored["mirrored_resumed_epochs"], [worker.EPOCHS - 1])
    # ... and ends where the uninterrupted run ended.
    _assert_same_weights(_weights(mirrored, "mirrored_resumed"), final)


def test_mirrored_gathers_every_prediction_in_order(mirrored):
    predictions = mirrored["mirrored_predictions"]
    assert predictions.shape == (worker.NUM_PAIRS,)
    np.testing.assert_allclose(predictions, mirrored["one_predictions"], atol=1e-5)


def test_logical_cpus_cannot_be_resplit_after_start(mirrored):
    message = str(mirrored["resplit_error"])
    assert "already initialised 2 CPU device(s)" in message
    assert "before any TensorFlow op" in message


# ------------------------------------------------------------------ TPTModel's own mirrored checks


@pytest.fixture(scope="session")
def tpt_units(two_replicas):
    """interval_regression_loss and predict_scores on 2 logical CPUs."""
    return dict(np.load(two_replicas / "tpt_units.npz"))


@pytest.fixture(scope="session")
def tpt_train(two_replicas):
    """The tiny TPTModel, 3 fit steps with SGD and with Adam, on 2 replicas and on one device."""
    return dict(np.load(two_replicas / "tpt_train.npz"))


def test_regression_loss_counts_each_interval_over_the_global_batch(tpt_units):
    """"global" normalisation as the train step composes it (the interval counts summed over the
    replicas, the value times the replicas): replicas 0 / 1 hold intervals {0: 3, 1: 0} /
    {1: 2, 2: 1, 3: 1} samples (and one row outside every interval); their values average to one
    device's, and the gradients of value / replicas concatenate to one device's."""
    assert int(tpt_units["replicas"]) == 2
    values = tpt_units["reg_mirrored_values"]
    assert abs(values[0] - values[1]) > 0.1  # the two shares differ: the check is not trivial
    np.testing.assert_allclose(values.mean(), tpt_units["reg_one_value"], rtol=1e-6)
    np.testing.assert_allclose(tpt_units["reg_mirrored_gradients"], tpt_units["reg_one_gradient"],
                               rtol=1e-6, atol=1e-8)


def test_predict_scores_returns_each_row_once_under_mirrored(tpt_units):
    """predict_on_batch repeats rows per replica under MirroredStrategy; predict_scores does not,
    in and out of the strategy's scope (batches of 4, 4 and 2 queries)."""
    expected = tpt_units["predict_one"]
    assert expected.shape == (10,) and tpt_units["predict_true"].shape == (10,)
    for key in ("predict_mirrored", "predict_mirrored_in_scope"):
        assert tpt_units[key].shape == (10,)
        np.testing.assert_allclose(tpt_units[key], expected, rtol=1e-6)


@pytest.mark.slow
def test_tpt_fit_three_steps_mirrored_equals_one_device(tpt_train):
    """get_preset("synthetic") at width 16, no dropout, global batch 8 (4 per replica): every
    logged term of every step and the weights after 3 steps equal one device's. With SGD (an
    update proportional to the gradient) this holds only if the train step divides the loss by
    the replicas and the regression loss counts each interval over the global batch."""
    paths = [str(p) for p in tpt_train["weight_paths"]]
    # key . query + bias . query is constant over time (and over keys in the part self-attention):
    # the softmax ignores the key biases, whose gradient is round-off that Adam normalises.
    key_bias = [p.endswith("key/bias") for p in paths]
    assert sum(key_bias) == 3  # two cross-attention layers and the first layer's self-attention
    for name, atol in (("sgd", 1e-6), ("adam", 1e-5)):  # measured: 2.4e-7, 7.5e-8
        for term in ("loss", "cls_loss", "reg_loss", "rank_loss", "sparsity_loss"):
            one = tpt_train[f"one_{name}_log_{term}"]
            assert one.shape == (3,)
            np.testing.assert_allclose(tpt_train[f"mirrored_{name}_log_{term}"], one, rtol=1e-5,
                                       err_msg=f"{name} {term}")
        moved = 0.0
        for i, (path, is_key_bias) in enumerate(zip(paths, key_bias)):
            one = tpt_train[f"one_{name}_w{i:03d}"]
            mirrored = tpt_train[f"mirrored_{name}_w{i:03d}"]
            moved = max(moved, float(np.abs(one - tpt_train[f"start_{name}_w{i:03d}"]).max()))
            if name == "adam" and is_key_bias:
                continue
            np.testing.assert_allclose(mirrored, one, atol=atol, rtol=0, err_msg=f"{name} {path}")
        assert moved > 1e-3  # the weights moved, so equality is not trivial
        # ValidationSpearman ran during the mirrored fit and agrees with one device and evaluate().
        np.testing.assert_allclose(tpt_train[f"mirrored_{name}_val_spearman"],
                                   tpt_train[f"one_{name}_val_spearman"], atol=1e-6)
        np.testing.assert_allclose(tpt_train[f"mirrored_{name}_val_spearman"],
                                   tpt_train[f"mirrored_{name}_evaluate_spearman"], atol=1e-6)


# ------------------------------------------------------------------ accumulation = replicas


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves files
def accumulation(tmp_path_factory):
    """One subprocess on 4 logical CPUs: the tiny TPTModel with 4 accumulated micro-batches on one
    device and with 4 replicas under MirroredStrategy; and one epoch on synthetic features."""
    # ~1.5 minutes of CPU (six fits, three of them on 4 replicas): more on a busy machine.
    out = tmp_path_factory.mktemp("accumulate") / "out.npz"
    return dict(np.load(_run_tpt_script("accumulate", out, timeout=2 * TIMEOUT_S)))


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the accumulation fixture may take 2 × TIMEOUT_S
@pytest.mark.parametrize("normalization", ["per_replica", "global"])
def test_accumulated_update_equals_mirrored_replicas(accumulation, normalization):
    """Two updates of 8 pairs: 4 micro-batches of 2 on one device equal 4 replicas of 2 pairs
    (MultiRateAdam, both learning-rate groups, attention losses on) to 1e-6: every logged term
    and every weight."""
    results = accumulation
    assert int(results["replicas"]) == 4
    paths = [str(p) for p in results["weight_paths"]]
    key = f"{normalization}_"
    for term in ("loss", "cls_loss", "reg_loss", "rank_loss", "sparsity_loss"):
        np.testing.assert_allclose(results[f"{key}accumulated_log_{term}"],
                                   results[f"{key}mirrored_log_{term}"], rtol=1e-6, err_msg=term)
    moved = {"head": 0.0, "rest": 0.0}
    for i, path in enumerate(paths):
        accumulated = results[f"{key}accumulated_w{i:03d}"]
        np.testing.assert_allclose(accumulated, results[f"{key}mirrored_w{i:03d}"], atol=1e-6,
                                   rtol=0, err_msg=path)
        group = "head" if "_head_" in path else "rest"
        moved[group] = max(moved[group], float(np.abs(accumulated - results[f"start_w{i:03d}"]).max()))
    # Both learning-rate groups moved (at most 2 x lr each: 2e-2 for the heads, 2e-3 elsewhere).
    assert 2e-3 < moved["head"] <= 2e-2 * 1.001 and 2e-4 < moved["rest"] <= 2e-3 * 1.001


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the accumulation fixture may take 2 × TIMEOUT_S
def test_per_replica_and_global_normalisation_differ_here(accumulation):
    """The scenario above is not blind to the normalisation: its two runs log different
    regression losses."""
    assert not np.allclose(accumulation["per_replica_accumulated_log_reg_loss"],
                           accumulation["global_accumulated_log_reg_loss"], rtol=1e-3)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the accumulation fixture may take 2 × TIMEOUT_S
def test_accumulated_epoch_equals_mirrored_epoch_on_synthetic_features(accumulation):
    """One epoch of 48 synthetic training videos, 24 pairs a step: 4 micro-batches of 6 on one
    device and 4 replicas of 6 end with the same weights (1e-5)."""
    assert int(accumulation["epoch_steps"]) == 2
    paths = [str(p) for p in accumulation["weight_paths"]]
    for i, path in enumerate(paths):
        np.testing.assert_allclose(accumulation[f"epoch_accumulated_w{i:03d}"],
                                   accumulation[f"epoch_mirrored_w{i:03d}"], atol=1e-5, rtol=0,
                                   err_msg=path)
    assert max(float(np.abs(accumulation[f"epoch_accumulated_w{i:03d}"]
                            - accumulation[f"epoch_start_w{i:03d}"]).max())
               for i in range(len(paths))) > 1e-4


# ------------------------------------------------------------------ MultiWorkerMirroredStrategy


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves files
def multi_worker(tmp_path_factory):
    """Two worker processes on 127.0.0.1, one CPU replica each; returns both workers' arrays."""
    workdir = tmp_path_factory.mktemp("multi_worker")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes, logs = [], []
    try:
        for index in range(2):
            tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            log = open(workdir / f"worker{index}.log", "w")
            logs.append(log)
            processes.append(subprocess.Popen(
                [sys.executable, WORKER, "multi-worker", str(workdir / f"worker{index}.npz")],
                env=_env(TF_CONFIG=json.dumps(tf_config)), stdout=log, stderr=subprocess.STDOUT))
        codes = [process.wait(timeout=TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    for index, code in enumerate(codes):
        text = (workdir / f"worker{index}.log").read_text()
        assert code == 0, f"worker {index} exited with {code}:\n{text[-6000:]}"
    return [dict(np.load(workdir / f"worker{index}.npz")) for index in range(2)]


@pytest.mark.slow
def test_multi_worker_workers_end_identical_and_equal_one_device(multi_worker):
    first, second = multi_worker
    assert int(first["replicas"]) == 2
    for prefix in ("multi", "multi_resumed"):
        _assert_same_weights(_weights(first, prefix), _weights(second, prefix), atol=0)
    np.testing.assert_array_equal(first["multi_batch_losses"], second["multi_batch_losses"])
    # The same training as one device with the same global batch.
    _assert_same_weights(_weights(first, "multi"), _weights(first, "one"))
    np.testing.assert_allclose(first["multi_batch_losses"], first["one_batch_losses"], rtol=1e-6)
    np.testing.assert_allclose(first["multi_epoch_losses"], first["one_epoch_losses"], rtol=1e-6)
    assert len(first["one_val_losses"]) == worker.EPOCHS
    np.testing.assert_allclose(first["multi_val_losses"], first["one_val_losses"], rtol=1e-6)


@pytest.mark.slow
def test_multi_worker_checkpoint_backup_and_predictions(multi_worker):
    first, second = multi_worker
    final = _weights(first, "multi")
    # ModelCheckpoint ran on the chief only.
    _assert_same_weights(_weights(first, "multi_checkpoint"), final, atol=0)
    assert not any(k.startswith("multi_checkpoint") for k in second)
    # Keras' BackupAndRestore would restore on the chief only: refused, on every worker.
    for results in multi_worker:
        assert "backup_dir" in str(results["backup_callback_error"])
    # Interrupted at the last epoch, resumed from the chief's checkpoint on both workers.
    for results in multi_worker:
        assert int(results["multi_backup_epoch"]) == worker.EPOCHS - 1
        np.testing.assert_array_equal(results["multi_resumed_epochs"], [worker.EPOCHS - 1])
        _assert_same_weights(_weights(results, "multi_resumed"), final)
    # Every worker gets every prediction: worker 0 reads pairs 0, 2, ..., worker 1 pairs 1, 3, ...;
    # each global batch of 4 is [w0: 2 pairs, w1: 2 pairs].
    order = np.arange(worker.NUM_PAIRS).reshape(-1, 2, 2).transpose(0, 2, 1).reshape(-1)
    np.testing.assert_array_equal(first["multi_predictions"], second["multi_predictions"])
    np.testing.assert_allclose(first["multi_predictions"], first["one_predictions"][order], atol=1e-5)


@pytest.mark.slow
def test_multi_worker_trains_the_tpt_model_identically_on_both_workers(multi_worker):
    first, second = multi_worker
    for prefix in ("multi_tpt", "multi_tptsgd"):
        _assert_same_weights(_weights(first, prefix), _weights(second, prefix), atol=0)
        assert np.all(np.isfinite(first[f"{prefix}_batch_losses"]))


# ------------------------------------------------------------------ the script (subprocess side)
# ``python tests/test_distribute.py two-replicas FOLDER`` (2 logical CPUs) and
# ``python tests/test_distribute.py accumulate OUT.npz`` (4): the real TPTModel on the replicas
# and on one device. Everything TensorFlow happens inside these functions, after
# ``_tpt_script_main`` has split the CPU (importing this module runs no TensorFlow op).

_TPT_SEED, _TPT_BATCH, _TPT_STEPS = 5, 8, 3


def _tpt_config():
    from tpt_keras.config import get_preset

    return get_preset("synthetic", feature_dim=16, hidden_dim=16, ffn_dim=16, head_hidden_dim=16,
                      dropout=0.0)


def _tpt_pairs(config, num_pairs=_TPT_BATCH * _TPT_STEPS):
    rng = np.random.default_rng(_TPT_SEED)
    shape = (num_pairs, config.num_clips, config.feature_dim)
    return {"query": rng.normal(size=shape).astype("float32"),
            "exemplar": rng.normal(size=shape).astype("float32"),
            "query_score": rng.uniform(0, 30, num_pairs).astype("float32"),
            "exemplar_score": rng.uniform(0, 30, num_pairs).astype("float32"),
            "query_difficulty": np.ones(num_pairs, "float32")}


def _tpt_eval_batches(config, num_queries=10, num_exemplars=3, batch=4):
    """Evaluation batches of 4, 4 and 2 queries; some exemplars masked out."""
    rng = np.random.default_rng(_TPT_SEED + 1)
    clip = (config.num_clips, config.feature_dim)
    mask = np.ones((num_queries, num_exemplars), "float32")
    mask[::3, -1] = 0.0
    data = {"query": rng.normal(size=(num_queries,) + clip).astype("float32"),
            "exemplars": rng.normal(size=(num_queries, num_exemplars) + clip).astype("float32"),
            "exemplar_scores": rng.uniform(0, 30, (num_queries, num_exemplars)).astype("float32"),
            "exemplar_mask": mask,
            "query_difficulty": np.ones(num_queries, "float32"),
            "score": rng.uniform(0, 30, num_queries).astype("float32")}
    return tf.data.Dataset.from_tensor_slices(data).batch(batch)


def _tpt_build(strategy, optimizer=None, weights=None, config=None):
    """The tiny TPTModel created and compiled in ``strategy.scope()`` (optionally given weights
    and a config other than ``_tpt_config()``)."""
    from tpt_keras.ops.groups import compute_intervals
    from tpt_keras.models.tpt_model import TPTModel

    config = config or _tpt_config()
    pairs = _tpt_pairs(config)
    intervals = compute_intervals(np.concatenate([pairs["query_score"], pairs["exemplar_score"]]),
                                  num_intervals=config.num_intervals, max_value=config.score_max)
    with strategy.scope():
        keras.utils.set_random_seed(_TPT_SEED)
        model = TPTModel(config, intervals)
        if weights is not None:
            model.set_weights(weights)
        model.compile(optimizer=optimizer)
    return model


def _tpt_dataset_fn(context):
    """Per-replica batches of consecutive pairs: one global step sees _TPT_BATCH pairs, as one
    device does."""
    dataset = tf.data.Dataset.from_tensor_slices(_tpt_pairs(_tpt_config()))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).batch(context.get_per_replica_batch_size(_TPT_BATCH))


class _TptRecord(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append({name: float(value) for name, value in logs.items()})


def _tpt_units(strategy, results):
    from tpt_keras.experiment import callbacks as evaluation
    from tpt_keras.ops import losses

    # interval_regression_loss with uneven per-interval counts on the two replicas (rows 0-3, 4-7).
    rng = np.random.default_rng(_TPT_SEED)
    regression = rng.uniform(size=(8, 4)).astype("float32")
    membership = np.eye(4, dtype="float32")[[0, 0, 0, 1, 1, 2, 2, 3]]
    membership[3] = 0.0  # a row outside every interval
    target = rng.uniform(size=(8, 4)).astype("float32")

    @tf.function
    def value_and_gradient(regression, membership, target):
        with tf.GradientTape() as tape:
            tape.watch(regression)
            counts = sum_over_replicas(tf.reduce_sum(membership, axis=0))
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            value = replicas * losses.interval_regression_loss(regression, membership, target,
                                                               counts)
            scaled = scale_loss_for_replicas(value)
        return value, tape.gradient(scaled, regression)

    value, gradient = value_and_gradient(tf.constant(regression), membership, target)
    results["reg_one_value"], results["reg_one_gradient"] = value.numpy(), gradient.numpy()
    data = tf.data.Dataset.from_tensor_slices((regression, membership, target)).batch(8)
    batch = next(iter(strategy.experimental_distribute_dataset(data)))  # 4 rows per replica
    values, gradients = strategy.run(value_and_gradient, args=batch)
    results["reg_mirrored_values"] = np.stack(
        [v.numpy() for v in strategy.experimental_local_results(values)])
    results["reg_mirrored_gradients"] = np.concatenate(
        [g.numpy() for g in strategy.experimental_local_results(gradients)])

    # predict_scores: the mirrored model and a one-device model with the same weights.
    mirrored = _tpt_build(strategy)
    one_device = _tpt_build(tf.distribute.get_strategy(), weights=mirrored.get_weights())
    dataset = _tpt_eval_batches(_tpt_config())
    results["predict_one"], results["predict_true"] = evaluation.predict_scores(one_device, dataset)
    results["predict_mirrored"] = evaluation.predict_scores(mirrored, dataset)[0]
    with strategy.scope():  # as from a callback during fit
        results["predict_mirrored_in_scope"] = evaluation.predict_scores(mirrored, dataset)[0]


def _tpt_train(strategy, results):
    from tpt_keras.experiment import callbacks as evaluation

    config = _tpt_config()
    one_device = tf.distribute.get_strategy()
    for name, optimizer in (("sgd", lambda: keras.optimizers.SGD(0.01)), ("adam", lambda: None)):
        start = _tpt_build(one_device).get_weights()  # the config's two-rate Adam for "adam"
        for prefix, run_strategy in (("one", one_device), ("mirrored", strategy)):
            model = _tpt_build(run_strategy, optimizer(), weights=start)
            if prefix == "one":
                for i, weight in enumerate(model.trainable_weights):
                    results[f"start_{name}_w{i:03d}"] = np.asarray(weight.numpy())
            record = _TptRecord()
            validation = evaluation.ValidationSpearman(_tpt_eval_batches(config))
            distribute.fit(model, _tpt_dataset_fn, epochs=1, callbacks=[record, validation],
                           strategy=run_strategy, verbose=0)
            key = f"{prefix}_{name}"
            for term in record.logs[0]:
                results[f"{key}_log_{term}"] = np.array([logs[term] for logs in record.logs])
            results[f"{key}_val_spearman"] = np.array(validation.history[-1][1]["spearman"])
            results[f"{key}_evaluate_spearman"] = np.array(
                evaluation.evaluate(model, _tpt_eval_batches(config))["spearman"])
            for i, weight in enumerate(model.trainable_weights):
                results[f"{key}_w{i:03d}"] = np.asarray(weight.numpy())
    results["weight_paths"] = np.array([weight.path for weight in model.trainable_weights])


def _accumulate(strategy, results):
    """The tiny TPTModel: 4 micro-batches of 2 on one device vs 4 replicas of 2 (two updates per
    normalisation); then one epoch of synthetic features, 4 x 6 pairs each way."""
    import tempfile

    from tpt_keras import experiment

    one_device = tf.distribute.get_strategy()
    # Adam's epsilon 1e-3: the attention key biases get round-off gradients (key . query + bias .
    # query is constant over time), which a tiny epsilon would blow up to a full step.
    base = _tpt_config().replace(learning_rate=1e-3, head_learning_rate=1e-2, adam_epsilon=1e-3,
                                 batch_size=_TPT_BATCH)
    start = None
    for normalization in ("per_replica", "global"):
        # The same config both ways: 4 micro-batches of 2, on one device or one per replica.
        for prefix, run_strategy in (("accumulated", one_device), ("mirrored", strategy)):
            config = base.replace(accumulate_steps=4, loss_normalization=normalization)
            model = _tpt_build(run_strategy, weights=start, config=config)
            if start is None:
                start = model.get_weights()
                for i, weight in enumerate(model.trainable_weights):
                    results[f"start_w{i:03d}"] = np.asarray(weight.numpy())
            record = _TptRecord()
            distribute.fit(model, _tpt_dataset_fn, epochs=1, steps_per_epoch=2, callbacks=[record],
                           strategy=run_strategy, verbose=0)
            key = f"{normalization}_{prefix}"
            for term in record.logs[0]:
                results[f"{key}_log_{term}"] = np.array([logs[term] for logs in record.logs])
            for i, weight in enumerate(model.trainable_weights):
                results[f"{key}_w{i:03d}"] = np.asarray(weight.numpy())
    results["weight_paths"] = np.array([weight.path for weight in model.trainable_weights])

    # One epoch on synthetic features through the run's own pipeline: 48 videos, 24 pairs a step.
    epoch_config = _tpt_config().replace(batch_size=24, adam_epsilon=1e-4, keep_last_batch=True,
                                         loss_normalization="per_replica")
    cache = tempfile.mkdtemp()
    splits = experiment.synthetic_splits(epoch_config, cache, num_train=48, num_test=4)
    steps = experiment.steps_per_epoch(epoch_config, len(splits["train"]))
    results["epoch_steps"] = np.array(steps)
    start = None
    for prefix, run_strategy, accumulate in (("accumulated", one_device, 4), ("mirrored", strategy, 1)):
        config = epoch_config.replace(accumulate_steps=accumulate)  # 4 x 6 pairs either way
        model = _tpt_build(run_strategy, weights=start, config=config)
        if start is None:
            start = model.get_weights()
            for i, weight in enumerate(model.trainable_weights):
                results[f"epoch_start_w{i:03d}"] = np.asarray(weight.numpy())

        def dataset_fn(context, config=config):
            return experiment.pair_dataset(config, splits["train"], cache, input_context=context)

        distribute.fit(model, dataset_fn, epochs=1, steps_per_epoch=steps, strategy=run_strategy,
                       verbose=0)
        for i, weight in enumerate(model.trainable_weights):
            results[f"epoch_{prefix}_w{i:03d}"] = np.asarray(weight.numpy())


def _two_replicas(folder):
    """Every scenario on 2 logical CPUs, each saved as ``folder/NAME.npz``."""
    strategy = strategies.make_strategy("mirrored", logical_cpus=2)  # before any TF op
    np.savez(os.path.join(folder, "mirrored.npz"), **worker.mirrored_scenario(strategy, folder))
    for name, scenario in (("tpt_units", _tpt_units), ("tpt_train", _tpt_train)):
        results = {"replicas": np.array(strategy.num_replicas_in_sync)}
        scenario(strategy, results)
        np.savez(os.path.join(folder, f"{name}.npz"), **results)


def _tpt_script_main(mode, out):
    if mode == "two-replicas":
        return _two_replicas(out)
    strategy = strategies.make_strategy("mirrored", logical_cpus=4)  # before any TF op
    results = {"replicas": np.array(strategy.num_replicas_in_sync)}
    {"accumulate": _accumulate}[mode](strategy, results)
    np.savez(out, **results)


if __name__ == "__main__":
    _tpt_script_main(sys.argv[1], sys.argv[2])
