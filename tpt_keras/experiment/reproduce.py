"""``tpt reproduce TABLE``: from a downloaded release to one of the paper's tables, beside the
published numbers.

One call runs the stages in order, each skipping what an earlier call finished (so a crash at any
stage resumes where it stopped):

1. **prepare**: :func:`tpt_keras.experiment.prepare.check_release`; samples that would stop
   training (missing, damaged) are left out everywhere and listed (``prepare.json``);
2. **extraction**: Kinetics-400 I3D clip features into one cache per video protocol, shared by
   every run of the table that reads videos the same way (``features/<protocol>/``; resumable);
3. **training**: each run of the table (a row, or a class / fold of one) with ``seeds`` seeds,
   ``runs/<run>/seed_<s>/`` (resumable run folders);
4. **evaluation**: every seed's test predictions with its validation-selected (``best.keras``)
   and last-epoch (``last.keras``) model; per row, mean ± std over seeds and a bootstrap 95 %
   interval over the test videos; averages by Fisher z (AQA-7 classes, JIGSAWS folds and tasks).

The datasets have no validation split, so ``best`` is selected on the test split itself: it is
the *best test epoch*, the figure the original code prints and the paper reports; ``last`` is
the figure without selection on the test set.

:data:`PUBLISHED` is the one place the library holds the published numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import numpy as np

from data_pipelines.datasets import AQA7_CLASSES, JIGSAWS_TASKS
from tpt_keras.config import get_preset

# The published numbers each table is compared with: Spearman's ρ and R-ℓ2 × 100 (None: not
# published). TPT: Bai et al., "Action Quality Assessment with Temporal Parsing Transformer",
# ECCV 2022, Tables 1-3. FineDiving: TPT did not report it; the number to compare with is TSA
# (Xu et al., CVPR 2022), computed from its released test predictions.
PUBLISHED = {
    "mtl_aqa": {"source": "TPT (ECCV 2022), Table 1, MTL-AQA",
                "rows": {"w/ DD": (0.9607, 0.2378), "w/o DD": (None, None)}},
    "aqa7": {"source": "TPT (ECCV 2022), Table 2, AQA-7 (average: Fisher z)",
             "rows": {"diving": (0.8969, None), "gym_vault": (0.8043, None),
                      "ski_big_air": (0.7336, None), "snowboard_big_air": (0.6965, None),
                      "sync_diving_3m": (0.9456, None), "sync_diving_10m": (0.9545, None),
                      "average": (0.8715, None)}},
    "jigsaws": {"source": "TPT (ECCV 2022), Table 3, JIGSAWS (4-fold cross-validation)",
                "rows": {"suturing": (0.88, None), "needle_passing": (0.88, None),
                         "knot_tying": (0.91, None), "average": (0.89, None)}},
    "finediving": {"source": "TSA (CVPR 2022), its released FineDiving test predictions",
                   "rows": {"finediving": (0.9212, 0.337)}},
}
TABLES = tuple(PUBLISHED)
AVERAGE = "average"
SELECTION_NOTE = ("'best' is selected on the test split itself (these datasets have no validation "
                  "split): the best test epoch, what the original code prints and the paper "
                  "reports; 'last' is the last epoch, without selection on the test set")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One trained model of a table: its folder name, the table row it counts towards, its
    preset and the preset fields it sets (AQA-7 class, JIGSAWS task and fold)."""

    name: str
    row: str
    preset: str
    fields: tuple = ()


def table_runs(table: str) -> list[RunSpec]:
    """The runs of a table, in row order: MTL-AQA with and without DD; the six AQA-7 classes;
    JIGSAWS 3 tasks × 4 folds; FineDiving."""
    if table == "mtl_aqa":
        return [RunSpec("mtl_aqa_dd", "w/ DD", "mtl_aqa_dd"),
                RunSpec("mtl_aqa_nodd", "w/o DD", "mtl_aqa_nodd")]
    if table == "aqa7":
        return [RunSpec(f"aqa7_{c}", c, "aqa7", (("action_class", c),)) for c in AQA7_CLASSES]
    if table == "jigsaws":
        return [RunSpec(f"jigsaws_{t}_fold{k}", t, "jigsaws", (("action_class", t), ("fold", k)))
                for t in JIGSAWS_TASKS for k in range(4)]
    if table == "finediving":
        return [RunSpec("finediving", "finediving", "finediving")]
    raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")


