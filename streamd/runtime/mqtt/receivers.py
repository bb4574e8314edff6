"""Where the receive loop (:mod:`streamd.runtime.mqtt.child`) runs: a process or a thread.

``mqtt.receiver = "process"`` (the default) gives paho a core of its own: on a 2-core box
that is what lets the daemon keep up with the broker at QoS 1. ``"thread"`` keeps streamd
one process, for boxes where the second interpreter's memory matters more than the
throughput (docs/performance.md has both). Either way the daemon talks to the loop over the
same socket pair, so :class:`streamd.runtime.mqtt.proxy.MqttProxy` does not know which it
has; it only waits for, stops and describes the receiver through the handles here.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
from typing import Protocol

from streamd.runtime.mqtt import child as mqtt_child

log = logging.getLogger(__name__)


class Receiver(Protocol):
    kind: str  # "process" or "thread": how messages name it

    def wait(self, timeout_s: float | None = None) -> bool:
        """True once the receiver has ended (within ``timeout_s``, or ever if None)."""
        ...

    def kill(self) -> None:
        """End it now, without the clean disconnect."""
        ...

    def outcome(self) -> str:
        """How it ended, for the log: ``code N`` (a negative N is the signal that killed it)."""
        ...


class ReceiverProcess:
    """``python -m streamd.runtime.mqtt.child FD``: the receiver in a child process."""

    kind = "process"

    def __init__(self, sock: socket.socket) -> None:
        fd = sock.detach()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamd.runtime.mqtt.child", str(fd)],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
            )
        finally:
            socket.close(fd)  # the child has its own copy

    def wait(self, timeout_s: float | None = None) -> bool:
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def outcome(self) -> str:
        return f"code {self.proc.wait()}"


class ReceiverThread:
    """The receiver loop on a daemon thread of this process.

    When the loop ends, for whatever reason, its end of the socket pair closes: the daemon's
    reader sees the end of the stream, just as when a receiver process exits.
    """

    kind = "thread"

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.code: int | None = None
        self._thread = threading.Thread(target=self._run, name="mqtt-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.code = mqtt_child.serve(self._sock, own_process=False)
        except Exception:  # a bug in the loop: the daemon stops with exit code 1, as for a process
            log.exception("the MQTT receiver thread failed")
            self.code = 1
        finally:
            self._sock.close()

    def wait(self, timeout_s: float | None = None) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def kill(self) -> None:
        """Shut the socket: the loop's next pipe read ends it. A thread stuck elsewhere is a
        daemon thread, so it does not keep the process alive."""
        with contextlib.suppress(OSError):  # already closed: the loop has ended
            self._sock.shutdown(socket.SHUT_RDWR)

    def outcome(self) -> str:
        self.wait()
        return f"code {self.code}"


def start_receiver(kind: str, sock: socket.socket) -> Receiver:
    """Start the receiver loop of ``kind`` on ``sock`` (this side of it)."""
    return ReceiverThread(sock) if kind == "thread" else ReceiverProcess(sock)
