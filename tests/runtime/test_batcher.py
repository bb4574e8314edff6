"""What waits to be scored (streamd.runtime.batcher): the reorder hold, alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamd.core.payload import Sample
from streamd.runtime.batcher import ReorderBuffer


def sample(stream: str, ts: float, at: float) -> Sample:
    return Sample(stream, ts, (0.0,), at)


def test_holds_each_sample_until_it_is_due() -> None:
    buf = ReorderBuffer(0.2)
    buf.add([sample("a", 1.0, 10.0), sample("b", 1.0, 10.1)])
    assert buf.next_due() == pytest.approx(10.2)
    assert buf.release(10.19, 100) == []
    assert [s.stream for s in buf.release(10.2, 100)] == ["a"]
    assert [s.stream for s in buf.release(10.3, 100)] == ["b"]
    assert len(buf) == 0 and buf.next_due() == math.inf


def test_a_late_sample_not_yet_due_comes_along_before_its_newer_one() -> None:
    buf = ReorderBuffer(0.2)
    # "a" at ts 5 arrives first; ts 4 and 3 arrive later but within the hold
    buf.add([sample("a", 5.0, 0.0), sample("b", 9.0, 0.01), sample("a", 4.0, 0.05)])
    buf.add([sample("a", 3.0, 0.15), sample("a", 6.0, 0.16)])
    out = buf.release(0.2, 100)
    assert [(s.stream, s.ts_s) for s in out] == [("a", 3.0), ("a", 4.0), ("a", 5.0)]
    # "b" and the newer "a" keep their own hold
    assert [(s.stream, s.ts_s) for s in buf.release(math.inf, 100)] == [("a", 6.0), ("b", 9.0)]


@pytest.mark.parametrize("hold", [0.0, 0.1])
def test_release_respects_max_items(hold: float) -> None:
    buf = ReorderBuffer(hold)
    buf.add([sample(k, 1.0, 0.0) for k in "abc"])
    assert [s.stream for s in buf.release(1.0, 2)] == ["a", "b"]
    assert [s.stream for s in buf.release(1.0, 2)] == ["c"]


def test_late_samples_come_along_beyond_max_items_and_a_zero_hold_only_sorts() -> None:
    buf = ReorderBuffer(0.1)
    buf.add([sample("a", float(t), 0.0) for t in (3, 1, 2)])
    # beyond max_items only to keep a stream in order: ts 2 must not wait behind ts 3
    assert [s.ts_s for s in buf.release(1.0, 2)] == [1.0, 2.0, 3.0]
    off = ReorderBuffer(0.0)
    off.add([sample("a", float(t), 0.0) for t in (3, 1, 2)])
    assert [s.ts_s for s in off.release(0.0, 2)] == [1.0, 3.0]  # each batch sorted, no more
    with pytest.raises(ValueError):
        ReorderBuffer(-1.0)


def test_random_arrivals_within_the_hold_come_out_in_order_per_stream() -> None:
    """Property: if every sample arrives within the hold of its stream's newer ones, each
    stream is released in timestamp order, nothing lost or repeated."""
    rng = np.random.default_rng(3)
    hold = 0.1
    samples = []
    for k in range(20):
        for t in range(50):
            # published every 0.05 s; network jitter of up to the hold
            samples.append(sample(f"s{k}", float(t), t * 0.05 + rng.uniform(0, hold * 0.99)))
    samples.sort(key=lambda s: s.received_at_s)
    buf = ReorderBuffer(hold)
    out: list[Sample] = []
    now = 0.0
    i = 0
    while i < len(samples) or len(buf):
        now += 0.007
        j = i
        while j < len(samples) and samples[j].received_at_s <= now:
            j += 1
        buf.add(samples[i:j])
        i = j
        out.extend(buf.release(now, 64))
    assert sorted(out) == sorted(samples)
    for k in range(20):
        ts = [s.ts_s for s in out if s.stream == f"s{k}"]
        assert ts == sorted(ts)


def test_a_streams_new_samples_wait_behind_its_backlog_even_with_duplicates_among_them() -> None:
    """After a broker restart, redelivered copies sit in the backlog beside the originals;
    newly released samples of that stream must not overtake what still waits (they did:
    scored ahead, they made the older originals out_of_order)."""
    from streamd.runtime.batcher import Batcher

    b = Batcher(
        queue_max=1000,
        reorder_window_s=0.0,
        batch_max_size=512,
        batch_max_wait_s=0.0,
        max_rounds_per_batch=2,
        stream_backlog_max=100,
    )
    originals = [Sample("a", float(t), (0.0,), 0.0, mid=t + 1, qos=1) for t in range(6)]
    copies = [Sample("a", float(t), (0.0,), 0.0, mid=t + 100, qos=1) for t in range(6)]
    for s in sorted(originals + copies, key=lambda s: s.ts_s):
        assert b.put(s)
    first = b.next_batch(stopping=False)
    scored = [s for s in first if s.ts_s < 2]  # the pipeline's round cap: two timestamps
    b.defer([s for s in first if s.ts_s >= 2])
    for t in range(6, 9):
        assert b.put(Sample("a", float(t), (0.0,), 0.0, mid=t + 1, qos=1))
    order = [s.ts_s for s in scored]
    while len(b):
        batch = b.next_batch(stopping=True)
        waiting = [s.ts_s for q in b.backlog._waiting.values() for s in q]
        assert all(s.ts_s <= min(waiting, default=math.inf) for s in batch)
        order += [s.ts_s for s in batch]
    assert order == sorted(order) and sorted(set(order)) == [float(t) for t in range(9)]
