"""AQA metrics as reported by TPT / CoRe.

* :func:`spearman`: Spearman's rank correlation (``scipy.stats.spearmanr``).
* :func:`r_l2`: relative L2 distance, ``100 * mean(((pred - true) / (max(true) - min(true)))^2)``
  with max/min over the evaluated ground truth (reported x100, as in the paper's tables).
* :func:`fisher_z_mean`: the AQA-7 average of per-class correlations, ``tanh(mean(atanh(rho)))``.
* :func:`seed_statistics` / :func:`grouped_seed_statistics`: mean ± std over training seeds and
  a bootstrap 95 % interval over the test videos, of one test set or of a figure made of several.
* :func:`collapse_warning`: a model whose predictions barely vary (collapsed onto about one score):
  ``std(pred) < COLLAPSE_FRACTION · std(true)`` (population standard deviations, 0.1).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _as_vectors(pred, true):
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"pred {pred.shape} and true {true.shape} must have the same length.")
    if len(true) < 2:
        raise ValueError(f"need at least 2 samples; received {len(true)}.")
    return pred, true


def spearman(pred, true) -> float:
    """Spearman's rho between predictions and ground truth (NaN if either is constant)."""
    pred, true = _as_vectors(pred, true)
    return float(stats.spearmanr(pred, true)[0])


def r_l2(pred, true) -> float:
    """Relative L2 distance x 100: ``100 * mean(((pred - true) / (max(true) - min(true)))^2)``."""
    pred, true = _as_vectors(pred, true)
    spread = true.max() - true.min()
    if spread == 0:
        raise ValueError("r_l2 is undefined when all true scores are equal.")
    return float(100.0 * np.mean(((pred - true) / spread) ** 2))


COLLAPSE_FRACTION = 0.1


def spread_ratio(pred, true) -> float:
    """``std(pred) / std(true)`` (population standard deviations): how much of the targets'
    spread the predictions keep; inf when the targets are all equal and the predictions are not,
    NaN when both are constant."""
    pred, true = _as_vectors(pred, true)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.std(pred) / np.std(true))


def collapse_warning(pred, true, fraction: float = COLLAPSE_FRACTION) -> str | None:
    """A one-line warning when the model has collapsed: ``std(pred) < fraction · std(true)``
    (every video gets nearly the same score, whatever its Spearman ρ, which then ranks noise);
    None otherwise.

    Args:
        pred: (N,) predicted scores; true: (N,) their targets, on the same scale.
        fraction: the threshold on :func:`spread_ratio` (0.1 by default).
    """
    ratio = spread_ratio(pred, true)
    if not ratio < fraction:
        return None
    pred, true = _as_vectors(pred, true)
    return (f"collapsed predictions: their spread is {ratio:.3f} of the targets' "
            f"(std {np.std(pred):.4g} vs {np.std(true):.4g}, below {fraction:g}); every video gets "
            f"about {np.mean(pred):.4g}, so ρ says little")


def fisher_z_mean(rhos) -> float:
    """Average of correlations through Fisher's z: ``tanh(mean(atanh(rho)))``."""
    rhos = np.asarray(rhos, dtype=np.float64).reshape(-1)
    if len(rhos) == 0:
        raise ValueError("fisher_z_mean needs at least one correlation.")
    if np.any(np.abs(rhos) > 1):
        raise ValueError(f"correlations must lie in [-1, 1]; received {rhos.tolist()}.")
    with np.errstate(divide="ignore"):  # ρ = ±1 is z = ±inf, and tanh brings it back exactly
        return float(np.tanh(np.mean(np.arctanh(rhos))))


