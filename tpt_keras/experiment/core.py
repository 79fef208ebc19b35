"""One experiment end to end: data → model → training → a run folder → evaluation.

This is the library behind ``tpt train`` / ``tpt evaluate`` / ``tpt extract-features`` (the
command line only parses arguments) and the one place that joins ``data_pipelines`` with the
model. A *run folder* holds everything needed to evaluate, export or resume a run::

    runs/NAME/
      config.json      the resolved TPTConfig
      samples.json     the train/test samples (keys, paths, scores, difficulties, groups)
      data.json        where inputs come from: a feature cache or the videos
      best.keras       the model with the best (finite) validation Spearman
      last.keras       the model after the last epoch
      backup/state.npz every model and optimizer variable + finished epochs, after each epoch:
                       a killed run resumes from it, a finished one can be extended
      log.csv          per-epoch losses and validation metrics
      tensorboard/     TensorBoard logs
      .lock            the OS lock held while a run trains here (holds its process id)

Every file is written atomically (:mod:`tpt_keras.experiment.run_folder`): a kill leaves the old or the new
version, never half a file. ``config.json`` is written only once training starts.

Two modes: *features* (train decoder and heads on cached I3D clip features, made by
:func:`extract_features`) and *end to end* (frames → I3D with frozen BN statistics → TPT).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from data_pipelines import samples as samples_lib
from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.samples import Sample
from tpt_keras.config import TPTConfig

BACKBONE_NAME = "i3d_kinetics400_mixed5c"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def load_splits(config: TPTConfig, annotations: str, media_root: str | None = None,
                check_paths: bool = True) -> dict[str, list[Sample]]:
    """Samples by split for the config's dataset.

    Args:
        config: dataset, use_difficulty, action_class (AQA-7 class / JIGSAWS task), fold.
        annotations: annotation folder (MTL-AQA, AQA-7, JIGSAWS, FineDiving) or the manifest CSV (custom).
        media_root: frame folders / videos (not used by a manifest, whose paths are its own).
        check_paths: fail early, naming the row, when a sample's frames are missing.
    """
    from data_pipelines.datasets import aqa7, finediving, jigsaws, manifest, mtl_aqa

    check = check_paths and (media_root is not None or config.dataset == "custom")
    if config.dataset == "mtl_aqa":
        return mtl_aqa.load(annotations, media_root, use_difficulty=config.use_difficulty,
                            check_paths=check)
    if config.dataset == "aqa7":
        return aqa7.load(annotations, media_root, action_class=config.action_class or "diving",
                         check_paths=check)
    if config.dataset == "jigsaws":
        return jigsaws.load(annotations, media_root, task=config.action_class or "suturing",
                            fold=config.fold, check_paths=check)
    if config.dataset == "finediving":
        return finediving.load(annotations, media_root, check_paths=check)
    if config.dataset == "custom":
        return manifest.load(annotations, check_paths=check)
    raise ValueError(f"dataset {config.dataset!r} has no annotation files; for built-in data "
                     "use synthetic_splits().")


def synthetic_splits(config: TPTConfig, cache_dir: str, num_train: int = 400,
                     num_test: int = 150, seed: int = 0, num_phases: int = 5) -> dict[str, list[Sample]]:
    """Built-in synthetic clip features (``data_pipelines.synthetic.features``) written to a
    feature cache, returned as samples — so synthetic runs use the same path as real ones.

    The data (``num_phases`` phases, ``seed``) does not depend on the model's settings, so a
    tuned K trains on the same videos; a cache made with other data settings is refused."""
    from data_pipelines.synthetic import features as synthetic_features

    return synthetic_features.write_synthetic_cache(
        cache_dir, num_train, num_test, feature_dim=config.feature_dim,
        num_clips=config.num_clips, num_phases=num_phases, seed=seed,
        score_max=config.score_max, use_difficulty=config.use_difficulty)


def synthetic_finediving_splits(config: TPTConfig, annotations: str, cache_dir: str,
                                num_train: int | None = 400, num_test: int | None = 150,
                                seed: int = 0) -> dict[str, list[Sample]]:
    """Synthetic clip features with the step timing, scores, difficulties and action types of
    real FineDiving dives (:mod:`data_pipelines.synthetic.finediving`; ``annotations`` the
    FineDiving folder), written to a feature cache and returned as samples with their steps: the
    first ``num_train`` training dives, the first ``num_test`` test dives of their action types."""
    from data_pipelines.synthetic import finediving as synthetic_finediving
    from data_pipelines.datasets import finediving

    spec = config.protocol
    if spec.sampling != "linspace":
        raise ValueError("synthetic FineDiving features follow linspace sampling over the whole "
                         f"dive; this config's protocol samples by {spec.sampling!r}")
    return synthetic_finediving.write_synthetic_finediving_cache(
        cache_dir, finediving.load(annotations, None), feature_dim=config.feature_dim,
        num_clips=spec.num_clips, clip_len=spec.clip_len, clip_stride=spec.clip_stride,
        num_train=num_train, num_test=num_test, seed=seed)


def save_samples(splits: dict[str, list[Sample]], path: str) -> None:
    """Write the samples by split to ``path`` (JSON, atomically)."""
    from tpt_keras.experiment import run_folder

    run_folder.write_json(path, {name: [dataclasses.asdict(s) for s in items]
                                 for name, items in splits.items()})


def load_samples(path: str) -> dict[str, list[Sample]]:
    """The samples written by :func:`save_samples`; a damaged file is named."""
    from tpt_keras.experiment import run_folder

    raw = run_folder.read_json(path)
    try:
        return {name: [Sample(**item) for item in items] for name, items in raw.items()}
    except (TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a samples file ({error})") from None


def validation_split(splits: dict[str, list[Sample]]) -> str:
    """The split that selects the best checkpoint: ``val`` if present, else ``test`` (what the
    original code does: it reports the best test ρ over epochs)."""
    for name in ("val", "test"):
        if splits.get(name):
            return name
    raise ValueError(f"no 'val' or 'test' samples to validate on; splits: {sorted(splits)}")


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------
def model_intervals(config: TPTConfig, train_samples) -> np.ndarray:
    """The B group-aware intervals (SPEC §4) from the training targets and groups."""
    from tpt_keras.ops import groups

    targets = np.array([samples_lib.target(s, config.use_difficulty) for s in train_samples])
    return groups.compute_intervals(targets, [s.group for s in train_samples],
                                    num_intervals=config.num_intervals, max_value=config.score_max)


def build_backbone(config: TPTConfig, weights="kinetics400", inference: bool = False):
    """Inception-I3D up to the pooled Mixed_5c feature, BN statistics frozen (SPEC §2).

    ``inference``: the faster network with the batch norm folded into the convolutions
    (feature extraction, serving); not trainable the same way, so never for fine-tuning."""
    from tpt_keras.models.i3d import InceptionI3D

    return InceptionI3D(include_top=False, weights=weights, freeze_bn_statistics=True,
                        folded_batch_norm=inference, name="backbone")


def build_model(config: TPTConfig, train_samples, backbone=None, jit_compile=False):
    """A compiled :class:`TPTModel` with intervals from ``train_samples``."""
    from tpt_keras.models.tpt_model import TPTModel

    model = TPTModel(config, model_intervals(config, train_samples), backbone=backbone)
    model.compile(jit_compile=jit_compile)
    return model


# ---------------------------------------------------------------------------------------------
# Feature extraction
# ---------------------------------------------------------------------------------------------
def extract_features(config: TPTConfig, samples, cache_dir: str, weights="kinetics400",
                     batch_size: int = 1, skip_bad: bool = False, progress: bool = True):
    """Run the Kinetics I3D over every sample's clips (test transform) into a feature cache.

    Resumable: keys already in the cache are skipped. A video that cannot be decoded raises an
    error naming it, or with ``skip_bad`` is reported and skipped.

    Returns:
        (cache, :class:`data_pipelines.io.feature_cache.ExtractionReport`).
    """
    from data_pipelines.io import feature_cache as features
    from data_pipelines.tfdata import reader
    from tpt_keras.models import i3d

    cache = FeatureCache(cache_dir, feature_dim=1024, num_clips=config.num_clips,
                         backbone=BACKBONE_NAME, extra={"protocol": config.protocol.to_dict()},
                         create=True)
    backbone = build_backbone(config, weights, inference=True)

    def extract_fn(clips):
        return np.asarray(i3d.clip_features(backbone, clips))

    report = features.extract_to_cache(samples, cache, extract_fn,
                                       reader.make_clips_fn(config.protocol, role="query"),
                                       skip_bad=skip_bad, progress=progress, batch_size=batch_size)
    return cache, report


def feature_cache_backbone(cache_dir: str) -> str | None:
    """The backbone name recorded in a feature cache's metadata."""
    return FeatureCache(cache_dir).metadata.get("backbone")


