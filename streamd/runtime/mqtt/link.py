"""What the receive loop drives: one MQTT connection, whichever client implements it.

Two implementations (``mqtt.client``): :class:`~.link_mqtt5.Mqtt5Link`, MQTT 5 over a plain
socket with the ``mqtt5`` packet codec (Rust), the fast one; and
:class:`~.link_paho.PahoLink`, paho-mqtt for MQTT 3.1.1 (and MQTT 5 where ``mqtt5`` is not
installed: its wheels need Python 3.11). Both keep the session persistent, subscribe on
every connect, acknowledge only when told (after scoring), reconnect with :class:`Backoff`
and report the connection's events. Nothing here imports pydantic, numpy or onnxruntime:
the receiver process stays small.
"""

from __future__ import annotations

import importlib.util
import logging
import random
from collections.abc import Callable
from typing import Protocol

from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.mqtt.messages import LinkOptions

log = logging.getLogger(__name__)
MISC_INTERVAL_S = 1.0  # how often a link checks its keepalive
ONLINE, OFFLINE = b"online", b"offline"  # availability payloads, retained on status_topic

# Events the daemon turns into metrics and readiness (messages.LinkEvent); CONNECTED comes
# once the subscriptions are acknowledged, so ready means messages will arrive.
CONNECTED, DISCONNECTED, RECONNECTED, CONNECT_FAILED = (
    "connected",
    "disconnected",
    "reconnected",
    "connect_failed",
)


class Outbox(Protocol):
    """Where a link hands what it receives (:class:`streamd.runtime.mqtt.child.Outbox`)."""

    def put(
        self,
        topic: str | None,
        payload: bytes | bytearray,
        received_at_s: float,
        mid: int,
        qos: int,
    ) -> None:
        """One message; ``topic`` None when it is not UTF-8."""
        ...

    def too_large(
        self, topic: str | None, size: int, received_at_s: float, mid: int, qos: int
    ) -> None:
        """A message over ``max_payload_bytes``, not copied: the daemon counts it."""
        ...


class Link(Protocol):
    """One connection as the receive loop drives it: the loop selects on :meth:`socket`."""

    def start(self) -> None: ...

    def connect_if_due(self, now: float) -> None: ...

    def due_in(self, now: float) -> float:
        """Seconds until :meth:`connect_if_due` or :meth:`misc_if_due` has work."""
        ...

    def misc_if_due(self, now: float) -> None: ...

    def socket(self) -> object | None:
        """The socket to select on, None while not connected."""
        ...

    def want_write(self) -> bool: ...

    def pending(self) -> bool:
        """Whether bytes wait that ``select`` cannot see (decrypted TLS records)."""
        ...

    def read(self) -> None:
        """Read what has arrived and hand each message to the outbox."""
        ...

    def write(self) -> None: ...

    def ack(self, mids: list[int], qos: list[int]) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> bool: ...

    def stop(self, timeout_s: float) -> None: ...


class Backoff:
    """Reconnect delays: exponential from ``min_s`` up to ``max_s``, each drawn uniformly
    from the upper half of its bound ("equal jitter"), so a fleet that lost one broker does
    not reconnect in lockstep, and attempts that fail at once during a short outage do not
    double the bound within a second. With "full jitter" (anywhere below the bound), tiny
    draws while a broker restarts raise the bound so far that the daemon stays away long
    after the broker is back, and a broker crash meanwhile loses the session's queue
    (docs/daemon.md, "Found: the reconnect backoff").

    >>> b = Backoff(1.0, 8.0, random.Random(1))
    >>> [round(b.next(), 2) for _ in range(5)]
    [0.57, 1.85, 3.53, 5.02, 5.98]
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s, self.max_s = min_s, max_s
        self._bound: float | None = None
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt; each failure doubles its bound."""
        self._bound = self.min_s if self._bound is None else min(self._bound * 2, self.max_s)
        return self._rng.uniform(self._bound / 2, self._bound)

    def reset(self) -> None:
        """The broker accepted: the next failure starts from ``min_s`` again."""
        self._bound = None


def topic_name_ok(topic: str) -> bool:
    """Whether ``topic`` may be published to: a malformed PUBLISH makes the broker drop the
    connection, and it would be sent again on every reconnect."""
    return bool(topic) and "\0" not in topic and "+" not in topic and "#" not in topic


def mqtt5_available() -> bool:
    return importlib.util.find_spec("mqtt5") is not None


def open_link(
    options: LinkOptions,
    outbox: Outbox,
    report: Callable[[str], None],
    problems: RateLimitedLog,
) -> Link:
    """The link ``options`` ask for; ``client = "auto"`` is mqtt5 for MQTT 5 where it is
    installed, paho otherwise."""
    client = options.client
    if client == "auto":
        client = "mqtt5" if options.protocol == "5" and mqtt5_available() else "paho"
    log.info("MQTT %s with the %s client", options.protocol, client)
    if client == "mqtt5":
        from streamd.runtime.mqtt.link_mqtt5 import Mqtt5Link

        return Mqtt5Link(options, outbox, report, problems)
    from streamd.runtime.mqtt.link_paho import PahoLink

    return PahoLink(options, outbox, report, problems)
