"""Does the original's initial state change how TPT trains? Xavier-uniform queries (what the
original's decoder re-initialises them to) against N(0, 1) queries, on built-in synthetic clip
features, with everything else as the faithful presets train: PyTorch's initial weights
(``initialization="torch"``), Adam epsilon 1e-8, 8 micro-batches of 3 pairs per update with the
per-interval regression means within each (``accumulate_steps=8``,
``loss_normalization="per_replica"``), the last partial batch of an epoch kept.

    PYTHONPATH=. python benchmarks/faithful_training.py [--epochs 15 --seeds 0 1 2]

For each seed and initialisation it prints the first five epochs' training losses (total, rank),
the validation Spearman of every epoch, and the test Spearman of the epoch that validation selects
beside that of the last epoch; then the mean ± std over seeds (the table in docs/model.md). The
synthetic preset's learning rates at small sizes: about 9 minutes on 2 shared CPU cores at the
default size; ``--seeds 0 --epochs 5`` for a quick look.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INITIALISATIONS = ("xavier", "normal")  # the original's queries; N(0, 1) queries


def faithful_synthetic_config(seed: int, epochs: int, width: int):
    """The synthetic preset with the faithful presets' initial weights and update."""
    from tpt_keras.config import get_preset

    return get_preset("synthetic", seed=seed, epochs=epochs, feature_dim=width, hidden_dim=width,
                      ffn_dim=width, head_hidden_dim=width, num_exemplars=5,
                      initialization="torch", adam_epsilon=1e-8, batch_size=24,
                      accumulate_steps=8, loss_normalization="per_replica", keep_last_batch=True)


def train_one(config, splits, cache: str, queries: str) -> dict:
    """Train one model; per-epoch logs (losses, val and test Spearman)."""
    import keras
    import numpy as np

    from tpt_keras import experiment
    from tpt_keras.experiment.callbacks import ValidationSpearman

    keras.utils.set_random_seed(config.seed)
    model = experiment.build_model(config, splits["train"])
    if queries == "normal":  # nn.Embedding's own N(0, 1), before the decoder's reset
        embedding = model.part_encoder.query_embedding
        rng = np.random.default_rng(config.seed)
        embedding.assign(rng.standard_normal(tuple(embedding.shape)).astype("float32"))
    steps = experiment.steps_per_epoch(config, len(splits["train"]))
    callbacks = [ValidationSpearman(experiment.eval_dataset(config, splits[name], splits["train"], cache),
                                    prefix=f"{name}_")
                 for name in ("val", "test")]
    history = model.fit(experiment.pair_dataset(config, splits["train"], cache), epochs=config.epochs,
                        steps_per_epoch=steps, callbacks=callbacks, verbose=0, shuffle=False)
    logs = history.history
    val, test = np.asarray(logs["val_spearman"]), np.asarray(logs["test_spearman"])
    best = int(np.nanargmax(val))
    return {"loss": logs["loss"], "rank_loss": logs["rank_loss"], "val": val.tolist(),
            "selected": float(test[best]), "selected_epoch": best + 1, "last": float(test[-1]),
            "steps": steps}


def run(seeds, epochs: int, width: int, num_train: int, num_val: int, num_test: int, output: str):
    from tpt_keras import experiment

    cache = os.path.join(output, "features")
    config = faithful_synthetic_config(seeds[0], epochs, width)
    data = experiment.synthetic_splits(config, cache, num_train=num_train + num_val,
                                       num_test=num_test)
    splits = {"train": data["train"][:num_train], "val": data["train"][num_train:],
              "test": data["test"]}
    results = {}
    for queries in INITIALISATIONS:
        for seed in seeds:
            print(f"training: queries {queries}, seed {seed} …", flush=True)
            results[(queries, seed)] = train_one(faithful_synthetic_config(seed, epochs, width),
                                                 splits, cache, queries)
    return results


def format_tables(results, seeds) -> str:
    import numpy as np

    names = {"xavier": "Xavier queries (original)", "normal": "N(0, 1) queries"}
    first = next(iter(results.values()))
    epochs = len(first["val"])
    lines = [f"steps per epoch: {first['steps']} (last batch partial kept); one update = 8 "
             "micro-batches of 3 pairs", "",
             "| queries | seed | loss, epochs 1-5 | rank loss, epochs 1-5 |",
             "| --- | --- | --- | --- |"]
    for (queries, seed), row in results.items():
        loss = " ".join(f"{v:.2f}" for v in row["loss"][:5])
        rank = " ".join(f"{v:.2f}" for v in row["rank_loss"][:5])
        lines.append(f"| {names[queries]} | {seed} | {loss} | {rank} |")
    lines += ["", "| queries | seed | validation Spearman, epoch 1 … " + str(epochs) + " |",
              "| --- | --- | --- |"]
    for (queries, seed), row in results.items():
        lines.append(f"| {names[queries]} | {seed} | " + " ".join(f"{v:.2f}" for v in row["val"])
                     + " |")
    lines += ["", "| queries | test ρ, epoch selected by validation | test ρ, last epoch | "
              "lowest validation ρ after epoch 1 |", "| --- | --- | --- | --- |"]
    for queries in INITIALISATIONS:
        rows = [results[(queries, seed)] for seed in seeds]
        selected = np.array([r["selected"] for r in rows])
        last = np.array([r["last"] for r in rows])
        low = min(min(r["val"][1:]) if len(r["val"]) > 1 else r["val"][0] for r in rows)
        lines.append(f"| {names[queries]} | {selected.mean():.3f} ± {selected.std():.3f} | "
                     f"{last.mean():.3f} ± {last.std():.3f} | {low:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=int, default=64, help="feature and model width")
    parser.add_argument("--train", type=int, default=140, help="training videos (140: 6 steps of "
                        "24 pairs, the last of 20)")
    parser.add_argument("--val", type=int, default=40)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--output", help="folder for the feature cache (default: a temporary one)")
    args = parser.parse_args(argv)
    output = args.output or tempfile.mkdtemp(prefix="faithful_training_")
    results = run(args.seeds, args.epochs, args.width, args.train, args.val, args.test, output)
    print(format_tables(results, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
