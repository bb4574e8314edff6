"""What waits to be scored: the hand-off queue, the reorder hold and each stream's backlog.

A sample's way from the ``mqtt-reader`` thread to the pipeline, as one object
(:class:`Batcher`) that the worker asks for its next batch:

1. :class:`SampleQueue`, the bounded hand-off: the reader thread puts, never waiting on
   inference; a full queue refuses (the caller counts the drop).
2. :class:`ReorderBuffer` holds each sample ``state.reorder_window_ms`` after its arrival
   and releases each stream's samples in timestamp order. A model's state only moves
   forward, so a sample older than one already scored for its stream cannot be scored
   (``out_of_order``); publishers do reorder (after a reconnect, paho sends new QoS 1
   messages before it resends the old ones; docs/daemon.md has how late). The guarantee: a
   sample that arrives at most the window after a newer one of its stream is scored, first.
3. :class:`StreamBacklog`: scoring a stream's k-th sample in a batch needs its (k-1)-th
   first, so each extra sample of one stream costs a whole model call
   (:mod:`streamd.core.pipeline`). The pipeline scores at most
   ``inference.max_rounds_per_batch`` per stream in a batch; the rest wait here and go first
   in the next batches, so a burst is worked off while every other stream is still scored
   in each batch. Beyond ``inference.stream_backlog_max`` waiting samples a stream's newest
   are refused (``rate_limited``).

Everything after the queue belongs to the worker thread. Nothing waiting here has been
acknowledged to the broker, so a crash loses none of it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from operator import attrgetter

from streamd.core.payload import Sample

_BY_TS = attrgetter("ts_s")


class SampleQueue:
    """Bounded FIFO of :class:`Sample`; one producer thread, one consumer thread."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Sample] = deque()
        self._ready = threading.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, sample: Sample) -> bool:
        if len(self._items) >= self.capacity:
            return False
        self._items.append(sample)
        if not self._ready.is_set():
            self._ready.set()
        return True

    def wait(self, timeout_s: float) -> bool:
        """Wait until something may be queued (or ``timeout_s``)."""
        return self._ready.wait(timeout_s)

    def drain(self, max_items: int) -> list[Sample]:
        """Take up to ``max_items`` in arrival order."""
        self._ready.clear()
        items = self._items
        out: list[Sample] = []
        pop = items.popleft
        while items and len(out) < max_items:
            out.append(pop())
        if items:
            self._ready.set()
        return out


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
        self._held: deque[Sample] = deque()
        self._per_stream: dict[str, int] = {}  # held samples per stream (only streams with any)

    def __len__(self) -> int:
        return len(self._held)

    def add(self, samples: list[Sample]) -> None:
        """Hold ``samples`` (in arrival order)."""
        self._held.extend(samples)
        if not self.hold_s:  # no hold: every release takes everything, nothing is left late
            return
        counts = self._per_stream
        for s in samples:
            counts[s.stream] = counts.get(s.stream, 0) + 1

    def next_due(self) -> float:
        """When the oldest held sample is due (``inf`` when nothing is held)."""
        return self._held[0].received_at_s + self.hold_s if self._held else math.inf

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


class StreamBacklog:
    """Per-stream FIFOs of waiting samples, bounded per stream and in total.

    >>> b = StreamBacklog(per_stream_max=3, total_max=100)
    >>> [s.ts_s for s in b.put([Sample("a", float(t), (0.0,), 0.0) for t in range(5)])]
    [3.0, 4.0]
    >>> [s.ts_s for s in b.take(2)], len(b)
    ([0.0, 1.0], 1)
    """

    def __init__(self, per_stream_max: int, total_max: int) -> None:
        self.per_stream_max, self.total_max = per_stream_max, total_max
        self._waiting: dict[str, deque[Sample]] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def put(self, samples: list[Sample]) -> list[Sample]:
        """Keep ``samples`` (each stream's in order, newer than what it already has waiting);
        returns those refused because their stream, or the backlog, is full."""
        refused: list[Sample] = []
        waiting = self._waiting
        for s in samples:
            q = waiting.get(s.stream)
            if q is None:
                q = waiting[s.stream] = deque()
            if len(q) >= self.per_stream_max or self._total >= self.total_max:
                refused.append(s)
                continue
            q.append(s)
            self._total += 1
        for stream in {s.stream for s in refused}:
            if not waiting[stream]:
                del waiting[stream]
        return refused

    def take(self, per_stream: int) -> list[Sample]:
        """Up to ``per_stream`` of each stream's oldest waiting samples."""
        out: list[Sample] = []
        done: list[str] = []
        for stream, q in self._waiting.items():
            for _ in range(min(per_stream, len(q))):
                out.append(q.popleft())
            if not q:
                done.append(stream)
        for stream in done:
            del self._waiting[stream]
        self._total -= len(out)
        return out


class Batcher:
    """The worker's source of batches: queue, reorder hold and backlogs behind one call.

    ``put`` is the reader thread's; everything else the worker's.
    """

    def __init__(
        self,
        *,
        queue_max: int,
        reorder_window_s: float,
        batch_max_size: int,
        batch_max_wait_s: float,
        max_rounds_per_batch: int,
        stream_backlog_max: int,
    ) -> None:
        self.queue = SampleQueue(queue_max)
        self.reorder = ReorderBuffer(reorder_window_s)
        self.backlog = StreamBacklog(stream_backlog_max, queue_max)
        self.queue_max = queue_max
        self.batch_max_size = batch_max_size
        self.batch_max_wait_s = batch_max_wait_s
        self.max_rounds = max_rounds_per_batch
        self.put = self.queue.put  # from the reader thread: never blocks

    def __len__(self) -> int:
        """Samples not yet scored: queued, held for reordering, or in a stream's backlog."""
        return len(self.queue) + len(self.reorder) + len(self.backlog)

    def next_batch(self, stopping: bool) -> list[Sample]:
        """The next batch of due samples, or [] after waiting up to 0.2 s for one.

        Samples move from the queue into the reorder buffer, which releases them
        ``reorder_window_s`` after arrival; a batch then waits up to ``batch_max_wait_s``
        to fill. When ``stopping``, everything held is due at once.
        """
        q, buf, size = self.queue, self.reorder, self.batch_max_size
        buf.add(q.drain(max(0, self.queue_max - len(buf))))
        if len(self.backlog):  # what fast streams left over goes first, without waiting
            batch = self.backlog.take(self.max_rounds)
            batch.extend(buf.release(time.time(), max(0, size - len(batch))))
            batch.sort(key=_BY_TS)
            return batch
        batch = buf.release(math.inf if stopping else time.time(), size)
        if not batch:
            if not stopping:
                q.wait(max(0.0, min(0.2, buf.next_due() - time.time())))
            return batch
        deadline = batch[0].received_at_s + buf.hold_s + self.batch_max_wait_s
        while len(batch) < size:
            left = deadline - time.time()
            if left <= 0:
                break
            q.wait(min(left, max(0.0, buf.next_due() - time.time())))
            buf.add(q.drain(max(0, self.queue_max - len(buf))))
            more = buf.release(time.time(), size - len(batch))
            if more:
                batch.extend(more)
                batch.sort(key=_BY_TS)  # each stream's samples in time order
        return batch

    def defer(self, samples: list[Sample]) -> list[Sample]:
        """Keep what the round cap deferred for the next batches; returns those refused
        because their stream's backlog is full (the caller counts them ``rate_limited``)."""
        return self.backlog.put(samples)
