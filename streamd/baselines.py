"""Baseline detectors for ``streamd evaluate``: what streamd's scorer must beat."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamd.scoring import score_from_z

F64 = npt.NDArray[np.float64]


def rolling_zscore(values: F64, window: int = 288) -> F64:
    """Anomaly score of each value against the mean and std of the ``window`` values before it.

    The score has the same meaning as streamd's (``min(1, -log10(tail probability) / 10)``
    of ``|z|``); rows without ``window`` predecessors score 0.

    >>> s = rolling_zscore(np.r_[np.zeros(50) + np.arange(50) % 2, 30.0], window=50)
    >>> float(s[-1]) == 1.0, float(s[10])
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
    out[window:] = score_from_z(z)
    return out


def raw_error_score(error: F64, cal_mean: float, cal_std: float) -> F64:
    """The model's error normalised by its calibration, as a score; no smoothing, history or
    hysteresis (NaN errors, i.e. warm-up, score 0)."""
    u = (np.nan_to_num(error, nan=cal_mean) - cal_mean) / cal_std
    return score_from_z(u)
