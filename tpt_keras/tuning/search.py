"""Hyperparameter search for TPT with Keras Tuner (``tpt tune``).

The model never sees a ``keras_tuner.HyperParameters``: :func:`config_from_hp` turns ``hp`` into
plain :class:`TPTConfig` overrides, and :class:`TPTHyperModel` builds an ordinary
:class:`tpt_keras.models.tpt_model.TPTModel` from that config. The best trial is written as a complete
preset JSON file that ``tpt train PRESET_FILE`` accepts.

Search space (:class:`SearchSpace`; a field set to ``None`` is not tuned and keeps the base value):

=================== ================================== ===========================================
hyperparameter      default range                      notes
=================== ================================== ===========================================
num_queries (K)     choice 2, 3, 4, 5, 6, 8             values > num_clips dropped; not for holistic
hidden_dim (d)      choice 128, 256, 512                ffn_dim follows (same ratio as the base);
                                                        num_heads = largest divisor of d <= base
rank_margin         float 0.5 .. 5.0                    decoder only (units: clips)
temperature_init    float 0.01 .. 1.0, log              decoder only
rank_weight         float 0.1 .. 10, log                decoder only
sparsity_weight     float 0.005 .. 0.5, log             decoder only
learning_rate       float 1e-5 .. 3e-3, log
head_learning_rate  float 1e-4 .. 1e-2, log
=================== ================================== ===========================================

The default of every hyperparameter is the base config's value when it lies in the range, so an
empty ``kt.HyperParameters()`` gives back the base config.

Objective: ``kt.Objective("val_spearman", "max")``, the best epoch's Spearman rho of a trial on
the validation split (``val`` if the splits have one, else ``test``, as ``tpt train`` selects its
best checkpoint). An undefined rho (constant predictions) counts as -1.

Layout of the output folder::

    OUTPUT/
      tuning.json        the search settings (base config, space, tuner, epochs): a rerun checks them
      search/            Keras Tuner's project: oracle.json and trial_XX/ (trial.json, weights)
      tensorboard/       per-trial logs with the HParams dashboard
      best_preset.json   the best trial's complete TPTConfig (``tpt train OUTPUT/best_preset.json``)
      summary.json       the summary returned by :func:`tune`

Running :func:`tune` again on the same folder resumes the search (Keras Tuner reloads the oracle
and its finished trials): with the same ``max_trials`` nothing new runs, a larger ``max_trials``
adds trials. Different search settings on the same folder raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import keras
import keras_tuner as kt

from tpt_keras.config import TPTConfig

OBJECTIVE = "val_spearman"
TUNERS = ("random", "bayesian", "hyperband")
PROJECT_NAME = "search"
PRESET_FILE = "best_preset.json"
SETTINGS_FILE = "tuning.json"
SUMMARY_FILE = "summary.json"
UNDEFINED_SPEARMAN = -1.0  # what a trial with constant predictions (NaN rho) scores

_DECODER_ONLY = ("rank_margin", "temperature_init", "rank_weight", "sparsity_weight")
_LOG_SCALE = ("temperature_init", "rank_weight", "sparsity_weight", "learning_rate",
              "head_learning_rate")


# ---------------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What :func:`config_from_hp` tunes. Tuples of ints are choices; pairs of floats are
    ``(min, max)`` ranges (log-scaled for the temperature, loss weights and learning rates).
    ``None`` leaves the base config's value untouched."""

    num_queries: tuple[int, ...] | None = (2, 3, 4, 5, 6, 8)
    hidden_dim: tuple[int, ...] | None = (128, 256, 512)
    rank_margin: tuple[float, float] | None = (0.5, 5.0)
    temperature_init: tuple[float, float] | None = (0.01, 1.0)
    rank_weight: tuple[float, float] | None = (0.1, 10.0)
    sparsity_weight: tuple[float, float] | None = (0.005, 0.5)
    learning_rate: tuple[float, float] | None = (1e-5, 3e-3)
    head_learning_rate: tuple[float, float] | None = (1e-4, 1e-2)

    def __post_init__(self):
        for name in ("num_queries", "hidden_dim"):
            values = getattr(self, name)
            if values is not None and (not values or any(
                    isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)):
                raise ValueError(f"SearchSpace.{name} must be a non-empty tuple of positive ints "
                                 f"or None; received {values!r}.")
        for name in ("rank_margin", *_LOG_SCALE):
            bounds = getattr(self, name)
            if bounds is None:
                continue
            if len(bounds) != 2 or not bounds[0] < bounds[1] or (
                    name in _LOG_SCALE and bounds[0] <= 0) or bounds[0] < 0:
                raise ValueError(f"SearchSpace.{name} must be (min, max) with 0 <= min < max "
                                 f"(min > 0 on a log scale) or None; received {bounds!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {name: (list(value) if value is not None else None)
                for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SearchSpace":
        return cls(**{name: (tuple(value) if value is not None else None)
                      for name, value in values.items()})


DEFAULT_SPACE = SearchSpace()


def _heads_for(hidden_dim: int, base_heads: int) -> int:
    """The largest head count <= ``base_heads`` that divides ``hidden_dim``."""
    return max(h for h in range(1, min(base_heads, hidden_dim) + 1) if hidden_dim % h == 0)


def config_from_hp(hp, base_config: TPTConfig, space: SearchSpace = DEFAULT_SPACE) -> TPTConfig:
    """The TPTConfig a trial's hyperparameters ask for (registering them in ``hp``).

    Args:
        hp: a ``keras_tuner.HyperParameters``; values already set in it (a trial's) are used,
            missing ones are registered with the base config's value as default.
        base_config: everything that is not tuned (data protocol, epochs, batch size, seed...).
        space: the ranges (:class:`SearchSpace`).

    Returns:
        ``base_config`` with the tuned fields replaced; ``ffn_dim`` keeps its ratio to
        ``hidden_dim`` and ``num_heads`` becomes the largest divisor of ``hidden_dim`` that is
        not above the base head count. Keras Tuner's own entries (``tuner/...``) are ignored.
    """
    base = base_config
    overrides: dict[str, Any] = {}
    decoder = base.part_encoder == "decoder"

    if space.num_queries is not None and base.part_encoder != "holistic":
        choices = sorted({k for k in space.num_queries if k <= base.num_clips})
        if not choices:
            raise ValueError(f"no num_queries choice in {space.num_queries} fits num_clips="
                             f"{base.num_clips}.")
        default = base.num_queries if base.num_queries in choices else None
        overrides["num_queries"] = int(hp.Choice("num_queries", choices, default=default))

    if space.hidden_dim is not None:
        choices = sorted(set(space.hidden_dim))
        default = base.hidden_dim if base.hidden_dim in choices else None
        hidden = int(hp.Choice("hidden_dim", choices, default=default))
        overrides["hidden_dim"] = hidden
        overrides["ffn_dim"] = max(1, int(round(hidden * base.ffn_dim / base.hidden_dim)))
        overrides["num_heads"] = _heads_for(hidden, base.num_heads)

    for name in ("rank_margin", *_LOG_SCALE):
        bounds = getattr(space, name)
        if bounds is None or (name in _DECODER_ONLY and not decoder):
            continue
        low, high = float(bounds[0]), float(bounds[1])
        current = float(getattr(base, name))
        default = current if low <= current <= high else None
        overrides[name] = float(hp.Float(name, low, high, sampling=(
            "log" if name in _LOG_SCALE else "linear"), default=default))
    return base.replace(**overrides)


def tuned_fields(config: TPTConfig, base_config: TPTConfig) -> dict[str, Any]:
    """The fields in which ``config`` differs from ``base_config``."""
    new, old = config.to_dict(), base_config.to_dict()
    return {name: value for name, value in new.items() if value != old[name]}


# ---------------------------------------------------------------------------------------------
# HyperModel
# ---------------------------------------------------------------------------------------------
class FiniteObjective(keras.callbacks.Callback):
    """Replace an undefined validation rho (NaN: constant predictions) by ``UNDEFINED_SPEARMAN``.
    Goes right after ``ValidationSpearman`` and before Keras Tuner's callbacks."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and OBJECTIVE in logs and not math.isfinite(float(logs[OBJECTIVE])):
            logs[OBJECTIVE] = UNDEFINED_SPEARMAN


class TPTHyperModel(kt.HyperModel):
    """Builds a compiled TPTModel from ``config_from_hp(hp, base_config)`` and fits it on
    training pairs of a feature cache with :class:`ValidationSpearman` first in the
    callbacks.

    Args:
        base_config: the untuned settings.
        intervals: the training intervals (computed once from the training targets).
        train_samples, val_samples: samples of the training and validation splits.
        features_dir: the feature cache holding every sample.
        space: the :class:`SearchSpace`.
        eval_batch_size: validation batch size.
    """

    def __init__(self, base_config, intervals, train_samples, val_samples, features_dir,
                 space=DEFAULT_SPACE, eval_batch_size=8):
        super().__init__(name="tpt", tunable=True)
        self.base_config = base_config
        self.intervals = intervals
        self.train_samples = list(train_samples)
        self.val_samples = list(val_samples)
        self.features_dir = features_dir
        self.space = space
        self.eval_batch_size = eval_batch_size

    def build(self, hp):
        from tpt_keras.models.tpt_model import TPTModel

        config = config_from_hp(hp, self.base_config, self.space)
        keras.utils.set_random_seed(config.seed)
        model = TPTModel(config, self.intervals)
        model.compile()
        # Create every variable (model and optimizer) on a dummy batch, so that checkpoints of
        # trials load back (get_best_models, Hyperband's continued trials).
        video = keras.ops.zeros((1, config.num_clips, config.feature_dim))
        model({"query": video, "exemplar": video})
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=None,
            verbose=0, **kwargs):
        from tpt_keras import experiment
        from tpt_keras.experiment import callbacks as evaluation

        config = model.config
        steps = experiment.steps_per_epoch(config, len(self.train_samples))
        if steps < 1:
            raise ValueError(f"{len(self.train_samples)} training samples make no batch of "
                             f"{config.batch_size}: lower batch_size.")
        train_ds = experiment.pair_dataset(config, self.train_samples, self.features_dir,
                                           first_epoch=int(initial_epoch))  # Hyperband continues
        val_ds = experiment.eval_dataset(config, self.val_samples, self.train_samples,
                                         self.features_dir, batch_size=self.eval_batch_size)
        callbacks = [evaluation.ValidationSpearman(val_ds), FiniteObjective(),
                     *(callbacks or [])]
        kwargs.setdefault("shuffle", False)  # the pair dataset has its own seeded order
        return model.fit(train_ds, epochs=epochs or config.epochs,
                         initial_epoch=initial_epoch, steps_per_epoch=steps,
                         callbacks=callbacks, verbose=verbose, **kwargs)

def build_model(hp, base_config: TPTConfig, intervals, space: SearchSpace = DEFAULT_SPACE):
    """A compiled TPTModel for ``config_from_hp(hp, base_config, space)``, with every variable
    (optimizer included) created on a dummy batch (the build function without the data)."""
    return TPTHyperModel(base_config, intervals, [], [], None, space=space).build(hp)


# ---------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------
def tuner_seed(seed: int) -> int:
    """The oracle seed for ``config.seed``: ``seed + 1``, because Keras Tuner takes a seed of 0
    as "no seed" and would draw a random one (a search with the synthetic preset, seed 0, would
    not be reproducible)."""
    return int(seed) + 1


def make_tuner(kind: str, hypermodel, output: str, *, seed: int, max_trials: int, epochs: int,
               factor: int = 3, executions_per_trial: int = 1):
    """A Keras Tuner of ``kind`` ("random", "bayesian", "hyperband") in ``output/search``,
    resuming an existing project, its oracle seeded with :func:`tuner_seed` (``seed``). Hyperband sizes its own trial count from ``epochs`` (its
    ``max_epochs``) and ``factor``; ``max_trials`` does not apply to it."""
    if kind not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}; received {kind!r}.")
    common = dict(hypermodel=hypermodel, objective=kt.Objective(OBJECTIVE, "max"),
                  seed=tuner_seed(seed),
                  directory=output, project_name=PROJECT_NAME, overwrite=False,
                  executions_per_trial=executions_per_trial)
    if kind == "random":
        return kt.RandomSearch(max_trials=max_trials, **common)
    if kind == "bayesian":
        return kt.BayesianOptimization(max_trials=max_trials, **common)
    return kt.Hyperband(max_epochs=epochs, factor=factor, **common)


def _check_settings(path: str, settings: dict) -> None:
    """Save the search settings, or check them against a previous run in the same folder."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings)
                             if previous.get(k) != settings.get(k))
            raise ValueError(f"{path}: this folder holds a search with different settings "
                             f"({', '.join(changed)}): use another output folder, or delete this "
                             "one to start over.")
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(settings, handle, indent=2)
        handle.write("\n")


