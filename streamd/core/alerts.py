"""Alerts: each stream's open anomalies per source, their transitions, and the alert message.

A source (:data:`~streamd.core.scoring.SOURCES`) of a stream that enters an anomaly opens
an alert; while it lasts the alert keeps its peak score and each feature's mean share of the
squared difference; when the source leaves, a ``resolved`` event closes it. The events are
plain values: the daemon renders them with :func:`alert_payload` and publishes them on
:func:`alert_topic`, the offline tools only count them.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamd.core.arrays import F64, I64
from streamd.core.scoring import SOURCES, Scored


@dataclass
class AlertEvent:
    """An ``anomaly`` (entered) or ``resolved`` (left) transition of one stream's source
    (``forecast`` or ``profile``)."""

    state: str
    stream: str
    source: str
    alert_id: str
    ts: float
    start_ts: float
    end_ts: float | None
    score: float
    peak_score: float
    threshold: float
    value: dict[str, float]
    predicted: dict[str, float]
    contributions: dict[str, float]


def alert_payload(event: AlertEvent, model: str, model_version: str) -> dict[str, Any]:
    """The MQTT alert message (DESIGN.md): a single-feature value is a plain number."""
    one = len(event.value) == 1
    return {
        "stream": event.stream,
        "ts": event.ts,
        "state": event.state,
        "source": event.source,
        "alert_id": event.alert_id,
        "score": round(event.score, 6),
        "peak_score": round(event.peak_score, 6),
        "threshold": event.threshold,
        "start_ts": event.start_ts,
        "end_ts": event.end_ts,
        "value": next(iter(event.value.values())) if one else event.value,
        "predicted": _number(next(iter(event.predicted.values())))
        if one
        else {k: _number(v) for k, v in event.predicted.items()},
        "contributions": event.contributions,
        "model": model,
        "model_version": model_version,
    }


def _number(v: float) -> float | None:
    """JSON has no NaN: a profile alert over a time of day the profile has not seen yet
    carries ``null`` as its expected value."""
    return None if math.isnan(v) else v


def topic_safe(stream: str) -> str:
    """A stream id as MQTT topic levels: wildcard characters cannot appear in a topic name.

    >>> topic_safe("plant/+/pump#1")
    'plant/_/pump_1'
    """
    return stream.replace("+", "_").replace("#", "_")


def alert_topic(prefix: str, stream: str) -> str:
    """Where a stream's alerts (or scores) go: ``PREFIX/<stream>``."""
    return f"{prefix}/{topic_safe(stream)}"


@dataclass
class OpenAlert:
    """An anomaly in progress: what its alerts report (peak, mean contributions)."""

    alert_id: str
    start_ts: float
    peak: float
    contrib_sum: F64
    n: int = 0


class AlertTracker:
    """The open alerts of every stream, by ``(slot, source)``; turns verdicts into events."""

    def __init__(self, features: Sequence[str]) -> None:
        self.features = list(features)
        self.open: dict[tuple[int, str], OpenAlert] = {}

    def drop(self, slot: int) -> None:
        """Forget a slot's open alerts (its stream was evicted or reset)."""
        for source in SOURCES:
            self.open.pop((slot, source), None)

    def track(
        self,
        stream_ids: Sequence[str | None],
        slots: I64,
        ts: F64,
        raw: F64,
        evidence: dict[str, tuple[F64, F64]],
        scored: Scored,
        threshold: float,
    ) -> list[AlertEvent]:
        """Each row's part in its stream's open alerts; returns the transitions.

        ``evidence`` holds, per source, what each row was compared with (original units)
        and each feature's share of the squared difference.
        """
        events: list[AlertEvent] = []
        for source, verdict in scored.sources.items():
            predicted, share = evidence[source]
            for j in np.flatnonzero(verdict.anomalous | verdict.left):
                slot = int(slots[j])
                event = self._track_one(
                    (slot, source),
                    stream_ids[slot] or "",
                    float(verdict.score[j]),
                    bool(verdict.entered[j]),
                    bool(verdict.left[j]),
                    float(ts[j]),
                    raw[j],
                    predicted[j],
                    share[j],
                    threshold,
                )
                if event is not None:
                    events.append(event)
        return events

    def _track_one(
        self,
        key: tuple[int, str],
        stream: str,
        score: float,
        entered: bool,
        left: bool,
        ts: float,
        raw: F64,
        predicted: F64,
        share: F64,
        threshold: float,
    ) -> AlertEvent | None:
        """One row's part in its stream's open alert of ``key``'s source; an event if the
        source entered or left an anomaly there."""
        names = self.features
        act = None if entered else self.open.get(key)
        if act is None:  # entered here, or before a reset we did not see: track from now
            act = OpenAlert(uuid.uuid4().hex, ts, score, np.zeros(len(names)))
            self.open[key] = act
        act.peak = max(act.peak, score)
        act.contrib_sum += share
        act.n += 1
        event = None
        if entered or left:
            contributions = {
                name: round(float(c), 4)
                for name, c in zip(names, act.contrib_sum / act.n, strict=True)
            }
            event = AlertEvent(
                state="anomaly" if entered else "resolved",
                stream=stream,
                source=key[1],
                alert_id=act.alert_id,
                ts=ts,
                start_ts=act.start_ts,
                end_ts=ts if left else None,
                score=score,
                peak_score=act.peak,
                threshold=threshold,
                value=dict(zip(names, map(float, raw), strict=True)),
                predicted=dict(zip(names, map(float, predicted), strict=True)),
                contributions=contributions,
            )
        if left:
            del self.open[key]
        return event
