"""The receiver process: paho's client in one select loop, batching what it receives to the daemon.

On a 2-core box one Python process cannot both run paho's receive path and score: the two
threads share a GIL, and paho alone keeps a core busy at QoS 1 (docs/performance.md). So
``streamd run`` starts this module as a child (``python -m streamd.mqtt_child FD``) that
only receives, stamps and forwards messages in batches, and carries out what the daemon
sends back: acknowledgements, publishes, pause and stop. Parsing and everything after it
happen in the daemon (:mod:`streamd.mqtt_proxy`).

One thread does everything: a ``select`` over the broker's socket and the daemon's pipe,
then paho's ``loop_read`` / ``loop_write`` / ``loop_misc``, the daemon's commands, and the
outbox. With paho's own network thread and a command thread, every acknowledgement woke
the network thread through a socket pair and the threads took turns on the GIL; the
receiver was the busy process at QoS 1 (docs/performance.md has the before and after).

The child ignores SIGTERM, SIGINT and SIGHUP: systemd and a terminal signal the whole
group, and the daemon decides when the child stops (after its last acknowledgements). It
exits by itself when the daemon's end of the pipe closes, so it never outlives the daemon.

With ``mqtt.receiver = "thread"`` the same loop runs on a thread of the daemon instead
(:func:`serve` with ``own_process=False``), over the same socket pair: one process, about
13 MB less resident memory, and paho back on the daemon's GIL (docs/performance.md has both).

Messages on the pipe (pickled tuples):

* child to daemon: ``("msgs", [Raw, ...])``, ``("event", name)``, ``("paused",)``,
  ``("published", [(label, ok, topic), ...])``, ``("started",)``, ``("fatal", text)``;
* daemon to child: ``("init", LinkOptions, level, format, interval)``, ``("ack", [(mid,
  qos), ...])``, ``("publish", [(topic, payload, qos, label), ...])``, ``("pause",)``,
  ``("stop",)``.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import sys
import time
from typing import Any

from streamd.logs import RateLimitedLog, setup_logging
from streamd.mqtt_io import MqttLink, Raw
from streamd.pipe import Pipe, PipeClosed

log = logging.getLogger("streamd.mqtt_child")  # not __main__: run with python -m
FLUSH_INTERVAL_S = 0.002  # the most a message waits in the child: bounds added latency
FLUSH_SIZE = 512  # or a batch goes as soon as it has this many
READS_PER_WAKEUP = 64  # packets read back to back before looking at the pipe again
STOP_TIMEOUT_S = 5.0


class Outbox:
    """Received messages, sent to the daemon in batches, in arrival order: when a batch
    has :data:`FLUSH_SIZE` messages, or its first has waited :data:`FLUSH_INTERVAL_S`."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.taken = 0  # messages forwarded so far: tells the loop a read found one
        self._pending: list[Raw] = []
        self._first = 0.0  # monotonic time the oldest pending message came
        self._closed = False

    def put(self, raw: Raw) -> None:
        if self._closed:
            return  # paused: neither forwarded nor acknowledged; the broker keeps it
        if not self._pending:
            self._first = time.monotonic()
        self._pending.append(raw)
        self.taken += 1
        if len(self._pending) >= FLUSH_SIZE:
            self.flush()

    def due_in(self, now: float) -> float:
        """Seconds until the pending batch must go (infinite when there is none)."""
        return max(0.0, self._first + FLUSH_INTERVAL_S - now) if self._pending else float("inf")

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.pipe.send(("msgs", batch))

    def pause(self) -> None:
        """Forward nothing more; send what is pending, then the ``paused`` marker."""
        self._closed = True
        self.flush()
        self.pipe.send(("paused",))


class Receiver:
    """The loop: broker socket and pipe in one ``select``; returns the exit code."""

    def __init__(self, pipe: Pipe, link: MqttLink, outbox: Outbox) -> None:
        self.pipe = pipe
        self.link = link
        self.outbox = outbox

    def run(self) -> int:
        pipe, link, outbox, client = self.pipe, self.link, self.outbox, self.link.client
        link.start()
        while True:
            now = time.monotonic()
            link.connect_if_due(now)
            sock = client.socket()
            readable: list[Any] = [pipe.sock]
            writable: list[Any] = [pipe.sock] if pipe.pending_output() else []
            if sock is not None:
                if not pipe.backed_up():
                    readable.append(sock)
                if client.want_write():
                    writable.append(sock)
            timeout = min(outbox.due_in(now), link.due_in(now))
            # TLS may hold decrypted bytes that select cannot see
            tls_pending = sock is not None and getattr(sock, "pending", lambda: 0)() > 0
            if tls_pending:
                timeout = 0.0
            ready_r, ready_w, _ = select.select(readable, writable, [], timeout)
            if sock is not None and (tls_pending or sock in ready_r):
                self._read(client)
            if sock is not None and sock in ready_w and client.socket() is sock:
                client.loop_write()
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
            link.misc_if_due(now)

    def _read(self, client: Any) -> None:
        """Read packets while they come, up to :data:`READS_PER_WAKEUP`: one select per
        burst rather than per packet. A read that forwards nothing ends the burst (no data,
        or a packet that was not a message)."""
        for _ in range(READS_PER_WAKEUP):
            before = self.outbox.taken
            client.loop_read()
            if self.outbox.taken == before or client.socket() is None:
                return

    def _obey(self, command: tuple[Any, ...]) -> bool:
        """Carry out one command from the daemon; true when it says stop."""
        kind = command[0]
        if kind == "ack":
            self.link.ack(command[1])
        elif kind == "publish":
            results = [
                (label, self.link.publish(topic, payload, qos), topic)
                for topic, payload, qos, label in command[1]
            ]
            labelled = [r for r in results if r[0] is not None]  # alerts: the daemon counts
            if labelled:
                self.pipe.send(("published", labelled))
        elif kind == "pause":
            self.outbox.pause()
        elif kind == "stop":
            self.link.stop(STOP_TIMEOUT_S)
            self.pipe.drain(STOP_TIMEOUT_S)
            return True
        return False


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
        _, options, level, fmt, interval_s = pipe.receive()
    except PipeClosed:
        return 0
    if own_process:
        setup_logging(level, fmt)
    outbox = Outbox(pipe)

    def report(event: str) -> None:
        pipe.send(("event", event))

    try:
        link = MqttLink(options, outbox.put, report, RateLimitedLog(log, interval_s))
    except (OSError, ValueError) as e:  # TLS files, chiefly: say which and why
        pipe.send(("fatal", f"{type(e).__name__}: {e}"))
        pipe.drain(STOP_TIMEOUT_S)
        return 1
    pipe.send(("started",))
    try:
        return Receiver(pipe, link, outbox).run()
    except PipeClosed:
        return 0


def main(argv: list[str]) -> int:
    """``python -m streamd.mqtt_child FD``: FD is this end of the daemon's socket pair."""
    return serve(socket.socket(fileno=int(argv[1])))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
