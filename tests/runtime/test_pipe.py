"""The receiver's non-blocking pipe speaks multiprocessing's framing in both directions.

The daemon keeps a plain ``multiprocessing.connection.Connection`` on its end; the
receiver (one select loop) must never block on its end, and must lose nothing when the
daemon reads late.
"""

from __future__ import annotations

import socket
import threading
from multiprocessing.connection import Connection

import pytest

from streamd.runtime.mqtt.messages import Ack, Outgoing, Paused, Publish, Received, Stop
from streamd.runtime.mqtt.pipe import HIGH_WATER, Pipe, PipeClosed


def pair() -> tuple[Pipe, Connection]:
    ours, theirs = socket.socketpair()
    return Pipe(ours), Connection(theirs.detach())


def test_messages_cross_both_ways_in_order() -> None:
    pipe, conn = pair()
    batch = Received(["sensors/a"] * 3, [b'{"value": 1.5}'] * 3, [1.0] * 3, [7, 8, 9], [1] * 3)
    pipe.send(batch)
    pipe.send(Paused())
    assert conn.recv() == batch
    assert conn.recv() == Paused()
    conn.send(Ack([7], [1]))
    conn.send(Stop())
    got: list[object] = []
    while len(got) < 2:
        got += pipe.read_some()
    assert got == [Ack([7], [1]), Stop()]


def test_a_late_reader_loses_nothing_and_the_writer_never_blocks() -> None:
    """Far more than the socket holds is queued without blocking; ``backed_up`` tells the
    loop to stop reading the broker; everything arrives once the daemon reads."""
    pipe, conn = pair()
    payload = b"x" * 1000
    n = 0
    while not pipe.backed_up():
        pipe.send(Received([f"s/{n}"], [payload], [0.0], [n], [1]))
        n += 1
    assert pipe.pending_output() > HIGH_WATER
    received: list[int] = []
    reader = threading.Thread(target=lambda: received.extend(conn.recv().mids[0] for _ in range(n)))
    reader.start()
    pipe.drain(10)
    reader.join(10)
    assert received == list(range(n))
    assert pipe.pending_output() == 0


def test_a_frame_split_across_reads_is_reassembled() -> None:
    pipe, conn = pair()
    big = Publish([Outgoing("alerts/x", b"y" * 300_000, 1, "anomaly")])
    writer = threading.Thread(target=conn.send, args=(big,))
    writer.start()
    got: list[object] = []
    while not got:
        got = pipe.read_some()
    writer.join(10)
    assert got == [big]


def test_the_end_of_the_stream_is_an_error_not_a_silent_empty_read() -> None:
    pipe, conn = pair()
    conn.close()
    with pytest.raises(PipeClosed):
        pipe.receive(timeout_s=5)
