"""Training one run into its folder: the model of a run, the run-folder checks, the callbacks,
and :func:`train` (resume, extend, or nothing to do), under any ``tf.distribute`` strategy.

TensorFlow and Keras are imported inside the functions, so that importing the package stays cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import numpy as np

from data_pipelines import samples as samples_lib
from data_pipelines.samples import Sample
from tpt_keras.config import TPTConfig
from tpt_keras.runtime import run_folder
from tpt_keras.experiment.data import (build_backbone, eval_dataset, features_source, pair_dataset,
                                       save_samples,
                                       skip_unreadable, steps_per_epoch, validation_split)


def model_intervals(config: TPTConfig, train_samples) -> np.ndarray:
    """The B group-aware intervals (SPEC §4) from the training targets and groups."""
    from tpt_keras.ops import groups

    targets = np.array([samples_lib.target(s, config.use_difficulty) for s in train_samples])
    return groups.compute_intervals(targets, [s.group for s in train_samples],
                                    num_intervals=config.num_intervals, max_value=config.score_max)


def build_model(config: TPTConfig, train_samples, backbone=None, jit_compile=False):
    """A compiled :class:`TPTModel` with intervals from ``train_samples``."""
    from tpt_keras.models.tpt_model import TPTModel

    model = TPTModel(config, model_intervals(config, train_samples), backbone=backbone)
    model.compile(jit_compile=jit_compile)
    return model


def _config_differences(saved: TPTConfig, config: TPTConfig, ignore=("epochs",)) -> list[str]:
    """``field: saved → new`` for every field that differs (``epochs`` may change: extending)."""
    return [f"{field.name}: {getattr(saved, field.name)!r} → {getattr(config, field.name)!r}"
            for field in dataclasses.fields(TPTConfig)
            if field.name not in ignore and getattr(saved, field.name) != getattr(config, field.name)]


def check_run_folder(paths: run_folder.RunPaths, config: TPTConfig) -> int:
    """The epochs this folder has finished (its backup), after checking that it holds this run.
    Writes nothing."""
    from tpt_keras.runtime import backup

    if os.path.exists(paths.config):
        differences = _config_differences(run_folder.load_saved_config(paths.config), config)
        if differences:
            raise ValueError(f"{paths.config} holds a different configuration ({'; '.join(differences)}): "
                             "use another run folder, or delete this one to start over.")
    done = backup.backup_epoch(paths.backup)
    if done > config.epochs:
        raise ValueError(f"{paths.root} has already trained {done} epochs, more than the "
                         f"{config.epochs} asked for: ask for ≥ {done} epochs (more extend the run), "
                         "or use another run folder.")
    return done


def _epoch_log(log_csv: str):
    """A callback appending one row per epoch to ``log_csv``, rewriting it atomically."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        chief_only = True

        def on_epoch_end(self, epoch, logs=None):
            rows = [row for row in run_folder.read_log(log_csv) if int(row["epoch"]) < epoch]
            columns = list(rows[0]) if rows else ["epoch"] + sorted(logs or {})
            row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
            run_folder.write_log(log_csv, rows + [row], columns)

    return EpochLog()


def _best_checkpoint(path: str, best: float | None, monitor: str = "val_spearman"):
    """A callback saving the model to ``path`` (atomically) when ``monitor`` reaches a new finite
    maximum; NaN epochs are skipped, never "best"."""
    import keras

    class BestCheckpoint(keras.callbacks.Callback):
        chief_only = True

        def __init__(self):
            super().__init__()
            self.best = best

        def on_epoch_end(self, epoch, logs=None):
            value = run_folder.finite_or_none((logs or {}).get(monitor))
            if value is None or (self.best is not None and value <= self.best):
                return
            with run_folder.atomic_path(path) as temporary:
                self.model.save(temporary)
            self.best = value

    return BestCheckpoint()


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss."""


def _stop_on_non_finite_loss():
    import keras

    class StopOnNonFiniteLoss(keras.callbacks.Callback):
        """Stop with a clear error at the first non-finite loss instead of training on NaN.

        ``async_safe``: Keras then runs the check on its callback thread, so that reading the
        loss does not make each step wait for the one before; the error reaches the training
        loop at the next step."""

        async_safe = True

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):
                raise NonFiniteLossError(
                    f"the training loss became {float(loss)} at step {batch + 1}: lower the "
                    "learning rates (--set learning_rate=...), check the scores for NaN, or "
                    "use --mixed-precision off")

    return StopOnNonFiniteLoss()


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
        eval_batch_size: test queries per validation batch.
        extra_callbacks: Keras callbacks run after the run's own.
        strategy: a ``tf.distribute.Strategy`` (:mod:`tpt_keras.runtime.strategies`); None = default.

    Returns:
        ``{"best": {...} or None, "last": {...}, "epochs": n, "skipped": [(key, message)]}``
        validation metrics (``best`` is None when no epoch had a finite validation Spearman).
    """
    import tensorflow as tf

    from tpt_keras.runtime import distribute, strategies

    paths = run_folder.RunPaths(run_dir)
    if strategy is None:
        strategies.make_deterministic()  # bit-identical runs when TensorFlow has not started yet
    strategy = strategy or tf.distribute.get_strategy()
    chief = strategies.is_chief(strategy)  # under multi-worker only the chief writes files
    splits, skipped = skip_unreadable(splits, config, features_dir) if skip_bad else (splits, [])
    train_samples = splits["train"]
    val_name = validation_split(splits)
    steps = _checked_steps_per_epoch(config, len(train_samples))
    done = check_run_folder(paths, config)
    model = _build_run_model(config, train_samples, strategy, features_dir, backbone_weights,
                             jit_compile)
    with run_folder.RunLock(run_dir) if chief else contextlib.nullcontext():
        if chief:
            for folder in (run_dir, paths.backup):
                run_folder.remove_temporaries(folder)
        if _finished(paths, config, model, done, write=chief):
            return {**run_folder.finished_results(paths), "skipped": skipped}
        if chief:
            _write_run_files(paths, config, splits, features_dir, backbone_weights, done)
        val_ds = eval_dataset(config, splits[val_name], train_samples, features_dir,
                              batch_size=eval_batch_size)

        def train_ds_fn(input_context=None):
            return pair_dataset(config, train_samples, features_dir, first_epoch=done,
                                input_context=input_context)

        distribute.fit(model, train_ds_fn, epochs=config.epochs,
                       callbacks=_callbacks(paths, val_ds, extra_callbacks), strategy=strategy,
                       steps_per_epoch=steps, initial_epoch=done, backup_dir=paths.backup,
                       verbose=verbose)
        if chief:
            _save_model(model, paths.last)
    return {**run_folder.finished_results(paths), "skipped": skipped}