def tune(config: TPTConfig, splits: dict, features_dir: str, output: str, *,
         tuner: str = "random", max_trials: int = 10, epochs: int | None = None,
         space: SearchSpace | None = None, verbose: int = 1, factor: int = 3,
         executions_per_trial: int = 1, eval_batch_size: int = 8,
         tensorboard: bool = True) -> dict:
    """Search TPT hyperparameters on cached clip features and save the best as a preset.

    Args:
        config: the base configuration (untuned fields, the seed, and the ``epochs`` written into
            the preset for the final training run).
        splits: samples by split: ``train`` and ``val`` (or ``test``, the fallback validation).
        features_dir: the feature cache holding every sample.
        output: the tuner folder (see the module docstring); an existing search resumes.
        tuner: "random", "bayesian" or "hyperband".
        max_trials: number of trials (random / bayesian; Hyperband sizes itself).
        epochs: training epochs per trial (Hyperband: the most epochs of a trial); default
            ``config.epochs``.
        space: the :class:`SearchSpace` (default :data:`DEFAULT_SPACE`).
        verbose: Keras progress output (0 silent).
        factor: Hyperband's reduction factor.
        executions_per_trial: fits per trial (their objectives are averaged).
        eval_batch_size: validation batch size.
        tensorboard: write per-trial TensorBoard logs (with HParams) to ``output/tensorboard``.

    Returns:
        ``{"trials": [{"trial_id", "status", "values", "val_spearman"}], "best": {"trial_id",
        "values", "val_spearman", "overrides"}, "preset": path, "validation_split": name,
        "tuner": kind}``; ``values`` are the trial's hyperparameters, ``overrides`` the config
        fields that differ from ``config``.
    """
    from tpt_keras import experiment

    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}; received {tuner!r}.")
    if not features_dir:
        raise ValueError("tuning runs on cached clip features: pass a feature cache folder.")
    if max_trials < 1:
        raise ValueError(f"max_trials must be >= 1; received {max_trials!r}.")
    space = space or DEFAULT_SPACE
    epochs = int(epochs or config.epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; received {epochs!r}.")
    train_samples = splits.get("train") or []
    if not train_samples:
        raise ValueError("tuning needs training samples (splits['train'] is empty).")
    val_name = experiment.validation_split(splits)

    settings = {"config": config.to_dict(), "space": space.to_dict(), "tuner": tuner,
                "epochs": epochs, "factor": factor if tuner == "hyperband" else None,
                "executions_per_trial": executions_per_trial, "validation_split": val_name}
    os.makedirs(output, exist_ok=True)
    _check_settings(os.path.join(output, SETTINGS_FILE), settings)

    intervals = experiment.model_intervals(config, train_samples)  # independent of hp
    hypermodel = TPTHyperModel(config, intervals, train_samples, splits[val_name], features_dir,
                               space=space, eval_batch_size=eval_batch_size)
    search = make_tuner(tuner, hypermodel, output, seed=config.seed, max_trials=max_trials,
                        epochs=epochs, factor=factor, executions_per_trial=executions_per_trial)
    callbacks = []
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output, "tensorboard"),
                                                     write_graph=False))
    search.search(epochs=epochs, callbacks=callbacks, verbose=verbose)
    return _summarize(search, config, space, output, tuner, val_name)