def seed_statistics(predictions, true, num_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Spearman and R-ℓ2 of several training seeds on one test set, honestly summarised.

    Args:
        predictions: (S, N) predicted scores of the N test videos by each of S seeds.
        true: (N,) true scores.
        num_bootstrap: B resamples of the test videos.
        seed: the resampling seed: ``np.random.default_rng(seed).integers(0, N, (B, N))`` draws
            the B index sets (with replacement), shared by all seeds.

    Returns:
        ``{"per_seed": [{"spearman", "r_l2"}] (S), "mean": {...}, "std": {...} (sample standard
        deviation over seeds, ddof 1; 0 for one seed), "ci95": {"spearman": [low, high],
        "r_l2": [low, high]}}``. The interval is the 2.5th and 97.5th percentiles, over the B
        resamples of the test videos, of the mean over seeds of the metric on the resample (R-ℓ2
        with the resample's own true range); resamples where the metric is undefined (all true
        scores equal) are left out. It says how much the reported mean depends on which test
        videos happen to be in the test set; the std says how much it depends on the seed.
    """
    return grouped_seed_statistics([[(predictions, true)]], num_bootstrap, seed)


def _combine(values: list, how: str) -> float:
    """One figure of several runs' figures: Fisher-z mean (ρ) or plain mean (R-ℓ2); a single
    value is itself. NaN when a correlation is not finite."""
    if len(values) == 1:
        return float(values[0])
    values = np.asarray(values, np.float64)
    if how == "fisher_z":
        if np.any(~np.isfinite(values)):
            return float("nan")
        return fisher_z_mean(values)
    return float(np.mean(values))


def grouped_seed_statistics(groups, num_bootstrap: int = 1000, seed: int = 0) -> dict:
    """:func:`seed_statistics` of a figure made of several test sets: groups of runs.

    For one seed, ρ is the Fisher-z mean over the groups of the Fisher-z mean over each group's
    runs (R-ℓ2: plain means). One test set is one group of one run; a JIGSAWS task is one group
    of four folds; the AQA-7 average is six groups of one class each.

    Args:
        groups: a list of groups, each a list of runs ``(predictions (S, N_r), true (N_r,))``,
            every run with the same S seeds.
        num_bootstrap: B resamples; each run's test videos are resampled on their own, with
            ``np.random.default_rng(seed).integers(0, N_r, (B, N_r))`` drawn run after run; a
            resample where a run's true scores are all equal is left out.
        seed: the resampling seed.

    Returns:
        as :func:`seed_statistics`.
    """
    runs = [(np.asarray(p, np.float64), np.asarray(t, np.float64).reshape(-1))
            for group in groups for p, t in group]
    num_seeds = runs[0][0].shape[0] if runs[0][0].ndim == 2 else None
    for p, t in runs:
        if p.ndim != 2 or p.shape != (num_seeds, t.size):
            raise ValueError(f"predictions must be (seeds, {t.size}), the same seeds for every "
                             f"run; received {p.shape}.")
    bounds = np.cumsum([0] + [len(group) for group in groups])
    fns = {"spearman": (spearman, "fisher_z"), "r_l2": (r_l2, "mean")}

    def figure(name, seed_index, rows=None):
        fn, how = fns[name]
        per_run = [fn(p[seed_index], t) if rows is None else fn(p[seed_index][r], t[r])
                   for (p, t), r in zip(runs, rows or [None] * len(runs))]
        with np.errstate(divide="ignore", invalid="ignore"):  # ρ = ±1: z = ±inf, tanh gives ±1
            return _combine([_combine(per_run[a:b], how) for a, b in zip(bounds[:-1], bounds[1:])],
                            how)

    per_seed = [{name: figure(name, s) for name in fns} for s in range(num_seeds)]
    result = {"per_seed": per_seed, "mean": {}, "std": {}, "ci95": {}}
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, t.size, (int(num_bootstrap), t.size)) for _, t in runs]
    resamples = [rows for rows in zip(*draws)
                 if all(np.ptp(t[r]) > 0 for (_, t), r in zip(runs, rows))]
    for name in fns:
        values = np.array([row[name] for row in per_seed])
        result["mean"][name] = float(values.mean())
        result["std"][name] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        means = np.array([np.mean([figure(name, s, list(rows)) for s in range(num_seeds)])
                          for rows in resamples])
        means = means[np.isfinite(means)]
        result["ci95"][name] = ([float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
                                if means.size else [float("nan"), float("nan")])
    return result
