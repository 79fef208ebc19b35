"""Does TPT parse dives into their annotated steps? TPT vs the holistic baseline on synthetic
clip features with the step timing, scores and difficulties of real FineDiving dives
(``data_pipelines.synthetic.finediving``, preset ``synthetic_finediving``), and TPT's parsing
metric with and without step supervision beside uniform attention and five equal parts.

    PYTHONPATH=. python benchmarks/finediving_parsing.py --annotations ../shared/data/FineDiving

Every model trains through ``experiment.train`` (the ``tpt train`` path) and is scored by
``experiment.evaluate_run`` (``tpt evaluate``) on the **last** checkpoint: these synthetic splits
have no validation split, so the "best" checkpoint would be chosen on the test dives. Prints one
table (the one in docs/parsing.md). A few minutes on 2 CPU cores at the default size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(annotations: str, output: str, epochs: int | None, num_train: int, num_test: int,
        step_weight: float, seed: int) -> list[dict]:
    from tpt_keras import experiment
    from tpt_keras.config import get_preset

    base = get_preset("synthetic_finediving", seed=seed, **({"epochs": epochs} if epochs else {}))
    cache = os.path.join(output, "features")
    splits = experiment.synthetic_finediving_splits(base, annotations, cache, num_train, num_test)
    variants = [("holistic (average pool)", base.replace(part_encoder="holistic")),
                ("TPT", base),
                (f"TPT + step supervision (step_weight={step_weight:g})",
                 base.replace(step_weight=step_weight))]
    rows = []
    for index, (name, config) in enumerate(variants):
        folder = os.path.join(output, f"run{index}")
        experiment.train(config, splits, folder, features_dir=cache, verbose=0)
        result = experiment.evaluate_run(folder, which="last")["runs"][0]
        rows.append({"name": name, "spearman": result["spearman"], "r_l2": result["r_l2"],
                     "parsing": result["parsing"]})
    return rows


def format_table(rows: list[dict], num_train: int, num_test: int) -> str:
    lines = [f"synthetic FineDiving features: {num_train} training dives, {num_test} test dives "
             "(last epoch)",
             "| model / attention | Spearman | R-ℓ2 ×100 | boundary MAE (clips) | mean IoU | IoU@0.5 | IoU@0.75 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def parsing_cells(metrics):
        if metrics is None:
            return "– | – | – | –"
        return (f"{metrics['boundary_mae']:.2f} | {metrics['mean_iou']:.3f} | "
                f"{metrics['iou@0.5']:.3f} | {metrics['iou@0.75']:.3f}")

    for row in rows:
        parsing = row["parsing"]["model"] if row["parsing"] else None
        lines.append(f"| {row['name']} | {row['spearman']:.4f} | {row['r_l2']:.3f} | {parsing_cells(parsing)} |")
    reference = next(row["parsing"] for row in rows if row["parsing"])
    lines.append(f"| uniform attention, untrained | – | – | {parsing_cells(reference['uniform'])} |")
    lines.append(f"| five equal parts | – | – | {parsing_cells(reference['equal_parts'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", default="../shared/data/FineDiving",
                        help="the FineDiving folder (annotation pickles)")
    parser.add_argument("--epochs", type=int, help="default: the preset's (40)")
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-test", type=int, default=150)
    parser.add_argument("--step-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        rows = run(args.annotations, args.output or scratch, args.epochs, args.num_train,
                   args.num_test, args.step_weight, args.seed)
    print(format_table(rows, args.num_train, args.num_test))
    return 0


if __name__ == "__main__":
    sys.exit(main())
