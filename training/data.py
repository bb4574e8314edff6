"""Prepare training data: read CSVs, sort by time, split chronologically, scale, window.

Every split is chronological and per file (train, then validation, then calibration), so no
window sees the future of another part; the scaler is fit on the train parts only.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamd.csvdata import Series, read_series
from streamd.errors import DataError
from streamd.scaling import Scaler, ScalingKind

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SplitFractions:
    """Fractions of each file for validation and calibration; the rest (first) trains."""

    validation: float = 0.15
    calibration: float = 0.15

    def __post_init__(self) -> None:
        if not (0 < self.validation < 1 and 0 < self.calibration < 1):
            raise ValueError("validation and calibration fractions must be in (0, 1)")
        if self.validation + self.calibration >= 0.9:
            raise ValueError("validation + calibration must leave at least 10% for training")


@dataclass
class Windows:
    """``x: [n, window, features]`` scaled inputs and ``y: [n, features]`` scaled next steps."""

    x: F32
    y: F32

    @classmethod
    def empty(cls, window: int, features: int) -> Windows:
        return cls(np.zeros((0, window, features), np.float32), np.zeros((0, features), np.float32))

    def __len__(self) -> int:
        return len(self.y)


def make_windows(scaled: F32, window: int) -> Windows:
    """All windows of ``scaled: [rows, features]``; row ``i + window`` is window ``i``'s target.

    >>> w = make_windows(np.arange(5, dtype=np.float32)[:, None], 3)
    >>> w.x[:, :, 0].tolist(), w.y[:, 0].tolist()
    ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [3.0, 4.0])
    """
    n = len(scaled) - window
    if n <= 0:
        return Windows.empty(window, scaled.shape[1])
    view = np.lib.stride_tricks.sliding_window_view(scaled[:-1], window, axis=0)
    return Windows(
        np.ascontiguousarray(view.transpose(0, 2, 1)), np.ascontiguousarray(scaled[window:])
    )


def _concat(parts: list[Windows], window: int, features: int) -> Windows:
    if not parts:
        return Windows.empty(window, features)
    return Windows(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


@dataclass
class Dataset:
    """Everything training needs, with the facts the model card records."""

    features: list[str]
    window: int
    scaler: Scaler
    train: Windows
    validation: Windows
    calibration: Windows
    plot_validation: Windows  # the first file's validation windows, for the report plot
    plot_scaler: Scaler  # turns them back into that file's original units
    per_stream_scaling: bool
    rows: int
    span: tuple[str, str]
    sha256: str
    files: list[str]
    dropped: dict[str, int] = field(default_factory=dict)


def load_dataset(
    paths: list[str],
    *,
    features: list[str] | None,
    window: int,
    scaling: ScalingKind = "minmax",
    head_fraction: float = 1.0,
    fractions: SplitFractions | None = None,
    per_stream_scaling: bool = False,
) -> Dataset:
    """Read ``paths``, keep each file's first ``head_fraction`` of rows, split, scale, window.

    With ``per_stream_scaling`` each file is scaled by its own train part (the card's scaler is
    then the identity and the runtime scales each stream by its own statistics), so one model
    serves streams of very different units.
    """
    fractions = fractions or SplitFractions()
    if not 0 < head_fraction <= 1:
        raise DataError("--head-fraction", "must be in (0, 1]")
    series: list[Series] = [read_series(p, features) for p in paths]
    names = series[0].features
    for s in series[1:]:
        if s.features != names:
            raise DataError(s.path, f"features {s.features} differ from {names} in {paths[0]}")
    digest = hashlib.sha256()
    dropped: dict[str, int] = {}
    parts: list[tuple[F32, F32, F32]] = []
    first_ts: list[float] = []
    last_ts: list[float] = []
    rows = 0
    for s in series:
        for reason, count in s.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        if sum(s.dropped.values()):
            log.warning("%s: dropped rows %s", s.path, {k: v for k, v in s.dropped.items() if v})
        order = np.argsort(s.ts_s, kind="stable")
        values = s.values[order]
        n = round(len(values) * head_fraction)
        values32: F32 = values[:n].astype(np.float32)
        digest.update(Path(s.path).read_bytes())
        n_val = int(n * fractions.validation)
        n_cal = int(n * fractions.calibration)
        n_train = n - n_val - n_cal
        if min(n_train, n_val, n_cal) <= window:
            raise DataError(
                s.path,
                f"{n} usable rows are too few for window {window}: each of train/validation/"
                f"calibration ({n_train}/{n_val}/{n_cal} rows) needs more than {window}",
            )
        parts.append(
            (values32[:n_train], values32[n_train : n_train + n_val], values32[n_train + n_val :])
        )
        ts_sorted = s.ts_s[order][:n]
        first_ts.append(float(ts_sorted[0]))
        last_ts.append(float(ts_sorted[-1]))
        rows += n
    f = len(names)
    if per_stream_scaling:
        scalers = [Scaler.fit(scaling, p[0]) for p in parts]
        scaler = Scaler(scaling, np.zeros(f, np.float32), np.ones(f, np.float32))
    else:
        scaler = Scaler.fit(scaling, np.concatenate([p[0] for p in parts]))
        scalers = [scaler] * len(parts)
    scaled = [tuple(s.transform(part) for part in p) for s, p in zip(scalers, parts, strict=True)]
    train = _concat([make_windows(p[0], window) for p in scaled], window, f)
    val = _concat([make_windows(p[1], window) for p in scaled], window, f)
    cal = _concat([make_windows(p[2], window) for p in scaled], window, f)

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()

    return Dataset(
        features=names,
        window=window,
        scaler=scaler,
        train=train,
        validation=val,
        calibration=cal,
        plot_validation=make_windows(scaled[0][1], window),
        plot_scaler=scalers[0],
        per_stream_scaling=per_stream_scaling,
        rows=rows,
        span=(iso(min(first_ts)), iso(max(last_ts))),
        sha256=digest.hexdigest(),
        files=[str(p) for p in paths],
        dropped=dropped,
    )
