"""A training run exactly as ``tpt train`` makes it, from Python: :func:`train_run`.

The order is the contract:

1. every check that needs no tensor (the inputs a dataset takes, files and folders, the run
   folder's lock and its saved configuration, epochs, batch, seeds, the names of the strategy and
   precision modes) and the samples themselves, **before TensorFlow is imported**, so that a
   refused request is refused at once;
2. TensorFlow; determinism for one-replica runs; the ``tf.distribute`` strategy; the global batch
   and the learning-rate rule for ``per_replica_batch``; the dtype policy and XLA;
3. the clip features of a video dataset, extracted once into a cache inside the run folder
   (unless a cache is given, or ``end_to_end`` fine-tunes I3D on the frames);
4. the run (or one run per seed) with :func:`tpt_keras.experiment.training.train`.

:func:`train_splits` is steps 2-4 on splits already read (``tpt reproduce`` trains its runs
through it). :func:`resolve_config` turns a preset name or file, ``KEY=VALUE`` overrides and the class /
task / fold / epochs choices into the configuration. Ctrl-C or SIGTERM ends a run with
:class:`TrainingInterrupted` (a ``KeyboardInterrupt`` whose message says where and how to resume).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import warnings

from data_pipelines import datasets
from tpt_keras.config import PRESETS, TPTConfig, get_preset
from tpt_keras.runtime import run_folder

INPUT_FLAGS = {"annotations": "--annotations", "manifest": "--manifest",
                "media_root": "--media-root"}
FEATURES_FOLDER = "features"  # the cache a run extracts into, inside its folder


def say(line: str) -> None:
    """A progress line on standard output, at once (before a long step or a crash)."""
    print(line, flush=True)


def dataset_inputs(dataset: str) -> tuple[str, ...]:
    """The inputs a dataset reads, from its registry record: an annotation folder and the media,
    a manifest, or (built-in data) nothing or the annotations its timing comes from. An input
    outside them is refused rather than silently ignored."""
    record = datasets.get(dataset)
    if record.source == "annotations":
        return ("annotations", "media_root")
    if record.source == "manifest":
        return ("manifest",)
    return ("annotations",) if record.needs_annotations else ()


def builtin_features(dataset: str) -> bool:
    """Whether the dataset is built-in clip features (no videos: no extraction, no end-to-end)."""
    return datasets.get(dataset).source == "synthetic"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; the message says in which epoch and how to resume."""


def resolve_config(preset, overrides=(), *, action_class: str | None = None,
                   task: str | None = None, fold: int | None = None,
                   epochs: int | None = None) -> TPTConfig:
    """The configuration of a run.

    Args:
        preset: a :class:`TPTConfig`, a preset name, or a preset JSON file (written by
            ``tpt tune`` or saved beside a trained model).
        overrides: ``"KEY=VALUE"`` strings (values read as JSON, else text; protocol fields as
            ``protocol.NAME``) or a dict; validated by :class:`TPTConfig` (unknown names are
            refused with a suggestion).
        action_class: the AQA-7 class (``--class``); task, fold: the JIGSAWS task and fold.
        epochs: replaces the preset's epochs (≥ 1).

    Raises:
        ValueError naming the preset, the override or the flag.
    """
    config = _preset(preset)
    if epochs is not None and epochs < 1:
        raise ValueError(f"--epochs must be ≥ 1, got {epochs}")
    record = datasets.get(config.dataset)
    for flag, value, applies in (("--class", action_class, bool(record.classes)),
                                 ("--task", task, bool(record.classes)),
                                 ("--fold", fold, bool(record.num_folds))):
        if value is not None and not applies:
            raise ValueError(f"{flag} does not apply to the {config.dataset} dataset, which has "
                             f"no {'folds' if flag == '--fold' else 'classes or tasks'}: remove it")
    values = parse_overrides(overrides)
    if values:
        try:
            config = config.replace(**values)
        except ValueError as error:
            raise ValueError(f"--set: {error}") from None
    chosen = {"action_class": action_class if action_class is not None else task, "fold": fold,
              "epochs": epochs}
    chosen = {name: value for name, value in chosen.items() if value is not None}
    return config.replace(**chosen) if chosen else config


