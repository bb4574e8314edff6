"""The daemon's side of the MQTT receiver (:mod:`streamd.runtime.mqtt.child`).

It starts the receiver (a child process by default, or a thread:
:mod:`streamd.runtime.mqtt.receivers`), turns the raw messages it forwards into
:class:`Sample` s (or counted rejections) on its ``mqtt-reader`` thread, and sends back
acknowledgements and publishes. In a process, the MQTT client's receive path has a core.

If the receiver ends while the daemon runs, the daemon stops with exit code 1 (``on_lost``),
so that systemd restarts it: the broker's session keeps whatever was not acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import fields, replace
from multiprocessing.connection import Connection
from typing import Protocol

from streamd.config import MqttSettings, Settings
from streamd.core.payload import PayloadParser, Sample
from streamd.errors import ConfigError, PayloadError, StreamdError
from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.metrics import Metrics
from streamd.runtime.mqtt.link import (
    CONNECT_FAILED,
    CONNECTED,
    DISCONNECTED,
    RECONNECTED,
    mqtt5_available,
)
from streamd.runtime.mqtt.messages import (
    LINK_SHIFT,
    Ack,
    Fatal,
    Init,
    LinkEvent,
    LinkOptions,
    Outgoing,
    Pause,
    Paused,
    Publish,
    Published,
    PublishResult,
    Received,
    Started,
    Stop,
    ToDaemon,
    TooLarge,
    ToReceiver,
    unknown,
)
from streamd.runtime.mqtt.receivers import Receiver, start_receiver

log = logging.getLogger(__name__)
START_TIMEOUT_S = 30.0
PAUSE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 10.0


def link_options(settings: MqttSettings) -> LinkOptions:
    """One link's options from ``[mqtt]``. Reads the password file and checks the TLS
    files now, so that a bad one fails the start with its field's name (the receiver
    starts later)."""
    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(settings, name)
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"mqtt.{name}", f"cannot read {path}")
    if settings.client == "mqtt5" and not mqtt5_available():
        raise ConfigError(
            "mqtt.client", "the mqtt5 package is not installed (its wheels need Python 3.11+)"
        )
    names = {f.name for f in fields(LinkOptions)} - {"password", "status_topic"}
    return LinkOptions(
        password=settings.read_password(),
        status_topic=settings.status_topic if settings.availability else None,
        **settings.model_dump(include=names),
    )


def links_options(settings: Settings) -> list[LinkOptions]:
    """Every link of the receiver: one, or with ``[cluster]`` one per owned partition, each
    its partition's session subscribing to ``mqtt.topics`` under the partition's prefix.
    The first link says the instance's availability and publishes its alerts."""
    one = link_options(settings.mqtt)
    cluster = settings.cluster
    owned = cluster.owned_partitions()
    if not owned:
        return [one]
    return [
        replace(
            one,
            client_id=cluster.client_id(k),
            topics=[cluster.prefix(k) + t for t in one.topics],
            topic_prefix=cluster.prefix(k),
            status_topic=one.status_topic if i == 0 else None,
        )
        for i, k in enumerate(owned)
    ]


class ReceiverError(StreamdError):
    """The MQTT receiver could not start (a TLS file it cannot use, say)."""


class SampleSink(Protocol):
    """Where parsed samples go (:class:`streamd.runtime.batcher.Batcher`)."""

    def put(self, sample: Sample) -> bool:
        """Take ``sample``, waiting while full; False once closed."""
        ...

    def reconnected(self) -> None:
        """The receiver has connected to the broker again (not the first time)."""
        ...

    def close(self) -> None:
        """Take nothing more."""
        ...