def run_config(spec: RunSpec, overrides: dict | None = None, epochs: int | None = None):
    """The configuration of a run: its preset, its class / fold, the user's overrides, epochs."""
    config = get_preset(spec.preset, **dict(spec.fields))
    if overrides:
        config = config.replace(**overrides)
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"--epochs must be ≥ 1, got {epochs}")
        config = config.replace(epochs=epochs)
    return config


def protocol_id(config) -> str:
    """A short stable name of a video protocol: runs with equal ids share a feature cache."""
    text = json.dumps(config.protocol.to_dict(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------------
def _without(splits: dict, keys: set) -> dict:
    return {name: [s for s in items if s.key not in keys] for name, items in splits.items()}


def _extract(configs_and_splits, output: str, batch_size: int, log) -> tuple[dict, set]:
    """One feature cache per protocol for every sample of the runs that read it; returns
    ``{protocol id: cache folder}`` and the keys whose video could not be decoded."""
    from tpt_keras.experiment.data import extract_features

    by_protocol, failed = {}, set()
    for config, splits in configs_and_splits:
        entry = by_protocol.setdefault(protocol_id(config), (config, {}))
        for sample in (s for items in splits.values() for s in items):
            entry[1].setdefault(sample.key, sample)
    caches = {}
    for pid, (config, samples) in by_protocol.items():
        cache = os.path.join(output, "features", pid)
        _, report = extract_features(config, list(samples.values()), cache, batch_size=batch_size,
                                     skip_bad=True, progress=True)
        log(f"extraction {pid}: {len(report.written)} extracted, {len(report.skipped_existing)} "
            f"already cached, {len(report.failed)} unreadable → {cache}")
        failed |= {key for key, _ in report.failed}
        caches[pid] = cache
    return caches, failed


def _predictions(run_dirs: list[str], which: str, model=None, splits=None, config=None,
                 features=None, weights=None) -> tuple[np.ndarray, np.ndarray, list]:
    """(S, N) test predictions of a run's seeds (or of the ``model`` of a preset directory
    ``weights``) and the (N,) true scores, on the judges' scale. A run without ``best.keras`` (no
    epoch had a finite ρ) gives its last model for ``best``."""
    from tpt_keras.experiment import evaluation, score_scale
    from tpt_keras.runtime import run_folder

    predictions, true, keys = [], None, None
    sources = run_dirs if model is None else [None]
    for path in sources:
        checkpoint = which
        if model is None and which == "best" and not os.path.exists(run_folder.RunPaths(path).best):
            checkpoint = "last"  # no epoch had a finite test ρ, none was selected: the last counts
        run = (evaluation.load_run(path, checkpoint) if model is None else
               evaluation.Run(paths=run_folder.RunPaths(weights), config=config, model=model,
                              splits=splits, data={"features": features}))
        outputs = evaluation.predict_split(run, "test")
        if keys is not None and outputs["keys"] != keys:
            raise ValueError(f"{path}: its test videos differ from {sources[0]}'s")
        keys = outputs["keys"]
        convert = lambda v: score_scale.to_judges(v, outputs["groups"], run.config.dataset)  # noqa: E731
        predictions.append(convert(outputs["pred"]))
        true = convert(outputs["true"])
    return np.stack(predictions), true, keys


def update_line(config) -> str:
    """How one Adam step of ``config`` is made, in a line: the batch, the micro-batches and the
    loss normalisation (micro-batches of ceil(batch / ``accumulate_steps``) pairs, as many as
    the batch fills)."""
    from tpt_keras.models.tpt_model import micro_batch_size

    pairs = micro_batch_size(config.batch_size, config.accumulate_steps)
    units = -(-config.batch_size // pairs)
    scope = ("each interval's mean within a micro-batch" if config.loss_normalization == "per_replica"
             else "each interval's mean over the whole batch")
    origin = (": the original's 8 GPUs × 3 pairs, accumulated on one device"
              if (units, pairs, config.loss_normalization) == (8, 3, "per_replica") else "")
    return (f"update: {config.batch_size} pairs as {units} micro-batch{'es' if units > 1 else ''} "
            f"of {pairs} ({scope}){origin}")


def reproduce(table: str, annotations: str, media_root: str, output: str, *, seeds: int = 1,
              epochs: int | None = None, overrides: dict | None = None, end_to_end: bool = False,
              weights: str | None = None, deep: bool = False, batch_size: int = 4,
              num_bootstrap: int = 1000, verbose: int = 2, log=print) -> dict:
    """Run the stages of the module docstring for ``table`` and return its results.

    Args:
        table: one of :data:`TABLES`.
        annotations, media_root: the release (annotation folder; frame folders / videos).
        output: the folder of everything this writes (resumable).
        seeds: runs per table entry, seeds ``config.seed``, ``+1``, …
        epochs, overrides: replace the presets' epochs / fields (``{"batch_size": 4}``,
            ``{"protocol.flip": False}``), for every run.
        end_to_end: train I3D with the rest, from frames (the paper's setting; slow) instead of on
            cached features.
        weights: a preset directory (:func:`tpt_keras.models.presets.save_preset`): evaluate it
            instead of training (tables of one run: ``mtl_aqa`` row of its config, ``finediving``).
        deep: decode every frame in the prepare stage.
        batch_size: videos per I3D call in extraction.
        num_bootstrap: resamples of the 95 % interval.
        verbose: Keras fit verbosity.
        log: where progress lines go.

    Returns:
        ``{"table", "name" (of its JSON file in ``output``: ``reproduce_TABLE`` or, with
        ``weights``, ``reproduce_TABLE_weights``), "source", "seeds", "selected_on", "note",
        "rows": [{"name", "runs",
        "published": {"spearman", "r_l2"}, "samples", "best": stats, "last": stats}], "left_out",
        "prepare", "features", "timings"}`` (stats:
        :func:`tpt_keras.ops.metrics.grouped_seed_statistics`).
    """
    from tpt_keras.experiment import prepare
    from tpt_keras.experiment.data import load_splits
    from tpt_keras.experiment.launch import train_splits

    if seeds < 1:
        raise ValueError(f"--seeds must be ≥ 1, got {seeds}")
    configs = [(spec, run_config(spec, overrides, epochs)) for spec in table_runs(table)]
    if weights:
        configs = _weights_runs(weights, configs)
    timings = {}
    os.makedirs(output, exist_ok=True)
    started = time.perf_counter()
    report = prepare.check_release(table, annotations, media_root, deep=deep)
    prepare.write_report(report, os.path.join(output, "prepare.json"))
    left_out = prepare.blocked_keys(report)
    log(f"prepare: {sum(s['samples'] for s in report['splits'].values())} samples checked, "
        f"{len(left_out)} left out (missing or damaged){': ' + ', '.join(sorted(left_out)[:5]) if left_out else ''}"
        f" → {os.path.join(output, 'prepare.json')}")
    timings["prepare"] = time.perf_counter() - started
    _start_tensorflow()
    log(update_line(configs[0][1]))
    runs = [(spec, config, _without(load_splits(config, annotations, media_root, check_paths=False), left_out))
            for spec, config in configs]

    started = time.perf_counter()
    caches = {}
    if not end_to_end:
        caches, failed = _extract([(c, s) for _, c, s in runs], output, batch_size, log)
        if failed:
            left_out |= failed
            runs = [(spec, config, _without(splits, failed)) for spec, config, splits in runs]
    timings["extraction"] = time.perf_counter() - started

    started = time.perf_counter()
    run_dirs = {}
    for spec, config, splits in [] if weights else runs:
        trained = train_splits(config, splits, os.path.join(output, "runs", spec.name),
                               features=caches.get(protocol_id(config)), end_to_end=end_to_end,
                               seeds=seeds, verbose=verbose, log=log)
        run_dirs[spec.name] = [result["run"] for result in trained]
    timings["training"] = time.perf_counter() - started

    started = time.perf_counter()
    results = _evaluate(table, runs, run_dirs, caches, weights, num_bootstrap)
    timings["evaluation"] = time.perf_counter() - started
    results.update({"left_out": sorted(left_out), "prepare": os.path.join(output, "prepare.json"),
                    "features": sorted(caches.values()), "timings": timings, "output": output,
                    "weights": weights,
                    "seeds": [runs[0][1].seed + i for i in range(1 if weights else seeds)]})
    results["name"] = f"reproduce_{table}" + ("_weights" if weights else "")
    with open(os.path.join(output, results["name"] + ".json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    return results


def _start_tensorflow() -> None:
    """TensorFlow, after the checks that need none, with one-replica runs bit-identical
    between processes (:func:`tpt_keras.runtime.strategies.make_deterministic`, before the first
    op; nothing when it is too late)."""
    from tpt_keras.runtime import startup

    startup.import_tensorflow()
    from tpt_keras.runtime import strategies

    strategies.make_deterministic()


def _weights_runs(weights: str, configs):
    """The one run of the table that a preset's configuration matches."""
    from tpt_keras.models import presets

    saved = presets.load_preset_config(weights)
    setting = lambda c: (c.dataset, c.use_difficulty, c.action_class, c.fold)  # noqa: E731
    matches = [(spec, saved) for spec, config in configs if setting(config) == setting(saved)]
    if not matches:
        raise ValueError(f"{weights}: its model ({saved.dataset}) belongs to no run of this table")
    return matches[:1]


def _evaluate(table: str, runs, run_dirs: dict, caches: dict, weights, num_bootstrap: int) -> dict:
    published = PUBLISHED[table]["rows"]
    per_run = {}
    for spec, config, splits in runs:
        if weights:  # one model: the same predictions under both names
            from tpt_keras.models import presets

            model = presets.load_preset(weights)
            features = None if model.backbone is not None else caches.get(protocol_id(config))
            per_run[(spec.name, "best")] = per_run[(spec.name, "last")] = _predictions(
                [], "best", model, splits, config, features, weights)
            continue
        for which in ("best", "last"):
            per_run[(spec.name, which)] = _predictions(run_dirs[spec.name], which)
    row_names = list(dict.fromkeys(spec.row for spec, _, _ in runs))
    rows = []
    for row in row_names:
        members = [spec.name for spec, _, _ in runs if spec.row == row]
        rows.append(_row(row, members, per_run, published, num_bootstrap, run_dirs))
    if len(row_names) > 1 and AVERAGE in published:
        groups = [[spec.name for spec, _, _ in runs if spec.row == row] for row in row_names]
        rows.append(_row(AVERAGE, groups, per_run, published, num_bootstrap, run_dirs))
    return {"table": table, "source": PUBLISHED[table]["source"], "selected_on": "test",
            "note": SELECTION_NOTE, "rows": rows}


def _row(name: str, members, per_run: dict, published: dict, num_bootstrap: int, run_dirs) -> dict:
    """A table row: its runs (a list, or a list of groups of runs for an average), the published
    figures, and mean ± std / 95 % interval of its best and last models."""
    from tpt_keras.ops import metrics

    nested = members if members and isinstance(members[0], list) else [members]
    spearman, r_l2 = published.get(name, (None, None))
    row = {"name": name, "runs": [run_dirs.get(m, []) for group in nested for m in group],
           "published": {"spearman": spearman, "r_l2": r_l2},
           "samples": int(sum(per_run[(m, "best")][1].size for group in nested for m in group))}
    for which in ("best", "last"):
        groups = [[per_run[(m, which)][:2] for m in group] for group in nested]
        row[which] = metrics.grouped_seed_statistics(groups, num_bootstrap=num_bootstrap)
    return row


# ---------------------------------------------------------------------------------------------
# Output: the table, the picture
# ---------------------------------------------------------------------------------------------
def _cell(stats: dict, metric: str, digits: int) -> tuple[str, str]:
    low, high = stats["ci95"][metric]
    return (f"{stats['mean'][metric]:.{digits}f} ± {stats['std'][metric]:.{digits}f}",
            f"[{low:.{digits}f}, {high:.{digits}f}]")


def format_table(results: dict) -> str:
    """The terminal table of :func:`reproduce`'s results."""
    seeds = results["seeds"]
    lines = [f"{results['table']}: {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); Spearman ρ and "
             f"R-ℓ2 ×100 on the test split (judges' scale); published: {results['source']}"]
    header = (f"{'row':<18} {'samples':>7}  {'best ρ mean ± std':>18} {'95% CI':>17}  "
              f"{'last ρ mean ± std':>18} {'95% CI':>17}  {'published ρ':>11}  "
              f"{'best R-ℓ2':>16} {'last R-ℓ2':>16} {'published R-ℓ2':>14}")
    lines.append(header)
    for row in results["rows"]:
        best_rho, best_ci = _cell(row["best"], "spearman", 4)
        last_rho, last_ci = _cell(row["last"], "spearman", 4)
        best_l2, _ = _cell(row["best"], "r_l2", 3)
        last_l2, _ = _cell(row["last"], "r_l2", 3)
        pub = row["published"]
        pub_rho = "—" if pub["spearman"] is None else f"{pub['spearman']:.4f}"
        pub_l2 = "—" if pub["r_l2"] is None else f"{pub['r_l2']:.4f}"
        lines.append(f"{row['name']:<18} {row['samples']:>7}  {best_rho:>18} {best_ci:>17}  "
                     f"{last_rho:>18} {last_ci:>17}  {pub_rho:>11}  {best_l2:>16} {last_l2:>16} "
                     f"{pub_l2:>14}")
    if results.get("weights"):
        lines.append(f"model: the released weights {results['weights']} (no training; one model, so "
                     "'best' and 'last' are the same)")
    else:
        lines.append(f"note: {results['note']}.")
    lines.append("± is the standard deviation over seeds; 95% CI: bootstrap over the test videos of "
                 "the mean over seeds; averages of ρ by Fisher z" )
    if results.get("left_out"):
        lines.append(f"left out (missing, damaged or undecodable): {len(results['left_out'])} samples, "
                     f"e.g. {', '.join(results['left_out'][:3])} (see {results['prepare']})")
    return "\n".join(lines)


def plot_table(results: dict, path: str) -> str:
    """Ours (best and last, mean over seeds with the 95 % interval) against the published ρ,
    one position per row; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    x = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5) + 2.2, 4.0))
    for offset, which, colour, label in ((-0.15, "best", "tab:blue", "ours, best test epoch"),
                                         (0.15, "last", "tab:orange", "ours, last epoch")):
        means = np.array([row[which]["mean"]["spearman"] for row in rows])
        lows = np.array([row[which]["ci95"]["spearman"][0] for row in rows])
        highs = np.array([row[which]["ci95"]["spearman"][1] for row in rows])
        errors = np.nan_to_num(np.stack([means - lows, highs - means]).clip(min=0))
        axis.errorbar(x + offset, means, yerr=errors, fmt="o", color=colour, capsize=4, label=label)
    published = [row["published"]["spearman"] for row in rows]
    shown = [i for i, value in enumerate(published) if value is not None]
    axis.scatter(x[shown], [published[i] for i in shown], marker="*", s=160, color="black",
                 label="published", zorder=3)
    axis.set_xticks(x, [row["name"] for row in rows], rotation=20, ha="right")
    axis.set_xlim(-0.6, len(rows) - 0.4)
    axis.set_ylabel("Spearman ρ (test)")
    lowest = np.nanmin([row[w]["ci95"]["spearman"][0] for row in rows for w in ("best", "last")] + [0.0])
    axis.set_ylim(lowest - 0.05, 1.05)
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set_title(f"{results['table']}: ours (mean of {len(results['seeds'])} seed(s), 95% CI over "
                   "test videos)\nvs published", fontsize=9)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# ---------------------------------------------------------------------------------------------
# Released weights
# ---------------------------------------------------------------------------------------------
def export_preset(run_dir: str, preset_dir: str, which: str = "best", evaluate: bool = True) -> dict:
    """A trained run's model (``best.keras`` / ``last.keras``) as a preset directory
    (:func:`tpt_keras.models.presets.save_preset`), its ``metadata.json`` holding the data
    (dataset, class / task / fold, samples per split), the protocol, the seed, the features it
    was trained on, and the run's test figures (ρ, R-ℓ2 ×100 on the judges' scale) when
    ``evaluate``. Returns the metadata."""
    from tpt_keras.experiment import evaluation
    from tpt_keras.models import presets

    run = evaluation.load_run(run_dir, which)
    metadata = {
        "format": "tpt-keras preset 1", "checkpoint": which, "run": os.path.abspath(run_dir),
        "data": {"dataset": run.config.dataset, "action_class": run.config.action_class,
                 "fold": run.config.fold, "use_difficulty": run.config.use_difficulty,
                 "samples": {name: len(items) for name, items in run.splits.items()}},
        "protocol": run.config.protocol.to_dict(), "seeds": [run.config.seed],
        "features": "I3D Kinetics-400 clip features (cached)" if run.features_dir else "end to end",
        "epochs": run.config.epochs,
    }
    if evaluate:
        pred, true, _ = _predictions([run_dir], which)
        from tpt_keras.ops import metrics

        metadata["test"] = {"split": "test", "videos": int(true.size),
                            "spearman": metrics.spearman(pred[0], true),
                            "r_l2": metrics.r_l2(pred[0], true),
                            "selected_on": "test" if which == "best" else None}
    presets.save_preset(run.model, preset_dir, metadata)
    return metadata
