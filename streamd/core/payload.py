"""Parse MQTT messages at the edge: bytes -> a frozen :class:`Sample` or a ``PayloadError``.

Accepted forms (DESIGN.md): ``{"ts": 1700000000.5, "value": 21.5}``,
``{"ts": "2026-11-22T10:00:00Z", "values": {"temp": 21.5, "rpm": 900}}`` or a bare number.
``ts`` is optional (arrival time is used). Every rejection carries one reason from
:data:`REASONS`, which is also the metric label.

What comes from outside is checked here once: a value must be finite and of a sane size
(:data:`MAX_ABS_VALUE`), a timestamp not further ahead of the arrival than the allowed
clock skew (one future sample would otherwise make every later real one ``out_of_order``),
and a stream id free of control characters and lone surrogates, which would break the
alert's MQTT topic and inject lines into text logs (:func:`check_stream_id`).
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any, NamedTuple

import orjson

from streamd.core.timestamps import parse_timestamp
from streamd.errors import PayloadError

REASONS = (
    "too_large",
    "not_json",
    "no_value",
    "bad_value",
    "non_finite",
    "out_of_range",
    "unknown_feature",
    "missing_feature",
    "bad_timestamp",
    "future_timestamp",
    "bad_stream_id",
)
MAX_STREAM_ID_CHARS = 256
# Timestamps outside 1970..2286 are surely a unit mistake (ms or µs sent as seconds).
MAX_TS_S = 1e10
# Larger magnitudes are a glitch, not a reading: beyond 1e15 (about 2**50) float arithmetic
# on squares and sums loses every digit of a normal reading, and 1.7e308 squares to inf.
MAX_ABS_VALUE = 1e15


class Sample(NamedTuple):
    """One accepted reading: ``values`` in the model's feature order, times in epoch seconds."""

    stream: str
    ts_s: float
    values: tuple[float, ...]
    received_at_s: float
    mid: int = 0  # MQTT message id to acknowledge once scored (0: nothing to acknowledge)
    qos: int = 0


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise PayloadError("bad_value", f"{type(v).__name__} is not a number")
    try:
        f = float(v)
    except OverflowError:
        raise PayloadError("non_finite", "number too large") from None
    if not math.isfinite(f):
        raise PayloadError("non_finite", repr(v))
    if abs(f) > MAX_ABS_VALUE:
        raise PayloadError("out_of_range", f"|{f:.3g}| > {MAX_ABS_VALUE:g}")
    return f


def check_stream_id(sid: str) -> str:
    """``sid`` if it may name a stream, else :class:`PayloadError` ``bad_stream_id``.

    One check for every place a stream id goes: MQTT topics (no NUL, valid UTF-8), metric
    labels and log lines (no control characters). Wildcards are made topic-safe where a
    topic is built (:func:`streamd.core.alerts.topic_safe`).

    >>> check_stream_id("plant/pump#1")
    'plant/pump#1'
    >>> check_stream_id("a\\nb")
    Traceback (most recent call last):
    ...
    streamd.errors.PayloadError: bad_stream_id: control character U+000A
    """
    if not sid or len(sid) > MAX_STREAM_ID_CHARS:
        raise PayloadError(
            "bad_stream_id", f"empty or longer than {MAX_STREAM_ID_CHARS} characters"
        )
    if not sid.isprintable():  # fast path: most ids are printable, so no per-character scan
        for ch in sid:
            if unicodedata.category(ch) in ("Cc", "Cs"):
                kind = "lone surrogate" if "\ud800" <= ch <= "\udfff" else "control character"
                raise PayloadError("bad_stream_id", f"{kind} U+{ord(ch):04X}")
    return sid


