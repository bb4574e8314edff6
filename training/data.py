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

from streamd.config import ScoringSettings
from streamd.core import timefeatures
from streamd.core.csvdata import Series, read_series
from streamd.core.feed import INPUT_CLIP
from streamd.core.scaling import Scaler, ScalingKind, running_scaling
from streamd.errors import DataError

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]
# Long train windows (``train_span``) are taken every ``span // this`` rows: each row is then
# a target in about this many windows, at as many lengths of context.
STATEFUL_STRIDE_DIVISOR = 32


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
    """``x: [n, window, inputs]`` scaled inputs (features, then time features) and
    ``y: [n, features]`` scaled next steps."""

    x: F32
    y: F32

    @classmethod
    def empty(cls, window: int, features: int, inputs: int | None = None) -> Windows:
        x = np.zeros((0, window, features if inputs is None else inputs), np.float32)
        return cls(x, np.zeros((0, features), np.float32))

    def __len__(self) -> int:
        return len(self.y)


def make_windows(scaled: F32, window: int, calendar: F32 | None = None) -> Windows:
    """All windows of ``scaled: [rows, features]``; row ``i + window`` is window ``i``'s target.

    ``calendar: [rows, k]`` (time features) is appended to each input row, not to targets.
    Inputs are clipped at ``INPUT_CLIP`` scales, as the daemon feeds them; targets are not.

    >>> w = make_windows(np.arange(5, dtype=np.float32)[:, None], 3)
    >>> w.x[:, :, 0].tolist(), w.y[:, 0].tolist()
    ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [3.0, 4.0])
    """
    fed = np.clip(scaled, -INPUT_CLIP, INPUT_CLIP)  # as the daemon feeds them
    inputs = fed if calendar is None else np.concatenate([fed, calendar], axis=1)
    n = len(scaled) - window
    if n <= 0:
        return Windows.empty(window, scaled.shape[1], inputs.shape[1])
    view = np.lib.stride_tricks.sliding_window_view(inputs[:-1], window, axis=0)
    return Windows(
        np.ascontiguousarray(view.transpose(0, 2, 1)), np.ascontiguousarray(scaled[window:])
    )


def running_windows(
    values: F32, window: int, first_target: int, end: int, calendar: F32, horizon: int
) -> Windows:
    """Windows of one stream scaled as the daemon scales it with per-stream scaling: the
    window before row ``i`` and row ``i`` itself by the running statistics of the rows
    before ``i`` (:func:`streamd.core.scaling.running_scaling`), for targets
    ``first_target <= i < end``."""
    f = values.shape[1]
    offsets, scales = running_scaling(values.astype(np.float64), horizon)
    targets = np.arange(max(first_target, window), end)
    if not len(targets):
        return Windows.empty(window, f, f + calendar.shape[1])
    idx = targets[:, None] - window + np.arange(window)  # [n, window] rows of each window
    o, sc = offsets[targets][:, None, :], scales[targets][:, None, :]
    x = np.clip((values[idx].astype(np.float64) - o) / sc, -INPUT_CLIP, INPUT_CLIP)
    x = x.astype(np.float32)  # clipped as the daemon feeds them (the targets are not)
    x = np.concatenate([x, calendar[idx]], axis=2) if calendar.shape[1] else x
    y = ((values[targets].astype(np.float64) - offsets[targets]) / scales[targets]).astype(
        np.float32
    )
    return Windows(np.ascontiguousarray(x), np.ascontiguousarray(y))


def _every(w: Windows, stride: int) -> Windows:
    """Every ``stride``-th window (long train windows overlap almost entirely)."""
    return w if stride == 1 else Windows(w.x[::stride].copy(), w.y[::stride].copy())


def _concat(parts: list[Windows], window: int, features: int, inputs: int) -> Windows:
    """One set of windows; where files gave different spans, each keeps its last (shortest) span."""
    if not parts:
        return Windows.empty(window, features, inputs)
    span = min(p.x.shape[1] for p in parts)
    return Windows(
        np.concatenate([p.x[:, -span:] for p in parts]), np.concatenate([p.y for p in parts])
    )


