"""One experiment end to end: data → model → training → a run folder → evaluation.

The one room that joins ``data_pipelines`` with the model, and the library behind ``tpt train`` /
``tpt evaluate`` / ``tpt extract-features`` (the command line only parses arguments). Callers write
``from tpt_keras import experiment`` and ``experiment.train(...)``. Importing it loads no
TensorFlow: the modules import TensorFlow and Keras inside their functions. Devices, strategies,
precision and run folders are the room below, :mod:`tpt_keras.runtime`.

Modules:

* :mod:`~tpt_keras.experiment.data`: samples by split, synthetic data, feature caches, the
  tf.data pipelines of a run;
* :mod:`~tpt_keras.experiment.training`: the model of a run and :func:`train`;
* :mod:`~tpt_keras.experiment.launch`: :func:`train_run`, a run exactly as ``tpt train`` makes
  it (checks before TensorFlow, strategy, precision, learning-rate rule, feature extraction,
  seeds), and :func:`resolve_config`;
* :mod:`~tpt_keras.experiment.evaluation`: loading runs, predictions with the exemplar bank,
  metrics of one or several runs and of several seeds;
* :mod:`~tpt_keras.experiment.report`: terminal tables of those results;
* :mod:`~tpt_keras.experiment.callbacks`, :mod:`~tpt_keras.experiment.exemplar_bank`,
  :mod:`~tpt_keras.experiment.score_scale`.

A *run folder* holds everything needed to evaluate, export or resume a run::

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

Every file is written atomically (:mod:`tpt_keras.runtime.run_folder`): a kill leaves the old or
the new version, never half a file. ``config.json`` is written only once training starts.

Two modes: *features* (train decoder and heads on cached I3D clip features, made by
:func:`extract_features`) and *end to end* (frames → I3D with frozen BN statistics → TPT).
"""

from tpt_keras.experiment.data import (
    BACKBONE_NAME, FEATURE_SOURCES, build_backbone, config_for_features, default_features_dir,
    eval_dataset, extract_features, feature_cache_backbone, features_source, load_samples,
    load_splits, open_feature_cache, pair_dataset, run_splits, sample_boundaries, save_samples,
    skip_unreadable,
    steps_per_epoch, synthetic_finediving_splits, synthetic_splits, training_step_boundaries,
    validation_split)
from tpt_keras.experiment.evaluation import (
    SEED_FOLDER, Run, evaluate_run, evaluate_seeds, load_run, parsing_report, predict_split,
    run_bank, run_name, seed_run_dirs)
from tpt_keras.experiment.launch import (
    TrainingInterrupted, check_inputs, parse_overrides, resolve_config, train_run)
from tpt_keras.experiment.report import format_parsing, format_results, format_seed_results
from tpt_keras.runtime.run_folder import RunPaths, best_logged
from tpt_keras.experiment.training import (
    NonFiniteLossError, build_model, model_intervals, train)

__all__ = [
    "BACKBONE_NAME", "FEATURE_SOURCES", "NonFiniteLossError", "TrainingInterrupted",
    "check_inputs", "parse_overrides", "resolve_config", "train_run", "Run", "RunPaths", "SEED_FOLDER", "best_logged",
    "build_backbone", "build_model", "config_for_features", "default_features_dir", "eval_dataset",
    "evaluate_run", "evaluate_seeds", "extract_features", "feature_cache_backbone",
    "features_source", "format_parsing", "format_results",
    "format_seed_results", "load_run", "load_samples", "load_splits", "model_intervals",
    "open_feature_cache", "pair_dataset", "parsing_report", "predict_split", "run_bank", "run_splits", "run_name",
    "sample_boundaries", "save_samples", "seed_run_dirs", "skip_unreadable", "steps_per_epoch",
    "synthetic_finediving_splits", "synthetic_splits", "train", "training_step_boundaries",
    "validation_split",
]
