"""The MQTT side: one paho-mqtt 2.x client that subscribes, parses and publishes.

The network thread only parses and hands samples over (never waits on inference); the
session is persistent (clean session or clean start off) so the broker keeps QoS 1 messages
while streamd is away; every (re)connect subscribes again; paho reconnects with backoff.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from streamd.config import MqttSettings
from streamd.errors import PayloadError
from streamd.logs import RateLimitedLog
from streamd.metrics import Metrics
from streamd.payload import PayloadParser, Sample

log = logging.getLogger(__name__)


class MqttLink:
    """Connects, subscribes on every connect, and feeds ``on_sample``."""

    def __init__(
        self,
        settings: MqttSettings,
        parser: PayloadParser,
        on_sample: Callable[[Sample], bool],
        metrics: Metrics,
        problems: RateLimitedLog,
    ) -> None:
        self.settings = settings
        self.parser = parser
        self.on_sample = on_sample
        self.metrics = metrics
        self.problems = problems
        self.connected = threading.Event()
        self._paused = False
        self._connections = 0
        v5 = settings.protocol == "5"
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else settings.clean_start,
            # streamd acknowledges itself: after scoring (ack_after_scoring), or on receipt;
            # either way never a message that arrives while stopping (see ``pause``)
            manual_ack=True,
            reconnect_on_failure=True,
        )
        self.client.reconnect_delay_set(
            min_delay=max(1, round(settings.reconnect_min_s)),
            max_delay=max(1, round(settings.reconnect_max_s)),
        )
        password = settings.read_password()
        if settings.username is not None:
            self.client.username_pw_set(settings.username, password)
        if settings.tls_ca_file is not None:
            self.client.tls_set(
                ca_certs=str(settings.tls_ca_file),
                certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
                keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        # paho's own errors (a TLS alert from the broker, say) name the cause of a failed
        # connection; its per-packet debug lines would flood the log, so WARNING and up only.
        paho_log = logging.getLogger("streamd.paho")
        paho_log.setLevel(logging.WARNING)
        self.client.enable_logger(paho_log)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        props = None
        kwargs: dict[str, Any] = {}
        if s.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho lacks hints here
            props.SessionExpiryInterval = s.session_expiry_s
            kwargs = {"clean_start": s.clean_start, "properties": props}
        self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s, **kwargs)
        self.client.loop_start()

    def pause(self) -> None:
        """Take no new messages before draining, and leave them to the broker's session.

        Messages that arrive from now on are neither handed over nor acknowledged, so the
        broker delivers them again to the next session (QoS 1 and 2; QoS 0 ones are lost, as
        on any disconnect). The subscriptions stay in the session: unsubscribing would make
        the broker drop whatever is published while streamd restarts.
        """
        self._paused = True

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.metrics.mqtt_connected.set(0)

    def publish(self, topic: str, payload: bytes, qos: int) -> bool:
        info = self.client.publish(topic, payload, qos=qos)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.metrics.mqtt_connect_failures.inc()
            log.error(
                "broker %s:%d refused the connection: %s",
                self.settings.host,
                self.settings.port,
                reason,
            )
            return
        self._connections += 1
        if self._connections > 1:
            self.metrics.mqtt_reconnects.inc()
        qos = self.settings.qos
        if self.settings.protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=qos)) for t in self.settings.topics])
        else:
            client.subscribe([(t, int(qos)) for t in self.settings.topics])
        self.connected.set()
        self.metrics.mqtt_connected.set(1)
        log.info(
            "connected to %s:%d (session present: %s), subscribed to %s",
            self.settings.host,
            self.settings.port,
            getattr(flags, "session_present", "?"),
            ", ".join(self.settings.topics),
        )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.metrics.mqtt_connect_failures.inc()
        # paho calls this from inside its ``except OSError``: the exception says why
        # (refused, unreachable, a TLS certificate problem).
        error = sys.exc_info()[1]
        self.problems.warning(
            "connect",
            "cannot connect to broker %s:%d (%s); retrying with backoff",
            self.settings.host,
            self.settings.port,
            error if error is not None else "connection failed",
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        self.metrics.mqtt_connected.set(0)
        if was:
            log.warning("disconnected from broker: %s", reason)
        else:  # closed before CONNACK: a TLS or protocol refusal, not a lost connection
            self.metrics.mqtt_connect_failures.inc()
            self.problems.warning(
                "connect",
                "broker %s:%d closed the connection before accepting it (%s); "
                "retrying with backoff",
                self.settings.host,
                self.settings.port,
                reason,
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._paused:
            return
        now = time.time()
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            self.metrics.messages.labels("bad_stream_id").inc()
            self._ack_now(msg)
            return
        ack_later = self.settings.ack_after_scoring and msg.qos
        try:
            sample = self.parser.parse(
                topic, msg.payload, now, msg.mid if ack_later else 0, msg.qos if ack_later else 0
            )
        except PayloadError as e:
            self.metrics.messages.labels(e.reason).inc()
            self.problems.warning(e.reason, "rejected message on %r: %s", topic[:200], e)
            self._ack_now(msg)
            return
        if not self.on_sample(sample):
            self.metrics.messages.labels("queue_full").inc()
            self.problems.warning("queue_full", "queue full, dropped a message on %r", topic[:200])
            self._ack_now(msg)  # counted and dropped; holding it would stall the session
        elif not ack_later and msg.qos:
            client.ack(msg.mid, msg.qos)  # ack_after_scoring off: acknowledged on receipt

    def _ack_now(self, msg: mqtt.MQTTMessage) -> None:
        if msg.qos:
            self.client.ack(msg.mid, msg.qos)

    def ack(self, samples: list[Sample]) -> None:
        """Acknowledge scored samples (worker thread): the broker may now forget them."""
        ack = self.client.ack
        for s in samples:
            if s.mid:
                ack(s.mid, s.qos)