def _preset(preset) -> TPTConfig:
    if isinstance(preset, TPTConfig):
        return preset
    if preset in PRESETS:
        return get_preset(preset)
    if os.path.isfile(preset):
        return TPTConfig.load(preset)  # names the file when it is not a preset
    raise ValueError(f"unknown preset {preset!r}: not one of {', '.join(PRESETS)} and not a file")


def parse_overrides(overrides) -> dict:
    """``["epochs=3", "protocol.flip=false"]`` (``--set`` values) → ``{"epochs": 3,
    "protocol.flip": False}``: each value read as JSON, else kept as text; a dict is copied."""
    if isinstance(overrides, dict):
        return dict(overrides)
    values = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(text.strip())
        except json.JSONDecodeError:
            values[key.strip()] = text.strip()
    return values


def check_inputs(config: TPTConfig, *, annotations: str | None = None,
                 manifest: str | None = None, media_root: str | None = None,
                 features: str | None = None, end_to_end: bool = False) -> None:
    """Refuse (ValueError naming the flag) an input the config's dataset does not read, a
    missing file or folder, and ``end_to_end`` where it cannot apply. Needs no TensorFlow."""
    given = {"annotations": annotations, "manifest": manifest, "media_root": media_root}
    reads = dataset_inputs(config.dataset)
    for name, value in given.items():
        if value is not None and name not in reads:
            wanted = " and ".join(INPUT_FLAGS[n] for n in reads) or "no files (built-in data)"
            raise ValueError(f"{INPUT_FLAGS[name]} does not apply to the {config.dataset} "
                             f"dataset, which reads {wanted}: remove it")
    for name, value, folder in (("annotations", annotations, None), ("manifest", manifest, False),
                                ("media_root", media_root, True)):
        _check_path(INPUT_FLAGS[name], value, folder)
    if features is not None and not builtin_features(config.dataset):
        _check_path("--features", features, True)
    if end_to_end and (builtin_features(config.dataset) or config.backbone == "none"):
        raise ValueError(f"--end-to-end fine-tunes I3D on videos; the {config.dataset} preset "
                         f"(backbone {config.backbone!r}) trains on clip features: remove it")
    if end_to_end and features is not None:
        raise ValueError("--end-to-end trains on the videos, --features on cached features: "
                         "choose one")


def _check_path(flag: str, path: str | None, folder: bool | None) -> None:
    """``path`` exists (as a folder when ``folder``, a file when False, either when None)."""
    if path is None:
        return
    if not os.path.exists(path):
        raise ValueError(f"{flag} {path}: no such {'folder' if folder else 'file'}")
    if folder and not os.path.isdir(path):
        raise ValueError(f"{flag} {path}: not a folder")
    if folder is False and os.path.isdir(path):
        raise ValueError(f"{flag} {path}: a folder, not a file")


def run_folders(config: TPTConfig, output: str, seeds: int | None = None) -> list:
    """``[(config, run folder)]``: ``output`` itself, or with ``seeds`` one run per seed
    (config.seed, config.seed + 1, …) in ``output/seed_<s>/``."""
    from tpt_keras.experiment.evaluation import SEED_FOLDER

    if not seeds:
        return [(config, output)]
    return [(config.replace(seed=config.seed + i),
             os.path.join(output, SEED_FOLDER.format(config.seed + i))) for i in range(seeds)]


def _check_modes(strategy: str, mixed_precision: str, jit_compile: str, per_replica_batch,
                 seeds, logical_cpus) -> None:
    from tpt_keras.runtime import precision

    for flag, value, allowed in (("--strategy", strategy, ("auto", "one-device", "mirrored",
                                                            "multi-worker")),
                                 ("--mixed-precision", mixed_precision, precision.PRECISION_MODES),
                                 ("--jit-compile", jit_compile, precision.JIT_MODES)):
        if value not in allowed:
            raise ValueError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
    for flag, value in (("--per-replica-batch", per_replica_batch), ("--seeds", seeds),
                        ("--logical-cpus", logical_cpus)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{flag} must be a whole number ≥ 1, got {value!r}")


def fitted_batch_size(config: TPTConfig, num_train: int, log=say) -> TPTConfig:
    """``config`` with ``batch_size`` lowered to ``num_train`` when the training set is smaller
    than one batch (an epoch then is one step), with a one-line notice (to ``log``) saying so."""
    if config.batch_size <= num_train:
        return config
    if num_train < 1:
        raise ValueError("the training split has no videos")
    log(f"batch_size {config.batch_size} → {num_train}: the training set has {num_train} "
        f"videos, fewer than one batch of {config.batch_size} pairs (--set batch_size=N to "
        "choose)")
    return config.replace(batch_size=num_train)


def _check_run_folder(run_config: TPTConfig, run_dir: str) -> int:
    """The epochs ``run_dir`` has finished, after checking its lock, its saved configuration and
    its backup (no TensorFlow)."""
    from tpt_keras.experiment import training

    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"--output {run_dir}: a file, not a folder")
    run_folder.check_unlocked(run_dir)
    return training.check_run_folder(run_folder.RunPaths(run_dir), run_config)


