"""What the receiver and the daemon say to each other over their socket pair: typed values.

Each message is a small frozen dataclass, pickled whole. The receiver forwards received
messages as :class:`Received`, columns of one batch (pickling five lists costs a fifth of
what a list of per-message tuples costs, and the receiver is the busy process). Both ends
dispatch with ``match`` and fail on a message they do not know (:func:`unknown`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn


@dataclass(frozen=True)
class LinkOptions:
    """What the MQTT client needs from ``[mqtt]``, as plain values (the password resolved),
    so the receiver process need not import pydantic."""

    host: str
    port: int
    protocol: str
    client: str  # "auto", "mqtt5" or "paho" (streamd.runtime.mqtt.link.open_link)
    client_id: str
    clean_start: bool
    session_expiry_s: int
    topics: list[str]
    qos: int
    keepalive_s: int
    reconnect_min_s: float
    reconnect_max_s: float
    username: str | None
    password: str | None = field(repr=False)
    tls_ca_file: Path | None
    tls_cert_file: Path | None
    tls_key_file: Path | None
    max_payload_bytes: int
    status_topic: str | None  # retained online / offline (last will); None: no availability
    # what the broker's partition mapping put before every topic this link subscribes to
    # (``cluster.topic_prefix``): stripped from what arrives, so streams keep their topics
    topic_prefix: str = ""


@dataclass(frozen=True)
class Received:
    """Messages from the broker in arrival order, one column per field.

    ``topics[i]`` is None when the topic is not UTF-8; ``received_at_s`` is epoch seconds;
    ``mids``/``qos`` are what to acknowledge: the packet id, tagged with the link it came
    over (:func:`tag`).
    """

    topics: list[str | None] = field(default_factory=list)
    payloads: list[bytes | bytearray] = field(default_factory=list)
    received_at_s: list[float] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)
    qos: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.topics)


@dataclass(frozen=True)
class TooLarge:
    """A message over ``mqtt.max_payload_bytes``: its size only, the payload never copied."""

    topic: str | None
    size: int
    received_at_s: float
    mid: int
    qos: int


@dataclass(frozen=True)
class Outgoing:
    """One message to publish; ``label`` names an alert's state (its outcome is reported
    back and counted), None for what is not counted (scores)."""

    topic: str
    payload: bytes
    qos: int
    label: str | None
    retain: bool = False


@dataclass(frozen=True)
class PublishResult:
    label: str
    ok: bool
    topic: str


# -- receiver to daemon -----------------------------------------------------------------


@dataclass(frozen=True)
class LinkEvent:
    """Link ``link``'s connection changed: ``connected``, ``disconnected``, ``reconnected``
    or ``connect_failed`` (:mod:`streamd.runtime.mqtt.link`)."""

    name: str
    link: int = 0


@dataclass(frozen=True)
class Published:
    results: list[PublishResult]


@dataclass(frozen=True)
class Paused:
    """Nothing more will be forwarded (the answer to :class:`Pause`)."""


@dataclass(frozen=True)
class Started:
    """The client is set up; connecting goes on in the background."""


@dataclass(frozen=True)
class Fatal:
    """The receiver cannot start; ``reason`` says why (a TLS file it cannot use)."""

    reason: str


# -- daemon to receiver -----------------------------------------------------------------


@dataclass(frozen=True)
class Init:
    """The first message: how to connect (one link each; the first also publishes) and log."""

    options: list[LinkOptions]
    log_level: str
    log_format: str
    per_message_interval_s: float


@dataclass(frozen=True)
class Ack:
    """Acknowledge these packets (``mids[i]`` at ``qos[i]``): the broker may forget them."""

    mids: list[int]
    qos: list[int]


@dataclass(frozen=True)
class Publish:
    items: list[Outgoing]


@dataclass(frozen=True)
class Pause:
    """Forward nothing more; leave what comes to the broker's session."""


@dataclass(frozen=True)
class Stop:
    """Disconnect after what is queued, and end."""


ToDaemon = Received | TooLarge | LinkEvent | Published | Paused | Started | Fatal
ToReceiver = Init | Ack | Publish | Pause | Stop


# A packet id is 16 bits; the bits above say which link of the receiver it came over, so an
# acknowledgement finds its way back without the daemon knowing about links.
LINK_SHIFT = 16
PACKET_MASK = (1 << LINK_SHIFT) - 1


def tag(link: int, packet_id: int) -> int:
    """What the daemon acknowledges ``packet_id`` of link ``link`` by.

    >>> tag(2, 7) >> LINK_SHIFT, tag(2, 7) & PACKET_MASK, tag(0, 7)
    (2, 7, 7)
    """
    return link << LINK_SHIFT | packet_id


def unknown(message: NoReturn) -> NoReturn:
    """The end of an exhaustive ``match``: mypy proves it unreachable for the declared
    types, and at run time it names what arrived instead."""
    raise TypeError(f"unknown message on the receiver pipe: {message!r}")