class PayloadParser:
    """Turns ``(topic, payload)`` into a :class:`Sample` for a model with ``features``.

    >>> p = PayloadParser(["value"], "topic", max_bytes=4096, max_future_s=300.0)
    >>> p.parse("sensors/a", b'{"ts": 10, "value": 1.5}', 12.0)
    Sample(stream='sensors/a', ts_s=10.0, values=(1.5,), received_at_s=12.0, mid=0, qos=0)
    >>> p.parse("sensors/a", b"2", 12.0).values
    (2.0,)
    """

    def __init__(
        self, features: list[str], stream_id: str, max_bytes: int, max_future_s: float
    ) -> None:
        self.features = list(features)
        self.index = {name: i for i, name in enumerate(self.features)}
        self.max_bytes = max_bytes
        self.max_future_s = max_future_s
        self.segment: int | None = None
        self.field: str | None = None
        if stream_id.startswith("segment:"):
            self.segment = int(stream_id.split(":", 1)[1])
        elif stream_id.startswith("field:"):
            self.field = stream_id.split(":", 1)[1]
        elif stream_id != "topic":
            raise ValueError(f"stream_id {stream_id!r}: use topic, segment:N or field:NAME")

    def parse(
        self,
        topic: str,
        payload: bytes | bytearray,
        received_at_s: float,
        mid: int = 0,
        qos: int = 0,
    ) -> Sample:
        """Parse one message; raises :class:`PayloadError` with a reason from :data:`REASONS`.

        ``mid``/``qos`` go into the sample when it is to be acknowledged once scored.
        """
        if len(payload) > self.max_bytes:
            raise PayloadError("too_large", f"{len(payload)} bytes > {self.max_bytes}")
        try:
            doc = orjson.loads(payload)  # faster than json (docs/performance.md)
        except orjson.JSONDecodeError:
            # orjson refuses what the standard library accepts (NaN, integers beyond 64
            # bits): parse again so such messages get the same, more precise, reason.
            try:
                doc = json.loads(payload)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                raise PayloadError("not_json") from None
        ts = received_at_s
        if isinstance(doc, dict):
            values = self._values(doc)
            if "ts" in doc:
                ts = self._timestamp(doc["ts"])
                if ts > received_at_s + self.max_future_s:
                    raise PayloadError(
                        "future_timestamp",
                        f"{ts - received_at_s:.0f} s ahead of arrival "
                        f"(more than {self.max_future_s:g} s: state.max_clock_skew_s)",
                    )
        else:
            if len(self.features) != 1:
                raise PayloadError("missing_feature", "a bare number needs a one-feature model")
            if isinstance(doc, list | str) or doc is None:
                raise PayloadError("no_value", f"JSON {type(doc).__name__} is not a reading")
            values = (_number(doc),)
        stream = self._stream_id(topic, doc)
        return Sample(stream, ts, values, received_at_s, mid, qos)

    def _values(self, doc: dict[str, Any]) -> tuple[float, ...]:
        if "values" in doc:
            given = doc["values"]
            if not isinstance(given, dict):
                raise PayloadError("bad_value", "'values' must be an object of feature: number")
            unknown = [k for k in given if k not in self.index]
            if unknown:
                raise PayloadError("unknown_feature", str(unknown[0])[:64])
            missing = [f for f in self.features if f not in given]
            if missing:
                raise PayloadError("missing_feature", missing[0])
            return tuple(_number(given[f]) for f in self.features)
        if "value" in doc:
            if len(self.features) != 1:
                raise PayloadError("missing_feature", "'value' needs a one-feature model")
            return (_number(doc["value"]),)
        raise PayloadError("no_value", "no 'value' or 'values'")

    @staticmethod
    def _timestamp(raw: Any) -> float:
        if isinstance(raw, bool):
            raise PayloadError("bad_timestamp", "boolean")
        if isinstance(raw, int | float):
            try:
                ts = float(raw)
            except OverflowError:
                raise PayloadError("bad_timestamp", "too large") from None
        elif isinstance(raw, str) and len(raw) <= 64:
            try:
                ts = parse_timestamp(raw)
            except (ValueError, OverflowError, OSError):
                raise PayloadError("bad_timestamp", raw[:64]) from None
        else:
            raise PayloadError("bad_timestamp", type(raw).__name__)
        if not (math.isfinite(ts) and 0 <= ts < MAX_TS_S):
            raise PayloadError("bad_timestamp", "out of range (epoch seconds expected)")
        return ts

    def _stream_id(self, topic: str, doc: Any) -> str:
        if self.segment is not None:
            parts = topic.split("/")
            try:
                sid = parts[self.segment]
            except IndexError:
                raise PayloadError("bad_stream_id", f"topic has no level {self.segment}") from None
        elif self.field is not None:
            raw = doc.get(self.field) if isinstance(doc, dict) else None
            if isinstance(raw, bool) or not isinstance(raw, str | int):
                raise PayloadError("bad_stream_id", f"no string field {self.field!r}")
            sid = str(raw)
        else:
            sid = topic
        return check_stream_id(sid)
