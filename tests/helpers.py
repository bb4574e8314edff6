"""Helpers the test modules share: paths, CSV files, pipelines and samples."""

from __future__ import annotations

import csv
import dataclasses
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from streamd.config import Settings
from streamd.core.card import Calibration
from streamd.core.inference import Forecaster
from streamd.core.params import ScoringParams
from streamd.core.payload import Sample
from streamd.core.pipeline import Pipeline, build_pipeline
from streamd.tools.synth import PROFILES, normal_series

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "models" / "default.onnx"


def write_csv(
    path: Path, columns: dict[str, np.ndarray], start_s: float = 1.7e9, step_s: float = 60.0
) -> Path:
    """Write ``timestamp`` (ISO 8601, UTC) plus ``columns`` as a CSV like NAB's."""
    n = len(next(iter(columns.values())))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", *columns])
        for i in range(n):
            ts = datetime.fromtimestamp(start_s + i * step_s, tz=timezone.utc)
            w.writerow(
                [ts.strftime("%Y-%m-%d %H:%M:%S"), *(f"{c[i]:.6f}" for c in columns.values())]
            )
    return path


def pipeline(
    model: Path | Forecaster,
    mode: str = "window",
    *,
    max_streams: int = 10_000,
    max_gap_s: float = math.inf,
    **scoring: Any,
) -> Pipeline:
    """A pipeline as ``streamd run`` builds it, from the default settings but for ``mode``,
    the stream cap, the gap (none by default) and ``scoring`` settings."""
    fc = model if isinstance(model, Forecaster) else Forecaster(model)
    settings = Settings.model_validate(
        {
            "inference": {"mode": mode},
            "state": {"max_streams": max_streams, "max_gap_s": max_gap_s},
            "scoring": scoring,
        }
    )
    return build_pipeline(settings, fc)


def scoring_params(**kw: Any) -> ScoringParams:
    """The default scorer with a calibration of mean 0.1 and std 0.05, no smoothing, enter
    after 2, leave after 3, no warm-up; ``kw`` replaces any constant."""
    cal = Calibration(n=100, mean=0.1, std=0.05, quantiles={}, threshold=0.3)
    base = ScoringParams.from_settings(Settings().scoring, cal)
    return dataclasses.replace(
        base,
        **{"smoothing_alpha": 1.0, "enter_after": 2, "leave_after": 3, "history_warmup": 0} | kw,
    )


def two_feature_series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [normal_series(PROFILES[0], n, 60.0, rng), normal_series(PROFILES[3], n, 60.0, rng)], 1
    )


def samples(stream: str, values: np.ndarray, t0: float = 1e9) -> list[Sample]:
    return [Sample(stream, t0 + 60.0 * i, tuple(map(float, v)), 0.0) for i, v in enumerate(values)]


def make(tiny_model: tuple[Path, Any], mode: str = "window", history_warmup: int = 50, **kw: Any):
    """A pipeline of the session's tiny model (``conftest.tiny_model``) that learns its
    error level from ``history_warmup`` samples."""
    return pipeline(tiny_model[0], mode, history_warmup=history_warmup, **kw)
