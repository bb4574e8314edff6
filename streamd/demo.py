"""The demo: broker, simulated sensors with injected anomalies, daemon, alerts, metrics.

    python -m streamd.demo        (what ``bash scripts/demo.sh`` runs)

Starts a broker on a free loopback port (Mosquitto when installed, else the pure-Python
amqtt broker), the daemon with the default model, and the simulator; prints alerts as they
arrive, then which injected anomalies were alerted, the false alerts and a real scrape of
``/metrics``; stops everything it started. Its helpers also serve the end-to-end tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamd.simulate import Scenario, Truth, build, publish

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.onnx"
# Kinds a next-step forecaster can see; "stuck" holds the last value, which a forecaster
# predicts well (see docs/daemon.md), so the demo leaves it out of its recall figure.
DEMO_KINDS = ("spike", "level_shift", "drift", "noise_burst", "dropout")
# An alert counts for an injected anomaly if it starts between the anomaly's first sample
# and this many samples after its last (a forecaster needs a few samples to be sure).
MATCH_GRACE_SAMPLES = 12


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
    protocol: str = "3.1.1",
    extra_env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``streamd run`` as a child process, from ``cwd`` if given (``python -m`` imports
    streamd from the working directory first: a bench's baseline checkout runs from its own)."""
    env = {
        **os.environ,
        "STREAMD_MQTT__PROTOCOL": protocol,
        "STREAMD_MQTT__CLIENT_ID": f"streamd-demo-{mqtt_port}",
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


def match(
    truth: list[Truth], alerts: list[dict[str, Any]], step_s: float
) -> tuple[list[Truth], list[dict[str, Any]]]:
    """(injected anomalies that were alerted, alerts that match no injected anomaly)."""
    opened = [a for a in alerts if a["state"] == "anomaly"]
    hit: list[Truth] = []
    used: set[int] = set()
    for t in truth:
        for i, a in enumerate(opened):
            if (
                a["stream"] == t.stream
                and t.start_ts <= a["ts"] <= t.end_ts + MATCH_GRACE_SAMPLES * step_s
            ):
                hit.append(t)
                used.add(i)
                break
    # Alerts inside a matched anomaly (re-entries) are not false; others are.
    false = [
        a
        for i, a in enumerate(opened)
        if i not in used
        and not any(
            a["stream"] == t.stream
            and t.start_ts <= a["ts"] <= t.end_ts + MATCH_GRACE_SAMPLES * step_s
            for t in truth
        )
    ]
    return hit, false


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="streamd demo")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--streams", type=int, default=10)
    p.add_argument("--seconds", type=float, default=45.0, help="publishing time")
    p.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    args = p.parse_args(argv)

    scenario = Scenario(
        streams=args.streams, samples=1100, kinds=DEMO_KINDS, anomaly_start=650, seed=1
    )
    rate = args.streams * scenario.samples / args.seconds
    work = Path(tempfile.mkdtemp(prefix="streamd-demo-"))
    mport, hport = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker, kind = start_broker(mport, work, args.broker)
        procs.append(broker)
        print(f"broker: {kind} on 127.0.0.1:{mport}")
        daemon = start_daemon(
            args.model,
            mport,
            hport,
            log_path=work / "streamd.log",
        )
        procs.append(daemon)
        wait_ready(hport)
        print(
            f"daemon: streamd run, model {args.model.name}, metrics on http://127.0.0.1:{hport}/metrics"
        )
        collector = AlertCollector(mport, echo=True)
        _, truth = build(scenario)
        print(
            f"simulate: {args.streams} streams x {scenario.samples} samples at {rate:.0f} msg/s, "
            f"{len(truth)} injected anomalies ({', '.join(DEMO_KINDS)}); alerts as they arrive:"
        )
        counts = publish(
            scenario, host="127.0.0.1", port=mport, rate=rate, qos=1, max_seconds=args.seconds * 3
        )
        time.sleep(3.0)
        collector.stop()
        hit, false = match(truth, collector.alerts, scenario.step_s)
        print(f"\ninjected anomalies alerted: {len(hit)}/{len(truth)}")
        for t in truth:
            mark = "alerted" if t in hit else "MISSED "
            print(f"  {mark}  {t.kind:<12} {t.stream:<28} samples {t.start_index}-{t.end_index}")
        print(f"false alerts: {len(false)}")
        for a in false:
            sample = int((a["ts"] - scenario.start_s) / scenario.step_s)
            print(f"  {a['stream']} at sample {sample} score {a['score']:.2f}")
        m = metric_values(scrape(hport))
        rejected = sum(
            v
            for k, v in m.items()
            if k.startswith("streamd_messages_total") and 'result="accepted"' not in k
        )
        lat_n = m.get("streamd_end_to_end_latency_seconds_count", 0.0)
        lat_mean = m.get("streamd_end_to_end_latency_seconds_sum", 0.0) / max(1.0, lat_n)
        print("\nfrom /metrics:")
        accepted = m.get('streamd_messages_total{result="accepted"}', 0.0)
        opened = m.get('streamd_alerts_published_total{state="anomaly"}', 0.0)
        resolved = m.get('streamd_alerts_published_total{state="resolved"}', 0.0)
        print(
            f"  published {counts['published']}, accepted {accepted:.0f}, rejected {rejected:.0f}"
        )
        print(
            f"  anomalies {m.get('streamd_anomalies_total', 0):.0f}, alerts published "
            f"{opened:.0f} anomaly / {resolved:.0f} resolved"
        )
        print(
            f"  active streams {m.get('streamd_active_streams', 0):.0f}, mean receipt-to-verdict "
            f"latency {lat_mean * 1000:.1f} ms, batches {m.get('streamd_batch_size_count', 0):.0f}"
        )
        return 0
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
