"""The paho-mqtt link: paho 2.x driven by the receive loop's ``select``, no paho thread.

The loop calls paho's external-loop functions (``loop_read``, ``loop_write``,
``loop_misc``, ``reconnect``), so acknowledging a message costs no thread wake-up. It serves
MQTT 3.1.1 (brokers such as NATS speak nothing else) and MQTT 5 where the faster
:mod:`.link_mqtt5` is not installed. paho reads a whole packet before it hands it over, so
a message over ``max_payload_bytes`` is only kept from being copied further (the broker's
own limit, e.g. Mosquitto's ``max_packet_size``, is what keeps it out of memory).
"""

from __future__ import annotations

import logging
import select
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from streamd.runtime.logs import RateLimitedLog
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

log = logging.getLogger(__name__)
READS_PER_WAKEUP = 64  # packets read back to back before the loop looks at its pipe again


class PahoLink:
    """Connects, subscribes on every connect, forwards messages and reports events."""

    def __init__(
        self,
        options: LinkOptions,
        outbox: Outbox,
        report: Callable[[str], None],
        problems: RateLimitedLog,
    ) -> None:
        self.options = options
        self.outbox = outbox
        self.report = report
        self.problems = problems
        self._connected = False
        self._connections = 0
        self._next_attempt = 0.0  # monotonic time of the next connection attempt
        self._backoff = Backoff(options.reconnect_min_s, options.reconnect_max_s)
        self._next_misc = 0.0
        self._received = 0  # messages handed over: tells a read burst it found one
        v5 = options.protocol == "5"
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else options.clean_start,
            # streamd acknowledges itself: after scoring (ack_after_scoring), or on receipt;
            # either way never a message that arrives while stopping (the outbox)
            manual_ack=True,
        )
        if options.username is not None:
            self.client.username_pw_set(options.username, options.password)
        if options.status_topic is not None:  # a dead streamd is visible over MQTT too
            self.client.will_set(options.status_topic, OFFLINE, qos=1, retain=True)
        if options.tls_ca_file is not None:
            try:
                self.client.tls_set(
                    ca_certs=str(options.tls_ca_file),
                    certfile=str(options.tls_cert_file) if options.tls_cert_file else None,
                    keyfile=str(options.tls_key_file) if options.tls_key_file else None,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except OSError as e:  # ssl.SSLError too: a file that is not PEM, a key mismatch
                raise ValueError(
                    f"mqtt.tls_ca_file / tls_cert_file / tls_key_file: cannot set up TLS "
                    f"with {options.tls_ca_file}: {e}"
                ) from e
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        # paho's own errors (a TLS alert from the broker, say) name the cause of a failed
        # connection; its per-packet debug lines would flood the log, so WARNING and up only.
        paho_log = logging.getLogger("streamd.paho")
        paho_log.setLevel(logging.WARNING)
        self.client.enable_logger(paho_log)

    # -- the receiver's loop drives the client (paho's "external event loop") ----------

    def start(self) -> None:
        """Set the broker's address; :meth:`connect_if_due` connects."""
        o = self.options
        kwargs: dict[str, Any] = {}
        if o.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho lacks hints here
            props.SessionExpiryInterval = o.session_expiry_s
            kwargs = {"clean_start": o.clean_start, "properties": props}
        self.client.connect_async(o.host, o.port, keepalive=o.keepalive_s, **kwargs)
        # Packets paho queues (acknowledgements, publishes) wait for the loop's select to
        # find the socket writable, instead of one send each from inside ack().
        self.client.on_socket_register_write = lambda client, userdata, sock: None

    def connect_if_due(self, now: float) -> None:
        """(Re)connect when the backoff allows: blocking, as paho's own loop does."""
        if self.client.socket() is not None or now < self._next_attempt:
            return
        try:
            self.client.reconnect()
        except OSError:  # refused, unreachable, a TLS handshake failure
            self._on_connect_fail(self.client, None)
            self._back_off(time.monotonic())

    def socket(self) -> Any:
        return self.client.socket()

    def want_write(self) -> bool:
        return bool(self.client.want_write())

    def pending(self) -> bool:
        sock = self.client.socket()
        return sock is not None and getattr(sock, "pending", lambda: 0)() > 0

    def read(self) -> None:
        """Read packets while they come, up to :data:`READS_PER_WAKEUP`: one select per
        burst rather than per packet. A read that hands over nothing ends the burst."""
        client = self.client
        for _ in range(READS_PER_WAKEUP):
            before = self._received
            client.loop_read()
            if self._received == before or client.socket() is None:
                return

    def write(self) -> None:
        self.client.loop_write()

    def due_in(self, now: float) -> float:
        """Seconds until :meth:`connect_if_due` or :meth:`misc_if_due` has work."""
        if self.client.socket() is None:
            return max(0.0, self._next_attempt - now)
        return max(0.0, self._next_misc - now)

    def misc_if_due(self, now: float) -> None:
        """Keepalive: paho sends pings and notices a broker that stopped answering."""
        if now >= self._next_misc:
            self._next_misc = now + MISC_INTERVAL_S
            self.client.loop_misc()

    def stop(self, timeout_s: float) -> None:
        """Send what is queued (acknowledgements first), ``offline``, then DISCONNECT."""
        client = self.client
        if self.options.status_topic is not None and self._connected:
            client.publish(self.options.status_topic, OFFLINE, qos=1, retain=True)
        client.disconnect()
        deadline = time.monotonic() + timeout_s
        while (sock := client.socket()) is not None and client.want_write():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([], [sock], [], left)
            client.loop_write()

    def _back_off(self, now: float) -> None:
        """Wait before the next attempt (:class:`Backoff`, reset once the broker accepts)."""
        self._next_attempt = now + self._backoff.next()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> bool:
        """Queue one message; False if paho refuses it or its topic is no topic name."""
        if not topic_name_ok(topic):
            return False
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError:  # not encodable as UTF-8 (a lone surrogate), or too long
            return False
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def ack(self, mids: list[int], qos: list[int]) -> None:
        """Acknowledge packets ``mids`` (at ``qos``): the broker may now forget them."""
        ack = self.client.ack
        for mid, q in zip(mids, qos, strict=True):
            ack(mid, q)

    # -- paho callbacks (from the receiver's loop) -------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        o = self.options
        if reason.is_failure:
            self.report(CONNECT_FAILED)
            log.error("broker %s:%d refused the connection: %s", o.host, o.port, reason)
            return
        self._connections += 1
        self._backoff.reset()
        if self._connections > 1:
            self.report(RECONNECTED)
        if o.protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=o.qos)) for t in o.topics])
        else:
            client.subscribe([(t, o.qos) for t in o.topics])
        self._connected = True
        if o.status_topic is not None:
            client.publish(o.status_topic, ONLINE, qos=1, retain=True)
        log.info(
            "connected to %s:%d (session present: %s), subscribed to %s",
            o.host,
            o.port,
            getattr(flags, "session_present", "?"),
            ", ".join(o.topics),
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        """Subscribed (the only SUBSCRIBE is at connect): ready means messages will come."""
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.error("the broker refused subscriptions: %s", refused)
        self.report(CONNECTED)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.report(CONNECT_FAILED)
        # paho calls this from inside its ``except OSError``: the exception says why
        # (refused, unreachable, a TLS certificate problem).
        error = sys.exc_info()[1]
        self.problems.warning(
            "connect",
            "cannot connect to broker %s:%d (%s); retrying with backoff",
            self.options.host,
            self.options.port,
            error if error is not None else "connection failed",
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was, self._connected = self._connected, False
        self._back_off(time.monotonic())
        self.report(DISCONNECTED)
        if was:
            log.warning("disconnected from broker: %s", reason)
        else:  # closed before CONNACK: a TLS or protocol refusal, not a lost connection
            self.report(CONNECT_FAILED)
            self.problems.warning(
                "connect",
                "broker %s:%d closed the connection before accepting it (%s); "
                "retrying with backoff",
                self.options.host,
                self.options.port,
                reason,
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            topic: str | None = msg.topic
        except UnicodeDecodeError:
            topic = None  # the parent counts it (bad_stream_id) and acknowledges it
        self._received += 1
        size = len(msg.payload)
        if size > self.options.max_payload_bytes:
            self.outbox.too_large(topic, size, now, msg.mid, msg.qos)
        else:
            self.outbox.put(topic, msg.payload, now, msg.mid, msg.qos)
