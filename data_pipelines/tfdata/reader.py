"""tf.data readers: one fixed order for every pipeline.

    plan (pairs, shuffle, seeds) → shard → decode → parse → pair → batch → prefetch

* **plan**: per epoch, in numpy and deterministic under ``seed``: the training pairs of
  :func:`pairing.training_pairs` in a shuffled order (a full permutation per epoch, not a
  shuffle buffer), with one seed per video for its augmentation. Every epoch draws new
  exemplars; the same (seed, epoch) always gives the same epoch.
* **shard**: with a ``tf.distribute.InputContext`` each input pipeline keeps every
  ``num_input_pipelines``-th element and batches ``input_context.get_per_replica_batch_size``.
  ``batch_size`` is always the **global** batch. Training epochs are trimmed to a multiple of the
  global batch, so every worker sees the same number of batches and batches never straddle epochs;
  with ``keep_last_batch=True`` (one replica) an epoch keeps every pair and ends with its partial
  batch, as PyTorch's ``DataLoader(drop_last=False)``: ceil(N / batch) batches.
* **decode/parse**: feature lookups from a :class:`FeatureCache`, or video decoding
  (:mod:`decode`) + temporal sampling and spatial transform (:mod:`video_ops`), all maps one call per core.

Training datasets repeat forever when ``epochs`` is None: pass ``steps_per_epoch(...)`` to
``model.fit``. (A finite dataset re-iterated by ``fit`` would replay the same first epoch.)

Element structures (B = per-replica batch, T = 20 clips, E = exemplars):

* pair datasets: ``query`` (B, T, 1024) / (B, 20, 8, 224, 224, 3), ``exemplar`` (same),
  ``query_score`` (B,) target (score / difficulty under DD), ``exemplar_score`` (B,),
  ``query_difficulty`` (B,); all float32.
* eval datasets: ``query``, ``exemplars`` (B, E, ...), ``exemplar_scores`` (B, E) targets,
  ``exemplar_mask`` (B, E) 1/0 (see :mod:`pairing` for the fill rule), ``query_difficulty`` (B,),
  ``score`` (B,) the true final score. With ``with_keys=True`` also ``key`` (B,) string.

Decode errors inside tf.data surface as TensorFlow errors whose message contains the
:class:`decode.VideoDecodeError` text and file name. With ``skip_bad=True`` a bad video is logged,
counted in ``skip_log`` (a :class:`decode.SkipLog`) and its element dropped (an eval exemplar is
masked out instead).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from data_pipelines.io import decode
from data_pipelines.io import tf_python
from data_pipelines.tfdata import pairing
from data_pipelines.video import video_ops
from data_pipelines.video import protocol as protocol_lib
from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.video.protocol import VideoProtocol
from data_pipelines.samples import Sample, target

# Fixed parallelism instead of tf.data's autotuner. Its model thread wakes at doubling intervals
# (10 ms, 20 ms, ... up to a minute), and deleting an iterator waits for that thread's next
# wake-up: every model.fit, evaluate or predict call on an autotuned pipeline ended with an idle
# wait of up to a minute (seen as model.fit taking 1.9x the train steps it ran; measured by
# benchmarks/train_step.py --fit). A map runs one call per core, as the autotuner settles on here.
PARALLEL_CALLS = max(2, os.cpu_count() or 2)
PREFETCH_BATCHES = 2
_PLAN_COLUMNS = 6  # query, exemplar, query seed (2), exemplar seed (2)


# ---------------------------------------------------------------------------------------------
# Planning and sharding
# ---------------------------------------------------------------------------------------------
def steps_per_epoch(num_samples: int, batch_size: int, keep_last_batch: bool = False) -> int:
    """Training steps per epoch for ``num_samples`` training samples and a global ``batch_size``:
    floor(N / batch), or ceil(N / batch) when the last, partial batch is kept."""
    if keep_last_batch:
        return -(-int(num_samples) // int(batch_size))
    return int(num_samples) // int(batch_size)


def _sharding(batch_size: int, input_context) -> tuple[int, int, int]:
    """(per-replica batch, number of input pipelines, this pipeline's id)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if input_context is None:
        return int(batch_size), 1, 0
    return (int(input_context.get_per_replica_batch_size(batch_size)), int(input_context.num_input_pipelines),
            int(input_context.input_pipeline_id))


def epoch_plan(train_samples: Sequence[Sample], seed: int, epoch: int, global_batch: int = 1) -> np.ndarray:
    """The shuffled training pairs of one epoch and a seed per video.

    Returns:
        int64 (M, 6): ``[query, exemplar, query_seed(2), exemplar_seed(2)]`` rows, M the largest
        multiple of ``global_batch`` ≤ N. Depends only on (seed, epoch).
    """
    pairs = np.asarray(pairing.training_pairs(train_samples, int(seed), int(epoch)), dtype=np.int64)  # (N, 2)
    rng = np.random.default_rng([int(seed), int(epoch), 2])
    order = rng.permutation(len(pairs))
    keep = (len(pairs) // global_batch) * global_batch
    seeds = rng.integers(0, 2**31 - 1, size=(len(pairs), 4), dtype=np.int64)
    return np.concatenate([pairs[order], seeds], axis=1)[:keep]


def _plan_dataset(train_samples, seed, epochs, global_batch, num_pipelines, pipeline_id,
                  first_epoch: int = 0, per_epoch=None) -> tf.data.Dataset:
    """The plan rows of every epoch, one after the other; ``per_epoch(rows)``, when given, maps
    each epoch's rows dataset (e.g. to that epoch's batches, so that none straddles epochs)."""
    rows_per_epoch = (len(train_samples) // global_batch) * global_batch
    if rows_per_epoch == 0:
        raise ValueError(f"{len(train_samples)} training samples cannot fill one global batch of {global_batch}")

    def plan(epoch):
        return epoch_plan(train_samples, seed, int(epoch), global_batch)

    @tf.autograph.experimental.do_not_convert
    def one_epoch(epoch):
        rows = tf_python.numpy_function(plan, [epoch], tf.int64, name="epoch_plan")
        rows.set_shape([rows_per_epoch, _PLAN_COLUMNS])
        dataset = tf.data.Dataset.from_tensor_slices(rows)
        dataset = dataset.shard(num_pipelines, pipeline_id) if num_pipelines > 1 else dataset
        return dataset if per_epoch is None else per_epoch(dataset)

    first = int(first_epoch)
    if epochs is None:
        epochs_ds = tf.data.Dataset.counter(first)
    else:
        epochs_ds = tf.data.Dataset.range(first, first + int(epochs))
    return epochs_ds.flat_map(one_epoch)


def _options() -> tf.data.Options:
    """Deterministic order, no autotuner (see ``PARALLEL_CALLS``)."""
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = False
    return options


def _finish(dataset: tf.data.Dataset, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(PREFETCH_BATCHES).with_options(_options())


def _pair_batches(train_samples, seed, epochs, per_replica, input_context, first_epoch,
                  elements, keep_last_batch: bool) -> tf.data.Dataset:
    """Training batches: the plan rows turned into elements by ``elements(rows_dataset)``, batched
    by ``per_replica``. Full batches only (epochs trimmed to a multiple of the global batch), or,
    with ``keep_last_batch``, every pair of an epoch with its last batch partial (one replica)."""
    pipelines = int(input_context.num_input_pipelines) if input_context else 1
    pipeline_id = int(input_context.input_pipeline_id) if input_context else 0
    replicas = input_context.num_replicas_in_sync if input_context else 1
    global_batch = per_replica * replicas
    if not keep_last_batch:
        plan = _plan_dataset(train_samples, seed, epochs, global_batch, pipelines, pipeline_id,
                             first_epoch)
        return _finish(elements(plan), per_replica, drop_remainder=True)
    if replicas > 1 and len(train_samples) % global_batch:
        raise ValueError(f"keep_last_batch: {len(train_samples)} training samples leave a partial "
                         f"batch, which {replicas} replicas cannot share; train on one device "
                         "(accumulate_steps gives the same update) or set keep_last_batch=false")
    plan = _plan_dataset(train_samples, seed, epochs, 1, pipelines, pipeline_id, first_epoch,
                         per_epoch=lambda rows: elements(rows).batch(per_replica))
    return plan.prefetch(PREFETCH_BATCHES).with_options(_options())


def _score_arrays(samples: Sequence[Sample], use_difficulty: bool):
    targets = np.asarray([target(s, use_difficulty) for s in samples], np.float32)
    difficulties = np.asarray([s.difficulty for s in samples], np.float32)
    scores = np.asarray([s.score for s in samples], np.float32)
    return tf.constant(targets), tf.constant(difficulties), tf.constant(scores)


def pad_boundaries(boundaries: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """N arrays of step boundaries (J_n - 1 each) → values (N, M) float32 padded with 0 and mask
    (N, M) float32 1 for a real boundary, M = the largest J_n - 1 (at least 1)."""
    width = max([1] + [len(b) for b in boundaries])
    values = np.zeros((len(boundaries), width), np.float32)
    mask = np.zeros((len(boundaries), width), np.float32)
    for row, items in enumerate(boundaries):
        values[row, :len(items)] = items
        mask[row, :len(items)] = 1.0
    return values, mask


def _with_boundaries(element: dict, query, exemplar, boundaries) -> dict:
    """Add the step-supervision entries (``query_boundaries`` …, see the model's batch contract)
    of the query and exemplar rows when ``boundaries`` (values, mask) is given."""
    if boundaries is not None:
        values, mask = (tf.constant(array) for array in boundaries)
        element.update({"query_boundaries": tf.gather(values, query),
                        "exemplar_boundaries": tf.gather(values, exemplar),
                        "query_boundary_mask": tf.gather(mask, query),
                        "exemplar_boundary_mask": tf.gather(mask, exemplar)})
    return element


def _check_keys_unique(samples: Sequence[Sample], what: str) -> None:
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{what}: sample keys are not unique")


# ---------------------------------------------------------------------------------------------
# Feature datasets
# ---------------------------------------------------------------------------------------------
def _feature_lookup(features: np.ndarray, shape: tuple[int, int]):
    """A graph op ``indices (...) → float32 (..., T, D)`` over an in-memory feature array.

    A ``tf.gather`` from one tensor holding the array: no Python (``numpy_function``) per
    element, which on a few cores made the input pipeline wait for the interpreter lock held by
    the training loop (``benchmarks/train_step.py --fit`` measures it)."""
    table = tf.constant(np.asarray(features, np.float32).reshape((-1, *shape)))

    def op(indices):
        return tf.gather(table, indices)

    return op


def feature_pair_dataset(cache: FeatureCache, train_samples: Sequence[Sample], batch_size: int,
                         use_difficulty: bool, seed: int, epochs: int | None = None,
                         input_context=None, first_epoch: int = 0,
                         step_boundaries: Sequence | None = None,
                         keep_last_batch: bool = False) -> tf.data.Dataset:
    """Training pairs of cached clip features (one new random same-group exemplar per query per epoch).

    Args:
        cache: features of every training key.
        train_samples: training list (exemplars come from it too).
        batch_size: global batch (pairs per step).
        use_difficulty: targets are score / difficulty (DD).
        seed: plan seed; the dataset is deterministic under it.
        epochs: number of epochs, None = repeat forever (use :func:`steps_per_epoch`).
        input_context: ``tf.distribute.InputContext`` or None.
        first_epoch: epoch number of the first epoch produced (resuming a run at epoch k gives the
            pairs and order epoch k had).
        step_boundaries: optional, one array of step boundaries in clip units per training
            sample (:func:`data_pipelines.video.steps.protocol_boundaries`): the elements then also
            carry query_boundaries, exemplar_boundaries, query_boundary_mask,
            exemplar_boundary_mask (B, M) (:func:`pad_boundaries`) for step supervision.
        keep_last_batch: keep each epoch's last, partial batch (one replica; see the module doc).

    Returns:
        dataset of dicts: query, exemplar float32 (B, T, D); query_score, exemplar_score,
        query_difficulty float32 (B,) (and the boundaries above).
    """
    _check_keys_unique(train_samples, "train_samples")
    per_replica, _, _ = _sharding(batch_size, input_context)
    lookup = _feature_lookup(cache.read_many([s.key for s in train_samples]), cache.shape)
    targets, difficulties, _ = _score_arrays(train_samples, use_difficulty)
    if step_boundaries is not None and len(step_boundaries) != len(train_samples):
        raise ValueError(f"{len(step_boundaries)} step boundary lists for {len(train_samples)} samples")
    boundaries = pad_boundaries(step_boundaries) if step_boundaries is not None else None

    @tf.autograph.experimental.do_not_convert
    def parse(row):
        query, exemplar = row[0], row[1]
        return _with_boundaries({
            "query": lookup(query),
            "exemplar": lookup(exemplar),
            "query_score": tf.gather(targets, query),
            "exemplar_score": tf.gather(targets, exemplar),
            "query_difficulty": tf.gather(difficulties, query),
        }, query, exemplar, boundaries)

    return _pair_batches(train_samples, seed, epochs, per_replica, input_context, first_epoch,
                         lambda rows: rows.map(parse, num_parallel_calls=PARALLEL_CALLS),
                         keep_last_batch)


def _eval_index_dataset(test_samples, train_samples, num_exemplars, seed, pipelines, pipeline_id,
                        empty_group) -> tuple[tf.data.Dataset, pairing.TestExemplars]:
    chosen = pairing.test_exemplars(test_samples, train_samples, num_exemplars, seed, empty_group)
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(test_samples), dtype=np.int64), chosen.indices, chosen.mask))
    if pipelines > 1:
        dataset = dataset.shard(pipelines, pipeline_id)
    return dataset, chosen


def _eval_element_fn(test_samples: Sequence[Sample], train_samples: Sequence[Sample], use_difficulty: bool,
                     with_keys: bool):
    """``element(query, exemplars, query_input, exemplar_inputs, mask) -> dict``: one test element in
    the layout both eval readers return, from the query's index in ``test_samples``, the exemplars'
    indices in ``train_samples`` (E,), their inputs (features or clips) and mask (E,)."""
    train_targets, _, _ = _score_arrays(train_samples, use_difficulty)
    _, test_difficulties, test_scores = _score_arrays(test_samples, use_difficulty)
    keys = tf.constant([s.key for s in test_samples])

    def element(query, exemplars, query_input, exemplar_inputs, mask):
        out = {
            "query": query_input,
            "exemplars": exemplar_inputs,
            "exemplar_scores": tf.gather(train_targets, exemplars),
            "exemplar_mask": mask,
            "query_difficulty": tf.gather(test_difficulties, query),
            "score": tf.gather(test_scores, query),
        }
        if with_keys:
            out["key"] = tf.gather(keys, query)
        return out

    return element


def feature_eval_dataset(cache: FeatureCache, test_samples: Sequence[Sample], train_samples: Sequence[Sample],
                         batch_size: int, use_difficulty: bool, num_exemplars: int, seed: int,
                         input_context=None, empty_group: str = "error", with_keys: bool = False) -> tf.data.Dataset:
    """Test samples with their exemplar banks, from cached features (in test-list order, not shuffled).

    Returns:
        dataset of dicts: query float32 (B, T, D); exemplars (B, E, T, D); exemplar_scores (B, E)
        targets; exemplar_mask (B, E) float32 1/0; query_difficulty (B,); score (B,) true final score;
        ``key`` (B,) string with ``with_keys``. The last batch may be smaller.
    """
    _check_keys_unique(test_samples, "test_samples")
    per_replica, pipelines, pipeline_id = _sharding(batch_size, input_context)
    test_lookup = _feature_lookup(cache.read_many([s.key for s in test_samples]), cache.shape)
    train_lookup = _feature_lookup(cache.read_many([s.key for s in train_samples]), cache.shape)
    element = _eval_element_fn(test_samples, train_samples, use_difficulty, with_keys)
    indices, _ = _eval_index_dataset(test_samples, train_samples, num_exemplars, seed, pipelines, pipeline_id,
                                     empty_group)

    @tf.autograph.experimental.do_not_convert
    def parse(query, exemplars, mask):
        return element(query, exemplars, test_lookup(query), train_lookup(exemplars), mask)

    return _finish(indices.map(parse, num_parallel_calls=PARALLEL_CALLS), per_replica, drop_remainder=False)


# ---------------------------------------------------------------------------------------------
# Video datasets
# ---------------------------------------------------------------------------------------------
_CLIP_KEYWORDS = ("uint8", "antialias", "xla")  # execution options of video_ops.frames_to_clips


class _Options:
    """A :class:`VideoProtocol` (a name or the object, plus protocol-field keyword overrides) and
    the execution keywords of :func:`video_ops.frames_to_clips` (``uint8``, ``antialias``, ``xla``)."""

    def __init__(self, protocol, **overrides):
        self.clip_kwargs = {key: overrides.pop(key) for key in _CLIP_KEYWORDS if key in overrides}
        self.spec = protocol_lib.get_protocol(protocol).replace(**overrides)
        self.clip_shape = video_ops.clip_shape(self.spec)
        self.clip_dtype = video_ops.clip_dtype(self.clip_kwargs.get("uint8", False))

    def clips(self, frames, training, seed=None, fused=False):
        return video_ops.frames_to_clips(frames, self.spec, training, seed, fused, **self.clip_kwargs)


def load_sampled_frames(path: str, protocol: str | VideoProtocol, training: bool, role: str = "query",
                        seed=None, skip_log: decode.SkipLog | None = None):
    """Decode the frames one video contributes: uint8 (protocol.num_frames, H, W, 3), or None when
    skipped (``skip_log`` given and the video is bad)."""
    spec = protocol_lib.get_protocol(protocol)
    start = protocol_lib.window_start(spec, training, role, seed=seed)

    def sampler(num_frames):
        return protocol_lib.temporal_indices(num_frames, spec, start)

    return decode.read_frames_or_skip(path, sampler, skip_log)


def _drop_failed(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``(element, ok)`` pairs → the elements whose ``ok`` is True."""

    @tf.autograph.experimental.do_not_convert
    def keep(element, ok):
        del element
        return ok

    @tf.autograph.experimental.do_not_convert
    def strip(element, ok):
        del ok
        return element

    return dataset.filter(keep).map(strip)


def _tf_video(path, seed, options: _Options, training: bool, role: str, skip_log):
    """Graph op: path, int64 seed (2,) → (clips (num_clips, clip_len, crop, crop, 3) of
    ``options.clip_dtype``, ok bool). A skipped video gives zeros and ok = False (dropped later)."""
    length = options.spec.num_frames

    def read(path_bytes, seed_value):
        frames = load_sampled_frames(path_bytes.decode("utf-8"), options.spec, training, role,
                                     seed=[int(v) for v in seed_value] + [7], skip_log=skip_log)
        if frames is None:
            return np.zeros((length, 1, 1, 3), np.uint8), False
        return frames, True

    frames, ok = tf_python.numpy_function(read, [path, seed], [tf.uint8, tf.bool], name="read_video")
    frames.set_shape([length, None, None, 3])
    ok.set_shape([])
    clips = tf.cond(ok, lambda: options.clips(frames, training, seed, fused=True),
                    lambda: tf.zeros(options.clip_shape, options.clip_dtype))
    clips.set_shape(options.clip_shape)
    return clips, ok


def video_pair_dataset(train_samples: Sequence[Sample], batch_size: int, use_difficulty: bool,
                       protocol: str | VideoProtocol, seed: int,
                       epochs: int | None = None, input_context=None, first_epoch: int = 0,
                       skip_bad: bool = False, skip_log: decode.SkipLog | None = None,
                       step_boundaries: Sequence | None = None, keep_last_batch: bool = False,
                       **video_options) -> tf.data.Dataset:
    """Training pairs of videos: like :func:`feature_pair_dataset` with clips instead of features.

    Query and exemplar are sampled and augmented independently (own seeds, training mode).
    ``protocol`` is a :class:`VideoProtocol` or the name of one (``data_pipelines.video.protocol.PROTOCOLS``);
    ``video_options`` override its fields (``flip=False``, ...) or are execution keywords of
    :func:`video_ops.frames_to_clips` (``uint8=True``, ``xla``, ``antialias``).

    Returns:
        dataset of dicts: query, exemplar float32 (B, 20, 8, 224, 224, 3) normalised; query_score,
        exemplar_score, query_difficulty (B,); with ``step_boundaries`` (as in
        :func:`feature_pair_dataset`) also the step-supervision entries.
    """
    options = _Options(protocol, **video_options)
    if skip_bad and skip_log is None:
        skip_log = decode.SkipLog()
    _check_keys_unique(train_samples, "train_samples")
    per_replica, _, _ = _sharding(batch_size, input_context)
    targets, difficulties, _ = _score_arrays(train_samples, use_difficulty)
    paths = tf.constant([s.path for s in train_samples])
    log = skip_log if skip_bad else None
    boundaries = pad_boundaries(step_boundaries) if step_boundaries is not None else None

    @tf.autograph.experimental.do_not_convert
    def parse(row):
        query, exemplar = row[0], row[1]
        query_clips, query_ok = _tf_video(tf.gather(paths, query), row[2:4], options, True, "query", log)
        exemplar_clips, exemplar_ok = _tf_video(tf.gather(paths, exemplar), row[4:6], options, True, "exemplar", log)
        element = {
            "query": query_clips,
            "exemplar": exemplar_clips,
            "query_score": tf.gather(targets, query),
            "exemplar_score": tf.gather(targets, exemplar),
            "query_difficulty": tf.gather(difficulties, query),
        }
        return _with_boundaries(element, query, exemplar, boundaries), tf.logical_and(query_ok, exemplar_ok)

    return _pair_batches(train_samples, seed, epochs, per_replica, input_context, first_epoch,
                         lambda rows: _drop_failed(rows.map(parse, num_parallel_calls=PARALLEL_CALLS)),
                         keep_last_batch)


def video_eval_dataset(test_samples: Sequence[Sample], train_samples: Sequence[Sample], batch_size: int,
                       use_difficulty: bool, protocol: str | VideoProtocol,
                       num_exemplars: int, seed: int, input_context=None, empty_group: str = "error",
                       with_keys: bool = False, skip_bad: bool = False, skip_log: decode.SkipLog | None = None,
                       **video_options) -> tf.data.Dataset:
    """Test videos with their exemplar videos (test transform: centre crop, no flip).

    Each distinct exemplar slot is decoded once; padded slots (mask 0) repeat the clips of the real
    slot they copy. The exemplars' window starts at the protocol's ``test_exemplar_start`` (3 in
    the original MTL-AQA code, a quirk).

    Returns:
        dataset of dicts: query float32 (B, 20, 8, 224, 224, 3); exemplars (B, E, 20, 8, 224, 224, 3);
        exemplar_scores, exemplar_mask (B, E); query_difficulty, score (B,); key (B,) with ``with_keys``.
    """
    options = _Options(protocol, **video_options)
    if skip_bad and skip_log is None:
        skip_log = decode.SkipLog()
    log = skip_log if skip_bad else None
    _check_keys_unique(test_samples, "test_samples")
    per_replica, pipelines, pipeline_id = _sharding(batch_size, input_context)
    element = _eval_element_fn(test_samples, train_samples, use_difficulty, with_keys)
    test_paths = tf.constant([s.path for s in test_samples])
    train_paths = tf.constant([s.path for s in train_samples])
    indices, _ = _eval_index_dataset(test_samples, train_samples, num_exemplars, seed, pipelines, pipeline_id,
                                     empty_group)
    no_seed = tf.zeros([2], tf.int64)

    @tf.autograph.experimental.do_not_convert
    def parse(query, exemplars, mask):
        query_clips, query_ok = _tf_video(tf.gather(test_paths, query), no_seed, options, False, "query", log)
        count = tf.cast(tf.reduce_sum(mask), tf.int32)  # real slots come first (fill rule)
        slots, oks = [], []
        for slot in range(num_exemplars):  # static E: decode the real slots only
            clips, ok = tf.cond(
                slot < count,
                lambda s=slot: _tf_video(tf.gather(train_paths, exemplars[s]), no_seed, options, False,
                                         "exemplar", log),
                lambda: (tf.zeros(options.clip_shape, options.clip_dtype), tf.constant(False)))
            slots.append(clips)
            oks.append(ok)
        repeat = tf.range(num_exemplars) % tf.maximum(count, 1)  # padded slot j copies slot j % count
        exemplar_clips = tf.gather(tf.stack(slots), repeat)  # (E, 20, 8, crop, crop, 3)
        exemplar_ok = tf.gather(tf.stack(oks), repeat)
        new_mask = mask * tf.cast(exemplar_ok, tf.float32)
        return (element(query, exemplars, query_clips, exemplar_clips, new_mask),
                tf.logical_and(query_ok, tf.reduce_sum(new_mask) > 0))

    dataset = indices.map(parse, num_parallel_calls=PARALLEL_CALLS)
    return _finish(_drop_failed(dataset), per_replica, drop_remainder=False)


def video_clips_dataset(samples: Sequence[Sample], protocol: str | VideoProtocol,
                        role: str = "query", batch_size: int | None = None, training: bool = False, seed: int = 0,
                        skip_bad: bool = False, skip_log: decode.SkipLog | None = None,
                        **video_options) -> tf.data.Dataset:
    """``(key, clips)`` per sample, in list order, for feature extraction (test transform) or to
    look at augmentations (``training=True``: sample i is augmented with a seed from (seed, i)).

    Returns:
        dataset of ``(key string (), clips float32 (20, 8, crop, crop, 3))``, batched to (B,) and
        (B, 20, 8, crop, crop, 3) when ``batch_size`` is given.
    """
    options = _Options(protocol, **video_options)
    if not samples:
        raise ValueError("video_clips_dataset: no samples")
    if skip_bad and skip_log is None:
        skip_log = decode.SkipLog()
    log = skip_log if skip_bad else None
    seeds = np.random.default_rng([int(seed), 3]).integers(0, 2**31 - 1, size=(len(samples), 2), dtype=np.int64)
    dataset = tf.data.Dataset.from_tensor_slices(
        ([s.key for s in samples], [s.path for s in samples], seeds.reshape(-1, 2)))

    @tf.autograph.experimental.do_not_convert
    def parse(key, path, video_seed):
        clips, ok = _tf_video(path, video_seed, options, training, role, log)
        return (key, clips), ok

    dataset = _drop_failed(dataset.map(parse, num_parallel_calls=PARALLEL_CALLS))
    if batch_size:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(PREFETCH_BATCHES).with_options(_options())


def make_clips_fn(protocol: str | VideoProtocol, role: str = "query", **video_options):
    """A ``sample → float32 (20, 8, crop, crop, 3)`` function (test transform, eager) for
    :func:`features.extract_to_cache`. Raises :class:`decode.VideoDecodeError` for a bad video."""
    options = _Options(protocol, **video_options)

    def clips_fn(sample: Sample) -> np.ndarray:
        frames = load_sampled_frames(sample.path, options.spec, False, role)
        return options.clips(frames, False, fused=True).numpy()

    return clips_fn
