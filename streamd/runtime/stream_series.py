"""Per-stream metric series, capped, given to the streams that matter most.

``streamd_stream_anomaly_score``, ``streamd_stream_anomalous`` and
``streamd_stream_last_seen_timestamp_seconds`` carry a ``stream`` label, so their
cardinality is capped (``http.stream_score_cap``). Which streams hold the series follows
interest, in classes: a stream in an anomaly, then one whose anomaly ended lately
(:data:`RECENT_S`: its ``anomalous`` 0 stays visible for the alert rules to resolve), then
streams seen lately (:data:`STALE_S`), then the rest. A stream of a higher class takes the
series of the weakest exported stream (the lowest class, lowest score); within a class
nobody is displaced, so series do not churn with every noisy score, and 150 one-message
junk topics cannot keep a real anomaly out.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

from prometheus_client import Gauge

RECENT_S = 900.0  # an anomaly that ended this long ago still ranks above ordinary streams
STALE_S = 600.0  # a stream not seen this long ranks below every active one
ANOMALOUS, RECENT, ACTIVE, STALE = 3, 2, 1, 0


@dataclass
class _Exported:
    score: float = -1.0
    anomalous: bool = False
    ended_at: float = float("-inf")  # when its last anomaly ended (wall clock)
    seen_at: float = float("-inf")

    def rank(self, now: float) -> tuple[int, float]:
        if self.anomalous:
            cls = ANOMALOUS
        elif now - self.ended_at <= RECENT_S:
            cls = RECENT
        elif now - self.seen_at <= STALE_S:
            cls = ACTIVE
        else:
            cls = STALE
        return cls, self.score


class StreamSeries:
    """The capped per-stream gauges of one registry."""

    def __init__(self, score: Gauge, anomalous: Gauge, last_seen: Gauge, cap: int) -> None:
        self.score, self.anomalous, self.last_seen, self.cap = score, anomalous, last_seen, cap
        self._exported: dict[str, _Exported] = {}
        self._lock = threading.Lock()  # updates come from the worker, reads from scrapes

    def __len__(self) -> int:
        return len(self._exported)

    def __contains__(self, stream: str) -> bool:
        return stream in self._exported

    def update(
        self, now: float, updates: dict[str, tuple[float | None, bool, float]]
    ) -> tuple[list[str], list[str]]:
        """One batch's news: ``stream -> (score or None in warm-up, anomalous, seen at)``.
        Returns the streams that got series and those that lost them."""
        added: list[str] = []
        removed: list[str] = []
        with self._lock:
            exported = self._exported
            weakest: tuple[tuple[int, float], str] | None = None
            for stream, (score, anomalous, seen_at) in updates.items():
                e = exported.get(stream)
                if e is None:
                    e = _Exported()
                    e.seen_at = seen_at
                    if score is not None:
                        e.score, e.anomalous = score, anomalous
                    if len(exported) >= self.cap:
                        if weakest is None:
                            weakest = min((x.rank(now), s) for s, x in exported.items())
                        if e.rank(now)[0] <= weakest[0][0]:
                            continue  # not of a higher class than the weakest exported
                        self._drop(weakest[1])
                        removed.append(weakest[1])
                        weakest = None
                    exported[stream] = e
                    added.append(stream)
                elif score is not None:
                    if e.anomalous and not anomalous:
                        e.ended_at = now
                    e.score, e.anomalous = score, anomalous
                e.seen_at = seen_at
                if score is not None:
                    self.score.labels(stream).set(score)
                    self.anomalous.labels(stream).set(1.0 if e.anomalous else 0.0)
                self.last_seen.labels(stream).set(seen_at)
        return added, removed

    def forget(self, stream: str) -> bool:
        """``stream`` is gone (evicted at the stream cap): its series go too; true if it had
        them."""
        with self._lock:
            if stream in self._exported:
                self._drop(stream)
                return True
            return False

    def _drop(self, stream: str) -> None:
        del self._exported[stream]
        for gauge in (self.score, self.anomalous, self.last_seen):
            with contextlib.suppress(KeyError):  # seen but never scored
                gauge.remove(stream)