def open_feature_cache(config: TPTConfig, features_dir: str) -> FeatureCache:
    """The feature cache ``features_dir`` opened read-only for ``config``: refused, naming the
    differing fields, when its feature size, clip count or (for I3D features) the video protocol it
    was extracted with differ from the config's — a model must be trained, evaluated and exported
    with the preprocessing its features came from."""
    extra = {"protocol": config.protocol.to_dict()} if config.backbone == "i3d" else None
    return FeatureCache(features_dir, feature_dim=config.feature_dim, num_clips=config.num_clips,
                        extra=extra)


# ---------------------------------------------------------------------------------------------
# Datasets of a run
# ---------------------------------------------------------------------------------------------
def steps_per_epoch(config: TPTConfig, num_train: int) -> int:
    """Batches of ``config.batch_size`` pairs that make one epoch over ``num_train`` samples."""
    from data_pipelines.tfdata import reader

    return reader.steps_per_epoch(num_train, config.batch_size)


def pair_dataset(config: TPTConfig, train_samples, features_dir: str | None, *, first_epoch: int = 0,
                 batch_size: int | None = None, input_context=None, skip_bad: bool = False):
    """Training pairs (infinite; ``steps_per_epoch`` batches make an epoch)."""
    from data_pipelines.tfdata import reader

    batch_size = batch_size or config.batch_size
    boundaries = training_step_boundaries(config, train_samples)
    if features_dir:
        return reader.feature_pair_dataset(
            open_feature_cache(config, features_dir), train_samples, batch_size,
            config.use_difficulty, seed=config.seed, first_epoch=first_epoch,
            input_context=input_context, step_boundaries=boundaries)
    return reader.video_pair_dataset(train_samples, batch_size, config.use_difficulty,
                                     protocol=config.protocol, seed=config.seed,
                                     first_epoch=first_epoch, input_context=input_context,
                                     skip_bad=skip_bad, step_boundaries=boundaries)


def sample_boundaries(config: TPTConfig, sample: Sample):
    """A sample's annotated step boundaries in clip units on the config's clip grid
    (:func:`data_pipelines.video.steps.protocol_boundaries`), or None without step labels."""
    from data_pipelines.video import steps

    if not sample.steps:
        return None
    spec = config.protocol
    return steps.protocol_boundaries(sample.steps, spec.num_clips, spec.clip_len, spec.clip_stride,
                                     spec.sampling, spec.test_query_start)


