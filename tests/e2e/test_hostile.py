"""Hostile inputs and outages over a real Mosquitto: nothing acknowledged is dropped, no
single input blinds a stream or stops the daemon (issue: reliability II).

Each test sends what an outside tester sent: a backlog queued during an outage, a paused
daemon, a timestamp from the future, stream ids with control characters, junk topics
before a real anomaly, damaged snapshots, a crafted model card at SIGHUP, an idle-connection
flood on the metrics port.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import build_pipeline
from streamd.runtime import snapshot
from streamd.tools.harness import AlertCollector, metric_values, scrape, wait_ready
from streamd.tools.synth import PROFILES, Injection, inject, normal_series
from tests.e2e.support import STEP_S, T0, start, stop
from tests.helpers import DEFAULT_MODEL

ACCEPTED = 'streamd_messages_total{result="accepted"}'


def result(m: dict[str, float], name: str) -> float:
    return m.get(f'streamd_messages_total{{result="{name}"}}', 0.0)


def counted(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("streamd_messages_total{"))


def publish_all(port: int, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, body, qos=qos) for topic, body in messages]
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()


def wait_counted(http_port: int, expected: int, timeout_s: float = 90.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        m = metric_values(scrape(http_port))
        if (counted(m) >= expected and m["streamd_queue_depth"] == 0) or (
            time.monotonic() > deadline
        ):
            return m
        time.sleep(0.2)


def normal_messages(streams: int, count: int, prefix: str = "sensors/s") -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(3)
    series = [
        normal_series(PROFILES[k % len(PROFILES)], count, STEP_S, rng) for k in range(streams)
    ]
    return [
        (f"{prefix}{k}", json.dumps({"ts": T0 + t * STEP_S, "value": float(series[k][t])}).encode())
        for t in range(count)
        for k in range(streams)
    ]


@pytest.mark.parametrize(("streams", "per_stream"), [(6, 1500), (100, 200)])
def test_a_backlog_queued_during_an_outage_is_scored_whole_and_in_order(
    broker: int, tmp_path: Path, streams: int, per_stream: int
) -> None:
    """The daemon stops (session kept); the broker queues a 25-minute outage of 1 Hz sensors
    (6 x 1,500) or a hundred streams' worth; after the restart every sample is scored once,
    in order. Before, what a stream had beyond its backlog cap was dropped as rate_limited
    after the broker had been told it was received (888 of 9,000)."""
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, {}, "first")
    wait_ready(http_port)
    assert stop(proc) == 0
    messages = normal_messages(streams, per_stream)
    publish_all(broker, messages)
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, {}, "second")
    try:
        wait_ready(http_port)
        m = wait_counted(http_port, len(messages))
        print(f"outage {streams} x {per_stream}: accepted {m[ACCEPTED]:.0f} of {len(messages)}")
        assert m[ACCEPTED] == len(messages)
        for name in ("rate_limited", "out_of_order", "duplicate"):
            assert result(m, name) == 0, name
        assert stop(proc) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_paused_daemon_catches_up_without_dropping(broker: int, tmp_path: Path) -> None:
    """SIGSTOP for 6 s while two streams publish 600 msg/s at QoS 1, then SIGCONT: the
    burst is worked off by back-pressure, not dropped."""
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, {}, "paused")
    try:
        wait_ready(http_port)
        messages = normal_messages(2, 4500)
        sender = threading.Thread(target=publish_all, args=(broker, messages))
        sender.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(6.0)
        proc.send_signal(signal.SIGCONT)
        sender.join(120)
        m = wait_counted(http_port, len(messages))
        print(f"SIGSTOP 6 s: accepted {m[ACCEPTED]:.0f} of {len(messages)}")
        assert m[ACCEPTED] == len(messages) and result(m, "rate_limited") == 0
        assert result(m, "out_of_order") == 0
        assert stop(proc) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_future_timestamp_is_refused_and_blinds_nothing(broker: int, tmp_path: Path) -> None:
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, {}, "future")
    try:
        wait_ready(http_port)
        now = time.time()
        bogus = [("sensors/a", json.dumps({"ts": 9.9e9, "value": 1.0}).encode())]
        real = [
            ("sensors/a", json.dumps({"ts": now + i, "value": 20.0 + i % 3}).encode())
            for i in range(50)
        ]
        publish_all(broker, bogus + real)
        m = wait_counted(http_port, 51)
        assert result(m, "future_timestamp") == 1
        assert m[ACCEPTED] == 50 and result(m, "out_of_order") == 0
    finally:
        stop(proc)


def test_a_restored_stream_stamped_in_the_future_is_reset_not_trusted(
    broker: int, tmp_path: Path
) -> None:
    """A snapshot from before this check (or a clock that ran ahead) holds a last sample in
    2283: the stream is reset at start and takes real samples again."""
    path = tmp_path / "state.npz"
    p = build_pipeline(Settings(), Forecaster(DEFAULT_MODEL))
    p.process([Sample("sensors/a", 9.9e9, (1.0,), 0.0), Sample("sensors/b", T0, (1.0,), 0.0)])
    snapshot.save(p, path)
    env = {"STREAMD_STATE__SNAPSHOT_PATH": str(path)}
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env, "restored")
    try:
        wait_ready(http_port)
        now = time.time()
        publish_all(broker, [("sensors/a", json.dumps({"ts": now, "value": 2.0}).encode())])
        m = wait_counted(http_port, 1)
        assert m[ACCEPTED] == 1 and m["streamd_stream_resets_total"] == 1
        assert m["streamd_snapshot_restored_streams"] == 1  # b; a was reset
        assert "had a last sample in the future" in log.read_text()
    finally:
        stop(proc)


def anomalous_stream(topic: str, n: int = 900, at: int = 800) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(11)
    v = inject(
        normal_series(PROFILES[0], n, STEP_S, rng), Injection("level_shift", at, 40, 6.0), rng
    )
    return [
        (topic, json.dumps({"ts": T0 + i * STEP_S, "value": float(v[i])}).encode())
        for i in range(n)
    ]


def test_stream_ids_with_control_characters_are_counted_and_alerts_still_flow(
    broker: int, tmp_path: Path
) -> None:
    """Field-mode ids with NUL, a newline, a lone surrogate or an escape sequence: each is
    refused as bad_stream_id; the connection stays up and another stream's alert arrives.
    Before, the NUL made the alert's PUBLISH malformed and the broker dropped the daemon on
    every reconnect; the surrogate made the receiver exit."""
    env = {"STREAMD_MQTT__STREAM_ID": "field:device"}
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env, "ids")
    alerts = AlertCollector(broker)
    try:
        wait_ready(http_port)
        bad = [b'"p\\u0000x"', b'"p\\nINFO fake line"', b'"p\\ud800"', b'"p\\u001b[2J"']
        hostile = [("sensors/x", b'{"device": ' + d + b', "value": 1}') for d in bad]
        good = [
            (t, json.dumps({"device": "pump-7", **json.loads(b)}).encode())
            for t, b in anomalous_stream("sensors/x")
        ]
        publish_all(broker, hostile + good)
        m = wait_counted(http_port, len(hostile) + len(good))
        time.sleep(1.0)
        assert result(m, "bad_stream_id") == len(bad)
        assert m["streamd_mqtt_reconnects_total"] == 0 and m["streamd_mqtt_connected"] == 1
        assert any(a["stream"] == "pump-7" and a["state"] == "anomaly" for a in alerts.alerts)
        assert "fake line" not in log.read_text().replace("\\n", "")  # no injected log line
    finally:
        alerts.stop()
        stop(proc)


def test_a_real_anomaly_gets_its_series_after_junk_topics_took_the_cap(
    broker: int, tmp_path: Path
) -> None:
    """150 one-message topics are seen first; the shipped alert rules read
    streamd_stream_anomalous, so an anomaly must get that series anyway."""
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, {}, "junk")
    try:
        wait_ready(http_port)
        junk = [(f"sensors/junk{k}", b'{"ts": 1767225600, "value": 1}') for k in range(150)]
        real = anomalous_stream("sensors/pump", n=830)  # ends inside the anomaly
        publish_all(broker, junk + real)
        m = wait_counted(http_port, len(junk) + len(real))
        assert m['streamd_stream_anomalous{stream="sensors/pump"}'] == 1.0
        assert m["streamd_stream_scores_omitted"] >= 51
    finally:
        stop(proc)
