"""What the end-to-end tests share: publishing normal streams, waiting on metrics, a daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import free_port, metric_values, scrape, start_daemon
from streamd.tools.outages import STEP_S, T0
from streamd.tools.synth import PROFILES, normal_series


def publish_normal(port: int, streams: int, start: int, count: int, seed: int = 0) -> int:
    """Publish samples ``start .. start+count`` of ``streams`` normal streams at QoS 1."""
    rng = np.random.default_rng(seed)
    series = [
        normal_series(PROFILES[i % len(PROFILES)], start + count, STEP_S, rng)
        for i in range(streams)
    ]
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for t in range(start, start + count):
        for k in range(streams):
            body = json.dumps({"ts": T0 + t * STEP_S, "value": float(series[k][t])})
            infos.append(client.publish(f"sensors/s{k}", body, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=30)
    client.disconnect()
    client.loop_stop()
    return len(infos)


def wait_metric(http_port: int, name: str, at_least: float, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        m = metric_values(scrape(http_port))
        if m.get(name, 0.0) >= at_least or time.monotonic() > deadline:
            return m
        time.sleep(0.2)


def start(broker: int, model: Path, tmp_path: Path, env: dict[str, str], name: str = "d"):
    http_port = free_port()
    log = tmp_path / f"{name}.log"
    proc = start_daemon(model, broker, http_port, extra_env=env, log_path=log)
    return proc, http_port, log


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)
