"""Scoring: prediction error -> anomaly score in [0, 1] -> verdicts with hysteresis.

Pure array code, one path for ``run``, ``replay`` and ``evaluate``. For each sample:

1. ``u = (error - cal.mean) / cal.std``: the error in units of the model's normal error,
   from the card's calibration (held-back normal data).
2. ``s = EWMA(u, smoothing_alpha)``: short-term smoothing, so one noisy sample does not alert.
3. Each stream keeps a long-term mean and variance of ``s`` (exponential, horizon
   ``history_samples``), starting from a prior that the calibration implies (mean 0,
   variance ``alpha / (2 - alpha)``, the variance of an EWMA of unit-variance noise) with
   weight ``prior_samples``. For its first ``history_warmup`` scored samples a stream learns
   from every sample and gives no verdict (a stream's normal error may differ from the
   calibration's); after that it learns only from samples that are neither above the
   threshold nor inside an anomaly, so an anomaly never teaches the stream that it is normal.
4. ``p = P(Z >= (s - mean) / std)`` for a standard normal ``Z``: the tail probability of the
   recent error against the stream's own history (in the spirit of Numenta's anomaly
   likelihood). The **anomaly score** is ``min(1, -log10(p) / 10)``: 0.5 means "a
   one-in-100,000 error", 1.0 means one in 10^10 or rarer.
5. Hysteresis: a stream enters the anomalous state after ``enter_after`` consecutive samples
   with score >= ``threshold``, and leaves after ``leave_after`` consecutive samples below
   ``threshold_low``.
6. An anomaly that lasts ``max_anomaly_samples`` is taken as the stream's new normal: it is
   resolved and the stream's error history starts again from the prior at the current level.
   Without this, a stream that changed for good (or never fit the model) would stay in alert
   forever, since flagged samples never teach the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from streamd.card import Calibration

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

# A stream's error variance may shrink to 1% of the prior (10% of its std), never to zero:
# a perfectly predictable stream (a flat line) must not turn every tiny wobble into an alert.
MIN_VAR_FRACTION = 0.01
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


@dataclass(frozen=True)
class ScoringParams:
    """Constants of the scorer: from the model card and the ``scoring`` settings."""

    cal_mean: float
    cal_std: float
    smoothing_alpha: float = 0.3
    history_samples: int = 2000
    prior_samples: int = 50
    history_warmup: int = 100
    threshold: float = 0.5
    threshold_low: float = 0.3
    enter_after: int = 2
    leave_after: int = 12
    max_anomaly_samples: int = 1000

    @classmethod
    def from_calibration(cls, cal: Calibration, **settings: float | int) -> ScoringParams:
        return cls(cal_mean=cal.mean, cal_std=cal.std, **settings)  # type: ignore[arg-type]

    @property
    def prior_var(self) -> float:
        a = self.smoothing_alpha
        return a / (2.0 - a)


def log10_tail(z: F64) -> F64:
    """``log10 P(Z >= z)`` for a standard normal, accurate far into the tail.

    >>> [round(float(v), 3) for v in log10_tail(np.array([0.0, 4.2649, 50.0]))]
    [-0.301, -5.0, -544.966]
    """
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    near = z < 30.0
    out[near] = np.log10(0.5 * _erfc(z[near] / math.sqrt(2.0)))
    far = z[~near]  # Mills ratio: P(Z >= z) ~ phi(z) / z
    out[~near] = (-0.5 * far**2 - np.log(far * math.sqrt(2.0 * math.pi))) / math.log(10.0)
    return out


def score_from_z(z: F64) -> F64:
    """Anomaly score in [0, 1] from the standardised recent error ``z``."""
    return np.clip(-log10_tail(z) / 10.0, 0.0, 1.0)


class Scored(NamedTuple):
    """Per-row outputs of :meth:`ScoreState.update`."""

    score: F64
    anomalous: B  # state after this sample
    entered: B
    left: B


class ScoreState:
    """Per-stream scorer state in arrays of length ``capacity``."""

    def __init__(self, capacity: int, params: ScoringParams) -> None:
        self.params = params
        self.smooth = np.zeros(capacity)
        self.primed = np.zeros(capacity, bool)
        self.mean = np.zeros(capacity)
        self.var = np.full(capacity, params.prior_var)
        self.n = np.zeros(capacity, np.int64)
        self.above = np.zeros(capacity, np.int64)
        self.below = np.zeros(capacity, np.int64)
        self.anomalous = np.zeros(capacity, bool)
        self.run = np.zeros(capacity, np.int64)  # samples in the current anomaly
        self.last_score = np.zeros(capacity)

    def reset(self, slots: I64 | list[int]) -> None:
        self.smooth[slots] = 0.0
        self.primed[slots] = False
        self.mean[slots] = 0.0
        self.var[slots] = self.params.prior_var
        self.n[slots] = 0
        self.above[slots] = 0
        self.below[slots] = 0
        self.anomalous[slots] = False
        self.run[slots] = 0
        self.last_score[slots] = 0.0

    def update(self, slots: I64, error: F64) -> Scored:
        """Score one error per row; ``slots`` must be distinct within a call."""
        p = self.params
        u = (error - p.cal_mean) / p.cal_std
        s = np.where(
            self.primed[slots],
            (1 - p.smoothing_alpha) * self.smooth[slots] + p.smoothing_alpha * u,
            u,
        )
        self.smooth[slots] = s
        self.primed[slots] = True

        mean, var = self.mean[slots], self.var[slots]
        score = score_from_z((s - mean) / np.sqrt(var))
        self.last_score[slots] = score

        was = self.anomalous[slots]
        hot = score >= p.threshold
        cool = score < p.threshold_low
        above = np.where(hot, self.above[slots] + 1, 0)
        below = np.where(cool, self.below[slots] + 1, 0)
        warming = self.n[slots] < p.history_warmup
        entered = ~was & (above >= p.enter_after) & ~warming
        run = np.where(was, self.run[slots] + 1, 0)
        expired = was & (run >= p.max_anomaly_samples)
        left = was & ((below >= p.leave_after) | expired)
        now = (was | entered) & ~left
        self.above[slots] = np.where(expired, 0, above)
        self.below[slots] = below
        self.anomalous[slots] = now
        self.run[slots] = np.where(now, run, 0)
        if expired.any():
            es = slots[expired]
            self.mean[es] = s[expired]
            self.var[es] = p.prior_var
            self.n[es] = 0

        learn = (~now & ~hot & ~expired) | warming
        if learn.any():
            ls = slots[learn]
            n = self.n[ls]
            w = np.maximum(1.0 / p.history_samples, 1.0 / (n + 1 + p.prior_samples))
            delta = s[learn] - self.mean[ls]
            self.mean[ls] += w * delta
            new_var = (1 - w) * (self.var[ls] + w * delta**2)
            self.var[ls] = np.maximum(new_var, MIN_VAR_FRACTION * p.prior_var)
            self.n[ls] = n + 1
        return Scored(score, now, entered, left)