def training_step_boundaries(config: TPTConfig, train_samples):
    """Per training sample, its step boundaries, when step supervision is on
    (``config.step_weight`` > 0); None when it is off. Step supervision needs step labels on
    every training sample (FineDiving): anything else is refused, naming a sample without."""
    if not config.step_weight:
        return None
    missing = [s.key for s in train_samples if not s.steps]
    if missing:
        raise ValueError(f"step_weight={config.step_weight:g} needs step labels on every training "
                         f"sample (FineDiving); {len(missing)} have none, e.g. {missing[0]!r}")
    return [sample_boundaries(config, s) for s in train_samples]


def eval_dataset(config: TPTConfig, test_samples, train_samples, features_dir: str | None, *,
                 batch_size: int = 8, with_keys: bool = False, input_context=None):
    """Test queries with up to ``num_exemplars`` same-group training exemplars (SPEC §6)."""
    from data_pipelines.tfdata import reader

    if features_dir:
        return reader.feature_eval_dataset(
            open_feature_cache(config, features_dir), test_samples,
            train_samples, batch_size, config.use_difficulty, num_exemplars=config.num_exemplars,
            seed=config.seed, with_keys=with_keys, input_context=input_context,
            empty_group=config.empty_group)
    return reader.video_eval_dataset(test_samples, train_samples, batch_size,
                                     config.use_difficulty, protocol=config.protocol,
                                     num_exemplars=config.num_exemplars, seed=config.seed,
                                     with_keys=with_keys, input_context=input_context,
                                     empty_group=config.empty_group)


# ---------------------------------------------------------------------------------------------
# Run folders
# ---------------------------------------------------------------------------------------------
class RunPaths:
    """The files of one run folder (see the module docstring)."""

    def __init__(self, root: str):
        self.root = root
        self.config = os.path.join(root, "config.json")
        self.samples = os.path.join(root, "samples.json")
        self.data = os.path.join(root, "data.json")
        self.best = os.path.join(root, "best.keras")
        self.last = os.path.join(root, "last.keras")
        self.backup = os.path.join(root, "backup")
        self.log = os.path.join(root, "log.csv")
        self.tensorboard = os.path.join(root, "tensorboard")


def _read_log(log_csv: str) -> list[dict]:
    """The rows of a run's ``log.csv`` ([] when absent)."""
    import csv

    if not os.path.exists(log_csv):
        return []
    try:
        with open(log_csv, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{log_csv}: unreadable training log ({error}); delete the run folder "
                         "to start over") from None


def _write_log(log_csv: str, rows: list[dict], columns: list[str]) -> None:
    import csv
    import io

    from tpt_keras.experiment import run_folder

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    run_folder.write_text(log_csv, text.getvalue())


def truncate_log(log_csv: str, first_epoch: int) -> None:
    """Drop the rows of epochs ≥ ``first_epoch`` from the log (atomically): a run killed after
    logging an epoch but before backing it up runs that epoch again."""
    rows = _read_log(log_csv)
    if not rows:
        return
    kept = [row for row in rows if int(row["epoch"]) < first_epoch]
    if len(kept) != len(rows):
        _write_log(log_csv, kept, list(rows[0]))


