"""Timestamps as epoch seconds, from the text forms payloads and CSV files carry."""

from __future__ import annotations

import math
from datetime import datetime, timezone


def parse_timestamp(text: str) -> float:
    """Epoch seconds from epoch-seconds text or ISO 8601 (no zone means UTC); raises ``ValueError``.

    >>> parse_timestamp("1970-01-01 00:01:00")
    60.0
    >>> parse_timestamp("90.5")
    90.5
    """
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"timestamp {text!r} is not finite")
        return value
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
