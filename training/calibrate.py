"""Calibration: how large is a normal prediction error?

The model predicts the held-back calibration slice (normal data it never trained on);
the statistics of its per-sample error become the card's :class:`Calibration`, which the
runtime uses to normalise errors before scoring.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamd.core.card import Calibration

QUANTILES = (0.5, 0.9, 0.99, 0.999)
THRESHOLD_QUANTILE = 0.999


def sample_errors(
    y: npt.NDArray[np.float32], y_hat: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Per-sample error: RMS over features in scaled units (the runtime's definition)."""
    err: npt.NDArray[np.float64] = np.sqrt(
        np.mean((np.asarray(y, np.float64) - y_hat) ** 2, axis=1)
    )
    return err


def calibrate(errors: npt.NDArray[np.float64]) -> Calibration:
    """Summarise calibration errors; the default threshold is their 99.9% quantile."""
    if len(errors) == 0:
        raise ValueError("no calibration windows")
    q = {f"{p:g}": float(np.quantile(errors, p)) for p in QUANTILES}
    q["max"] = float(errors.max())
    std = float(errors.std())
    return Calibration(
        n=len(errors),
        mean=float(errors.mean()),
        std=std if std > 0 else 1e-6,
        quantiles=q,
        threshold=max(q[f"{THRESHOLD_QUANTILE:g}"], 1e-6),
    )