def _finite(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def best_logged(log_csv: str, column: str = "val_spearman") -> float | None:
    """The best (max) finite value of ``column`` in the log, or None (NaN epochs never count)."""
    values = [v for v in (_finite(row.get(column)) for row in _read_log(log_csv)) if v is not None]
    return max(values) if values else None


def _epoch_log(log_csv: str):
    """A callback appending one row per epoch to ``log_csv``, rewriting it atomically."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        chief_only = True

        def on_epoch_end(self, epoch, logs=None):
            rows = [row for row in _read_log(log_csv) if int(row["epoch"]) < epoch]
            columns = list(rows[0]) if rows else ["epoch"] + sorted(logs or {})
            row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
            _write_log(log_csv, rows + [row], columns)

    return EpochLog()


def _best_checkpoint(path: str, best: float | None, monitor: str = "val_spearman"):
    """A callback saving the model to ``path`` (atomically) when ``monitor`` reaches a new finite
    maximum; NaN epochs are skipped, never "best"."""
    import keras

    from tpt_keras.experiment import run_folder

    class BestCheckpoint(keras.callbacks.Callback):
        chief_only = True

        def __init__(self):
            super().__init__()
            self.best = best

        def on_epoch_end(self, epoch, logs=None):
            value = _finite((logs or {}).get(monitor))
            if value is None or (self.best is not None and value <= self.best):
                return
            with run_folder.atomic_path(path) as temporary:
                self.model.save(temporary)
                run_folder.fault_point("best_before_replace")
            self.best = value

    return BestCheckpoint()


def _config_differences(saved: TPTConfig, config: TPTConfig, ignore=("epochs",)) -> list[str]:
    """``field: saved → new`` for every field that differs (``epochs`` may change: extending)."""
    return [f"{field.name}: {getattr(saved, field.name)!r} → {getattr(config, field.name)!r}"
            for field in dataclasses.fields(TPTConfig)
            if field.name not in ignore and getattr(saved, field.name) != getattr(config, field.name)]


def _load_saved_config(path: str) -> TPTConfig:
    from tpt_keras.experiment import run_folder

    run_folder.read_json(path)  # a damaged file is named
    return TPTConfig.load(path)


def _check_run_folder(paths: RunPaths, config: TPTConfig) -> int:
    """The epochs this folder has finished (its backup), after checking that it holds this run.
    Writes nothing."""
    from tpt_keras.experiment import distribute

    if os.path.exists(paths.config):
        differences = _config_differences(_load_saved_config(paths.config), config)
        if differences:
            raise ValueError(f"{paths.config} holds a different configuration ({'; '.join(differences)}): "
                             "use another run folder, or delete this one to start over.")
    done = distribute.backup_epoch(paths.backup)
    if done > config.epochs:
        raise ValueError(f"{paths.root} has already trained {done} epochs, more than the "
                         f"{config.epochs} asked for: ask for ≥ {done} epochs (more extend the run), "
                         "or use another run folder.")
    return done


def skip_unreadable(splits: dict[str, list[Sample]], config: TPTConfig,
                    features_dir: str | None = None) -> tuple[dict, list]:
    """The splits without the samples that cannot be read, and ``[(key, message)]`` of those
    skipped, each once: a video that cannot be decoded (end to end) or a key missing from the
    feature cache ``features_dir`` (skipped at extraction). Done once, before training, so that a
    skipped sample is skipped everywhere (training query, exemplar, validation video) and every
    epoch plans the same samples (a resumed run sees the batches the uninterrupted one saw)."""
    from data_pipelines.io import decode

    unique = list({s.key: s for items in splits.values() for s in items}.values())
    if features_dir:
        cache = open_feature_cache(config, features_dir)
        bad = {key: f"no features in {features_dir}" for key in cache.missing([s.key for s in unique])}
    else:
        by_path = decode.unreadable([s.path for s in unique])
        bad = {s.key: by_path[s.path] for s in unique if s.path in by_path}
    kept = {name: [s for s in items if s.key not in bad] for name, items in splits.items()}
    return kept, sorted(bad.items())


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def train(config: TPTConfig, splits: dict[str, list[Sample]], run_dir: str, *,
          features_dir: str | None = None, backbone_weights="kinetics400", verbose: int = 1,
          jit_compile: bool = False, eval_batch_size: int = 8, skip_bad: bool = False,
          extra_callbacks=(), strategy=None) -> dict:
    """Train TPT on ``splits["train"]``, select by Spearman on the validation split, and keep
    everything in ``run_dir``. Running it again on the same folder resumes an interrupted run
    after its last finished epoch (ending with the weights of an uninterrupted run), does
    nothing if it finished, or extends it when ``config.epochs`` grew.

    Nothing is written (no folder, no config.json) until the inputs are checked and the model
    is built; while it trains the folder is locked (:class:`run_folder.RunLock`).

    Args:
        config: the resolved configuration (saved as ``config.json``).
        splits: samples by split; ``train`` and ``val`` or ``test``.
        run_dir: the run folder.
        features_dir: a feature cache (features mode); None trains end to end from frames.
        backbone_weights: I3D weights for end-to-end training.
        verbose: Keras progress bars (1), one line per epoch (2) or silent (0).
        jit_compile: XLA for the train/predict steps.
        skip_bad: drop the samples whose video cannot be decoded (or that have no cached
            features), up front (:func:`skip_unreadable`); the result's ``"skipped"`` lists them.
        strategy: a ``tf.distribute.Strategy`` (see :mod:`tpt_keras.experiment.distribute`); None = default.

    Returns:
        ``{"best": {...} or None, "last": {...}, "epochs": n, "skipped": [(key, message)]}``
        validation metrics (``best`` is None when no epoch had a finite validation Spearman).
    """
    import contextlib

    import keras
    import tensorflow as tf

    from data_pipelines.tfdata import reader
    from tpt_keras.experiment import distribute, callbacks as evaluation, run_folder

    paths = RunPaths(run_dir)
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)  # under multi-worker only the chief writes files
    skipped = []
    if skip_bad:
        splits, skipped = skip_unreadable(splits, config, features_dir)
    train_samples = splits["train"]
    val_name = validation_split(splits)
    steps = steps_per_epoch(config, len(train_samples))
    if steps < 1:
        raise ValueError(f"{len(train_samples)} training samples make no batch of "
                         f"{config.batch_size}: lower batch_size.")
    done = _check_run_folder(paths, config)

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        backbone = None if features_dir else build_backbone(config, backbone_weights)
        model = build_model(config, train_samples, backbone=backbone, jit_compile=jit_compile)
        _build(model, config, features_dir)

    with run_folder.RunLock(run_dir) if chief else contextlib.nullcontext():
        if chief:
            for folder in (run_dir, paths.backup):
                run_folder.remove_temporaries(folder)
        if _finished(paths, config, model, done, write=chief):
            return {**_finished_results(paths), "skipped": skipped}
        if chief:
            run_folder.write_json(paths.config, config.to_dict(), indent=2)
            save_samples(splits, paths.samples)
            run_folder.write_json(paths.data, {
                "features": os.path.abspath(features_dir) if features_dir else None,
                "backbone_weights": None if features_dir else str(backbone_weights)})
            truncate_log(paths.log, done)
        val_ds = eval_dataset(config, splits[val_name], train_samples, features_dir,
                              batch_size=eval_batch_size)
        callbacks = [
            evaluation.ValidationSpearman(val_ds),
            _epoch_log(paths.log),
            _best_checkpoint(paths.best, best_logged(paths.log)),
            keras.callbacks.TensorBoard(paths.tensorboard, update_freq="epoch"),
            _stop_on_non_finite_loss(),
            *extra_callbacks,
        ]

        def train_ds_fn(input_context=None):
            return pair_dataset(config, train_samples, features_dir, first_epoch=done,
                                input_context=input_context)

        distribute.fit(model, train_ds_fn, epochs=config.epochs, callbacks=callbacks,
                       strategy=strategy, steps_per_epoch=steps, initial_epoch=done,
                       backup_dir=paths.backup, verbose=verbose)
        if chief:
            _save_model(model, paths.last)
    return {**_finished_results(paths), "skipped": skipped}


def _save_model(model, path: str) -> None:
    from tpt_keras.experiment import run_folder

    with run_folder.atomic_path(path) as temporary:
        model.save(temporary)


def _finished(paths: RunPaths, config: TPTConfig, model, done: int, write: bool = True) -> bool:
    """Whether the run in ``paths`` has trained ``config.epochs`` epochs, with a readable
    ``last.keras``. A damaged ``last.keras`` is named and rebuilt from the backup (which holds the
    same final state); without a backup it is an error that says what to do."""
    import warnings

    from tpt_keras.experiment import distribute

    legacy = done == 0 and not os.path.isdir(paths.backup)  # folders of older versions
    if done < config.epochs and not (legacy and len(_read_log(paths.log)) >= config.epochs):
        return False
    if not os.path.exists(paths.last) and not legacy:
        problem = "missing"
    else:
        try:
            model.load_weights(paths.last)
            return True
        except Exception as error:  # BadZipFile, OSError, ValueError: a damaged file
            problem = f"damaged ({type(error).__name__}: {error})"
    if done < config.epochs:
        raise ValueError(f"{paths.last}: {problem}, and {paths.backup} holds no final state to "
                         "rebuild it from; delete the run folder to train again")
    distribute.TrainingBackup(paths.backup).restore(model)
    if write:
        warnings.warn(f"{paths.last}: {problem}; rebuilt from {paths.backup} (epoch {done})",
                      stacklevel=3)
        _save_model(model, paths.last)
    return True


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss."""


def _stop_on_non_finite_loss():
    import keras

    class StopOnNonFiniteLoss(keras.callbacks.Callback):
        """Stop with a clear error at the first non-finite loss instead of training on NaN."""

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):
                raise NonFiniteLossError(
                    f"the training loss became {float(loss)} at step {batch + 1}: lower the "
                    "learning rates (--set learning_rate=...), check the scores for NaN, or "
                    "use --mixed-precision off")

    return StopOnNonFiniteLoss()


