"""Hostile inputs that aim at a start or a reload: damaged snapshots, crafted model cards,
invalid topics and hosts, idle connections to the metrics port (issue: reliability II)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import build_pipeline
from streamd.runtime import snapshot
from streamd.tools.harness import metric_values, scrape, wait_ready
from tests.e2e.support import T0, start, stop, wait_metric
from tests.helpers import DEFAULT_MODEL


def damaged(kind: str, path: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
        return
    p = build_pipeline(Settings(), Forecaster(DEFAULT_MODEL))
    p.process([Sample(f"sensors/{k}", T0, (1.0,), 0.0) for k in range(3)])
    snapshot.save(p, path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # rows that do not match: one array of another length
        with np.load(path) as z:
            arrays = dict(z)
        arrays["s.last_ts"] = arrays["s.last_ts"][:1]
        with path.open("wb") as f:
            np.savez(f, **arrays)


@pytest.mark.parametrize("kind", ["empty", "truncated", "mismatched"])
def test_a_damaged_snapshot_is_moved_aside_and_the_daemon_starts_cold(
    broker: int, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "state.npz"
    damaged(kind, path)
    env = {"STREAMD_STATE__SNAPSHOT_PATH": str(path)}
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env, kind)
    try:
        wait_ready(http_port)
        m = metric_values(scrape(http_port))
        assert m["streamd_snapshot_discarded_total"] == 1
        assert (tmp_path / "state.npz.bad").exists()
        assert "is damaged" in log.read_text()
    finally:
        assert stop(proc) == 0
    assert path.exists()  # the drain wrote a good one


def crafted(model: Path, out: Path, edit: str) -> Path:
    m = onnx.load(str(model))
    for prop in m.metadata_props:
        if prop.key == "streamd":
            card = json.loads(prop.value)
            if edit == "window":
                text = json.dumps(card).replace(f'"window": {card["window"]}', '"window": 1e400')
            else:
                card["self_test"] = {"x": 7, "y_hat": "no"}
                text = json.dumps(card)
            prop.value = text
    onnx.save(m, str(out))
    return out


@pytest.mark.parametrize("edit", ["window", "self_test"])
def test_a_crafted_model_card_is_a_refused_reload_and_a_one_line_inspect(
    broker: int, tmp_path: Path, edit: str
) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    proc, http_port, log = start(broker, model, tmp_path, {}, "crafted")
    try:
        wait_ready(http_port)
        crafted(DEFAULT_MODEL, model, edit)
        proc.send_signal(signal.SIGHUP)
        m = wait_metric(http_port, 'streamd_model_reloads_total{result="failed"}', 1)
        assert m['streamd_model_reloads_total{result="failed"}'] == 1
        assert proc.poll() is None and m["streamd_mqtt_connected"] == 1
    finally:
        assert stop(proc) == 0, log.read_text()[-2000:]
    r = subprocess.run(
        [sys.executable, "-m", "streamd", "inspect", str(model)], capture_output=True, text=True
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "bad model card" in r.stderr


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"STREAMD_ALERTS__TOPIC_PREFIX": "alerts/#"}, "alerts.topic_prefix"),
        ({"STREAMD_MQTT__TOPICS": '["sensors/#/x"]'}, "mqtt.topics"),
        ({"STREAMD_MQTT__TOPICS": '["sensors/a+"]'}, "mqtt.topics"),
        ({"STREAMD_HTTP__HOST": "no such host"}, "http.host"),
        ({"STREAMD_HTTP__HOST": "nosuchhost.invalid"}, "http.host"),
    ],
)
def test_invalid_topics_and_hosts_fail_check_config_in_one_line(
    env: dict[str, str], field: str
) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "streamd", "run", "--check-config", "--model", str(DEFAULT_MODEL)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"streamd run: {field}: ") and r.stderr.count("\n") == 1


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_idle_connections_to_the_metrics_port_do_not_pile_up_threads(
    broker: int, tmp_path: Path
) -> None:
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, {}, "idle")
    socks: list[socket.socket] = []
    try:
        wait_ready(http_port)
        base = threads_of(proc.pid)
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", http_port))
            socks.append(s)
        time.sleep(1.0)
        assert threads_of(proc.pid) <= base + 32
        time.sleep(6.0)  # idle ones are closed after 5 s, and their threads end
        assert threads_of(proc.pid) <= base + 2
        assert "streamd_messages_total" in scrape(http_port)
    finally:
        for s in socks:
            s.close()
        stop(proc)