def _check_run_folders(config: TPTConfig, output: str, seeds: int | None, log=say) -> None:
    """Check every run folder of the request; say which ones resume or are finished."""
    for run_config, run_dir in run_folders(config, output, seeds):
        done, epochs = _check_run_folder(run_config, run_dir), run_config.epochs
        if done >= epochs:
            log(f"{run_dir} has finished its {epochs} epochs: nothing to train")
        elif done:
            log(f"resuming {run_dir} after epoch {done} of {epochs} (same weights as an "
                "uninterrupted run)")


def train_run(config: TPTConfig, output: str, *, annotations: str | None = None,
              manifest: str | None = None, media_root: str | None = None,
              features: str | None = None, end_to_end: bool = False, strategy: str = "auto",
              logical_cpus: int | None = None, mixed_precision: str = "auto",
              jit_compile: str = "auto", per_replica_batch: int | None = None,
              seeds: int | None = None, skip_bad: bool = False, verbose: int = 1) -> list[dict]:
    """Train as ``tpt train`` does (the module docstring gives the order); returns one result
    per run (:func:`tpt_keras.experiment.training.train`'s, with ``"run"``, its folder).

    Args:
        config: the configuration (:func:`resolve_config`).
        output: the run folder (resumed when it exists), or with ``seeds`` the folder of the runs.
        annotations, manifest, media_root: the dataset's files (each dataset reads its own: an
            input it does not read is refused).
        features: a feature cache (``tpt extract-features``); default for a video dataset: the
            features are extracted into ``output/features`` (resumable) first.
        end_to_end: fine-tune I3D on the frames instead (slow on a CPU; progress per step).
        strategy: ``auto``, ``one-device``, ``mirrored`` or ``multi-worker``
            (:func:`tpt_keras.runtime.strategies.make_strategy`); ``logical_cpus`` splits a CPU.
        mixed_precision, jit_compile: ``auto`` or an explicit choice
            (:mod:`tpt_keras.runtime.precision`).
        per_replica_batch: pairs per replica; the global batch is this × replicas and the
            learning rates follow the square-root rule from the config's batch.
        seeds: train this many runs, seeds ``config.seed``, ``config.seed + 1``, … in
            ``output/seed_<s>/``.
        skip_bad: skip unreadable videos (and samples missing from the cache), listed once.
        verbose: Keras progress: 0 silent, 1 progress bar, 2 one line per epoch.

    Raises:
        ValueError: a refused input, before TensorFlow is imported when no tensor is needed.
        TrainingInterrupted: Ctrl-C or SIGTERM (the message says how to resume).
    """
    from tpt_keras.experiment import data

    check_inputs(config, annotations=annotations, manifest=manifest, media_root=media_root,
                 features=features, end_to_end=end_to_end)
    _check_modes(strategy, mixed_precision, jit_compile, per_replica_batch, seeds, logical_cpus)
    extract = (not features and not end_to_end and not builtin_features(config.dataset)
               and config.backbone != "none")
    features = (os.path.join(output, FEATURES_FOLDER) if extract
                else data.default_features_dir(config, output, features))
    config, notice = data.config_for_features(config, None if extract else features)
    if notice:  # features computed elsewhere: no frame backbone
        print(notice)
    if config.backbone == "none" and not features:
        raise ValueError("this configuration has no backbone: pass --features CACHE (made by "
                         "`tpt extract-features`)")
    for _, run_dir in run_folders(config, output, seeds):
        run_folder.check_unlocked(run_dir)
    splits = data.run_splits(config, annotations=annotations, manifest=manifest,
                             media_root=media_root, features_dir=None if extract else features,
                             check_paths=not features or extract)
    results = train_splits(config, splits, output, features=features, extract=extract,
                           end_to_end=end_to_end, strategy=strategy, logical_cpus=logical_cpus,
                           mixed_precision=mixed_precision, jit_compile=jit_compile,
                           per_replica_batch=per_replica_batch, seeds=seeds, skip_bad=skip_bad,
                           verbose=verbose)
    if seeds:
        print(f"{seeds} seeds in {output}: `tpt evaluate {output}` reports mean ± std over them "
              "and a bootstrap interval over the test videos")
    return results


