"""The scorer's constants: the model card's calibration and the ``scoring`` settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamd.core.card import Calibration

if TYPE_CHECKING:
    from streamd.config import ScoringSettings


@dataclass(frozen=True)
class ScoringParams:
    """Constants of the scorer: the model card's calibration and the ``scoring`` settings
    (whose defaults and meaning are in :mod:`streamd.config`)."""

    cal_mean: float
    cal_std: float
    smoothing_alpha: float
    history_samples: int
    prior_samples: int
    history_warmup: int
    threshold: float
    threshold_low: float
    enter_after: int
    leave_after: int
    max_anomaly_samples: int

    @classmethod
    def from_settings(cls, sc: ScoringSettings, cal: Calibration) -> ScoringParams:
        return cls(
            cal_mean=cal.mean,
            cal_std=cal.std,
            smoothing_alpha=sc.smoothing_alpha,
            history_samples=sc.history_samples,
            prior_samples=sc.prior_samples,
            history_warmup=sc.history_warmup,
            threshold=sc.threshold,
            threshold_low=sc.threshold_low,
            enter_after=sc.enter_after,
            leave_after=sc.leave_after,
            max_anomaly_samples=sc.max_anomaly_samples,
        )

    @property
    def prior_var(self) -> float:
        a = self.smoothing_alpha
        return a / (2.0 - a)
