"""MQTT's framing, only as far as the mqtt5 link must see it before the codec does.

The codec (``mqtt5``) reads whole packets. To skip a PUBLISH whose payload is over the
limit without holding it in memory, and to acknowledge one whose topic is not UTF-8, the
link reads the fixed header (type, flags, remaining length) and a PUBLISH's variable
header (topic, packet id, properties) itself (MQTT 5, sections 2.1 and 3.3). Acknowledgement
packets with reason "success" and no properties are two bytes and a packet id, written here.
"""

from __future__ import annotations

from typing import NamedTuple

PUBLISH = 3
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"  # normal disconnection
DUP = 0x08


class FixedHeader(NamedTuple):
    kind: int  # packet type, 1..15
    flags: int
    size: int  # of the fixed header itself
    remaining: int  # bytes after it


class PublishHeader(NamedTuple):
    qos: int
    topic: bytes
    packet_id: int  # 0 at QoS 0
    payload_at: int  # offset of the payload from the packet's start
    payload_size: int


def fixed_header(buf: bytes | bytearray, pos: int) -> FixedHeader | None:
    """The fixed header at ``pos``, or None until all of it has arrived.

    >>> fixed_header(b"\\x32\\xc1\\x02", 0)
    FixedHeader(kind=3, flags=2, size=3, remaining=321)
    """
    if len(buf) - pos < 2:
        return None
    remaining, shift, i = 0, 0, pos + 1
    while True:
        if i >= len(buf):
            return None
        byte = buf[i]
        remaining |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ValueError("malformed remaining length")
    return FixedHeader(buf[pos] >> 4, buf[pos] & 0x0F, i - pos, remaining)


def varint(buf: bytes | bytearray, i: int) -> tuple[int, int] | None:
    """A variable byte integer at ``i``: (value, bytes), or None if not all here."""
    value, shift, start = 0, 0, i
    while i < len(buf):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i - start
        shift += 7
    return None


def publish_header(buf: bytes | bytearray, pos: int, fixed: FixedHeader) -> PublishHeader | None:
    """A PUBLISH's topic, packet id and where its payload starts; None until they are here.

    >>> f = fixed_header(b"\\x32\\x0a\\x00\\x03a/b\\x00\\x07\\x00hi", 0)
    >>> publish_header(b"\\x32\\x0a\\x00\\x03a/b\\x00\\x07\\x00hi", 0, f)
    PublishHeader(qos=1, topic=b'a/b', packet_id=7, payload_at=10, payload_size=2)
    """
    qos = (fixed.flags >> 1) & 0x03
    i = pos + fixed.size
    if len(buf) - i < 2:
        return None
    topic_len = int.from_bytes(buf[i : i + 2], "big")
    i += 2
    end = i + topic_len + (2 if qos else 0)
    if len(buf) < end:
        return None
    topic = bytes(buf[i : i + topic_len])
    packet_id = int.from_bytes(buf[end - 2 : end], "big") if qos else 0
    props = varint(buf, end)
    if props is None:
        return None
    payload_at = end + props[1] + props[0] - pos
    return PublishHeader(
        qos, topic, packet_id, payload_at, fixed.size + fixed.remaining - payload_at
    )


def puback(packet_id: int) -> bytes:
    """PUBACK (QoS 1 received), reason success."""
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def pubrec(packet_id: int) -> bytes:
    """PUBREC (QoS 2 received, first half), reason success."""
    return b"\x50\x02" + packet_id.to_bytes(2, "big")


def pubrel(packet_id: int) -> bytes:
    return b"\x62\x02" + packet_id.to_bytes(2, "big")


def pubcomp(packet_id: int) -> bytes:
    return b"\x70\x02" + packet_id.to_bytes(2, "big")
