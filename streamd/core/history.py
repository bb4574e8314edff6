"""One error's history per stream: smoothing, a decayed histogram, and the tail probability.

Steps 1-4 of :mod:`streamd.core.scoring`: the error in units of a centre and a scale, its
EWMA, and how rare that smoothed error is against the stream's own decayed histogram of
it, with a normal prior of the calibration mixed in.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from streamd.core.arrays import COUNT_MAX, F64, I64, B, clip, count_up, nan_to_num

if TYPE_CHECKING:
    from streamd.core.params import ScoringParams


def log10_tail(z: F64) -> F64:
    """``log10 P(Z >= z)`` for a standard normal, accurate far into the tail.

    >>> [round(float(v), 3) for v in log10_tail(np.array([0.0, 4.2649, 50.0]))]
    [-0.301, -5.0, -544.966]
    """
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    near = z < 30.0
    scaled = z[near] / math.sqrt(2.0)
    out[near] = np.log10(0.5 * np.fromiter(map(math.erfc, scaled), np.float64, len(scaled)))
    far = z[~near]  # Mills ratio: P(Z >= z) ~ phi(z) / z
    out[~near] = (-0.5 * far**2 - np.log(far * math.sqrt(2.0 * math.pi))) / math.log(10.0)
    return out


def score_from_z(z: F64) -> F64:
    """Anomaly score in [0, 1] from the standardised recent error ``z``."""
    return clip(-log10_tail(z) / 10.0, 0.0, 1.0)


# Bins of the smoothed normalised error for each stream's history: coarse below zero (better
# than the calibration's mean error), geometric above, up to 10^5 calibration std.
# The largest normalised error a history takes: an infinite or absurd error (a glitch of
# 1.7e308) must not leave the smoothed error infinite for ever.
U_MAX = 1e6
BIN_LOW = np.concatenate(([-np.inf, -2.0, -1.0, -0.5, 0.0], np.geomspace(0.1, 1e5, 43)))
N_BINS = len(BIN_LOW)


class ErrorHistory:
    """One error's smoothing and decayed-histogram history, per slot (steps 1-4 above).

    ``u = (error - center) / scale``. The model's forecast error uses the card's
    calibration; the seasonal profile's residual uses centre 0 and the calibration's mean
    error as its unit (it has no calibration of its own, and a residual is never negative).
    """

    # Per-slot arrays (all indexed on axis 0) that a state snapshot holds.
    SLOT_FIELDS = (("smooth", 0), ("primed", 0), ("hist", 0), ("n", 0), ("warm_until", 0))

    def __init__(self, capacity: int, params: ScoringParams, center: float, scale: float) -> None:
        self.params, self.center, self.scale = params, center, scale
        self.smooth = np.zeros(capacity)
        self.primed = np.zeros(capacity, bool)
        self.hist = np.zeros((capacity, N_BINS), np.float32)
        self.n = np.zeros(capacity, np.int32)
        # learn from everything until n reaches this (history_warmup; longer after an expiry)
        self.warm_until = np.full(capacity, min(params.history_warmup, COUNT_MAX), np.int32)

    def reset(self, slots: I64 | list[int]) -> None:
        self.smooth[slots] = 0.0
        self.primed[slots] = False
        self.restart(slots, self.params.history_warmup)

    def restart(self, slots: I64 | list[int], warmup: int) -> None:
        """Forget the history (not the smoothed level) and learn ``warmup`` samples again."""
        self.hist[slots] = 0.0
        self.n[slots] = 0
        self.warm_until[slots] = min(warmup, COUNT_MAX)

    def relearn(self, params: ScoringParams, center: float, scale: float) -> None:
        self.params, self.center, self.scale = params, center, scale
        self.reset(slice(None))  # type: ignore[arg-type]

    def log10_tail(self, slots: I64, s: F64, bins: I64) -> F64:
        """``log10 P(history >= s)`` with the calibration prior mixed in."""
        p = self.params
        h = self.hist[slots].astype(np.float64)
        tail = np.cumsum(h[:, ::-1], axis=1)[:, ::-1][np.arange(len(slots)), bins]
        total = h.sum(axis=1)
        log_prior = np.log10(p.prior_samples) + log10_tail(s / math.sqrt(p.prior_var))
        with np.errstate(divide="ignore"):
            log_mass = np.where(tail > 0, np.log10(tail + 10.0**log_prior), log_prior)
        out: F64 = log_mass - np.log10(total + p.prior_samples)
        return np.minimum(out, 0.0)

    def observe(self, slots: I64, error: F64) -> tuple[F64, I64, B]:
        """Smooth ``error`` into each slot; returns the surprise, the history bin of the
        smoothed error (for :meth:`learn`) and whether the slot is still warming up."""
        p = self.params
        u = clip(nan_to_num((error - self.center) / self.scale, nan=U_MAX), -U_MAX, U_MAX)
        s = np.where(
            self.primed[slots],
            (1 - p.smoothing_alpha) * self.smooth[slots] + p.smoothing_alpha * u,
            u,
        )
        self.smooth[slots] = s
        self.primed[slots] = True
        bins = np.searchsorted(BIN_LOW, s, side="right") - 1
        surprise = -self.log10_tail(slots, s, bins)
        return surprise, bins, self.n[slots] < self.warm_until[slots]

    def learn(self, slots: I64, bins: I64) -> None:
        self.hist[slots] *= np.float32(1.0 - 1.0 / self.params.history_samples)
        self.hist[slots, bins] += 1.0
        self.n[slots] = count_up(self.n[slots])
