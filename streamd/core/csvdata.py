"""Read time-series CSV files: a timestamp column and numeric feature columns.

Used by ``train``, ``replay`` and ``evaluate``. Timestamps may be epoch seconds or
ISO 8601 (``2014-04-01 00:00:00`` without a zone is taken as UTC).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamd.core.timestamps import parse_timestamp
from streamd.errors import DataError

TIMESTAMP_COLUMN = "timestamp"


@dataclass(frozen=True)
class Series:
    """One CSV file: ``ts_s: [rows]`` epoch seconds, ``values: [rows, features]``, in file order."""

    path: str
    features: list[str]
    timestamps: list[str]
    ts_s: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    dropped: dict[str, int]


def read_series(
    path: str | Path, features: list[str] | None = None, *, keep_invalid: bool = False
) -> Series:
    """Read ``path`` keeping file order; rows with a bad timestamp or value are dropped and counted.

    ``features`` picks columns (default: every column but the timestamp). ``keep_invalid``
    keeps such rows as NaN (still counted), for callers that owe one output per input row.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(str(p), "no such file")
    with p.open(newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(str(p), "file is empty") from None
        if TIMESTAMP_COLUMN not in header:
            raise DataError(
                str(p), f"no {TIMESTAMP_COLUMN!r} column (columns: {', '.join(header)})"
            )
        names = features or [h for h in header if h != TIMESTAMP_COLUMN]
        missing = [n for n in names if n not in header]
        if missing:
            raise DataError(
                str(p), f"no column {', '.join(map(repr, missing))} (columns: {', '.join(header)})"
            )
        if not names:
            raise DataError(str(p), "no feature columns")
        t_idx = header.index(TIMESTAMP_COLUMN)
        f_idx = [header.index(n) for n in names]
        stamps: list[str] = []
        ts: list[float] = []
        rows: list[list[float]] = []
        dropped = {"bad_timestamp": 0, "non_numeric": 0, "nan": 0, "short_row": 0}
        for rec in reader:
            if not rec:
                continue
            reason = ""
            t = math.nan
            vals = [math.nan] * len(f_idx)
            if len(rec) < len(header):
                reason = "short_row"
            else:
                try:
                    t = parse_timestamp(rec[t_idx])
                except ValueError:
                    reason = "bad_timestamp"
                else:
                    try:
                        vals = [float(rec[i]) for i in f_idx]
                    except ValueError:
                        reason = "non_numeric"
                    else:
                        if not all(math.isfinite(v) for v in vals):
                            reason = "nan"
            if reason:
                dropped[reason] += 1
                if not keep_invalid:
                    continue
            stamps.append(rec[t_idx].strip() if len(rec) > t_idx else "")
            ts.append(t)
            rows.append(vals)
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    return Series(str(p), names, stamps, np.asarray(ts, dtype=np.float64), values, dropped)
