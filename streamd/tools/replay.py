"""``streamd replay``: score a CSV through the daemon's own pipeline, one output row per input row.

Rows are fed in file order as one stream. Rows the daemon would reject (a timestamp that
repeats or goes backwards, an unreadable value) keep their place: they get the stream's
last score and anomaly state and say why in ``status``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamd.config import Settings
from streamd.core.csvdata import read_series
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import STATUS_NAMES, Pipeline, build_pipeline

CHUNK = 1024
STREAM = "replay"


@dataclass
class SeriesScores:
    """Per-row outputs in file order (``predicted: [rows, features]``)."""

    score: npt.NDArray[np.float64]
    is_anomaly: npt.NDArray[np.bool_]
    entered: npt.NDArray[np.bool_]  # a source of the stream entered an anomaly (an alert)
    predicted: npt.NDArray[np.float64]
    error: npt.NDArray[np.float64]
    surprise: npt.NDArray[np.float64]  # -log10 tail probability; 0 where not scored
    status: list[str]


@dataclass
class Replayed:
    timestamps: list[str]
    values: npt.NDArray[np.float64]
    scores: SeriesScores
    features: list[str]


def replay_series(
    pipeline: Pipeline,
    ts_s: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    progress: Callable[[int, int], None] | None = None,
) -> SeriesScores:
    """Score one series row by row; rejected or invalid rows carry the last score forward.

    ``progress(rows done, rows)`` is called about every ten thousand rows."""
    n, f = values.shape
    score = np.full(n, np.nan)
    surprise = np.zeros(n)
    anomalous = np.zeros(n, bool)
    entered = np.zeros(n, bool)
    predicted = np.full((n, f), np.nan)
    error = np.full(n, np.nan)
    status = ["invalid"] * n
    valid = np.isfinite(ts_s) & np.all(np.isfinite(values), axis=1)
    idx = np.flatnonzero(valid)
    for start in range(0, len(idx), CHUNK):
        rows = idx[start : start + CHUNK]
        batch = [Sample(STREAM, float(ts_s[i]), tuple(values[i].tolist()), 0.0) for i in rows]
        res = pipeline.process(batch)
        score[rows] = res.score
        surprise[rows] = np.nan_to_num(res.surprise)
        anomalous[rows] = res.anomalous
        entered[rows] = res.entered
        predicted[rows] = res.predicted
        error[rows] = res.error
        for j, i in enumerate(rows):
            status[i] = STATUS_NAMES[res.status[j]]
        if progress is not None and (start // CHUNK) % 10 == 9:
            progress(int(rows[-1]) + 1, n)
    # Rows without a score of their own take the last one before them (0 at the start).
    last_score, last_state = 0.0, False
    for i in range(n):
        if math.isnan(score[i]):
            if status[i] == "warmup":
                score[i], anomalous[i] = 0.0, False
            else:
                score[i], anomalous[i] = last_score, last_state
        else:
            last_score, last_state = float(score[i]), bool(anomalous[i])
    return SeriesScores(score, anomalous, entered, predicted, error, surprise, status)


def replay_csv(
    settings: Settings,
    model_path: Path,
    input_csv: Path,
    progress: Callable[[int, int], None] | None = None,
) -> Replayed:
    model = Forecaster(model_path, intra_op_threads=settings.inference.intra_op_threads)
    series = read_series(input_csv, model.card.features, keep_invalid=True)
    pipeline = build_pipeline(settings, model)
    scores = replay_series(pipeline, series.ts_s, series.values, progress)
    return Replayed(series.timestamps, series.values, scores, model.card.features)


def write_replay(out: Path, replayed: Replayed) -> None:
    r, features = replayed.scores, replayed.features
    one = len(features) == 1
    value_cols = ["value"] if one else [f"value_{f}" for f in features]
    pred_cols = ["predicted"] if one else [f"predicted_{f}" for f in features]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["timestamp", *value_cols, "anomaly_score", "is_anomaly", *pred_cols, "error", "status"]
        )
        for i, ts in enumerate(replayed.timestamps):
            w.writerow(
                [
                    ts,
                    *(_fmt(v) for v in replayed.values[i]),
                    f"{r.score[i]:.6f}",
                    int(r.is_anomaly[i]),
                    *(_fmt(v) for v in r.predicted[i]),
                    _fmt(r.error[i]),
                    r.status[i],
                ]
            )


def _fmt(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.6g}"