def _build(model, config: TPTConfig, features_dir: str | None) -> None:
    """Create every variable (model and optimizer) before ``fit``: the backup restores into them."""
    import keras

    if features_dir:
        video = keras.ops.zeros((1, config.num_clips, config.feature_dim))
    else:
        video = keras.ops.zeros((1, config.num_clips, config.clip_len, config.crop_size,
                                 config.crop_size, 3))
    model({"query": video, "exemplar": video})
    model.optimizer.build(model.trainable_variables)


def _finished_results(paths: RunPaths) -> dict:
    """Validation metrics of the logged epochs: ``best`` (highest finite Spearman, None if none
    was finite), ``last``, ``epochs``."""
    rows = _read_log(paths.log)
    if not rows:
        raise ValueError(f"{paths.log}: no finished epoch logged")
    pick = lambda row: {"epoch": int(row["epoch"]) + 1, "spearman": float(row["val_spearman"]),  # noqa: E731
                        "r_l2": float(row["val_r_l2"])}
    finite = [row for row in rows if _finite(row.get("val_spearman")) is not None]
    best = max(finite, key=lambda row: float(row["val_spearman"])) if finite else None
    return {"best": pick(best) if best else None, "last": pick(rows[-1]), "epochs": len(rows)}


# ---------------------------------------------------------------------------------------------
# Loading and evaluating runs
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """A trained run loaded from its folder."""

    paths: RunPaths
    config: TPTConfig
    model: object
    splits: dict
    data: dict

    @property
    def features_dir(self):
        return self.data.get("features")


def load_run(run_dir: str, which: str = "best") -> Run:
    """Load ``best.keras`` or ``last.keras`` of a run folder with its config and samples."""
    from tpt_keras.models.loading import load_model

    paths = RunPaths(run_dir)
    checkpoint = getattr(paths, which)
    for required in (paths.config, paths.samples, paths.data, checkpoint):
        if not os.path.exists(required):
            raise FileNotFoundError(f"{required}: missing — is {run_dir} a finished `tpt train` "
                                    "run folder?")
    from tpt_keras.experiment import run_folder

    data = run_folder.read_json(paths.data)
    config = _load_saved_config(paths.config)
    try:
        model = load_model(checkpoint)
    except Exception as error:  # a damaged zip/h5 reads as "File not found" or worse otherwise
        raise ValueError(f"{checkpoint}: damaged Keras model file ({type(error).__name__}: "
                         f"{error})") from None
    return Run(paths, config, model, load_samples(paths.samples), data)


def _videos(run: Run, samples, role: str, batch_size: int, skip_log=None):
    """Input batches of ``samples`` in order: cached features or test-transform clips. With a
    ``skip_log`` (:class:`data_pipelines.io.decode.SkipLog`) unreadable videos are dropped and
    recorded there; without, the first one stops with a ValueError naming it."""
    from data_pipelines.io import decode
    from data_pipelines.tfdata import reader

    if run.features_dir:
        cache = open_feature_cache(run.config, run.features_dir)
        return cache.read_many([s.key for s in samples])
    dataset = reader.video_clips_dataset(samples, run.config.protocol, role=role,
                                         batch_size=batch_size, skip_bad=skip_log is not None,
                                         skip_log=skip_log)

    def batches():
        import tensorflow as tf

        try:
            for _, clips in dataset:
                yield clips
        except tf.errors.OpError as error:
            message = decode.decode_error_in(error) or error.message.strip().splitlines()[0]
            raise ValueError(message) from None

    return batches()


def run_bank(run: Run, samples=None, batch_size: int = 8, progress: bool = False):
    """The :class:`ExemplarBank` of ``samples`` (default: all the run's training samples),
    each encoded once."""
    from tpt_keras.experiment.exemplar_bank import ExemplarBank

    train = run.splits["train"] if samples is None else samples
    return ExemplarBank.encode(run.model, train, _videos(run, train, "exemplar", batch_size),
                               run.config.use_difficulty, batch_size=batch_size,
                               progress=progress)


