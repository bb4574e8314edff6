"""The alert state machine of one source per stream: enter, leave, expire (steps 5-6 of
:mod:`streamd.core.scoring`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from streamd.core.arrays import F64, I64, B, count_up

if TYPE_CHECKING:
    from streamd.core.params import ScoringParams


class Verdict(NamedTuple):
    """One source's outcome per row: its own score and alert state."""

    score: F64
    anomalous: B  # state after this sample
    entered: B
    left: B


class Hysteresis:
    """One alert state machine per slot (steps 5-6 above)."""

    # Per-slot arrays (all indexed on axis 0) that a state snapshot holds.
    SLOT_FIELDS = (("above", 0), ("below", 0), ("anomalous", 0), ("run", 0))

    def __init__(self, capacity: int) -> None:
        self.above = np.zeros(capacity, np.int32)
        self.below = np.zeros(capacity, np.int32)
        self.anomalous = np.zeros(capacity, bool)
        self.run = np.zeros(capacity, np.int32)  # samples in the current anomaly

    def reset(self, slots: I64 | list[int]) -> None:
        self.above[slots] = 0
        self.below[slots] = 0
        self.anomalous[slots] = False
        self.run[slots] = 0

    def step(self, slots: I64, score: F64, warming: B, p: ScoringParams) -> tuple[Verdict, B]:
        """Advance each slot by one score; returns the verdict and where an anomaly expired."""
        was = self.anomalous[slots]
        above = np.where(score >= p.threshold, count_up(self.above[slots]), 0)
        below = np.where(score < p.threshold_low, count_up(self.below[slots]), 0)
        entered = ~was & (above >= p.enter_after) & ~warming
        run = np.where(was, count_up(self.run[slots]), 0)
        expired = was & (run >= p.max_anomaly_samples)
        left = was & ((below >= p.leave_after) | expired)
        now = (was | entered) & ~left
        self.above[slots] = np.where(expired, 0, above)
        self.below[slots] = below
        self.anomalous[slots] = now
        self.run[slots] = np.where(now, run, 0)
        return Verdict(score, now, entered, left), expired
