"""Baseline detectors for ``streamd evaluate``: what streamd's scorer must beat."""

from __future__ import annotations

import numpy as np

from streamd.core.arrays import F64
from streamd.core.history import log10_tail


def rolling_zscore(values: F64, window: int = 288) -> F64:
    """Anomaly score of each value against the mean and std of the ``window`` values before it.

    The score is :func:`strength` of ``|z|``; rows without ``window`` predecessors score 0.

    >>> s = rolling_zscore(np.r_[np.zeros(50) + np.arange(50) % 2, 30.0], window=50)
    >>> float(s[-1]) > 0.9, float(s[10])
    (True, 0.0)
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    out = np.zeros(n)
    if n <= window:
        return out
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    idx = np.arange(window, n)
    s1 = c1[idx] - c1[idx - window]
    s2 = c2[idx] - c2[idx - window]
    mean = s1 / window
    var = np.maximum(s2 / window - mean**2, 0.0)
    std = np.sqrt(var)
    z = np.abs(x[idx] - mean) / np.maximum(std, 1e-9 * np.maximum(1.0, np.abs(mean)))
    out[window:] = strength(z)
    return out


def raw_error_score(error: F64, cal_mean: float, cal_std: float) -> F64:
    """The model's error normalised by its calibration, as a score; no smoothing, history or
    hysteresis (NaN errors, i.e. warm-up, score 0)."""
    u = (np.nan_to_num(error, nan=cal_mean) - cal_mean) / cal_std
    return strength(u)


def strength(z: F64) -> F64:
    """``L / (L + 10)`` with ``L = -log10 P(Z >= z)``: the evaluator's common, never saturating
    scale for every detector (0.5 at a one-in-10^10 tail), so a threshold sweep can rank even
    very strong detections."""
    surprise = -log10_tail(np.asarray(z, dtype=np.float64))
    out: F64 = surprise / (surprise + 10.0)
    return out
