"""The bounded hand-off between the MQTT network thread and the inference worker.

The network thread must never wait on inference: :meth:`SampleQueue.put` never blocks and
returns False when the queue is full (the caller counts the drop). The worker drains in
batches. A deque with an Event is cheaper per message than ``queue.Queue``'s locks.
"""

from __future__ import annotations

import threading
from collections import deque

from streamd.payload import Sample


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
