"""Scoring: prediction error -> anomaly score in [0, 1] -> verdicts with hysteresis.

Pure array code, one path for ``run``, ``replay`` and ``evaluate``. For each sample:

1. ``u = (error - cal.mean) / cal.std``: the error in units of the model's normal error,
   from the card's calibration (held-back normal data).
2. ``s = EWMA(u, smoothing_alpha)``: short-term smoothing, so one noisy sample does not alert.
3. Each stream keeps a history of ``s``: a histogram decayed with horizon
   ``history_samples``. For its first ``history_warmup`` scored samples a stream learns from
   every sample and gives no verdict (a stream's normal error may differ from the
   calibration's); after that it learns from samples below the threshold outside an
   anomaly and from samples below ``threshold_low`` inside one, so an anomaly's hot samples
   never teach the stream that they are normal, while the quiet samples an anomaly waits
   through before it leaves (``leave_after``) still keep the history current.
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
7. Optionally (``scoring.profile``), a second source of the same kind scores the residual
   against the stream's seasonal profile (:mod:`streamd.core.profile`), with its own history and
   its own steps 5-6, so each alert names its source (``forecast`` or ``profile``) and an
   anomaly of one neither hides nor prolongs the other's. The stream's score is the larger
   of the two, and it is anomalous while either source is. Each history learns only samples
   that are normal for it and lie outside its own source's anomalies (the profile's values
   learn only outside any anomaly of the stream, :mod:`streamd.core.pipeline`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from streamd.core.arrays import F64, I64, B, clip
from streamd.core.history import ErrorHistory
from streamd.core.hysteresis import Hysteresis, Verdict
from streamd.core.params import ScoringParams


class Scored(NamedTuple):
    """Per-row outputs of :meth:`ScoreState.update`."""

    score: F64  # the stream's: the larger of its sources' scores
    surprise: F64  # -log10 of the tail probability, unclipped (ranks strong anomalies)
    anomalous: B  # in an anomaly of any source after this sample
    entered: B  # a source entered an anomaly at this sample
    left: B  # a source left one
    sources: dict[str, Verdict]  # per source (SOURCES), for its own alerts


# The sources of evidence a stream's alerts name: the forecast error, and (with
# ``scoring.profile``) the residual against the seasonal profile.
SOURCES = ("forecast", "profile")


class ScoreState:
    """Per-stream scorer state in arrays of length ``capacity``.

    The forecast error's history (:class:`ErrorHistory`, ``hist: [capacity, N_BINS]``,
    float32) makes the tail probability empirical: an error as large as ones the stream
    shows every day is not rare, whatever its size. The calibration prior, a normal
    distribution of weight ``prior_samples``, keeps the probability of a size never seen
    above zero. With ``profile``, a second history scores the seasonal profile's residual
    (:mod:`streamd.core.profile`), and each source has its own hysteresis: an anomaly of one
    neither hides nor prolongs the other's, and each alert names its source. The stream's
    score is the larger of the two.
    """

    # Per-slot arrays (all indexed on axis 0) that a state snapshot holds: none of its own,
    # only those of each history and each hysteresis.
    SLOT_FIELDS: tuple[tuple[str, int], ...] = ()

    def __init__(self, capacity: int, params: ScoringParams, profile: bool = False) -> None:
        self.params = params
        self.history = ErrorHistory(capacity, params, params.cal_mean, params.cal_std)
        self.alert = Hysteresis(capacity)
        self.profile_history = (
            ErrorHistory(capacity, params, 0.0, params.cal_mean) if profile else None
        )
        self.profile_alert = Hysteresis(capacity) if profile else None

    @property
    def histories(self) -> list[ErrorHistory]:
        return [h for h in (self.history, self.profile_history) if h is not None]

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources this state scores (:data:`SOURCES`)."""
        return SOURCES if self.profile_alert is not None else SOURCES[:1]

    @property
    def anomalous(self) -> B:
        """Whether each slot is in an anomaly of any source."""
        if self.profile_alert is None:
            return self.alert.anomalous
        return self.alert.anomalous | self.profile_alert.anomalous

    def reset(self, slots: I64 | list[int]) -> None:
        for h in self.histories:
            h.reset(slots)
        for a in (self.alert, self.profile_alert):
            if a is not None:
                a.reset(slots)

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
        profile has not seen the sample's time of day yet: such a row scores 0 for the
        profile and teaches its history nothing.
        """
        p = self.params
        surprise, bins, warming = self.history.observe(slots, error)
        own_hot = surprise / 10.0 >= p.threshold
        own_quiet = surprise / 10.0 < p.threshold_low
        forecast, expired = self.alert.step(slots, clip(surprise / 10.0, 0.0, 1.0), warming, p)
        verdicts = {"forecast": forecast}
        now = forecast.anomalous
        ph, pa = self.profile_history, self.profile_alert
        if ph is not None and pa is not None and profile_error is not None:
            valid = ~np.isnan(profile_error)
            v_slots = slots[valid]
            v_surprise, p_bins, v_warming = ph.observe(v_slots, profile_error[valid])
            p_surprise = np.zeros(len(slots))
            p_surprise[valid] = np.where(v_warming, 0.0, v_surprise)
            p_warming = np.ones(len(slots), bool)
            p_warming[valid] = v_warming
            profile, p_expired = pa.step(slots, clip(p_surprise / 10.0, 0.0, 1.0), p_warming, p)
            verdicts["profile"] = profile
            surprise = np.maximum(surprise, p_surprise)
            now = now | profile.anomalous
        score = clip(surprise / 10.0, 0.0, 1.0)

        # An anomaly that outlasts max_anomaly_samples is its source's new normal.
        warmup = max(p.history_warmup, p.prior_samples)
        if expired.any():
            self.history.restart(slots[expired], warmup)
        # A history learns only samples that are normal for it: below the threshold outside
        # its source's anomalies, below threshold_low inside one (the quiet samples an
        # anomaly must see before it leaves), so an anomaly's hot samples never teach it
        # that they are normal, and a long leave_after does not freeze learning while the
        # stream moves on; the sources stay independent (docs/quality.md).
        learn = (((~forecast.anomalous & ~own_hot) | own_quiet) & ~expired) | warming
        if learn.any():
            self.history.learn(slots[learn], bins[learn])
        if "profile" in verdicts and ph is not None:
            if p_expired.any():
                ph.restart(slots[p_expired], warmup)
            v_score = v_surprise / 10.0
            outside = ~profile.anomalous[valid] & (v_score < p.threshold)
            p_learn = ((outside | (v_score < p.threshold_low)) & ~p_expired[valid]) | v_warming
            if p_learn.any():
                ph.learn(v_slots[p_learn], p_bins[p_learn])
        entered = np.logical_or.reduce([v.entered for v in verdicts.values()])
        left = np.logical_or.reduce([v.left for v in verdicts.values()])
        return Scored(score, surprise, now, entered, left, verdicts)