def _trial_row(trial) -> dict:
    score = trial.score
    return {"trial_id": trial.trial_id, "status": str(trial.status),
            "values": dict(trial.hyperparameters.values),
            "val_spearman": None if score is None else float(score)}


def _summarize(search, base_config: TPTConfig, space: SearchSpace, output: str, kind: str,
               val_name: str) -> dict:
    trials = [_trial_row(t) for t in sorted(search.oracle.trials.values(),
                                            key=lambda t: int(t.trial_id))]
    best_trials = search.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].score is None:
        raise ValueError(f"no trial of the search in {output} finished with a {OBJECTIVE}: see "
                         "the errors above.")
    best_trial = best_trials[0]
    hp = kt.HyperParameters()
    hp.values.update(best_trial.hyperparameters.values)
    best_config = config_from_hp(hp, base_config, space)
    preset = os.path.join(output, PRESET_FILE)
    best_config.save(preset)
    summary = {
        "tuner": kind,
        "validation_split": val_name,
        "trials": trials,
        "best": {**_trial_row(best_trial), "overrides": tuned_fields(best_config, base_config)},
        "preset": preset,
    }
    with open(os.path.join(output, SUMMARY_FILE), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    return summary


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_summary(summary: dict) -> str:
    """The trials as a table (one row per trial, the best marked ``*``) and the preset path."""
    trials = summary["trials"]
    names: list[str] = []
    for trial in trials:
        for name in trial["values"]:
            # Of Keras Tuner's own entries only Hyperband's epoch budget is worth a column.
            if name not in names and (not name.startswith("tuner/") or name == "tuner/epochs"):
                names.append(name)
    header = ["trial", *(n.replace("tuner/", "") for n in names), OBJECTIVE]
    best_id = summary["best"]["trial_id"]
    rows = []
    for trial in trials:
        mark = "*" if trial["trial_id"] == best_id else " "
        score = trial["val_spearman"]
        rows.append([f"{trial['trial_id']}{mark}", *(_cell(trial["values"].get(n)) for n in names),
                     _cell(score) if score is not None else trial["status"].lower()])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    lines = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    best = summary["best"]
    lines.append("")
    lines.append(f"best trial {best['trial_id']}: {OBJECTIVE} {best['val_spearman']:.4f} on the "
                 f"{summary.get('validation_split', 'validation')} split")
    changed = ", ".join(f"{k}={_cell(v)}" for k, v in best["overrides"].items()) or "none"
    lines.append(f"changed from the base config: {changed}")
    lines.append(f"preset: {summary['preset']}  (train it: tpt train {summary['preset']} "
                 "--output RUN_DIR)")
    return "\n".join(lines)
