"""Calendar inputs: where a sample's timestamp falls in the day and in the week.

A next-step forecaster that sees only its last ``window`` samples cannot know that a daily
jump is due, or that a Monday is quieter than a Friday: a *missing* jump, or a holiday, then
looks normal. A model trained with time features gets, beside the scaled values of each
step, the sine and cosine of the step's phase in each named period, so it can forecast what
the time of day (or week) makes normal. Training and the runtime compute them with this one
function, from the sample's own timestamp (UTC epoch seconds), so they agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamd.core.arrays import F32, F64

# Period of each time feature, seconds. Phases are taken in UTC, so a daily pattern tied to
# local time is shifted by a constant (the model learns it) but moves by an hour at a
# daylight-saving change.
PERIODS_S: dict[str, float] = {"day": 86_400.0, "week": 7 * 86_400.0}


def check_names(names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming an unknown or repeated time feature."""
    for name in names:
        if name not in PERIODS_S:
            raise ValueError(f"unknown time feature {name!r} (known: {', '.join(PERIODS_S)})")
    if len(set(names)) != len(names):
        raise ValueError("time features must be distinct")


def width(names: Sequence[str]) -> int:
    """Model input columns the time features take: a sine and a cosine each."""
    return 2 * len(names)


def encode(ts_s: F64, names: Sequence[str]) -> F32:
    """``[n, 2 * len(names)]``: sine and cosine of each timestamp's phase in each period.

    >>> encode(np.array([0.0, 21_600.0]), ["day"]).round(3).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    ts = np.asarray(ts_s, dtype=np.float64)
    out = np.empty((len(ts), width(names)), np.float32)
    for k, name in enumerate(names):
        period = PERIODS_S[name]
        phase = (2.0 * np.pi / period) * np.mod(ts, period)
        out[:, 2 * k] = np.sin(phase)
        out[:, 2 * k + 1] = np.cos(phase)
    return out
