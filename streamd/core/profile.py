"""A per-stream seasonal profile: what each time of day (or of the week) usually brings.

A next-step forecaster follows its recent samples. When a stream settles at a level it never
shows at that hour (a daily peak that does not come, a plateau where the ramp should be, a
quiet holiday), the forecast follows it within a few samples and the prediction error stays
small. The profile remembers, per stream and per phase bin of a period, a decaying average
of the values seen in that bin; the residual ``|value - profile|`` is scored by the
scorer's second error history (:mod:`streamd.core.scoring`), so a value far from what its time
of day usually brings raises the score even where the forecast error does not.

The averages decay in time, not in samples: a sample moves its bin's average by
``dt / (periods * bin width)``, ``dt`` being the time since the stream's previous sample
(at most one bin width), so the memory is about ``periods`` periods whatever the stream's
rate. Phases are taken in UTC, as the model's time features are (:mod:`streamd.core.timefeatures`).
"""

from __future__ import annotations

import numpy as np

from streamd.core.arrays import F64, I64, clip, nan_to_num
from streamd.core.timefeatures import PERIODS_S


class SeasonalProfile:
    """Per-slot arrays: the average of each phase bin (raw units; NaN until the bin has been
    seen, which costs no flag array: 48 bytes a stream with 48 bins) and the time of the
    stream's last learnt sample."""

    # Per-slot arrays (indexed on axis 0) that a state snapshot holds.
    SLOT_FIELDS = (("mean", 0), ("prev_ts", 0))

    def __init__(
        self, capacity: int, features: int, period: str, bins: int, periods: float
    ) -> None:
        if period not in PERIODS_S:
            raise ValueError(f"unknown profile period {period!r} (known: {', '.join(PERIODS_S)})")
        self.period_s = PERIODS_S[period]
        self.bins = bins
        self.bin_s = self.period_s / bins
        self.periods = periods
        self.mean = np.full((capacity, bins, features), np.nan, np.float32)
        self.prev_ts = np.full(capacity, np.nan)

    def reset(self, slots: I64 | list[int]) -> None:
        self.mean[slots] = np.nan
        self.prev_ts[slots] = np.nan

    def bin_of(self, ts_s: F64) -> I64:
        """Phase bin of each timestamp (epoch seconds, UTC)."""
        phase = np.mod(np.asarray(ts_s, np.float64), self.period_s) / self.bin_s
        return np.minimum(phase.astype(np.int64), self.bins - 1)

    def expected(self, slots: I64, ts_s: F64) -> F64:
        """What each row's time of day usually brings (raw units); NaN where unseen."""
        out: F64 = self.mean[slots, self.bin_of(ts_s)].astype(np.float64)
        return out

    def learn(self, slots: I64, ts_s: F64, raw: F64) -> None:
        """Move each row's bin average towards its value; ``slots`` distinct within a call."""
        b = self.bin_of(ts_s)
        dt = nan_to_num(ts_s - self.prev_ts[slots], nan=self.bin_s)
        w = clip(dt, 0.0, self.bin_s) / (self.periods * self.bin_s)
        m = self.mean[slots, b]
        moved = m + (w[:, None] * (raw - m)).astype(np.float32)
        self.mean[slots, b] = np.where(np.isnan(m), raw.astype(np.float32), moved)
        self.prev_ts[slots] = ts_s
