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
    """Best threshold over the corpus for ``profile`` (rows with score >= threshold fire).

    Thresholds are tried from the highest score down, all rows of one score firing
    together; the first threshold with the best total wins. Window ids need only be
    distinct, not consecutive (a subset of a corpus keeps its numbering).
    """
    scores = np.concatenate([f.scores for f in files])
    wid = np.concatenate([f.window_id for f in files])
    sig = np.concatenate([f.sigmoid for f in files])
    n_windows = sum(f.n_windows for f in files)
    null = -profile.fn * n_windows
    perfect = profile.tp * n_windows
    best = SweepResult(profile.name, 1.1, null, 0.0, 0, 0, n_windows)
    if not len(scores):
        return best
    order = np.argsort(-scores, kind="stable")
    s_sorted, w_sorted, g_sorted = scores[order], wid[order], sig[order]
    inside = w_sorted >= 0
    ends = np.append(np.flatnonzero(np.diff(s_sorted) != 0), len(s_sorted) - 1)  # group ends
    fp_cum = np.cumsum(np.where(inside, 0.0, profile.fp * g_sorted))
    fp_rows = np.cumsum(~inside)
    tp_rows = np.cumsum(inside)
    # the best weighted TP of every window, summed, after each row inside a window
    positions = np.flatnonzero(inside)
    best_of: dict[int, float] = {}
    tp_sum, touched = -profile.fn * n_windows, 0
    tp_after = np.empty(len(positions))
    touched_after = np.empty(len(positions), np.int64)
    for j, k in enumerate(positions):
        w, credit = int(w_sorted[k]), profile.tp * float(g_sorted[k])
        old = best_of.get(w)
        if old is None:
            best_of[w] = credit
            tp_sum += credit + profile.fn
            touched += 1
        elif credit > old:
            best_of[w] = credit
            tp_sum += credit - old
        tp_after[j] = tp_sum
        touched_after[j] = touched
    # at each group end: the last row inside a window at or before it
    last = np.searchsorted(positions, ends, side="right") - 1
    tp_at = np.where(last >= 0, tp_after[np.maximum(last, 0)], -profile.fn * n_windows)
    touched_at = np.where(last >= 0, touched_after[np.maximum(last, 0)], 0)
    raw = tp_at + fp_cum[ends]
    i = int(np.argmax(raw))
    if raw[i] > best.raw:
        norm = 100.0 * (raw[i] - null) / (perfect - null) if perfect != null else 0.0
        e = ends[i]
        best = SweepResult(
            profile.name,
            float(s_sorted[e]),
            float(raw[i]),
            float(norm),
            int(tp_rows[e]),
            int(fp_rows[e]),
            int(n_windows - touched_at[i]),
        )
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
