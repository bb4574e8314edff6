"""Packets out of the byte stream of an MQTT 5 connection, for :mod:`.link_mqtt5`.

Whole packets are read by ``mqtt5``. What it cannot be handed is dealt with here: a
PUBLISH whose payload is over the limit is reported by its size and skipped as it streams
in, never held whole; one whose topic is not UTF-8 is reported with no topic (the daemon
counts and acknowledges both).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import mqtt5

from streamd.runtime.mqtt import framing
from streamd.runtime.mqtt.link import Outbox

# a packet this much over the payload limit is too large whatever its topic (< 64 KiB)
HEADER_ROOM = 70_000


class PacketReader:
    """Feeds received bytes to ``on_packet`` as mqtt5 packets, in order."""

    def __init__(
        self,
        outbox: Outbox,
        max_payload_bytes: int,
        on_packet: Callable[[Any, float], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.outbox, self.limit = outbox, max_payload_bytes
        self.on_packet, self.on_error = on_packet, on_error
        self._in = bytearray()
        self._skip = 0  # bytes of an oversized PUBLISH still to discard

    def reset(self) -> None:
        """A new connection: nothing carries over."""
        self._in.clear()
        self._skip = 0

    def feed(self, chunk: bytes) -> None:
        if self._skip:
            taken = min(self._skip, len(chunk))
            self._skip -= taken
            chunk = chunk[taken:]
        self._in += chunk
        self._parse()

    def _parse(self) -> None:
        buf = self._in
        view = memoryview(buf)
        pos, now = 0, time.time()
        try:
            while pos < len(buf):
                try:
                    packet, size = mqtt5.read(view[pos:])
                except IndexError:  # not all of it yet: unless it is too large to wait for
                    pos += self._oversized(buf, pos, now)
                    break
                except ValueError:  # well framed, but not a valid packet
                    pos += self._malformed(buf, pos, now)
                    continue
                except BaseException as e:  # mqtt5 0.8 panics on a topic that is not UTF-8
                    if not type(e).__name__ == "PanicException":
                        raise
                    pos += self._malformed(buf, pos, now)
                    continue
                pos += size
                self.on_packet(packet, now)
        finally:
            view.release()
        del buf[:pos]

    def _oversized(self, buf: bytearray, pos: int, now: float) -> int:
        """If the incomplete packet at ``pos`` is a PUBLISH over the payload limit, report it
        and skip it as it comes; returns the bytes consumed (0: wait for more)."""
        fixed = framing.fixed_header(buf, pos)
        limit = self.limit
        if fixed is None or fixed.kind != framing.PUBLISH or fixed.remaining <= limit:
            return 0
        head = framing.publish_header(buf, pos, fixed)
        if head is None:
            if fixed.remaining <= limit + HEADER_ROOM:
                return 0
            self.on_error("a PUBLISH with a topic too long to read")
            return 0
        if head.payload_size <= limit:
            return 0
        self._hand_over_large(head, now)
        total = fixed.size + fixed.remaining
        here = len(buf) - pos
        self._skip = total - here
        return here

    def _malformed(self, buf: bytearray, pos: int, now: float) -> int:
        fixed = framing.fixed_header(buf, pos)
        if fixed is None:
            self.on_error("a malformed packet")
            return len(buf) - pos
        if fixed.kind == framing.PUBLISH:
            head = framing.publish_header(buf, pos, fixed)
            if head is not None:  # its topic is not UTF-8: counted, acknowledged
                self.outbox.put(None, b"", now, head.packet_id, head.qos)
        return fixed.size + fixed.remaining

    def _hand_over_large(self, head: framing.PublishHeader, now: float) -> None:
        try:
            topic: str | None = head.topic.decode("utf-8")
        except UnicodeDecodeError:
            topic = None
        self.outbox.too_large(topic, head.payload_size, now, head.packet_id, head.qos)