def predict_split(run: Run, split: str = "test", batch_size: int = 8, progress: bool = False,
                  skip_bad: bool = False):
    """Predicted and true scores of a split on the test protocol, with the bank.

    Exemplars: each group's fixed set (:func:`data_pipelines.tfdata.pairing.test_exemplars`, the rule
    the export uses too); only the chosen training videos are encoded.

    Args:
        skip_bad: drop unreadable test videos (listed in "skipped") instead of stopping.

    Returns:
        dict with "keys", "groups", "pred", "true" (N,), "per_exemplar" (N, E), "mask" (N, E),
        "attention" (N, L, T, K) of the test videos, "boundaries" (N arrays of annotated step
        boundaries in clip units, None for a video without step labels), "skipped"
        [(path, message)].
    """
    from data_pipelines.io import decode
    from data_pipelines.tfdata import pairing
    from tpt_keras.experiment.exemplar_bank import encode_all, predict_with_bank

    if not run.splits.get(split):
        raise ValueError(f"{run.paths.samples}: no samples in split {split!r}")
    test, train = run.splits[split], run.splits["train"]
    skip_log = decode.SkipLog() if skip_bad else None
    query_parts, attention = encode_all(run.model, _videos(run, test, "query", batch_size, skip_log),
                                        batch_size=batch_size, progress=progress, total=len(test),
                                        with_attention=True)
    if skip_log is not None and skip_log.items:
        bad = {path for path, _ in skip_log.items}
        test = [s for s in test if s.path not in bad]
    if len(query_parts) != len(test) or not test:
        raise ValueError(f"{run.paths.samples}: encoded {len(query_parts)} of {len(test)} "
                         f"{split} videos")
    chosen = pairing.test_exemplars(test, train, run.config.num_exemplars, seed=run.config.seed,
                                    empty_group=run.config.empty_group)
    used = np.unique(chosen.indices)  # each chosen exemplar encoded once
    bank = run_bank(run, [train[i] for i in used], batch_size=batch_size, progress=progress)
    rows = np.searchsorted(used, chosen.indices)  # (N, E) rows of the bank
    pred, per_exemplar = predict_with_bank(run.model, bank, query_parts, rows, chosen.mask,
                                           [s.difficulty for s in test])
    return {"keys": [s.key for s in test], "groups": [s.group for s in test], "pred": pred,
            "true": np.array([s.score for s in test], np.float64),
            "per_exemplar": per_exemplar, "mask": chosen.mask, "attention": attention,
            "boundaries": [sample_boundaries(run.config, s) for s in test],
            "skipped": list(skip_log.items) if skip_log is not None else []}


MULTI_RUN_DATASETS = ("aqa7", "jigsaws")


def run_name(config: TPTConfig) -> str:
    """A row name that tells runs apart: ``aqa7 diving``, ``jigsaws suturing fold 2``,
    ``mtl_aqa (DD)``."""
    if config.dataset == "jigsaws":
        return f"jigsaws {config.action_class} fold {config.fold}"
    if config.dataset == "aqa7":
        return f"aqa7 {config.action_class}"
    if config.dataset == "mtl_aqa":
        return f"mtl_aqa ({'DD' if config.use_difficulty else 'no DD'})"
    return config.dataset


def _check_runs(run_dirs, configs) -> None:
    """Several runs are averaged only when they are the classes / folds of one dataset."""
    real = [os.path.realpath(path) for path in run_dirs]
    for index, path in enumerate(real):
        if path in real[:index]:
            raise ValueError(f"{run_dirs[index]} is given twice: each run is evaluated once")
    if len(run_dirs) < 2:
        return
    datasets = sorted({config.dataset for config in configs})
    if len(datasets) > 1:
        raise ValueError("cannot average runs of different datasets ("
                         + ", ".join(f"{d}: {p}" for d, p in zip([c.dataset for c in configs], run_dirs))
                         + "): evaluate them separately")
    if datasets[0] not in MULTI_RUN_DATASETS:
        raise ValueError(f"several {datasets[0]} runs: only AQA-7 classes or JIGSAWS folds are "
                         "averaged; evaluate the runs one at a time")
    names = [run_name(config) for config in configs]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValueError(f"{run_dirs[names.index(name)]} and {run_dirs[index]} are both "
                             f"{name}: each class / fold is averaged once")


