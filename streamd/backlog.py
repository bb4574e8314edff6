"""Samples that a batch's round cap left over, kept per stream for the next batches.

Scoring a stream's k-th sample in a batch needs its (k-1)-th first, so each extra sample of
one stream costs a whole model call (see :mod:`streamd.pipeline`). The worker caps that with
``inference.max_rounds_per_batch`` and keeps a stream's rest here: each batch takes at most
that many from every stream, oldest first, so a burst is worked off over a few batches while
every other stream is still scored in each one. Only a stream that keeps sending faster than
that is dropped from: beyond ``per_stream_max`` waiting samples its newest are refused.

Belongs to the worker thread. Waiting samples are not yet acknowledged to the broker.
"""

from __future__ import annotations

from collections import deque

from streamd.payload import Sample


class StreamBacklog:
    """Per-stream FIFOs of waiting samples, bounded per stream and in total.

    >>> from streamd.payload import Sample
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
