"""The receiver process: one MQTT link in one select loop, batching what it receives.

On a 2-core box one Python process cannot both run paho's receive path and score: the two
threads share a GIL, and paho alone keeps a core busy at QoS 1 (docs/performance.md). So
``streamd run`` starts this module as a child (``python -m streamd.runtime.mqtt.child FD``) that
only receives, stamps and forwards messages in batches, and carries out what the daemon
sends back: acknowledgements, publishes, pause and stop. Parsing and everything after it
happen in the daemon (:mod:`streamd.runtime.mqtt.proxy`).

One thread does everything: a ``select`` over the broker's socket and the daemon's pipe,
then paho's ``loop_read`` / ``loop_write`` / ``loop_misc``, the daemon's commands, and the
outbox. With paho's own network thread and a command thread, every acknowledgement woke
the network thread through a socket pair and the threads took turns on the GIL; the
receiver was the busy process at QoS 1 (docs/performance.md has the before and after).

The child ignores SIGTERM, SIGINT and SIGHUP: systemd and a terminal signal the whole
group, and the daemon decides when the child stops (after its last acknowledgements). It
exits by itself when the daemon's end of the pipe closes, so it never outlives the daemon.

With ``mqtt.receiver = "thread"`` the same loop runs on a thread of the daemon instead
(:func:`serve` with ``own_process=False``), over the same socket pair: one process, less
resident memory, and paho back on the daemon's GIL (docs/performance.md has both).

Partitioned (``[cluster]``), the receiver holds one link per owned partition, each the MQTT
session of its partition, all in the same ``select``: what arrives is tagged with its link
(:func:`~streamd.runtime.mqtt.messages.tag`), so acknowledgements go back over the link the
message came by, and the first link publishes.

What goes over the pipe is typed (:mod:`streamd.runtime.mqtt.messages`): ``Received``,
``LinkEvent``, ``Published``, ``Paused``, ``Started`` and ``Fatal`` to the daemon; ``Init``,
``Ack``, ``Publish``, ``Pause`` and ``Stop`` from it.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from streamd.runtime.logs import RateLimitedLog, setup_logging
from streamd.runtime.mqtt.link import Link, open_link
from streamd.runtime.mqtt.messages import (
    LINK_SHIFT,
    PACKET_MASK,
    Ack,
    Fatal,
    Init,
    LinkEvent,
    Pause,
    Paused,
    Publish,
    Published,
    PublishResult,
    Received,
    Started,
    Stop,
    TooLarge,
    ToReceiver,
    tag,
    unknown,
)
from streamd.runtime.mqtt.pipe import Pipe, PipeClosed

log = logging.getLogger("streamd.runtime.mqtt.child")  # not __main__: run with python -m
FLUSH_INTERVAL_S = 0.002  # the most a message waits in the child: bounds added latency
FLUSH_SIZE = 512  # or a batch goes as soon as it has this many
STOP_TIMEOUT_S = 5.0


class Outbox:
    """Received messages, sent to the daemon in batches, in arrival order: when a batch
    has :data:`FLUSH_SIZE` messages, or its first has waited :data:`FLUSH_INTERVAL_S`."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.taken = 0  # messages forwarded so far: tells the loop a read found one
        self._pending = Received()
        self._first = 0.0  # monotonic time the oldest pending message came
        self._closed = False

    def put(
        self,
        topic: str | None,
        payload: bytes | bytearray,
        received_at_s: float,
        mid: int,
        qos: int,
    ) -> None:
        if self._closed:
            return  # paused: neither forwarded nor acknowledged; the broker keeps it
        p = self._pending
        if not p.topics:
            self._first = time.monotonic()
        p.topics.append(topic)
        p.payloads.append(payload)
        p.received_at_s.append(received_at_s)
        p.mids.append(mid)
        p.qos.append(qos)
        self.taken += 1
        if len(p.topics) >= FLUSH_SIZE:
            self.flush()

    def too_large(
        self, topic: str | None, size: int, received_at_s: float, mid: int, qos: int
    ) -> None:
        """A message over the payload limit: its size goes to the daemon, in order."""
        if self._closed:
            return
        self.flush()
        self.pipe.send(TooLarge(topic, size, received_at_s, mid, qos))
        self.taken += 1

    def due_in(self, now: float) -> float:
        """Seconds until the pending batch must go (infinite when there is none)."""
        return max(0.0, self._first + FLUSH_INTERVAL_S - now) if self._pending else float("inf")

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, Received()
            self.pipe.send(batch)

    def pause(self) -> None:
        """Forward nothing more; send what is pending, then :class:`Paused`."""
        self._closed = True
        self.flush()
        self.pipe.send(Paused())


class LinkOutbox:
    """One link's way into the shared :class:`Outbox` when a receiver has several (one per
    partition, ``[cluster]``): its index tagged onto every packet id, so acknowledgements
    find their way back, and its partition's topic prefix cut off every topic.

    >>> class Box:
    ...     def put(self, *a): print(a)
    >>> LinkOutbox(Box(), 2, "p/2/").put("p/2/sensors/a", b"1", 0.0, 7, 1)  # doctest: +ELLIPSIS
    ('sensors/a', b'1', 0.0, 131079, 1)
    """

    def __init__(self, outbox: Outbox, index: int, prefix: str) -> None:
        self.outbox, self.index, self.prefix, self.cut = outbox, index, prefix, len(prefix)

    def _topic(self, topic: str | None) -> str | None:
        if topic is not None and self.cut and topic.startswith(self.prefix):
            return topic[self.cut :]
        return topic

    def put(
        self,
        topic: str | None,
        payload: bytes | bytearray,
        received_at_s: float,
        mid: int,
        qos: int,
    ) -> None:
        self.outbox.put(self._topic(topic), payload, received_at_s, tag(self.index, mid), qos)

    def too_large(
        self, topic: str | None, size: int, received_at_s: float, mid: int, qos: int
    ) -> None:
        self.outbox.too_large(self._topic(topic), size, received_at_s, tag(self.index, mid), qos)


