"""The MQTT side: one paho-mqtt 2.x client that subscribes, forwards and publishes.

It runs in the receiver process (:mod:`streamd.runtime.mqtt.child`), so paho never shares a GIL
with the inference worker. No paho thread runs: the receiver's one ``select`` loop drives
the client through paho's external-loop calls (``loop_read``, ``loop_write``,
``loop_misc``, ``reconnect``), so acknowledging a message costs no thread wake-up. The
client only stamps and forwards each message; the session is persistent (clean session or
clean start off) so the broker keeps QoS 1 messages while streamd is away; every
(re)connect subscribes again; lost connections are retried with backoff. Nothing here
imports pydantic, numpy or onnxruntime: the receiver process stays small.
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
from streamd.runtime.mqtt.messages import LinkOptions

log = logging.getLogger(__name__)
MISC_INTERVAL_S = 1.0  # how often paho checks the keepalive

# Events the daemon turns into metrics and readiness (messages.LinkEvent).
CONNECTED, DISCONNECTED, RECONNECTED, CONNECT_FAILED = (
    "connected",
    "disconnected",
    "reconnected",
    "connect_failed",
)
# forward(topic or None when not UTF-8, payload, received_at_s, packet id, qos)
Forward = Callable[[str | None, bytes | bytearray, float, int, int], None]


class MqttLink:
    """Connects, subscribes on every connect, forwards messages and reports events."""

    def __init__(
        self,
        options: LinkOptions,
        forward: Forward,
        report: Callable[[str], None],
        problems: RateLimitedLog,
    ) -> None:
        self.options = options
        self.forward = forward
        self.report = report
        self.problems = problems
        self._connected = False
        self._connections = 0
        self._next_attempt = 0.0  # monotonic time of the next connection attempt
        self._delay: float | None = None  # the backoff; None until an attempt fails
        self._next_misc = 0.0
        v5 = options.protocol == "5"
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else options.clean_start,
            # streamd acknowledges itself: after scoring (ack_after_scoring), or on receipt;
            # either way never a message that arrives while stopping (child.Outbox)
            manual_ack=True,
        )
        if options.username is not None:
            self.client.username_pw_set(options.username, options.password)
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
        """Send what is queued (acknowledgements first), then DISCONNECT."""
        client = self.client
        client.disconnect()
        deadline = time.monotonic() + timeout_s
        while (sock := client.socket()) is not None and client.want_write():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([], [sock], [], left)
            client.loop_write()

    def _back_off(self, now: float) -> None:
        """Wait before the next attempt, doubling from ``reconnect_min_s`` up to
        ``reconnect_max_s`` (reset once the broker accepts)."""
        o = self.options
        self._delay = o.reconnect_min_s if self._delay is None else self._delay * 2
        self._delay = min(self._delay, o.reconnect_max_s)
        self._next_attempt = now + self._delay

    def publish(self, topic: str, payload: bytes, qos: int) -> bool:
        """Queue one message; False if paho refuses it, or its topic is not a valid topic name
        (a malformed PUBLISH would make the broker drop the connection, and paho would send
        it again on every reconnect)."""
        if not topic or "\0" in topic or "+" in topic or "#" in topic:
            return False
        try:
            info = self.client.publish(topic, payload, qos=qos)
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
        self._delay = None
        if self._connections > 1:
            self.report(RECONNECTED)
        if o.protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=o.qos)) for t in o.topics])
        else:
            client.subscribe([(t, o.qos) for t in o.topics])
        self._connected = True
        self.report(CONNECTED)
        log.info(
            "connected to %s:%d (session present: %s), subscribed to %s",
            o.host,
            o.port,
            getattr(flags, "session_present", "?"),
            ", ".join(o.topics),
        )

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
        self.forward(topic, msg.payload, now, msg.mid, msg.qos)