def _checked_steps_per_epoch(config: TPTConfig, num_train: int) -> int:
    """:func:`steps_per_epoch`, refused when the training samples make no batch."""
    steps = steps_per_epoch(config, num_train)
    if steps < 1:
        raise ValueError(f"{num_train} training samples make no batch of "
                         f"{config.batch_size}: lower batch_size (--set batch_size={num_train}).")
    return steps


def step_progress(stream=None):
    """A callback printing one line per training step (step, seconds per step, time left in the
    epoch): progress for slow steps, such as fine-tuning I3D on a CPU, where a progress bar
    would sit still for minutes (and says nothing where the output is not a terminal)."""
    import sys
    import time

    import keras

    class StepProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.start = epoch + 1, time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            steps = self.params.get("steps") or 0
            per_step = (time.perf_counter() - self.start) / (batch + 1)
            left = per_step * max(steps - batch - 1, 0)
            print(f"epoch {self.epoch} step {batch + 1}/{steps}: {per_step:.1f} s/step, "
                  f"{left / 60:.1f} min left in the epoch", file=stream or sys.stderr, flush=True)

    return StepProgress()


def _build_run_model(config: TPTConfig, train_samples, strategy, features_dir: str | None,
                     backbone_weights, jit_compile: bool):
    """The compiled model of a run, every variable created under ``strategy`` (seeded by
    ``config.seed``): the backup restores into them."""
    import keras

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        backbone = None if features_dir else build_backbone(config, backbone_weights)
        model = build_model(config, train_samples, backbone=backbone, jit_compile=jit_compile)
        _build(model, config, features_dir)
    return model


def _write_run_files(paths: run_folder.RunPaths, config: TPTConfig, splits, features_dir: str | None,
                     backbone_weights, done: int) -> None:
    """``config.json``, ``samples.json``, ``data.json``, and the log cut back to ``done`` epochs."""
    run_folder.write_json(paths.config, config.to_dict(), indent=2)
    save_samples(splits, paths.samples)
    run_folder.write_json(paths.data, {
        "features": os.path.abspath(features_dir) if features_dir else None,
        "features_source": features_source(features_dir),
        "backbone_weights": None if features_dir else str(backbone_weights)})
    run_folder.truncate_log(paths.log, done)


def _callbacks(paths: run_folder.RunPaths, val_ds, extra_callbacks) -> list:
    """Validation metrics first (the others read them from ``logs``), then the log, the best
    checkpoint, TensorBoard, the non-finite-loss stop, and the caller's callbacks."""
    import keras

    from tpt_keras.experiment import callbacks as evaluation

    return [
        evaluation.ValidationSpearman(val_ds),
        _epoch_log(paths.log),
        _best_checkpoint(paths.best, run_folder.best_logged(paths.log)),
        keras.callbacks.TensorBoard(paths.tensorboard, update_freq="epoch"),
        _stop_on_non_finite_loss(),
        *extra_callbacks,
    ]


def _save_model(model, path: str) -> None:
    with run_folder.atomic_path(path) as temporary:
        model.save(temporary)


def _finished(paths: run_folder.RunPaths, config: TPTConfig, model, done: int, write: bool = True) -> bool:
    """Whether the run in ``paths`` has trained ``config.epochs`` epochs, with a readable
    ``last.keras``. A damaged ``last.keras`` is named and rebuilt from the backup (which holds the
    same final state); without a backup it is an error that says what to do."""
    import warnings

    from tpt_keras.runtime import backup

    legacy = done == 0 and not os.path.isdir(paths.backup)  # folders of older versions
    if done < config.epochs and not (legacy and len(run_folder.read_log(paths.log)) >= config.epochs):
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
    backup.TrainingBackup(paths.backup).restore(model)
    if write:
        warnings.warn(f"{paths.last}: {problem}; rebuilt from {paths.backup} (epoch {done})",
                      stacklevel=3)
        _save_model(model, paths.last)
    return True


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
