"""AQA metrics as reported by TPT / CoRe (SPEC §6).

* :func:`spearman`: Spearman's rank correlation (``scipy.stats.spearmanr``).
* :func:`r_l2`: relative L2 distance, ``100 * mean(((pred - true) / (max(true) - min(true)))^2)``
  with max/min over the evaluated ground truth (reported x100, as in the paper's tables).
* :func:`fisher_z_mean`: the AQA-7 average of per-class correlations, ``tanh(mean(atanh(rho)))``.
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


def fisher_z_mean(rhos) -> float:
    """Average of correlations through Fisher's z: ``tanh(mean(atanh(rho)))``."""
    rhos = np.asarray(rhos, dtype=np.float64).reshape(-1)
    if len(rhos) == 0:
        raise ValueError("fisher_z_mean needs at least one correlation.")
    if np.any(np.abs(rhos) > 1):
        raise ValueError(f"correlations must lie in [-1, 1]; received {rhos.tolist()}.")
    return float(np.tanh(np.mean(np.arctanh(rhos))))