def evaluate_run(run_dirs, which: str = "best", split: str = "test", plot: str | None = None,
                 progress: bool = False, scale: str = "judges", skip_bad: bool = False) -> dict:
    """Spearman and R-ℓ2 of one or several runs, with the average over runs.

    Several runs are the AQA-7 classes (one model each: average ρ by Fisher z) or the JIGSAWS
    folds (average ρ by Fisher z as well, R-ℓ2 by the mean); runs of different datasets, and a
    run given twice, are refused. Scatter plots of predicted vs true scores: ``plot`` (one
    picture, a panel per run), else ``RUN/scatter_<split>.png`` per run.

    Args:
        scale: ``"judges"`` or ``"normalised"`` (:mod:`tpt_keras.experiment.score_scale`): the scale of the
            metrics and plots (only AQA-7 has two; ρ is the same on both for one class).
        skip_bad: skip unreadable test videos (listed per row under "skipped").
    """
    from tpt_keras.ops import metrics
    from tpt_keras.experiment import score_scale
    from tpt_keras import visualize

    if isinstance(run_dirs, str):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs)
    if scale not in score_scale.SCALES:
        raise ValueError(f"scale must be one of {', '.join(score_scale.SCALES)}, got {scale!r}")
    configs = []
    for run_dir in run_dirs:
        path = RunPaths(run_dir).config
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: missing — is {run_dir} a `tpt train` run folder?")
        configs.append(TPTConfig.load(path))
    _check_runs(run_dirs, configs)
    rows, panels = [], []
    for run_dir in run_dirs:
        run = load_run(run_dir, which)
        outputs = predict_split(run, split, progress=progress, skip_bad=skip_bad)
        dataset = run.config.dataset
        both = {"normalised": (outputs["pred"], outputs["true"]),
                "judges": (score_scale.to_judges(outputs["pred"], outputs["groups"], dataset),
                           score_scale.to_judges(outputs["true"], outputs["groups"], dataset))}
        pred, true = both[scale]
        by_scale = {name: {"spearman": metrics.spearman(p, t), "r_l2": metrics.r_l2(p, t)}
                    for name, (p, t) in both.items()}
        rho, r_l2 = by_scale[scale]["spearman"], by_scale[scale]["r_l2"]
        name = run_name(run.config)
        title = f"{name} ({which}): ρ = {rho:.4f}, R-ℓ2 = {r_l2:.3f}"
        if plot:
            panels.append((pred, true, title))
            picture = None
        else:
            picture = visualize.plot_scatter(pred, true, os.path.join(run_dir, f"scatter_{split}.png"),
                                             title=title)
        logged = _finished_results(run.paths) if os.path.exists(run.paths.log) else None
        parsing = parsing_report(outputs["attention"], outputs["boundaries"])
        attention_picture = None
        if parsing is not None:
            first = outputs["boundaries"][0]
            attention_picture = visualize.plot_attention(
                outputs["attention"][0],
                (os.path.splitext(plot)[0] + "_attention.png" if plot
                 else os.path.join(run_dir, f"attention_{split}.png")),
                title=f"{outputs['keys'][0]}: attention and annotated steps", step_boundaries=first)
        rows.append({"run": run_dir, "name": name, "dataset": dataset, "checkpoint": which,
                     "split": split, "samples": len(pred), "scale": scale,
                     "scale_description": score_scale.describe(scale, dataset),
                     "spearman": rho, "r_l2": r_l2, "by_scale": by_scale, "plot": picture,
                     "skipped": [{"path": p, "error": m} for p, m in outputs["skipped"]],
                     "training_log": logged, "parsing": parsing,
                     "attention_plot": attention_picture})
    if plot:
        picture = visualize.plot_scatter_panels(panels, plot)
        for row in rows:
            row["plot"] = picture
    average = {"spearman": metrics.fisher_z_mean([row["spearman"] for row in rows]),
               "r_l2": float(np.mean([row["r_l2"] for row in rows]))}
    return {"runs": rows, "average": average}


def parsing_report(attention, boundaries) -> dict | None:
    """The parsing metric of test videos (:mod:`tpt_keras.ops.parsing_metrics`) with the uniform and
    equal-parts baselines on the same videos, or None when a video has no step labels or the
    model has fewer than two parts.

    Args:
        attention: (N, L, T, K) the test videos' cross-attention.
        boundaries: N arrays of annotated step boundaries in clip units (None: unknown).

    Returns:
        ``{"model": metrics, "uniform": metrics, "equal_parts": metrics}`` or None.
    """
    from tpt_keras.ops import parsing_metrics

    attention = np.asarray(attention)
    if attention.shape[-1] < 2 or not len(boundaries) or any(b is None for b in boundaries):
        return None
    num_clips, num_parts = attention.shape[2], attention.shape[3]
    return {"model": parsing_metrics.parsing_metrics(attention, boundaries),
            "uniform": parsing_metrics.uniform_baseline(boundaries, num_clips, num_parts),
            "equal_parts": parsing_metrics.equal_parts_baseline(boundaries, num_clips, num_parts)}


def format_parsing(name: str, parsing: dict) -> list[str]:
    """Table lines of :func:`parsing_report`: the model beside the two baselines."""
    lines = [f"{name}: parsing metric over {parsing['model']['videos']} test videos "
             f"({parsing['model']['boundaries']} annotated step boundaries; docs/parsing.md)",
             f"  {'attention':<24} {'boundary MAE':>12} {'mean IoU':>9} {'IoU@0.5':>8} {'IoU@0.75':>9}"]
    for key, label in (("model", "this model"), ("uniform", "uniform, untrained"),
                       ("equal_parts", "equal parts")):
        m = parsing[key]
        lines.append(f"  {label:<24} {m['boundary_mae']:>12.3f} {m['mean_iou']:>9.3f} "
                     f"{m['iou@0.5']:>8.3f} {m['iou@0.75']:>9.3f}")
    return lines


def format_results(results: dict) -> str:
    """A terminal table of :func:`evaluate_run`'s results."""
    width = max(28, *(len(row["name"]) for row in results["runs"]))
    lines = [f"{'run':<{width}} {'checkpoint':<10} {'samples':>7} {'Spearman':>9} {'R-l2 x100':>10}"]
    for row in results["runs"]:
        lines.append(f"{row['name']:<{width}} {row['checkpoint']:<10} {row['samples']:>7} "
                     f"{row['spearman']:>9.4f} {row['r_l2']:>10.4f}")
    if len(results["runs"]) > 1:
        average = results["average"]
        lines.append(f"{'average (Fisher z for ρ)':<{width}} {'':<10} {'':>7} "
                     f"{average['spearman']:>9.4f} {average['r_l2']:>10.4f}")
    lines.append(f"scores on the {results['runs'][0]['scale_description']}")
    for row in results["runs"]:
        log = row.get("training_log")
        if log and log["best"]:
            lines.append(f"{row['name']}: validation ρ during training — best {log['best']['spearman']:.4f} "
                         f"(epoch {log['best']['epoch']}, the number the original code reports), "
                         f"last {log['last']['spearman']:.4f} (epoch {log['last']['epoch']})")
        if row.get("parsing"):
            lines.extend(format_parsing(row["name"], row["parsing"]))
            lines.append(f"{row['name']}: attention and annotated steps of one test video: "
                         f"{row['attention_plot']}")
        for skipped in row.get("skipped", []):
            lines.append(f"{row['name']}: skipped unreadable {skipped['path']}: {skipped['error']}")
    plots = list(dict.fromkeys(row["plot"] for row in results["runs"]))
    lines.append("scatter plot" + ("s: " if len(plots) > 1 else ": ") + ", ".join(plots))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Several seeds
