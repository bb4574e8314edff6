"""paho's MQTT client with a read buffer: one ``recv`` per 64 KiB instead of three per packet.

Profiling the daemon under load (py-spy, QoS 0, 10,000 streams) showed paho's network thread
as the bottleneck, and in it about a sixth of the time in ``recv`` system calls: paho reads
each packet with one call for its type byte, one per length byte and one for the rest.
:class:`BufferedSocket` reads what the kernel has (up to 64 KiB) and serves those calls from
memory. It reports buffered bytes through ``pending()``, which paho already checks (for TLS
sockets) before it waits in ``select``, so a packet left in the buffer is never stuck there.
:class:`BufferedClient` also lets one ``loop_read`` go on through what is buffered, up to
:data:`READ_BURST` packets, instead of returning to ``select`` after every packet.

It relies on two paho 2.x hooks that are not public API, ``Client._create_socket`` and
the ``pending()`` check in ``Client._loop``; ``tests/test_mqtt_client.py`` pins both.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

CHUNK = 65536
READ_BURST = 256  # packets per loop_read; then paho gets to write (acks, alerts) again


class BufferedSocket:
    """A non-blocking socket (plain, TLS or websocket) read in chunks; the rest delegates."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(max(bufsize, CHUNK))  # raises as the socket does
            if len(data) <= bufsize:
                return data  # EOF (b"") or no more than asked for: nothing to keep
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        out = self._buf[self._pos : end]
        self._pos = min(end, len(self._buf))
        return out

    def pending(self) -> int:
        """Bytes readable without the kernel: ours, plus a TLS socket's own."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self.buffered() + int(inner)

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, ...
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` reading through a :class:`BufferedSocket`."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        sock = self._sock
        burst = 1
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and burst < READ_BURST
            and isinstance(sock, BufferedSocket)
            and sock.buffered()
            and self._sock is sock
        ):
            rc = super().loop_read(max_packets)
            burst += 1
        return rc