class MqttProxy:
    """Feeds ``on_sample`` from the receiver; acknowledges and publishes through it."""

    def __init__(
        self,
        settings: Settings,
        parser: PayloadParser,
        sink: SampleSink,
        metrics: Metrics,
        problems: RateLimitedLog,
        on_lost: Callable[[], None],
    ) -> None:
        self.options = links_options(settings)
        # partitioned: the partition each stream came from (by the link it came over), for
        # the partition snapshots; written here, read by the worker
        owned = settings.cluster.owned_partitions()
        self.partition_of_link = owned
        self.partition_of: dict[str, int] = {}
        self._up: set[int] = set()  # links connected
        self.receiver_kind = settings.mqtt.receiver
        self.ack_after_scoring = settings.mqtt.ack_after_scoring
        self.logging = settings.logging
        self.parser = parser
        self.sink = sink
        self.left_to_broker = 0  # taken from the receiver after stopping: not acknowledged
        self.metrics = metrics
        self.problems = problems
        self.on_lost = on_lost
        self.connected = threading.Event()
        self.lost = False  # the receiver ended while the daemon ran
        self._started = threading.Event()
        self._paused = threading.Event()
        self._fatal: str | None = None
        self._stopping = False
        self._send_lock = threading.Lock()
        self._conn: Connection | None = None
        self._receiver: Receiver | None = None
        self._reader: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the receiver and wait until its client is set up (connecting is async)."""
        ours, theirs = socket.socketpair()
        self._receiver = start_receiver(self.receiver_kind, theirs)
        self._conn = Connection(ours.detach())
        lg = self.logging
        self._send(Init(self.options, lg.level, lg.format, lg.per_message_interval_s))
        self._reader = threading.Thread(target=self._read, name="mqtt-reader", daemon=True)
        self._reader.start()
        if not self._started.wait(START_TIMEOUT_S):
            self._fatal = f"no answer within {START_TIMEOUT_S:.0f} s"
        if self._fatal is not None:
            self._stopping = True
            self._receiver.kill()
            raise ReceiverError(
                f"the MQTT receiver {self.receiver_kind} did not start: {self._fatal}"
            )

    def pause(self, timeout_s: float) -> None:
        """Take no new messages before draining, and leave them to the broker's session.

        When this returns, every message the receiver took is in the sink (or counted);
        later ones are neither taken nor acknowledged, so the broker delivers them again to
        the next session (QoS 1 and 2; QoS 0 ones are lost, as on any disconnect). The reader
        may wait on a full sink meanwhile, as the worker drains it; after ``timeout_s`` the
        sink is closed and what still comes is left to the broker too. The subscriptions stay
        in the session: unsubscribing would make the broker drop whatever is published while
        streamd restarts.
        """
        self._send(Pause())
        if not self._paused.wait(timeout_s) and not self.lost:
            log.warning("the MQTT receiver did not confirm the pause within %.0f s", timeout_s)
        self.sink.close()

    def stop(self) -> None:
        """Disconnect (after the acknowledgements already sent) and end the receiver."""
        self._stopping = True
        self._send(Stop())
        if self._receiver is not None and not self._receiver.wait(STOP_TIMEOUT_S):
            log.warning("the MQTT receiver did not stop within %.0f s; killed", STOP_TIMEOUT_S)
            self._receiver.kill()
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_S)
        self.connected.clear()
        self.metrics.mqtt_connected.set(0)
        if self.left_to_broker:
            log.info(
                "left %d messages that came while stopping to the broker's session "
                "(not acknowledged: QoS 1 and 2 are delivered again)",
                self.left_to_broker,
            )

    # -- from the worker ---------------------------------------------------------------

    def ack(self, samples: list[Sample]) -> None:
        """Acknowledge scored samples: the broker may now forget them."""
        held = [s for s in samples if s.mid]
        if held:
            self._send(Ack([s.mid for s in held], [s.qos for s in held]))

    def publish(self, items: list[Outgoing]) -> None:
        """Publish ``items``. Labelled ones are alerts: their outcome is counted
        (``streamd_alerts_published`` or ``..._publish_failures``)."""
        if items:
            self._send(Publish(items))

    def _send(self, message: ToReceiver) -> None:
        if self._conn is None:
            return
        with self._send_lock, contextlib.suppress(OSError):  # receiver gone: the reader says so
            self._conn.send(message)

    # -- the reader thread ---------------------------------------------------------------

    def _read(self) -> None:
        assert self._conn is not None
        recv = self._conn.recv
        while True:
            try:
                message: ToDaemon = recv()
            except (EOFError, OSError):
                break
            match message:
                case Received():
                    self._take(message)
                case TooLarge():
                    self._too_large(message)
                case LinkEvent(name, link):
                    self._event(name, link)
                case Published(results):
                    self._published(results)
                case Paused():
                    self._paused.set()
                case Started():
                    self._started.set()
                case Fatal(reason):
                    self._fatal = reason
                    self._started.set()
                case _:
                    unknown(message)
        self._receiver_gone()

    def _receiver_gone(self) -> None:
        self.connected.clear()
        self.metrics.mqtt_connected.set(0)
        outcome = self._receiver.outcome() if self._receiver is not None else "unknown"
        if not self._started.is_set():
            self._fatal = f"it ended with {outcome}"
            self._started.set()
        elif not self._stopping:
            self.lost = True
            log.error(
                "the MQTT receiver %s exited (%s); stopping streamd", self.receiver_kind, outcome
            )
            self.on_lost()

    def _take(self, batch: Received) -> None:
        """Parse and queue; acknowledge at once what will not be scored (and everything,
        when acknowledging on receipt)."""
        m, parse, put, problems = self.metrics, self.parser.parse, self.sink.put, self.problems
        later = self.ack_after_scoring
        partitions, partition_of = self.partition_of_link, self.partition_of
        now_acks: list[tuple[int, int]] = []
        for topic, payload, received, mid, qos in zip(
            batch.topics, batch.payloads, batch.received_at_s, batch.mids, batch.qos, strict=True
        ):
            if topic is None:
                m.messages.labels("bad_stream_id").inc()
                if qos:
                    now_acks.append((mid, qos))
                continue
            hold = later and qos
            try:
                sample = parse(topic, payload, received, mid if hold else 0, qos)
            except PayloadError as e:
                m.messages.labels(e.reason).inc()
                problems.warning(e.reason, "rejected message on %r: %s", topic[:200], e)
                if qos:
                    now_acks.append((mid, qos))
                continue
            if partitions:
                partition_of[sample.stream] = partitions[mid >> LINK_SHIFT]
            if not put(sample):  # waits while the queue is full; False only when stopping
                self.left_to_broker += 1  # neither scored nor acknowledged: redelivered
            elif qos and not hold:
                now_acks.append((mid, qos))  # ack_after_scoring off: acknowledged on receipt
        if now_acks:
            self._send(Ack([mid for mid, _ in now_acks], [q for _, q in now_acks]))

    def _too_large(self, m: TooLarge) -> None:
        """Counted and acknowledged, never parsed: the receiver did not even copy it."""
        self.metrics.messages.labels("too_large").inc()
        topic = (m.topic or "?")[:200]
        self.problems.warning(
            "too_large", "rejected message on %r: too_large: %d bytes", topic, m.size
        )
        if m.qos:
            self._send(Ack([m.mid], [m.qos]))

    def _event(self, name: str, link: int) -> None:
        """Connected means every link is (each holds partitions nobody else reads)."""
        m = self.metrics
        if name == CONNECTED:
            self._up.add(link)
            if len(self._up) == len(self.options):
                self.connected.set()
                m.mqtt_connected.set(1)
        elif name == DISCONNECTED:
            self._up.discard(link)
            self.connected.clear()
            m.mqtt_connected.set(0)
        elif name == RECONNECTED:
            m.mqtt_reconnects.inc()
            self.sink.reconnected()
        elif name == CONNECT_FAILED:
            m.mqtt_connect_failures.inc()

    def _published(self, results: list[PublishResult]) -> None:
        for r in results:
            if r.ok:
                self.metrics.alerts_published.labels(r.label).inc()
            else:
                self.metrics.alert_publish_failures.inc()
                self.problems.warning("alert_publish", "could not publish alert on %s", r.topic)