# ---------------------------------------------------------------------------------------------
SEED_FOLDER = "seed_{}"


def seed_run_dirs(folder: str) -> list[str]:
    """The run folders of a several-seeds training (``tpt train … --seeds N``):
    ``folder/seed_<s>/`` with a ``config.json``, by seed; [] when ``folder`` is a run itself or
    holds none."""
    if os.path.exists(RunPaths(folder).config) or not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        prefix, _, number = name.partition("_")
        if prefix == "seed" and number.isdigit() and os.path.exists(RunPaths(os.path.join(folder, name)).config):
            found.append((int(number), os.path.join(folder, name)))
    return [path for _, path in sorted(found)]


def evaluate_seeds(folder: str, split: str = "test", scale: str = "judges", num_bootstrap: int = 1000,
                   progress: bool = False, skip_bad: bool = False) -> dict:
    """Spearman and R-ℓ2 over the seeds of ``folder`` (:func:`seed_run_dirs`), for the
    validation-selected (``best.keras``) and the last-epoch (``last.keras``) model side by side:
    per seed, mean ± std over seeds, and a bootstrap 95 % interval over the test videos
    (:func:`tpt_keras.ops.metrics.seed_statistics`).

    Returns:
        ``{"folder", "name", "runs", "seeds", "split", "samples", "scale_description",
        "selected_on", "checkpoints": {"best": stats, "last": stats}}``, ``selected_on`` the split
        that chose ``best`` (``test`` itself when the data has no validation split).
    """
    from tpt_keras.ops import metrics
    from tpt_keras.experiment import score_scale

    run_dirs = seed_run_dirs(folder)
    if not run_dirs:
        raise FileNotFoundError(f"{folder}: no seed_<n>/ run folders (made by `tpt train … --seeds N`)")
    configs = [TPTConfig.load(RunPaths(path).config) for path in run_dirs]
    base = configs[0].replace(seed=0)
    for path, config in zip(run_dirs, configs):
        if config.replace(seed=0) != base:
            raise ValueError(f"{path}: its configuration differs from {run_dirs[0]}'s in more than "
                             "the seed: these are not seeds of one experiment")
    checkpoints, keys, true = {}, None, None
    for which in ("best", "last"):
        predictions = []
        for path in run_dirs:
            run = load_run(path, which)
            outputs = predict_split(run, split, progress=progress, skip_bad=skip_bad)
            if keys is not None and outputs["keys"] != keys:
                raise ValueError(f"{path}: its {split} videos differ from {run_dirs[0]}'s")
            keys = outputs["keys"]
            convert = (lambda values: score_scale.to_judges(values, outputs["groups"], base.dataset)) \
                if scale == "judges" else np.asarray
            predictions.append(convert(outputs["pred"]))
            true = convert(outputs["true"])
        checkpoints[which] = metrics.seed_statistics(np.stack(predictions), true,
                                                     num_bootstrap=num_bootstrap)
    splits = load_samples(RunPaths(run_dirs[0]).samples)
    return {"folder": folder, "name": run_name(base), "runs": run_dirs,
            "seeds": [config.seed for config in configs], "split": split, "samples": len(keys),
            "scale_description": score_scale.describe(scale, base.dataset),
            "selected_on": validation_split(splits), "checkpoints": checkpoints}


def format_seed_results(results: dict) -> str:
    """A terminal table of :func:`evaluate_seeds`' results."""
    lines = [f"{results['name']}: {len(results['seeds'])} seeds ({', '.join(map(str, results['seeds']))}), "
             f"{results['samples']} {results['split']} videos, scores on the {results['scale_description']}",
             f"{'checkpoint':<22} {'Spearman mean ± std':>20} {'95% CI (videos)':>17} "
             f"{'R-l2 x100 mean ± std':>21} {'95% CI (videos)':>17}"]
    labels = {"best": "val-selected (best)", "last": "last epoch"}
    for which in ("best", "last"):
        stats = results["checkpoints"][which]
        cells = []
        for name, digits in (("spearman", 4), ("r_l2", 3)):
            low, high = stats["ci95"][name]
            cells.append(f"{stats['mean'][name]:.{digits}f} ± {stats['std'][name]:.{digits}f}")
            cells.append(f"[{low:.{digits}f}, {high:.{digits}f}]")
        lines.append(f"{labels[which]:<22} {cells[0]:>20} {cells[1]:>17} {cells[2]:>21} {cells[3]:>17}")
    for index, seed in enumerate(results["seeds"]):
        best = results["checkpoints"]["best"]["per_seed"][index]
        last = results["checkpoints"]["last"]["per_seed"][index]
        lines.append(f"  seed {seed}: best ρ {best['spearman']:.4f}, R-l2 {best['r_l2']:.3f}; "
                     f"last ρ {last['spearman']:.4f}, R-l2 {last['r_l2']:.3f}")
    if results["selected_on"] == results["split"]:
        lines.append(f"note: 'best' was selected on the {results['split']} split itself (the data has no "
                     "validation split), as the original code does: it is optimistic; 'last' is not.")
    lines.append("95% CI: bootstrap over the test videos (1000 resamples) of the mean over seeds; "
                 "± is the standard deviation over seeds")
    return "\n".join(lines)
