"""Broker, daemon and scrape helpers that the demo, the tests and the benchmarks share.

Each starts a real component on a free loopback port (Mosquitto when installed, else the
pure-Python amqtt broker; ``streamd run`` as a child process) and stops nothing by itself:
the caller owns what it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamd.config import PACKAGED_MODEL

DEFAULT_MODEL = PACKAGED_MODEL
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


def start_broker(
    port: int,
    workdir: Path,
    prefer: str = "auto",
    max_inflight: int = 1000,
    extra_conf: str = "",
) -> tuple[subprocess.Popen[bytes], str]:
    """A broker on 127.0.0.1:``port``: Mosquitto if installed (``prefer="auto"``), else amqtt.

    ``max_inflight`` is Mosquitto's ``max_inflight_messages``: the unacknowledged QoS 1
    messages it sends a client, which also bounds how far back streamd's reorder window
    reaches after an outage (docs/deploy.md). ``extra_conf``: more ``mosquitto.conf`` lines.
    Returns (process, "mosquitto" or "amqtt").
    """
    exe = mosquitto_path() if prefer in ("auto", "mosquitto") else None
    if prefer == "mosquitto" and exe is None:
        raise FileNotFoundError("mosquitto is not installed")
    if exe:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"max_queued_messages 1000000\nmax_inflight_messages {max_inflight}\n"
            "log_type error\n" + extra_conf
        )
        proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        kind = "mosquitto"
    else:
        conf = workdir / "amqtt.yaml"
        conf.write_text(
            f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        kind = "amqtt"
    wait_port(port)
    return proc, kind


def start_daemon(
    model: Path,
    mqtt_port: int,
    http_port: int,
    *,
    protocol: str | None = None,
    extra_env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``streamd run`` as a child process, from ``cwd`` if given (``python -m`` imports
    streamd from the working directory first: a bench's baseline checkout runs from its own)."""
    env = {
        **os.environ,
        "STREAMD_MQTT__CLIENT_ID": f"streamd-demo-{mqtt_port}",
        **({"STREAMD_MQTT__PROTOCOL": protocol} if protocol else {}),
        **(extra_env or {}),
    }
    cmd = [
        sys.executable,
        "-m",
        "streamd",
        "run",
        "--model",
        str(model),
        "--mqtt-port",
        str(mqtt_port),
        "--http-port",
        str(http_port),
        "--topic",
        "sensors/#",
    ]
    if log_path is None:
        return subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    # The child gets its own copy of the descriptor; ours can close as soon as it has started.
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(http_port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"daemon not ready on port {http_port} after {timeout_s} s")


def scrape(http_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        body: bytes = r.read()
        return body.decode()


def metric_values(text: str) -> dict[str, float]:
    """``name{labels}`` -> value from Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@dataclass
class AlertCollector:
    """Subscribes to the alert topics and keeps every alert message."""

    port: int
    prefix: str = "streamd/alerts"
    alerts: list[dict[str, Any]] = field(default_factory=list)
    echo: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", self.port)
        self.client.subscribe(f"{self.prefix}/#", qos=1)
        self.client.loop_start()
        self._subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        alert = json.loads(msg.payload)
        alert["_topic"] = msg.topic
        with self._lock:
            self.alerts.append(alert)
        if self.echo:
            extra = f" peak {alert['peak_score']:.2f}" if alert["state"] == "resolved" else ""
            print(
                f"  ALERT {alert['state']:<8} {alert['stream']:<28} "
                f"score {alert['score']:.2f}{extra} value {alert['value']:.4g} "
                f"predicted {alert['predicted']:.4g}",
                flush=True,
            )

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants: streamd's MQTT receiver is a child process, and its CPU
    and memory are the daemon's too. A thread may end while it is read: it has no children."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                pids.extend(int(c) for c in task.read_text().split())
        i += 1
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants."""
    pages = sum(int(Path(f"/proc/{p}/statm").read_text().split()[1]) for p in process_tree(pid))
    return pages * PAGE / 2**20