@dataclass
class Dataset:
    """Everything training needs, with the facts the model card records."""

    features: list[str]
    time_features: list[str]
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
    scaling: ScalingKind | None = None,
    head_fraction: float = 1.0,
    fractions: SplitFractions | None = None,
    per_stream_scaling: bool = False,
    time_features: list[str] | None = None,
    train_span: int | None = None,
) -> Dataset:
    """Read ``paths``, keep each file's first ``head_fraction`` of rows, split, scale, window.

    With ``per_stream_scaling`` each file is scaled as the daemon will scale each stream: by
    its own running mean and standard deviation at each row (the card's scaler is then the
    identity), so one model serves streams of very different units; its first
    ``scoring.scaling_warmup`` rows only set the statistics, as they do in the daemon.
    Otherwise ``scaling`` (default ``minmax``) is fitted on the train parts. ``time_features``
    are appended to every input row, computed from the row's timestamp as the runtime does.

    ``train_span`` (at least ``window``) makes the train windows that long, every
    ``span // STATEFUL_STRIDE_DIVISOR``-th one: a model trained on every step of them learns to
    forecast from a state carried far beyond ``window`` steps, as ``step`` mode carries it.
    Validation and calibration windows stay ``window`` long.
    """
    if per_stream_scaling and scaling == "minmax":
        raise DataError(
            "--scaling", "per-stream scaling is the daemon's running standard scaling, not minmax"
        )
    kind: ScalingKind = scaling or ("standard" if per_stream_scaling else "minmax")
    fractions = fractions or SplitFractions()
    calendar_names = list(time_features or [])
    try:
        timefeatures.check_names(calendar_names)
    except ValueError as e:
        raise DataError("--time-features", str(e)) from None
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
    calendars: list[tuple[F32, F32, F32]] = []
    running: list[tuple[Windows, Windows, Windows]] = []  # per-stream scaling's windows
    sc_defaults = ScoringSettings()
    train_shapes: list[tuple[int, int]] = []  # per file: train window span, stride
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
        # the span of this file's train windows: as asked, within its train part
        span = max(window, min(train_span or window, n_train - 1))
        spans, strides = (span, window, window), (max(1, span // STATEFUL_STRIDE_DIVISOR), 1, 1)
        train_shapes.append((span, strides[0]))
        parts.append(
            (values32[:n_train], values32[n_train : n_train + n_val], values32[n_train + n_val :])
        )
        ts_sorted = s.ts_s[order][:n]
        cal32 = timefeatures.encode(ts_sorted, calendar_names)
        calendars.append(
            (cal32[:n_train], cal32[n_train : n_train + n_val], cal32[n_train + n_val :])
        )
        if per_stream_scaling:  # train from the end of the scaling warm-up, then val, cal
            b = (sc_defaults.scaling_warmup, n_train, n_train + n_val, n)
            h = sc_defaults.scaling_horizon
            w = [running_windows(values32, spans[k], b[k], b[k + 1], cal32, h) for k in range(3)]
            running.append((_every(w[0], strides[0]), w[1], w[2]))
        first_ts.append(float(ts_sorted[0]))
        last_ts.append(float(ts_sorted[-1]))
        rows += n
    f = len(names)
    inputs = f + timefeatures.width(calendar_names)
    if per_stream_scaling:
        scaler = Scaler(kind, np.zeros(f, np.float32), np.ones(f, np.float32))
        # the report's plot shows the first file in its units, by its train part's statistics
        scalers = [Scaler.fit("standard", parts[0][0])]
        scaled = [tuple(scalers[0].transform(part) for part in parts[0])]

        def split(k: int) -> Windows:
            return _concat([r[k] for r in running], window, f, inputs)

    else:
        scaler = Scaler.fit(kind, np.concatenate([p[0] for p in parts]))
        scalers = [scaler] * len(parts)
        scaled = [tuple(scaler.transform(part) for part in p) for p in parts]

        def split(k: int) -> Windows:
            shapes = train_shapes if k == 0 else [(window, 1)] * len(parts)
            windows = [
                _every(make_windows(p[k], span, c[k]), stride)
                for p, c, (span, stride) in zip(scaled, calendars, shapes, strict=True)
            ]
            return _concat(windows, window, f, inputs)

    train, val, cal = split(0), split(1), split(2)

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()

    return Dataset(
        features=names,
        time_features=calendar_names,
        window=window,
        scaler=scaler,
        train=train,
        validation=val,
        calibration=cal,
        plot_validation=make_windows(scaled[0][1], window, calendars[0][1]),
        plot_scaler=scalers[0],
        per_stream_scaling=per_stream_scaling,
        rows=rows,
        span=(iso(min(first_ts)), iso(max(last_ts))),
        sha256=digest.hexdigest(),
        files=[str(p) for p in paths],
        dropped=dropped,
    )
