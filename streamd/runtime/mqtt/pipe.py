"""Pickled messages over a non-blocking socket, framed as ``multiprocessing`` frames them.

The receiver process (:mod:`streamd.runtime.mqtt.child`) runs one thread and one ``select`` loop, so
it must never block on its pipe to the daemon: were it blocked sending received messages
while the daemon's reader thread is blocked sending it acknowledgements, neither would read.
So writes go to a buffer that drains when the socket is writable, and reads take what has
arrived. The daemon keeps using a plain ``Connection`` on its end: the framing is the same
(a 4-byte big-endian signed length, or -1 and an 8-byte length, then a pickle).
"""

from __future__ import annotations

import pickle
import select
import socket
import struct
import time
from typing import Any

HIGH_WATER = 64 * 2**10  # bytes buffered for the daemon before the receiver stops reading MQTT
READ_SIZE = 1 << 16


class PipeClosed(Exception):
    """The other end has gone."""


class Pipe:
    """Framed pickles in both directions over a non-blocking stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._out = bytearray()
        self._in = bytearray()

    def send(self, message: Any) -> None:
        """Queue ``message`` and write what the socket takes now; the rest waits for
        :meth:`write_some`."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        n = len(data)
        self._out += struct.pack("!i", n) if n < 2**31 - 1 else struct.pack("!iQ", -1, n)
        self._out += data
        self.write_some()

    def pending_output(self) -> int:
        return len(self._out)

    def backed_up(self) -> bool:
        """The daemon is behind: stop taking messages from the broker until it catches up
        (back-pressure through TCP, as a blocking send gave before)."""
        return len(self._out) > HIGH_WATER

    def write_some(self) -> None:
        if not self._out:
            return
        try:
            n = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError as e:  # the daemon is gone; reading says so too
            raise PipeClosed(str(e)) from e
        del self._out[:n]

    def read_some(self) -> list[Any]:
        """The messages that are complete after one read; raises :class:`PipeClosed` at the
        end of the stream."""
        try:
            chunk = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return []
        except OSError as e:
            raise PipeClosed(str(e)) from e
        if not chunk:
            raise PipeClosed("end of stream")
        self._in += chunk
        messages, pos, buf = [], 0, self._in
        while len(buf) - pos >= 4:
            (n,) = struct.unpack_from("!i", buf, pos)
            start = pos + 4
            if n == -1:
                if len(buf) - pos < 12:
                    break
                (n,) = struct.unpack_from("!Q", buf, start)
                start += 8
            if len(buf) - start < n:
                break
            messages.append(pickle.loads(buf[start : start + n]))
            pos = start + n
        del buf[:pos]
        return messages

    def receive(self, timeout_s: float | None = None) -> Any:
        """Wait for one message (the first, ``init``, before the loop runs)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError("no message from the daemon")
            messages = self.read_some()
            if messages:
                return messages[0]  # nothing is sent before the first message is answered

    def drain(self, timeout_s: float) -> None:
        """Write everything queued, waiting up to ``timeout_s`` (before exiting)."""
        deadline = time.monotonic() + timeout_s
        while self._out:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            select.select([], [self.sock], [], left)
            self.write_some()
