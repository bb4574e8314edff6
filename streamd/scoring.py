"""Scoring: prediction error -> anomaly score in [0, 1] -> verdicts with hysteresis.

Pure array code, one path for ``run``, ``replay`` and ``evaluate``. For each sample:

1. ``u = (error - cal.mean) / cal.std``: the error in units of the model's normal error,
   from the card's calibration (held-back normal data).
2. ``s = EWMA(u, smoothing_alpha)``: short-term smoothing, so one noisy sample does not alert.
3. Each stream keeps a history of ``s``: a histogram decayed with horizon
   ``history_samples``. For its first ``history_warmup`` scored samples a stream learns from
   every sample and gives no verdict (a stream's normal error may differ from the
   calibration's); after that it learns only from samples that are neither above the
   threshold nor inside an anomaly, so an anomaly never teaches the stream that it is normal.
4. ``p = P(history >= s)``: the tail probability of the recent error against the stream's
   own history (in the spirit of Numenta's anomaly likelihood, but empirical, so errors that
   recur, such as a daily step a forecaster cannot time, stop being rare). A normal prior
   from the calibration (mean 0, variance ``alpha / (2 - alpha)``, the variance of an EWMA
   of unit-variance noise) with weight ``prior_samples`` is mixed in, so a size never seen
   has a small but non-zero probability. The **anomaly score** is ``min(1, -log10(p) / 10)``:
   0.5 means "a one-in-100,000 error", 1.0 means one in 10^10 or rarer.
5. Hysteresis: a stream enters the anomalous state after ``enter_after`` consecutive samples
   with score >= ``threshold``, and leaves after ``leave_after`` consecutive samples below
   ``threshold_low``.
6. An anomaly that lasts ``max_anomaly_samples`` is taken as the stream's new normal: it is
   resolved and the stream's error history starts again from the prior at the current level.
   Without this, a stream that changed for good (or never fit the model) would stay in alert
   forever, since flagged samples never teach the history.
7. Optionally (``scoring.profile``), a second history of the same kind scores the residual
   against the stream's seasonal profile (:mod:`streamd.profile`); a sample's surprise is
   the larger of the two, and steps 5-6 run once on it. Each history learns only samples
   that are normal for it and lie outside an anomaly.
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

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


@dataclass(frozen=True)
class ScoringParams:
    """Constants of the scorer: from the model card and the ``scoring`` settings."""

    cal_mean: float
    cal_std: float
    smoothing_alpha: float = 0.3
    history_samples: int = 2000
    prior_samples: int = 50
    history_warmup: int = 300
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


# Bins of the smoothed normalised error for each stream's history: coarse below zero (better
# than the calibration's mean error), geometric above, up to 10^5 calibration std.
BIN_LOW = np.concatenate(([-np.inf, -2.0, -1.0, -0.5, 0.0], np.geomspace(0.1, 1e5, 43)))
N_BINS = len(BIN_LOW)


class Scored(NamedTuple):
    """Per-row outputs of :meth:`ScoreState.update`."""

    score: F64
    surprise: F64  # -log10 of the tail probability, unclipped (ranks strong anomalies)
    anomalous: B  # state after this sample
    entered: B
    left: B


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
        self.n = np.zeros(capacity, np.int64)
        # learn from everything until n reaches this (history_warmup; longer after an expiry)
        self.warm_until = np.full(capacity, params.history_warmup, np.int64)

    def reset(self, slots: I64 | list[int]) -> None:
        self.smooth[slots] = 0.0
        self.primed[slots] = False
        self.restart(slots, self.params.history_warmup)

    def restart(self, slots: I64 | list[int], warmup: int) -> None:
        """Forget the history (not the smoothed level) and learn ``warmup`` samples again."""
        self.hist[slots] = 0.0
        self.n[slots] = 0
        self.warm_until[slots] = warmup

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
        u = (error - self.center) / self.scale
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
        self.n[slots] += 1


class ScoreState:
    """Per-stream scorer state in arrays of length ``capacity``.

    The forecast error's history (:class:`ErrorHistory`, ``hist: [capacity, N_BINS]``,
    float32) makes the tail probability empirical: an error as large as ones the stream
    shows every day is not rare, whatever its size. The calibration prior, a normal
    distribution of weight ``prior_samples``, keeps the probability of a size never seen
    above zero. With ``profile``, a second history scores the seasonal profile's residual
    (:mod:`streamd.profile`) and a sample's surprise is the larger of the two; one
    hysteresis decides the stream's state.
    """

    # Per-slot arrays (all indexed on axis 0) that a state snapshot holds, beside each
    # history's own.
    SLOT_FIELDS = (
        ("above", 0),
        ("below", 0),
        ("anomalous", 0),
        ("run", 0),
        ("last_score", 0),
    )

    def __init__(self, capacity: int, params: ScoringParams, profile: bool = False) -> None:
        self.params = params
        self.history = ErrorHistory(capacity, params, params.cal_mean, params.cal_std)
        self.profile_history = (
            ErrorHistory(capacity, params, 0.0, params.cal_mean) if profile else None
        )
        self.above = np.zeros(capacity, np.int64)
        self.below = np.zeros(capacity, np.int64)
        self.anomalous = np.zeros(capacity, bool)
        self.run = np.zeros(capacity, np.int64)  # samples in the current anomaly
        self.last_score = np.zeros(capacity)

    @property
    def histories(self) -> list[ErrorHistory]:
        return [h for h in (self.history, self.profile_history) if h is not None]

    def reset(self, slots: I64 | list[int]) -> None:
        for h in self.histories:
            h.reset(slots)
        self.above[slots] = 0
        self.below[slots] = 0
        self.anomalous[slots] = False
        self.run[slots] = 0
        self.last_score[slots] = 0.0

    def relearn(self, params: ScoringParams) -> None:
        """Adopt ``params`` (a new model's calibration) and relearn every error history.

        Errors of another model are not comparable, so histories restart with a warm-up;
        alert states stay, so an open anomaly still ends with a ``resolved`` alert.
        """
        self.params = params
        self.history.relearn(params, params.cal_mean, params.cal_std)
        if self.profile_history is not None:
            self.profile_history.relearn(params, 0.0, params.cal_mean)

    def update(self, slots: I64, error: F64, profile_error: F64 | None = None) -> Scored:
        """Score one error per row; ``slots`` must be distinct within a call.

        ``profile_error`` (with ``profile``) is the seasonal residual, NaN where the
        profile has not seen the sample's time of day yet.
        """
        p = self.params
        surprise, bins, warming = self.history.observe(slots, error)
        own_hot = surprise / 10.0 >= p.threshold
        ph = self.profile_history
        if ph is not None and profile_error is not None:
            valid = ~np.isnan(profile_error)
            v_slots = slots[valid]
            p_surprise, p_bins, p_warming = ph.observe(v_slots, profile_error[valid])
            p_own_hot = p_surprise / 10.0 >= p.threshold
            surprise = surprise.copy()
            surprise[valid] = np.maximum(surprise[valid], np.where(p_warming, 0.0, p_surprise))
        score = np.clip(surprise / 10.0, 0.0, 1.0)
        self.last_score[slots] = score

        was = self.anomalous[slots]
        hot = score >= p.threshold
        cool = score < p.threshold_low
        above = np.where(hot, self.above[slots] + 1, 0)
        below = np.where(cool, self.below[slots] + 1, 0)
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
            warmup = max(p.history_warmup, p.prior_samples)
            for h in self.histories:
                h.restart(slots[expired], warmup)

        # A history learns only samples that are normal for it and for the stream, so an
        # anomaly never teaches it that it is normal.
        learn = (~now & ~own_hot & ~expired) | warming
        if learn.any():
            self.history.learn(slots[learn], bins[learn])
        if ph is not None and profile_error is not None:
            quiet = (~now & ~expired)[valid]
            p_learn = (quiet & ~p_own_hot) | p_warming
            if p_learn.any():
                ph.learn(v_slots[p_learn], p_bins[p_learn])
        return Scored(score, surprise, now, entered, left)