class ReceiveLoop:
    """The loop: the links' sockets and the pipe in one ``select``; returns the exit code.

    The first link also publishes (alerts, availability); usually it is the only one.
    """

    def __init__(self, pipe: Pipe, links: list[Link], outbox: Outbox) -> None:
        self.pipe = pipe
        self.links = links
        self.outbox = outbox

    def run(self) -> int:
        pipe, links, outbox = self.pipe, self.links, self.outbox
        for link in links:
            link.start()
        while True:
            now = time.monotonic()
            readable: list[Any] = [pipe.sock]
            writable: list[Any] = [pipe.sock] if pipe.pending_output() else []
            backed_up = pipe.backed_up()
            timeout = outbox.due_in(now)
            socks = []
            for link in links:
                link.connect_if_due(now)
                sock = link.socket()
                # TLS may hold decrypted bytes that select cannot see
                pending = sock is not None and not backed_up and link.pending()
                socks.append((link, sock, pending))
                if sock is not None:
                    if not backed_up:
                        readable.append(sock)
                    if link.want_write():
                        writable.append(sock)
                timeout = 0.0 if pending else min(timeout, link.due_in(now))
            ready_r, ready_w, _ = select.select(readable, writable, [], timeout)
            for link, sock, pending in socks:
                if sock is None:
                    continue
                if pending or sock in ready_r:
                    link.read()
                if link.socket() is sock and link.want_write():
                    link.write()  # acknowledgements and publishes go out at once
            try:
                if pipe.sock in ready_w:
                    pipe.write_some()
                if pipe.sock in ready_r:
                    for command in pipe.read_some():
                        if self._obey(command):
                            return 0
                now = time.monotonic()
                if outbox.due_in(now) == 0.0:
                    outbox.flush()
            except PipeClosed:  # the daemon is gone: nothing to acknowledge for
                return 0
            for link in links:
                link.misc_if_due(now)

    def _ack(self, mids: list[int], qos: list[int]) -> None:
        if len(self.links) == 1:
            self.links[0].ack(mids, qos)  # tag(0, id) is the id itself
            return
        by_link: dict[int, tuple[list[int], list[int]]] = {}
        for mid, q in zip(mids, qos, strict=True):
            ids, qs = by_link.setdefault(mid >> LINK_SHIFT, ([], []))
            ids.append(mid & PACKET_MASK)
            qs.append(q)
        for index, (ids, qs) in by_link.items():
            self.links[index].ack(ids, qs)

    def _obey(self, command: ToReceiver) -> bool:
        """Carry out one command from the daemon; true when it says stop."""
        match command:
            case Ack(mids, qos):
                self._ack(mids, qos)
            case Publish(items):
                results = []
                first = self.links[0]
                for item in items:
                    ok = first.publish(item.topic, item.payload, item.qos, item.retain)
                    if item.label is not None:  # alerts: the daemon counts them
                        results.append(PublishResult(item.label, ok, item.topic))
                if results:
                    self.pipe.send(Published(results))
            case Pause():
                self.outbox.pause()
            case Stop():
                for link in self.links:
                    link.stop(STOP_TIMEOUT_S)
                self.pipe.drain(STOP_TIMEOUT_S)
                return True
            case Init():
                raise TypeError("a second Init on the receiver pipe")
            case _:
                unknown(command)
        return False


def _reporter(pipe: Pipe, index: int) -> Callable[[str], None]:
    def report(event: str) -> None:
        pipe.send(LinkEvent(event, index))

    return report


def serve(sock: socket.socket, *, own_process: bool = True) -> int:
    """Set up from the ``init`` message, then run the loop.

    In its own process the receiver ignores the unit's signals and sets up its own logging;
    on a thread of the daemon (``mqtt.receiver = "thread"``) the daemon has done both.
    """
    if own_process:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
    pipe = Pipe(sock)
    try:
        init = pipe.receive()
    except PipeClosed:
        return 0
    if not isinstance(init, Init):
        raise TypeError(f"the receiver pipe must start with Init, not {init!r}")
    if own_process:
        setup_logging(init.log_level, init.log_format)
    outbox = Outbox(pipe)
    problems = RateLimitedLog(log, init.per_message_interval_s)
    links = []
    try:
        for index, options in enumerate(init.options):
            way: Outbox | LinkOutbox = outbox
            if len(init.options) > 1 or options.topic_prefix:
                way = LinkOutbox(outbox, index, options.topic_prefix)
            links.append(open_link(options, way, _reporter(pipe, index), problems))
    except (OSError, ValueError) as e:  # TLS files, chiefly: say which and why
        pipe.send(Fatal(f"{type(e).__name__}: {e}"))
        pipe.drain(STOP_TIMEOUT_S)
        return 1
    pipe.send(Started())
    try:
        return ReceiveLoop(pipe, links, outbox).run()
    except PipeClosed:
        return 0


def main(argv: list[str]) -> int:
    """``python -m streamd.runtime.mqtt.child FD``: FD is this end of the daemon's socket pair."""
    return serve(socket.socket(fileno=int(argv[1])))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
