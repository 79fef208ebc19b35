"""Trained runs loaded from their folders, and their evaluation: predictions of a split with the
exemplar bank, Spearman and R-ℓ2 of one or several runs (AQA-7 classes, JIGSAWS folds), the
parsing metric, and the statistics over several seeds."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tpt_keras.config import TPTConfig
from tpt_keras.runtime import run_folder
from tpt_keras.experiment.data import load_samples, open_feature_cache, sample_boundaries, validation_split


@dataclasses.dataclass
class Run:
    """A trained run loaded from its folder."""

    paths: run_folder.RunPaths
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

    paths = run_folder.RunPaths(run_dir)
    checkpoint = getattr(paths, which)
    for required in (paths.config, paths.samples, paths.data, checkpoint):
        if not os.path.exists(required):
            raise FileNotFoundError(f"{required}: missing — is {run_dir} a finished `tpt train` "
                                    "run folder?")
    data = run_folder.read_json(paths.data)
    config = run_folder.load_saved_config(paths.config)
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


def run_name(config: TPTConfig) -> str:
    """A row name that tells runs apart (the dataset's registered ``row_name``): ``aqa7 diving``,
    ``jigsaws suturing fold 2``, ``mtl_aqa (DD)``."""
    from data_pipelines import datasets

    return datasets.get(config.dataset).run_name(config.action_class, config.fold,
                                                 config.use_difficulty)


def _check_runs(run_dirs, configs) -> None:
    """Several runs are averaged only when they are the classes / folds of one dataset."""
    from data_pipelines import datasets as dataset_registry

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
    if not dataset_registry.get(datasets[0]).averages_runs:
        raise ValueError(f"several {datasets[0]} runs: only AQA-7 classes or JIGSAWS folds are "
                         "averaged; evaluate the runs one at a time")
    names = [run_name(config) for config in configs]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValueError(f"{run_dirs[names.index(name)]} and {run_dirs[index]} are both "
                             f"{name}: each class / fold is averaged once")


def evaluate_run(run_dirs, which: str = "best", split: str = "test", plot: str | None = None,
                 progress: bool = False, scale: str = "judges", skip_bad: bool = False,
                 on_predictions=None) -> dict:
    """Spearman and R-ℓ2 of one or several runs, with the average over runs.

    Several runs are the AQA-7 classes (one model each: average ρ by Fisher z) or the JIGSAWS
    folds (average ρ by Fisher z as well, R-ℓ2 by the mean); runs of different datasets, and a
    run given twice, are refused. Scatter plots of predicted vs true scores: ``plot`` (one
    picture, a panel per run), else ``RUN/scatter_<split>.png`` per run.

    Args:
        scale: ``"judges"`` or ``"normalised"`` (:mod:`tpt_keras.experiment.score_scale`): the scale of the
            metrics and plots (only AQA-7 has two; ρ is the same on both for one class).
        skip_bad: skip unreadable test videos (listed per row under "skipped").
        on_predictions: called as ``on_predictions(run_dir, run, outputs)`` with each run's
            :class:`Run` and its :func:`predict_split` outputs (e.g. to draw a report from the
            same predictions instead of predicting again).
    """
    from tpt_keras import visualize
    from tpt_keras.experiment import score_scale
    from tpt_keras.ops import metrics

    if isinstance(run_dirs, str):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs)
    if scale not in score_scale.SCALES:
        raise ValueError(f"scale must be one of {', '.join(score_scale.SCALES)}, got {scale!r}")
    configs = []
    for run_dir in run_dirs:
        path = run_folder.RunPaths(run_dir).config
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: missing — is {run_dir} a `tpt train` run folder?")
        configs.append(TPTConfig.load(path))
    _check_runs(run_dirs, configs)
    rows, panels = [], []
    for run_dir in run_dirs:
        row, pred, true = _evaluate_one(run_dir, which, split, scale, plot, progress, skip_bad,
                                        on_predictions)
        panels.append((pred, true, row.pop("title")))
        rows.append(row)
    if plot:
        picture = visualize.plot_scatter_panels(panels, plot)
        for row in rows:
            row["plot"] = picture
    average = {"spearman": metrics.fisher_z_mean([row["spearman"] for row in rows]),
               "r_l2": float(np.mean([row["r_l2"] for row in rows]))}
    return {"runs": rows, "average": average}


def _evaluate_one(run_dir: str, which: str, split: str, scale: str, plot: str | None,
                  progress: bool, skip_bad: bool, on_predictions=None):
    """One row of :func:`evaluate_run` (with its plot title under ``"title"``), and its predicted
    and true scores on ``scale``; without ``plot`` its scatter plot is drawn in the run folder."""
    from tpt_keras import visualize
    from tpt_keras.experiment import score_scale
    from tpt_keras.ops import metrics

    run = load_run(run_dir, which)
    outputs = predict_split(run, split, progress=progress, skip_bad=skip_bad)
    if on_predictions is not None:
        on_predictions(run_dir, run, outputs)
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
    collapse = metrics.collapse_warning(pred, true)
    if collapse:
        title += f"\nCOLLAPSED: prediction spread {metrics.spread_ratio(pred, true):.3f} of the targets'"
    picture = None if plot else visualize.plot_scatter(
        pred, true, os.path.join(run_dir, f"scatter_{split}.png"), title=title)
    logged = run_folder.finished_results(run.paths) if os.path.exists(run.paths.log) else None
    parsing = parsing_report(outputs["attention"], outputs["boundaries"])
    attention_picture = None
    if parsing is not None:
        attention_picture = visualize.plot_attention(
            outputs["attention"][0],
            (os.path.splitext(plot)[0] + "_attention.png" if plot
             else os.path.join(run_dir, f"attention_{split}.png")),
            title=f"{outputs['keys'][0]}: attention and annotated steps",
            step_boundaries=outputs["boundaries"][0])
    row = {"run": run_dir, "name": name, "dataset": dataset, "checkpoint": which,
           "split": split, "samples": len(pred), "scale": scale,
           "scale_description": score_scale.describe(scale, dataset),
           "spearman": rho, "r_l2": r_l2, "by_scale": by_scale, "plot": picture,
           "skipped": [{"path": p, "error": m} for p, m in outputs["skipped"]],
           "training_log": logged, "parsing": parsing,
           "attention_plot": attention_picture, "title": title, "collapse": collapse}
    return row, pred, true


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


SEED_FOLDER = "seed_{}"


def seed_run_dirs(folder: str) -> list[str]:
    """The run folders of a several-seeds training (``tpt train … --seeds N``):
    ``folder/seed_<s>/`` with a ``config.json``, by seed; [] when ``folder`` is a run itself or
    holds none."""
    if os.path.exists(run_folder.RunPaths(folder).config) or not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        prefix, _, number = name.partition("_")
        if prefix == "seed" and number.isdigit() and os.path.exists(run_folder.RunPaths(os.path.join(folder, name)).config):
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
    configs = [TPTConfig.load(run_folder.RunPaths(path).config) for path in run_dirs]
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
    splits = load_samples(run_folder.RunPaths(run_dirs[0]).samples)
    return {"folder": folder, "name": run_name(base), "runs": run_dirs,
            "seeds": [config.seed for config in configs], "split": split, "samples": len(keys),
            "scale_description": score_scale.describe(scale, base.dataset),
            "selected_on": validation_split(splits), "checkpoints": checkpoints}
