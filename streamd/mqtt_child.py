"""The receiver process: paho's client, batching what it receives to the daemon over a pipe.

On a 2-core box one Python process cannot both run paho's receive path and score: the two
threads share a GIL, and paho alone keeps a core busy at QoS 1 (docs/performance.md). So
``streamd run`` starts this module as a child (``python -m streamd.mqtt_child FD``) that
only receives, stamps and forwards messages in batches, and carries out what the daemon
sends back: acknowledgements, publishes, pause and stop. Parsing and everything after it
happen in the daemon (:mod:`streamd.mqtt_proxy`).

The child ignores SIGTERM, SIGINT and SIGHUP: systemd and a terminal signal the whole
group, and the daemon decides when the child stops (after its last acknowledgements). It
exits by itself when the daemon's end of the pipe closes, so it never outlives the daemon.

Messages on the pipe (pickled tuples):

* child to daemon: ``("msgs", [Raw, ...])``, ``("event", name)``, ``("paused",)``,
  ``("published", [(label, ok, topic), ...])``, ``("started",)``, ``("fatal", text)``;
* daemon to child: ``("init", LinkOptions, level, format, interval)``, ``("ack", [(mid,
  qos), ...])``, ``("publish", [(topic, payload, qos, label), ...])``, ``("pause",)``,
  ``("stop",)``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from streamd.logs import RateLimitedLog, setup_logging
from streamd.mqtt_io import MqttLink, Raw

log = logging.getLogger(__name__)
FLUSH_INTERVAL_S = 0.002  # the most a message waits in the child: bounds added latency
FLUSH_SIZE = 512  # or a batch goes as soon as it has this many


class Outbox:
    """Received messages, sent to the daemon in batches, in arrival order.

    The network thread appends; a batch goes when it reaches :data:`FLUSH_SIZE` (sent by
    the network thread itself, which then waits if the daemon is behind: back-pressure
    through the socket to the broker) or after :data:`FLUSH_INTERVAL_S` (sent by the
    flusher thread).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pending: list[Raw] = []
        self._closed = False
        self._lock = threading.Lock()  # guards _pending and _closed
        self._send_lock = threading.Lock()  # one sender at a time, batches in order

    def put(self, raw: Raw) -> None:
        with self._lock:
            if self._closed:
                return  # paused: neither forwarded nor acknowledged; the broker keeps it
            self._pending.append(raw)
            full = len(self._pending) >= FLUSH_SIZE
        if full:
            self.flush()

    def flush(self) -> None:
        with self._send_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                self._write(("msgs", batch))

    def pause(self) -> None:
        """Forward nothing more; send what is pending, then the ``paused`` marker."""
        with self._send_lock:
            with self._lock:
                self._closed = True
                batch, self._pending = self._pending, []
            if batch:
                self._write(("msgs", batch))
            self._write(("paused",))

    def send(self, message: tuple[Any, ...]) -> None:
        """Send anything else, from any thread."""
        with self._send_lock:
            self._write(message)

    def _write(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):  # the daemon is gone: the command loop ends us
            self.conn.send(message)

    def run_flusher(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            self.flush()


def serve(conn: Connection) -> int:
    """The child's main loop: set up from the ``init`` message, then obey commands."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _, options, level, fmt, interval_s = conn.recv()
    setup_logging(level, fmt)
    outbox = Outbox(conn)

    def report(event: str) -> None:
        outbox.send(("event", event))

    try:
        link = MqttLink(options, outbox.put, report, RateLimitedLog(log, interval_s))
    except (OSError, ValueError) as e:  # TLS files, chiefly: say which and why
        outbox.send(("fatal", f"{type(e).__name__}: {e}"))
        return 1
    threading.Thread(target=outbox.run_flusher, name="flusher", daemon=True).start()
    link.start()
    outbox.send(("started",))
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):  # the daemon is gone: nothing to acknowledge for
            link.client.loop_stop()
            return 0
        kind = command[0]
        if kind == "ack":
            link.ack(command[1])
        elif kind == "publish":
            results = [
                (label, link.publish(topic, payload, qos), topic)
                for topic, payload, qos, label in command[1]
            ]
            labelled = [r for r in results if r[0] is not None]  # alerts: the daemon counts
            if labelled:
                outbox.send(("published", labelled))
        elif kind == "pause":
            outbox.pause()
        elif kind == "stop":
            link.stop()
            return 0


def main(argv: list[str]) -> int:
    """``python -m streamd.mqtt_child FD``: FD is this end of the daemon's socket pair."""
    return serve(Connection(int(argv[1])))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
