"""``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, in a named daemon thread.

Each connection gets a thread of its own, but at most :data:`MAX_CONNECTIONS` at once (more
are closed at once) and each idles at most :data:`IDLE_TIMEOUT_S`: a few hundred idle
connections must not become a few hundred threads.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamd.errors import ConfigError

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 32
IDLE_TIMEOUT_S = 5.0


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CONNECTIONS`` of them."""

    daemon_threads = True
    # Connections the kernel queues for accept(): beyond it a client's SYN is dropped and it
    # waits a retransmission (1 s, then 3 s, ...), so a burst of scrapers or idle sockets
    # would stall the port for seconds although refusing one costs nothing.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # at capacity: refused, not queued behind threads
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HttpServer:
    """Serves the registry; ``ready`` decides ``/readyz`` (connected and model loaded)."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, ready: Callable[[], bool]
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = IDLE_TIMEOUT_S  # an idle connection is closed, and its thread ends

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif path == "/healthz":
                    self._send(200, "text/plain", b"ok\n")
                elif path == "/readyz":
                    ok = outer.ready()
                    self._send(
                        200 if ok else 503, "text/plain", b"ready\n" if ok else b"not ready\n"
                    )
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every few seconds would flood the journal

        self.ready = ready
        try:
            self.server = _BoundedServer((host, port), Handler)
        except OSError as e:  # gaierror too: a host name that does not resolve
            field = "http.port" if e.errno in (errno.EADDRINUSE, errno.EACCES) else "http.host"
            raise ConfigError(field, f"cannot listen on {host}:{port}: {e.strerror or e}") from e
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        log.info("metrics on http://%s:%d/metrics", self.server.server_address[0], self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
