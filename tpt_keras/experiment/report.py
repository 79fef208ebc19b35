"""Terminal tables of the evaluation results (:mod:`tpt_keras.experiment.evaluation`)."""

from __future__ import annotations


def format_results(results: dict) -> str:
    """A terminal table of :func:`tpt_keras.experiment.evaluation.evaluate_run`'s results."""
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
        if row.get("collapse"):
            lines.append(f"warning: {row['name']}: {row['collapse']}")
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


def format_parsing(name: str, parsing: dict) -> list[str]:
    """Table lines of :func:`tpt_keras.experiment.evaluation.parsing_report`: the model beside the two baselines."""
    lines = [f"{name}: parsing metric over {parsing['model']['videos']} test videos "
             f"({parsing['model']['boundaries']} annotated step boundaries; docs/parsing.md)",
             f"  {'attention':<24} {'boundary MAE':>12} {'mean IoU':>9} {'IoU@0.5':>8} {'IoU@0.75':>9}"]
    for key, label in (("model", "this model"), ("uniform", "uniform, untrained"),
                       ("equal_parts", "equal parts")):
        m = parsing[key]
        lines.append(f"  {label:<24} {m['boundary_mae']:>12.3f} {m['mean_iou']:>9.3f} "
                     f"{m['iou@0.5']:>8.3f} {m['iou@0.75']:>9.3f}")
    return lines


def format_seed_results(results: dict) -> str:
    """A terminal table of :func:`tpt_keras.experiment.evaluation.evaluate_seeds`' results."""
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
