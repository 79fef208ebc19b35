"""Devices and distribution strategies, determinism, and the learning-rate rule.

The paper trained with 8 GPUs x 3 pairs = a global batch of 24 pairs. Here one machine uses
`tf.distribute.MirroredStrategy` (several GPUs, or the CPU split into logical devices for tests) and
several machines use `tf.distribute.MultiWorkerMirroredStrategy`, configured by ``TF_CONFIG``.
Learning rates given in a config are the paper's, for its global batch; :func:`scale_learning_rate`
moves them to another global batch.
"""

from __future__ import annotations

import json
import math
import os

import tensorflow as tf

STRATEGY_NAMES = ("auto", "one-device", "mirrored", "multi-worker")
LR_RULES = ("sqrt", "linear", "constant")

# The paper's setting: 8 GPUs x 3 pairs, Adam with lr 1e-4 (backbone, decoder, pair encoder) and
# 1e-3 (heads). Learning rates given in a config are the ones for this global batch.
PAPER_GLOBAL_BATCH = 24
DEFAULT_LR_RULE = "sqrt"


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
    # CommunicationOptions / CommunicationImplementation exist only under
    # tf.distribute.experimental (TensorFlow 2.21 has no stable name for them).
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


def local_input_context(strategy: tf.distribute.Strategy) -> tf.distribute.InputContext:
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


def local_replicas(strategy: tf.distribute.Strategy) -> int:
    """Replicas on this worker (equal on every worker for the mirrored strategies)."""
    context = local_input_context(strategy)
    return max(context.num_replicas_in_sync // context.num_input_pipelines, 1)


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
