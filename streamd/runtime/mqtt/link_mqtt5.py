"""The mqtt5 link: MQTT 5 over a socket of its own, packets read and written by ``mqtt5``.

``mqtt5`` (Rust, sans-IO) parses a PUBLISH several times faster than paho; the session logic
is here and small: CONNECT with a session expiry (the broker keeps QoS 1 and 2 messages
while streamd is away), SUBSCRIBE on every connect, acknowledgements only when the daemon
says (after scoring), QoS 2 both ways, publishes kept until acknowledged and sent again
after a reconnect, keepalive, TLS with the host name checked, reconnect with
:class:`~.link.Backoff`. A PUBLISH whose payload is over ``max_payload_bytes`` is skipped
as it streams in, never held whole (:mod:`.framing`), and reported to the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import mqtt5

from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.mqtt import framing
from streamd.runtime.mqtt.link import (
    CONNECT_FAILED,
    CONNECTED,
    DISCONNECTED,
    MISC_INTERVAL_S,
    OFFLINE,
    ONLINE,
    RECONNECTED,
    Backoff,
    Outbox,
    topic_name_ok,
)
from streamd.runtime.mqtt.messages import LinkOptions
from streamd.runtime.mqtt.reader5 import PacketReader

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0
READ_SIZE = 1 << 16
READS_PER_WAKEUP = 8  # 64 KiB reads back to back before the loop looks at its pipe again
MAX_INFLIGHT = 10_000  # publishes waiting for their acknowledgement


class Mqtt5Link:
    """One MQTT 5 connection, driven by the receive loop (see :class:`~.link.Link`)."""

    def __init__(
        self,
        options: LinkOptions,
        outbox: Outbox,
        report: Callable[[str], None],
        problems: RateLimitedLog,
    ) -> None:
        self.options, self.outbox, self.report, self.problems = options, outbox, report, problems
        self._tls = self._tls_context()
        self._sock: socket.socket | None = None
        self._out = bytearray()
        self._reader = PacketReader(outbox, options.max_payload_bytes, self._dispatch, self._lost)
        self._connected = False  # CONNACK received on this socket
        self._opened_at = 0.0
        self._connections = 0
        self._backoff = Backoff(options.reconnect_min_s, options.reconnect_max_s)
        self._next_attempt = self._next_misc = 0.0
        self._keepalive = options.keepalive_s
        self._last_sent = self._ping_sent = 0.0
        self._next_id = 0
        self._inflight: dict[int, bytes] = {}  # packet id -> what to send again (DUP)
        self._q2_in: set[int] = set()  # QoS 2 messages taken, PUBREL not yet seen

    def _tls_context(self) -> ssl.SSLContext | None:
        o = self.options
        if o.tls_ca_file is None:
            return None
        try:
            ctx = ssl.create_default_context(cafile=str(o.tls_ca_file))
            if o.tls_cert_file is not None:
                key = str(o.tls_key_file) if o.tls_key_file else None
                ctx.load_cert_chain(str(o.tls_cert_file), key)
        except OSError as e:  # ssl.SSLError too: a file that is not PEM, a key mismatch
            raise ValueError(
                f"mqtt.tls_ca_file / tls_cert_file / tls_key_file: cannot set up TLS "
                f"with {o.tls_ca_file}: {e}"
            ) from e
        return ctx

    # -- what the loop calls ------------------------------------------------------------

    def start(self) -> None:
        """Nothing to set up: :meth:`connect_if_due` connects."""

    def socket(self) -> socket.socket | None:
        return self._sock

    def want_write(self) -> bool:
        return bool(self._out)

    def pending(self) -> bool:
        return isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0

    def due_in(self, now: float) -> float:
        if self._sock is None:
            return max(0.0, self._next_attempt - now)
        return max(0.0, self._next_misc - now)

    def connect_if_due(self, now: float) -> None:
        if self._sock is not None or now < self._next_attempt:
            return
        o = self.options
        try:
            sock = socket.create_connection((o.host, o.port), timeout=CONNECT_TIMEOUT_S)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=o.host)
            sock.setblocking(False)
        except OSError as e:  # refused, unreachable, a TLS handshake or certificate failure
            self._failed(f"cannot connect to broker {o.host}:{o.port} ({e})")
            return
        self._sock, self._opened_at = sock, time.monotonic()
        self._reader.reset()
        self._out.clear()
        password = o.password.encode() if o.password is not None else None
        will = None
        if o.status_topic is not None:  # a dead streamd is visible over MQTT too
            will = mqtt5.Will(o.status_topic, payload=OFFLINE, qos=mqtt5.QoS(1), retain=True)
        connect = mqtt5.ConnectPacket(
            o.client_id,
            username=o.username,
            password=password,
            clean_start=o.clean_start,
            will=will,
            keep_alive=o.keepalive_s,
            session_expiry_interval=o.session_expiry_s,
        )
        self._send(connect.write())

    def misc_if_due(self, now: float) -> None:
        """Keepalive and timeouts: a PINGREQ when quiet, a broker that stopped answering."""
        if now < self._next_misc or self._sock is None:
            return
        self._next_misc = now + MISC_INTERVAL_S
        if not self._connected:
            if now - self._opened_at > CONNECT_TIMEOUT_S:
                self._lost("no CONNACK")
            return
        if self._ping_sent and now - self._ping_sent > self._keepalive:
            self._lost("no PINGRESP within the keepalive")
        elif not self._ping_sent and now - self._last_sent >= self._keepalive * 0.75:
            self._send(framing.PINGREQ)
            self._ping_sent = now

    def read(self) -> None:
        sock = self._sock
        for _ in range(READS_PER_WAKEUP):
            if sock is None or sock is not self._sock:
                return
            try:
                chunk = sock.recv(READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as e:
                self._lost(str(e))
                return
            if not chunk:
                self._lost("the broker closed the connection")
                return
            self._reader.feed(chunk)
            if len(chunk) < READ_SIZE:
                return

    def write(self) -> None:
        if self._sock is None or not self._out:
            return
        try:
            n = self._sock.send(self._out)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as e:
            self._lost(str(e))
            return
        del self._out[:n]
        self._last_sent = time.monotonic()

    def ack(self, mids: list[int], qos: list[int]) -> None:
        """Acknowledge packets ``mids`` (PUBACK at QoS 1, PUBREC at QoS 2)."""
        if self._sock is None:
            return  # the broker sends them again: the daemon counts the copies as duplicates
        out = self._out
        for mid, q in zip(mids, qos, strict=True):
            out += framing.puback(mid) if q == 1 else framing.pubrec(mid)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> bool:
        """Queue one message; QoS 1 and 2 ones are kept (and sent again after a reconnect)
        until the broker acknowledges them. False if it cannot be sent."""
        if not topic_name_ok(topic) or (qos and len(self._inflight) >= MAX_INFLIGHT):
            return False
        packet_id = self._packet_id() if qos else None
        try:
            data = mqtt5.PublishPacket(
                topic, payload, qos=mqtt5.QoS(qos), retain=retain, packet_id=packet_id
            ).write()
        except (ValueError, TypeError, OverflowError):  # not UTF-8 (a surrogate), too long
            return False
        if packet_id is not None:
            self._inflight[packet_id] = bytes([data[0] | framing.DUP]) + data[1:]
        if self._connected:
            self._send(data)
        return bool(packet_id is not None or self._connected)

    def stop(self, timeout_s: float) -> None:
        """Send what is queued (acknowledgements first), ``offline``, then DISCONNECT."""
        if self._sock is None:
            return
        if self.options.status_topic is not None and self._connected:
            self.publish(self.options.status_topic, OFFLINE, 1, retain=True)
        self._send(framing.DISCONNECT)
        deadline = time.monotonic() + timeout_s
        while self._sock is not None and self._out:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([], [self._sock], [], left)
            self.write()
        self._close()

    # -- inside -----------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self._out += data

    def _packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._inflight:
                return self._next_id
        raise RuntimeError("no free packet id")  # MAX_INFLIGHT keeps this from happening

    def _dispatch(self, packet: Any, now: float) -> None:
        kind = type(packet)
        if kind is mqtt5.PublishPacket:
            qos, pid = int(packet.qos), packet.packet_id or 0
            if qos == 2:
                if pid in self._q2_in:
                    return  # sent again before our PUBREC: taken already
                self._q2_in.add(pid)
            payload = packet.payload
            if len(payload) > self.options.max_payload_bytes:
                self.outbox.too_large(packet.topic, len(payload), now, pid, qos)
            else:
                self.outbox.put(packet.topic, payload, now, pid, qos)
        elif kind is mqtt5.PubAckPacket or kind is mqtt5.PubCompPacket:
            self._inflight.pop(packet.packet_id, None)
        elif kind is mqtt5.PubRecPacket:
            rel = framing.pubrel(packet.packet_id)
            self._inflight[packet.packet_id] = rel
            self._send(rel)
        elif kind is mqtt5.PubRelPacket:
            self._q2_in.discard(packet.packet_id)
            self._send(framing.pubcomp(packet.packet_id))
        elif kind is mqtt5.PingRespPacket:
            self._ping_sent = 0.0
        elif kind is mqtt5.ConnAckPacket:
            self._connack(packet)
        elif kind is mqtt5.SubAckPacket:
            refused = [c for c in packet.reason_codes if int(c) >= 0x80]
            if refused:
                log.error("the broker refused subscriptions: %s", [c.name for c in refused])
            self.report(CONNECTED)  # subscribed: ready means messages will come
        elif kind is mqtt5.DisconnectPacket:
            self._lost(f"the broker disconnected: {packet.reason_code.name}")

    def _connack(self, packet: Any) -> None:
        o = self.options
        if packet.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            self.report(CONNECT_FAILED)
            log.error(
                "broker %s:%d refused the connection: %s", o.host, o.port, packet.reason_code.name
            )
            self._close()
            self._next_attempt = time.monotonic() + self._backoff.next()
            return
        self._connected = True
        self._connections += 1
        self._backoff.reset()
        self._keepalive = packet.server_keep_alive or o.keepalive_s
        if not packet.session_present:
            self._q2_in.clear()
        if self._connections > 1:
            self.report(RECONNECTED)
        filters = [mqtt5.TopicFilter(t, max_qos=mqtt5.QoS(o.qos)) for t in o.topics]
        self._send(mqtt5.SubscribePacket(self._packet_id(), filters).write())
        for data in self._inflight.values():  # unacknowledged publishes: again, in order
            self._send(data)
        if o.status_topic is not None:
            self.publish(o.status_topic, ONLINE, 1, retain=True)
        log.info(
            "connected to %s:%d (session present: %s), subscribed to %s",
            o.host,
            o.port,
            packet.session_present,
            ", ".join(o.topics),
        )

    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock, self._connected, self._ping_sent = None, False, 0.0

    def _failed(self, why: str) -> None:
        self.report(CONNECT_FAILED)
        self.problems.warning("connect", "%s; retrying with backoff", why)
        self._next_attempt = time.monotonic() + self._backoff.next()

    def _lost(self, why: str) -> None:
        was = self._connected
        self._close()
        self.report(DISCONNECTED)
        if was:
            log.warning("disconnected from broker: %s", why)
            self._next_attempt = time.monotonic() + self._backoff.next()
        else:  # closed before CONNACK: a TLS or protocol refusal, not a lost connection
            o = self.options
            self._failed(f"broker {o.host}:{o.port} closed the connection before CONNACK ({why})")
