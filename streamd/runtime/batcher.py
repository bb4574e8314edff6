"""What waits to be scored: the hand-off queue, the reorder hold and each stream's backlog.

A sample's way from the ``mqtt-reader`` thread to the pipeline, as one object
(:class:`Batcher`) that the worker asks for its next batch:

1. :class:`SampleQueue`, the bounded hand-off: the reader thread puts, and waits while it
   is full (back-pressure reaches the broker; nothing is dropped here).
2. :class:`~streamd.runtime.reorder.ReorderBuffer` holds each sample
   ``state.reorder_window_ms`` after its arrival (and for a while after each reconnect)
   and releases each stream's samples in timestamp order.
3. :class:`StreamBacklog`: scoring a stream's k-th sample in a batch needs its (k-1)-th
   first, so each extra sample of one stream costs a whole model call
   (:mod:`streamd.core.pipeline`). The pipeline scores at most
   ``inference.max_rounds_per_batch`` per stream in a batch; the rest wait here and go first
   in the next batches, so a burst is worked off while every other stream is still scored
   in each batch. Beyond ``inference.stream_backlog_max`` waiting samples a stream's newest
   QoS 0 samples are refused (``rate_limited``); QoS 1 and 2 samples are never dropped.

Everything after the queue belongs to the worker thread. Nothing waiting here has been
acknowledged to the broker, so a crash loses none of it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from operator import attrgetter

from streamd.config import Settings
from streamd.core.payload import Sample
from streamd.runtime.reorder import RECONNECT_GRACE_S, RECONNECT_HOLD_S, ReorderBuffer

_BY_TS = attrgetter("ts_s")


class SampleQueue:
    """Bounded FIFO of :class:`Sample`; one producer thread, one consumer thread.

    A full queue makes :meth:`put` wait (back-pressure: the reader stops reading the
    receiver's pipe, the receiver stops reading the broker, the broker keeps the backlog),
    so nothing is dropped here.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Sample] = deque()
        self._ready = threading.Event()  # something to drain
        self._room = threading.Event()  # below capacity
        self._room.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, sample: Sample) -> bool:
        """Queue ``sample``, waiting while the queue is full; False once :meth:`close` d."""
        items = self._items
        while len(items) >= self.capacity and not self._closed:
            self._room.clear()
            if len(items) < self.capacity:  # drained between the check and the clear
                break
            self._room.wait(0.1)
        if self._closed:
            return False
        items.append(sample)
        if not self._ready.is_set():
            self._ready.set()
        return True

    def close(self) -> None:
        """Take nothing more: a waiting :meth:`put` returns False (at shutdown)."""
        self._closed = True
        self._room.set()

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
        if len(items) < self.capacity:
            self._room.set()
        return out