def train_splits(config: TPTConfig, splits: dict, output: str, *, features: str | None = None,
                 extract: bool = False, end_to_end: bool = False, strategy: str = "auto",
                 logical_cpus: int | None = None, mixed_precision: str = "auto",
                 jit_compile: str = "auto", per_replica_batch: int | None = None,
                 seeds: int | None = None, skip_bad: bool = False, verbose: int = 1,
                 log=say) -> list[dict]:
    """Steps 2-4 of the module docstring on splits already read: the batch fitted to the
    training set, the run folders checked, TensorFlow and the strategy, the features extracted
    into ``features`` when ``extract``, then the run or one run per seed, Ctrl-C and SIGTERM
    ending it with :class:`TrainingInterrupted`. :func:`train_run` (``tpt train``) and
    ``tpt reproduce`` train through here.

    Args:
        splits: ``{"train": [...], "test": [...], ("val": [...])}`` samples.
        features: the samples' feature cache (None: train on the frames, ``end_to_end``).
        log: where the progress lines go.
        The others: as :func:`train_run`.

    Returns:
        one result per run, as :func:`train_run`.
    """
    from tpt_keras.experiment import data

    _check_modes(strategy, mixed_precision, jit_compile, per_replica_batch, seeds, logical_cpus)
    data.validation_split(splits)
    if per_replica_batch is None:  # else the batch depends on the replicas: after TensorFlow
        config = fitted_batch_size(config, len(splits["train"]), log)
        _check_run_folders(config, output, seeds, log)
    with _interrupted_message() as where:
        config, strategy_ = _start_tensorflow(config, strategy, logical_cpus, per_replica_batch,
                                              mixed_precision, jit_compile, len(splits["train"]),
                                              log)
        if per_replica_batch is not None:
            _check_run_folders(config, output, seeds, log)
        if extract:
            where["step"] = "feature extraction"
            _extract(config, splits, features, skip_bad, log)
        return [_train_one(run_config, splits, run_dir, features, where, strategy=strategy_,
                           skip_bad=skip_bad, verbose=verbose, jit_compile=_jit(jit_compile),
                           end_to_end=end_to_end, log=log)
                for run_config, run_dir in run_folders(config, output, seeds)]


def _jit(mode: str) -> bool:
    from tpt_keras.runtime import precision

    return precision.resolve_jit_compile(mode)


def _start_tensorflow(config: TPTConfig, strategy: str, logical_cpus, per_replica_batch,
                      mixed_precision: str, jit_compile: str, num_train: int, log=say):
    """TensorFlow, determinism (one replica), the strategy, the global batch and learning-rate
    rule, the dtype policy; prints one line that says what was chosen."""
    from tpt_keras.runtime import startup

    startup.import_tensorflow()
    import keras

    from tpt_keras.runtime import precision, strategies

    if strategies.will_have_one_replica(strategy, logical_cpus) and not strategies.make_deterministic():
        warnings.warn("TensorFlow was already running with parallel inter-op threads: this run "
                      "may differ in the last bits from the same run in a fresh process; call "
                      "train_run before any other TensorFlow work to make it reproducible",
                      stacklevel=3)
    made = strategies.make_strategy(strategy, logical_cpus=logical_cpus)
    if per_replica_batch:
        # global batch = per-replica batch × replicas; the config's rates belong to its own
        # batch and follow the square-root rule (tpt_keras.runtime.strategies.lr_multiplier).
        batch = strategies.global_batch_size(per_replica_batch, made)
        scale = strategies.lr_multiplier(batch, reference_batch=config.batch_size)
        config = fitted_batch_size(config.replace(
            batch_size=batch, learning_rate=config.learning_rate * scale,
            head_learning_rate=config.head_learning_rate * scale), num_train, log)
    policy = precision.resolve_precision(mixed_precision, purpose="train")
    keras.mixed_precision.set_global_policy(policy)
    log(f"precision policy {policy}, XLA {'on' if _jit(jit_compile) else 'off'}, strategy "
        f"{type(made).__name__} ({made.num_replicas_in_sync} replicas)")
    return config, made


