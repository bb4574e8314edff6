"""Scores of the Numenta Anomaly Benchmark (NAB), from its published definition.

Pure functions over row-aligned arrays. The definition (Lavin & Ahmad 2015; NAB v1.1):

* A file's first 15% of rows (at most 750) is probationary and not scored.
* Labels are windows of rows. A row inside a window counts, if it fires, as a true
  positive worth ``A_TP * σ(p) / σ(-1)`` where ``p = -(right - i + 1) / width`` is its
  position in the window and ``σ(x) = 2 / (1 + e^(5x)) - 1`` (the scaled sigmoid); only the
  best (earliest) detection of a window counts. A window with no detection costs ``-A_FN``.
* A row outside every window that fires costs ``A_FP * σ(d)`` (negative) with ``d`` its
  distance past the end of the preceding window in units of that window's width minus one
  (``σ = -1`` when there is no preceding window or ``d >= 3``).
* Profiles weigh (A_TP, A_FP, A_FN): standard (1, 0.11, 1), reward_low_FP_rate (1, 0.22, 1),
  reward_low_FN_rate (1, 0.11, 2).
* One threshold per detector and profile, chosen to maximise the total over the corpus; the
  total is normalised so that the null detector (never fires) scores 0 and a perfect one 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamd.core.arrays import F64


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


PROFILES = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


def scaled_sigmoid(x: float) -> float:
    """NAB's scaled sigmoid: 0.987 at the left edge (-1), 0 at the right edge, -1 far after.

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.0)
    (0.98661, 0.0, -1.0)
    """
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_rows(n: int, fraction: float = 0.15) -> int:
    return int(min(math.floor(fraction * n), fraction * 5000))


@dataclass
class FileRows:
    """One file's rows prepared for scoring (probationary rows removed).

    ``window_id``: index of the row's window in the corpus, -1 outside windows;
    ``tp_weight``/``fp_weight``: the sigmoid factors before profile weights.
    """

    name: str
    scores: F64
    window_id: npt.NDArray[np.int64]
    sigmoid: F64  # σ of the row's position (inside) or distance past the last window (outside)
    n_windows: int


def prepare(
    name: str, scores: F64, windows: list[tuple[int, int]], first_window_id: int
) -> FileRows:
    """``windows`` as inclusive row index pairs, sorted; returns the scorable rows."""
    n = len(scores)
    max_tp = scaled_sigmoid(-1.0)
    window_id = np.full(n, -1, np.int64)
    sig = np.empty(n)
    prev_right: int | None = None
    prev_width = 0.0
    w = 0
    i = 0
    while i < n:
        if w < len(windows) and i == windows[w][0]:
            left, right = windows[w]
            width = float(right - left + 1)
            for j in range(left, min(right, n - 1) + 1):
                window_id[j] = first_window_id + w
                sig[j] = scaled_sigmoid(-(right - j + 1) / width) / max_tp
            prev_right, prev_width = right, width
            w += 1
            i = right + 1
            continue
        if prev_right is None:
            sig[i] = -1.0
        else:
            sig[i] = scaled_sigmoid(abs(prev_right - i) / (prev_width - 1.0))
        i += 1
    keep = np.arange(n) >= probation_rows(n)
    return FileRows(
        name, np.asarray(scores, np.float64)[keep], window_id[keep], sig[keep], len(windows)
    )


@dataclass(frozen=True)
class SweepResult:
    profile: str
    threshold: float
    raw: float
    normalized: float
    tp: int
    fp: int
    fn_windows: int


def sweep(files: list[FileRows], profile: Profile) -> SweepResult:
    """Best threshold over the corpus for ``profile`` (rows with score >= threshold fire)."""
    scores = np.concatenate([f.scores for f in files])
    wid = np.concatenate([f.window_id for f in files])
    sig = np.concatenate([f.sigmoid for f in files])
    n_windows = sum(f.n_windows for f in files)
    order = np.argsort(-scores, kind="stable")
    best_tp = np.full(max(1, n_windows), -profile.fn)  # per window: best weighted TP so far
    fp_total = 0.0
    null = -profile.fn * n_windows
    perfect = profile.tp * n_windows
    best = SweepResult(profile.name, 1.1, null, 0.0, 0, 0, n_windows)
    tp_rows = fp_rows = 0
    k = 0
    total = len(order)
    while k < total:
        thr = scores[order[k]]
        while k < total and scores[order[k]] == thr:  # all rows at this score fire together
            r = order[k]
            if wid[r] >= 0:
                best_tp[wid[r]] = max(best_tp[wid[r]], profile.tp * sig[r])
                tp_rows += 1
            else:
                fp_total += profile.fp * sig[r]
                fp_rows += 1
            k += 1
        raw = float(best_tp[:n_windows].sum() + fp_total)
        if raw > best.raw:
            missed = int(np.sum(best_tp[:n_windows] == -profile.fn))
            norm = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
            best = SweepResult(profile.name, float(thr), raw, norm, tp_rows, fp_rows, missed)
    return best


@dataclass(frozen=True)
class EventStats:
    """Event-level figures at one threshold; a detection is the first row of a run that fires."""

    detections: int
    true_detections: int
    windows: int
    windows_detected: int
    precision: float
    recall: float
    f1: float
    mean_delay_rows: float
    mean_delay_fraction: float  # of the window's width


def events(files: list[FileRows], threshold: float) -> EventStats:
    detections = true_det = windows = detected = 0
    delays: list[float] = []
    fractions: list[float] = []
    for f in files:
        fire = f.scores >= threshold
        onsets = np.flatnonzero(fire & ~np.concatenate([[False], fire[:-1]]))
        detections += len(onsets)
        true_det += int(np.sum(f.window_id[onsets] >= 0))
        for w in np.unique(f.window_id[f.window_id >= 0]):
            rows = np.flatnonzero(f.window_id == w)
            windows += 1
            hits = rows[fire[rows]]
            if len(hits):
                detected += 1
                delays.append(float(hits[0] - rows[0]))
                fractions.append(float(hits[0] - rows[0]) / len(rows))
        windows += f.n_windows - len(
            np.unique(f.window_id[f.window_id >= 0])
        )  # windows in probation
    precision = true_det / detections if detections else 0.0
    recall = detected / windows if windows else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EventStats(
        detections,
        true_det,
        windows,
        detected,
        precision,
        recall,
        f1,
        float(np.mean(delays)) if delays else float("nan"),
        float(np.mean(fractions)) if fractions else float("nan"),
    )