class StreamBacklog:
    """Per-stream FIFOs of waiting samples. Only QoS 0 samples are ever refused: beyond
    ``qos0_max`` waiting samples of their stream (nothing acknowledged is dropped; the
    batcher bounds the total by draining its queue only when there is room).

    >>> b = StreamBacklog(qos0_max=3)
    >>> [s.ts_s for s in b.put([Sample("a", float(t), (0.0,), 0.0) for t in range(5)])]
    [3.0, 4.0]
    >>> [s.ts_s for s in b.take(2)], len(b)
    ([0.0, 1.0], 1)
    """

    def __init__(self, qos0_max: int) -> None:
        self.qos0_max = qos0_max
        self._waiting: dict[str, deque[Sample]] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def put(self, samples: list[Sample]) -> list[Sample]:
        """Keep ``samples`` (each stream's in order, newer than what it already has waiting);
        returns the QoS 0 ones refused because their stream has ``qos0_max`` waiting."""
        refused: list[Sample] = []
        waiting = self._waiting
        for s in samples:
            q = waiting.get(s.stream)
            if q is None:
                q = waiting[s.stream] = deque()
            if not s.qos and len(q) >= self.qos0_max:
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

    def hold_back(self, samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
        """Queue the samples of streams that have some waiting behind them, in timestamp
        order (a stream's newer sample must not be scored before its older waiting ones);
        returns the others, and the QoS 0 ones refused as :meth:`put` refuses them."""
        waiting = self._waiting
        free: list[Sample] = []
        refused: list[Sample] = []
        touched: set[str] = set()
        for s in samples:
            q = waiting.get(s.stream)
            if q is None:
                free.append(s)
                continue
            if not s.qos and len(q) >= self.qos0_max:
                refused.append(s)
                continue
            if q and s.ts_s < q[-1].ts_s:
                touched.add(s.stream)
            q.append(s)
            self._total += 1
        for stream in touched:  # a late one among them: that stream's queue in order again
            waiting[stream] = deque(sorted(waiting[stream], key=_BY_TS))
        return free, refused


class Batcher:
    """The worker's source of batches: queue, reorder hold and backlogs behind one call.

    ``put`` and ``reconnected`` are the reader thread's; everything else the worker's. At most
    ``queue_max`` samples wait in the queue and as many again held or in backlogs; beyond
    that ``put`` waits (back-pressure), and only QoS 0 samples of a stream that keeps sending
    faster than it is scored are ever refused (``rate_limited``).
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
        self.backlog = StreamBacklog(stream_backlog_max)
        self.queue_max = queue_max
        self.reorder_window_s = reorder_window_s
        self.batch_max_size = batch_max_size
        self.batch_max_wait_s = batch_max_wait_s
        self.max_rounds = max_rounds_per_batch
        self.put = self.queue.put  # from the reader thread: waits while the queue is full
        self.close = self.queue.close
        self._grace_until = -math.inf  # time.time() until which the reconnect hold applies
        self.refused: list[Sample] = []  # QoS 0 samples over their stream's backlog: dropped

    @classmethod
    def from_settings(cls, settings: Settings) -> Batcher:
        inf = settings.inference
        return cls(
            queue_max=inf.queue_max,
            reorder_window_s=settings.state.reorder_window_ms / 1000.0,
            batch_max_size=inf.batch_max_size,
            batch_max_wait_s=inf.batch_max_wait_ms / 1000.0,
            max_rounds_per_batch=inf.max_rounds_per_batch,
            stream_backlog_max=inf.stream_backlog_max,
        )

    def __len__(self) -> int:
        """Samples not yet scored: queued, held for reordering, or in a stream's backlog."""
        return len(self.queue) + len(self.reorder) + len(self.backlog)

    def reconnected(self) -> None:
        """The receiver connected again: hold samples for a while (:data:`RECONNECT_HOLD_S`),
        since publishers that reconnected too resend older samples behind newer ones."""
        self._grace_until = time.time() + RECONNECT_GRACE_S

    def _room(self) -> int:
        return max(0, self.queue_max - len(self.reorder) - len(self.backlog))

    def _hold(self, now: float) -> None:
        if now < self._grace_until and self.reorder_window_s < RECONNECT_HOLD_S:
            self.reorder.set_hold(RECONNECT_HOLD_S, until_pause=True)
        elif self.reorder.hold_s != self.reorder_window_s:
            self.reorder.set_hold(self.reorder_window_s)

    def next_batch(self, stopping: bool) -> list[Sample]:
        """The next batch of due samples, or [] after waiting up to 0.2 s for one.

        Samples move from the queue into the reorder buffer, which releases them
        ``reorder_window_s`` after arrival; a batch then waits up to ``batch_max_wait_s``
        to fill. When ``stopping``, everything held is due at once.
        """
        q, buf, size = self.queue, self.reorder, self.batch_max_size
        self._hold(time.time())
        buf.add(q.drain(self._room()))
        if len(self.backlog):  # what fast streams left over goes first, without waiting
            batch = self.backlog.take(self.max_rounds)
            fresh = buf.release(time.time(), max(0, size - len(batch)))
            free, refused = self.backlog.hold_back(fresh)
            self.refused += refused
            batch.extend(free)
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
            buf.add(q.drain(self._room()))
            more = buf.release(time.time(), size - len(batch))
            if more:
                batch.extend(more)
                batch.sort(key=_BY_TS)  # each stream's samples in time order
        return batch

    def defer(self, samples: list[Sample]) -> None:
        """Keep what the round cap deferred for the next batches; QoS 0 ones over their
        stream's backlog go to :attr:`refused`."""
        self.refused += self.backlog.put(samples)

    def take_refused(self) -> list[Sample]:
        """The samples dropped since the last call, for the caller to count (``rate_limited``)."""
        out, self.refused = self.refused, []
        return out
