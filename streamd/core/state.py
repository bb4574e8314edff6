"""Per-stream state in preallocated numpy arrays, indexed by a slot number.

:class:`StreamTable` maps stream ids to slots and evicts the least recently seen stream when
full; :class:`StreamState` holds what the model needs per slot (timestamps, warm-up count,
GRU hidden state or window ring buffer, the pending prediction and per-stream scaling).
No per-stream Python objects: a million streams cost a dict entry each plus array rows.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from streamd.core.arrays import F32, I64

# Step mode's carried state is held in half precision: half the largest per-stream array
# (128 of 256 bytes with 2 layers of 32). float16 keeps 3 significant digits: a GRU's state
# lies in (-1, 1), an LSTM's cell state is unbounded but far below float16's 65504. The
# model still computes in float32; what it costs in scores is in docs/performance.md.
HIDDEN_DTYPE = np.float16


class Lookup(NamedTuple):
    slot: int
    new: bool
    evicted: str | None  # the stream id that gave up its slot, if any


class StreamTable:
    """Stream id -> slot, least recently seen first; at capacity the oldest stream is evicted.

    >>> t = StreamTable(2)
    >>> t.lookup("a").slot, t.lookup("b").slot, t.lookup("a").new
    (0, 1, False)
    >>> t.lookup("c")  # "b" is now the least recently seen
    Lookup(slot=1, new=True, evicted='b')
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._free = list(range(capacity - 1, -1, -1))
        self.ids: list[str | None] = [None] * capacity

    def __len__(self) -> int:
        return len(self._slots)

    def lookup(self, stream: str) -> Lookup:
        slot = self._slots.get(stream)
        if slot is not None:
            self._slots.move_to_end(stream)
            return Lookup(slot, False, None)
        evicted = None
        if self._free:
            slot = self._free.pop()
        else:
            evicted, slot = self._slots.popitem(last=False)
        self._slots[stream] = slot
        self.ids[slot] = stream
        return Lookup(slot, True, evicted)

    def slot_of(self, stream: str) -> int | None:
        return self._slots.get(stream)

    def items(self) -> list[tuple[str, int]]:
        """``(stream, slot)`` pairs, least recently seen first (the order to restore in)."""
        return list(self._slots.items())


class StreamState:
    """Model-side arrays for ``capacity`` streams.

    Shapes: ``hidden: [layers, capacity, state]`` (step mode), ``ring: [capacity, window,
    inputs]`` raw values then time features (window mode), ``pred: [capacity, features]`` the scaled
    prediction of each stream's next sample, ``scale_mean``/``scale_var: [capacity, features]``
    the per-stream scaling statistics (models with per-stream scaling).
    """

    # Per-slot arrays and the axis that indexes slots (what a state snapshot holds).
    SLOT_FIELDS = (
        ("last_ts", 0),
        ("count", 0),
        ("has_pred", 0),
        ("pred", 0),
        ("hidden", 1),
        ("ring", 0),
        ("ring_pos", 0),
        ("scale_n", 0),
        ("scale_mean", 0),
        ("scale_var", 0),
    )

    def __init__(
        self,
        capacity: int,
        *,
        features: int,
        window: int,
        layers: int,
        state_size: int,
        mode: str,
        inputs: int | None = None,
    ) -> None:
        self.capacity, self.window, self.mode = capacity, window, mode
        self.last_ts = np.full(capacity, -np.inf)
        self.count = np.zeros(capacity, np.int32)  # samples fed since (re)start (saturates)
        self.has_pred = np.zeros(capacity, bool)
        self.pred = np.zeros((capacity, features), np.float32)
        self.hidden = (
            np.zeros((layers, capacity, state_size), HIDDEN_DTYPE)
            if mode == "step"
            else np.zeros((layers, 0, state_size), HIDDEN_DTYPE)
        )
        width = features if inputs is None else inputs
        self.ring = (
            np.zeros((capacity, window, width), np.float32)
            if mode == "window"
            else np.zeros((0, window, width), np.float32)
        )
        self.ring_pos = np.zeros(capacity if mode == "window" else 0, np.int64)
        self.scale_n = np.zeros(capacity, np.int32)
        self.scale_mean = np.zeros((capacity, features), np.float64)
        self.scale_var = np.zeros((capacity, features), np.float64)

    def reset(self, slots: I64 | list[int], *, keep_last_ts: bool = False) -> None:
        """Back to warm-up; ``keep_last_ts`` after a gap (order checks still apply)."""
        if not keep_last_ts:
            self.last_ts[slots] = -np.inf
        self.count[slots] = 0
        self.has_pred[slots] = False
        self.pred[slots] = 0.0
        if self.mode == "step":
            self.hidden[:, slots] = 0.0
        else:
            self.ring[slots] = 0.0
            self.ring_pos[slots] = 0
        self.scale_n[slots] = 0
        self.scale_mean[slots] = 0.0
        self.scale_var[slots] = 0.0

    def restart_model_input(self, layers: int, state_size: int) -> None:
        """Forget what a model computed (step mode's hidden state, pending predictions).

        For a model swap: windows, timestamps and scaling are model-independent and stay;
        step mode feeds the new model ``window`` samples again before it predicts.
        """
        self.has_pred[:] = False
        if self.mode == "step":
            self.hidden = np.zeros((layers, self.capacity, state_size), HIDDEN_DTYPE)
            self.count[:] = 0

    def windows(self, slots: I64) -> F32:
        """Raw windows ``[len(slots), window, inputs]`` of ``slots``, oldest first."""
        idx = (self.ring_pos[slots, None] + np.arange(self.window)) % self.window
        out: F32 = self.ring[slots[:, None], idx]
        return out

    def push(self, slots: I64, raw: F32) -> None:
        """Append one input row per slot to the ring buffers (window mode)."""
        self.ring[slots, self.ring_pos[slots]] = raw
        self.ring_pos[slots] = (self.ring_pos[slots] + 1) % self.window
