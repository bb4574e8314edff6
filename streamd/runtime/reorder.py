"""Holds samples briefly so that a stream's late arrivals are still scored in order.

A model's state only moves forward in time, so a sample older than one already scored for
its stream cannot be scored (it is counted as ``out_of_order``). Publishers do reorder:
after a reconnect, paho sends new QoS 1 messages before it resends the unacknowledged old
ones (docs/daemon.md has how late). :class:`ReorderBuffer` holds every sample for
``hold_s`` after its arrival and releases a stream's held samples in timestamp order. The
guarantee: a sample that arrives at most ``hold_s`` after a newer sample of its stream is
scored, before the newer one.

``state.reorder_window_ms`` sets the hold; after each reconnect of the receiver the
batcher holds every sample at least :data:`RECONNECT_HOLD_S` for
:data:`RECONNECT_GRACE_S`, since that is when publishers resend: a broker restart
reconnects them all. Belongs to the worker thread (not thread-safe). Held samples are not
yet acknowledged to the broker, so a crash loses none of them.
"""

from __future__ import annotations

import math
from collections import deque
from operator import attrgetter

from streamd.core.payload import Sample

_BY_TS = attrgetter("ts_s")
# After each reconnect, for RECONNECT_GRACE_S, every sample is held at least
# RECONNECT_HOLD_S (docs/daemon.md, "Reordering"): publishers that reconnect at the same
# time resend older samples behind newer ones.
RECONNECT_GRACE_S = 30.0
RECONNECT_HOLD_S = 1.0
PAUSE_S = 0.05  # arrivals stopped this long: the broker waits for acknowledgements


class ReorderBuffer:
    """Samples in arrival order, each released ``hold_s`` after it arrived.

    >>> buf = ReorderBuffer(0.1)
    >>> buf.add([Sample("a", 20.0, (1.0,), 0.0), Sample("a", 10.0, (2.0,), 0.05)])
    >>> buf.release(now=0.06, max_items=10)  # nothing has been held 0.1 s yet
    []
    >>> [s.ts_s for s in buf.release(now=0.1, max_items=10)]  # the late one comes first
    [10.0, 20.0]
    """

    def __init__(self, hold_s: float) -> None:
        if hold_s < 0:
            raise ValueError("hold_s must not be negative")
        self.hold_s = hold_s
        self.until_pause = False  # also release everything once arrivals pause
        self._held: deque[Sample] = deque()
        self._per_stream: dict[str, int] = {}  # held samples per stream (only streams with any)
        self._last_arrival = -math.inf

    def __len__(self) -> int:
        return len(self._held)

    def set_hold(self, hold_s: float, *, until_pause: bool = False) -> None:
        """Hold from now on for ``hold_s``; with ``until_pause``, release everything held as
        soon as nothing has arrived for :data:`PAUSE_S` (a broker that waits for
        acknowledgements sends nothing more: holding on would only starve it)."""
        if hold_s and not self.hold_s:  # the per-stream counts start with what is held
            counts: dict[str, int] = {}
            for s in self._held:
                counts[s.stream] = counts.get(s.stream, 0) + 1
            self._per_stream = counts
        elif not hold_s:
            self._per_stream = {}
        self.hold_s, self.until_pause = hold_s, until_pause

    def add(self, samples: list[Sample]) -> None:
        """Hold ``samples`` (in arrival order)."""
        if not samples:
            return
        self._held.extend(samples)
        self._last_arrival = samples[-1].received_at_s
        if not self.hold_s:  # no hold: every release takes everything, nothing is left late
            return
        counts = self._per_stream
        for s in samples:
            counts[s.stream] = counts.get(s.stream, 0) + 1

    def next_due(self) -> float:
        """When the oldest held sample is due (``inf`` when nothing is held)."""
        if not self._held:
            return math.inf
        due = self._held[0].received_at_s + self.hold_s
        return min(due, self._last_arrival + PAUSE_S) if self.until_pause else due

    def release(self, now: float, max_items: int) -> list[Sample]:
        """Up to ``max_items`` due samples, each stream's in timestamp order.

        Due means held ``hold_s`` (``now=math.inf`` releases everything, for shutdown). A
        held sample that is older than a released sample of its stream comes along even if
        it is not yet due or ``max_items`` is reached, so it is not left behind the newer one.
        """
        held, counts = self._held, self._per_stream
        if not self.hold_s:  # off: only each batch's own samples are put in order
            take = min(max_items, len(held))
            out = [held.popleft() for _ in range(take)]
            out.sort(key=_BY_TS)
            return out
        cutoff = now - self.hold_s
        if self.until_pause and now - self._last_arrival >= PAUSE_S:
            cutoff = math.inf
        out = []
        newest: dict[str, float] = {}  # per released stream, its newest released timestamp
        while held and len(out) < max_items and held[0].received_at_s <= cutoff:
            s = held.popleft()
            out.append(s)
            self._released(s.stream)
            if s.ts_s > newest.get(s.stream, -math.inf):
                newest[s.stream] = s.ts_s
        if not out:
            return out
        # Only streams that still have held samples can have a late one among them: with
        # samples spread over many streams this is rare, and the scan below is skipped.
        if any(stream in counts for stream in newest):
            self._pull_late(out, newest)
        out.sort(key=_BY_TS)  # stable; only each stream's own order matters
        return out

    def _released(self, stream: str) -> None:
        """One fewer held sample of ``stream``."""
        left = self._per_stream[stream] - 1
        if left:
            self._per_stream[stream] = left
        else:
            del self._per_stream[stream]

    def _pull_late(self, out: list[Sample], newest: dict[str, float]) -> None:
        """Move held samples older than a released sample of their stream into ``out``."""
        keep: deque[Sample] = deque()
        for s in self._held:
            if s.ts_s < newest.get(s.stream, -math.inf):
                out.append(s)
                self._released(s.stream)
            else:
                keep.append(s)
        self._held = keep