def _extract(config: TPTConfig, splits, cache: str, skip_bad: bool, log=say) -> None:
    """Every sample's clip features into ``cache`` (resumable; a progress bar with ETA)."""
    from tpt_keras.experiment import data

    unique = list({s.key: s for items in splits.values() for s in items}.values())
    if os.path.isdir(cache) and not data.open_feature_cache(config, cache).missing(
            [s.key for s in unique]):
        return  # every video's features are in the cache already
    log(f"clip features of {len(unique)} videos → {cache} (once; an interrupted extraction "
        "resumes)")
    _, report = data.extract_features(config, unique, cache, skip_bad=skip_bad)
    log(f"features: {len(report.written)} extracted, {len(report.skipped_existing)} cached, "
        f"{len(report.failed)} unreadable")


def _train_one(config: TPTConfig, splits, run_dir: str, features, where: dict, *, strategy,
               skip_bad: bool, verbose: int, jit_compile: bool, end_to_end: bool,
               log=say) -> dict:
    from tpt_keras.experiment import training
    from tpt_keras.ops import metrics

    where.update(step="epoch", run=run_dir, epoch=None)
    callbacks = [_epoch_tracker(where)]
    if end_to_end:
        callbacks.append(training.step_progress())
    results = training.train(config, splits, run_dir, features_dir=features,
                             jit_compile=jit_compile, verbose=verbose, skip_bad=skip_bad,
                             strategy=strategy, extra_callbacks=callbacks)
    for key, message in results["skipped"]:
        log(f"skipped {key}: {message}")
    best, last = results["best"], results["last"]
    best_text = (f"best {best['spearman']:.4f} (epoch {best['epoch']})" if best else
                 "best: none (no epoch had a finite Spearman)")
    log(f"validation Spearman: {best_text}, last {last['spearman']:.4f} "
        f"(epoch {last['epoch']}) → {run_dir}")
    ratio = last.get("spread_ratio")
    if ratio is not None and ratio < metrics.COLLAPSE_FRACTION:
        log(f"warning: the last model's predictions have collapsed: their spread is {ratio:.3f} "
            f"of the validation targets' (below {metrics.COLLAPSE_FRACTION:g}); every video gets "
            "about the same score, so its Spearman ranks noise")
    return {**results, "run": run_dir}


def _epoch_tracker(where: dict):
    """A Keras callback that records the epoch in progress (1-based) for the interruption
    message, and stops a run whose interruption was deferred (:func:`_interrupts`) at the next
    safe point: after a step, or once an epoch's files and backup are written."""
    import keras

    class EpochTracker(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            where["defer"] = True

        def on_train_end(self, logs=None):
            where["defer"] = False

        def on_epoch_begin(self, epoch, logs=None):
            where["epoch"] = epoch + 1
            self._stop_if_asked()

        def on_train_batch_end(self, batch, logs=None):
            self._stop_if_asked()

        def _stop_if_asked(self):
            if where.get("requested"):
                where["defer"] = False
                raise KeyboardInterrupt

    return EpochTracker()


@contextlib.contextmanager
def _interrupted_message():
    """Turn a KeyboardInterrupt into :class:`TrainingInterrupted` saying where it happened.

    Ctrl-C and SIGTERM raise KeyboardInterrupt at once, except while a run trains: then the
    first one is deferred to the end of the step (a run folder file being written is finished
    first; :func:`_epoch_tracker`), and a second one stops at once."""
    import threading

    where = {"step": "start-up", "epoch": None, "defer": False, "requested": False}

    def handler(signum, frame):
        if where["defer"] and not where["requested"]:
            where["requested"] = True
            return
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = {name: signal.signal(name, handler) for name in (signal.SIGINT, signal.SIGTERM)} \
        if main else {}
    try:
        yield where
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        if where["step"] == "epoch" and where["epoch"] is not None:
            text = f"interrupted in epoch {where['epoch']}"
        else:
            text = f"interrupted during {where['step']}"
        raise TrainingInterrupted(f"{text}; run the same command to resume") from None
    finally:
        for name, old in previous.items():
            signal.signal(name, old)
        sys.stdout.flush()
