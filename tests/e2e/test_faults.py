"""Faults over a real Mosquitto: the broker restarts, the daemon is SIGKILLed mid-stream.

Every message is identified by (stream, timestamp). Figures are printed (run pytest with
``-s`` to see them) and are quoted in docs/daemon.md.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import (
    free_port,
    metric_values,
    scrape,
    start_daemon,
)
from streamd.tools.harness import wait_ready as wait_http_ready
from streamd.tools.outages import PersistentBroker, Publisher
from tests.e2e.support import STEP_S, T0, start, wait_metric
from tests.helpers import DEFAULT_MODEL

STREAMS = 3
DUPLICATES = 'streamd_messages_total{result="duplicate"}'
OUT_OF_ORDER = 'streamd_messages_total{result="out_of_order"}'
WARMUP = 'streamd_samples_total{outcome="warmup"}'


def accepted(m: dict[str, float]) -> float:
    return m['streamd_messages_total{result="accepted"}']


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_broker_restart_during_a_qos1_stream_delivers_and_counts_every_message(
    tmp_path: Path, protocol: str
) -> None:
    """Both protocols resume the persistent session: 3.1.1 by clean session off, 5 by
    clean start off with a session expiry interval."""
    broker = PersistentBroker(tmp_path)
    broker.start()
    http_port = free_port()
    env = {
        "STREAMD_MQTT__RECONNECT_MIN_S": "1",
        "STREAMD_MQTT__RECONNECT_MAX_S": "2",
        "STREAMD_STATE__REORDER_WINDOW_MS": "3000",
    }
    log = tmp_path / "d.log"
    proc = start_daemon(
        DEFAULT_MODEL, broker.port, http_port, protocol=protocol, extra_env=env, log_path=log
    )
    try:
        wait_http_ready(http_port)
        pub = Publisher(broker.port, count=600, rate=600)  # 1,800 messages over ~3 s
        pub.start()
        time.sleep(1.0)
        broker.stop()
        down_at = time.monotonic()
        time.sleep(1.0)
        broker.start()
        while metric_values(scrape(http_port))["streamd_mqtt_connected"] != 1:
            assert time.monotonic() - down_at < 30, "no reconnect within 30 s"
            time.sleep(0.05)
        recovery_s = time.monotonic() - down_at
        published = pub.finish()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = metric_values(scrape(http_port))
            if accepted(m) >= published:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # let any redelivered duplicates arrive
        m = metric_values(scrape(http_port))
        dup, late = m[DUPLICATES], m[OUT_OF_ORDER]
        unscored = published - accepted(m)
        print(
            f"broker restart: published {published}, accepted {accepted(m):.0f}, not scored "
            f"{unscored:.0f}, duplicates {dup:.0f}, stale redeliveries (out of order) {late:.0f}, "
            "reconnects "
            f"{m['streamd_mqtt_reconnects_total']:.0f}, reconnected {recovery_s:.1f} s after "
            "the broker went down (1 s of it down)"
        )
        # Every message reaches the daemon and is scored. After its reconnect, paho sends
        # new messages before it resends the unacknowledged old ones: the reorder window
        # (3 s here) puts them back in order, provided the broker sends its backlog at once.
        # With the broker's max_inflight_messages at 1000 it did not: the daemon acknowledges
        # after the window, so whatever sat more than 1000 messages behind came a window
        # later. Runs with 200 ms, 1 s and 3 s windows left 258, 156, 285 and 52 resends
        # unscored (2026-11-23) before the broker's limit was raised to 65535.
        # Resent messages the broker had already delivered arrive behind newer samples:
        # counted as out_of_order, not scored.
        assert accepted(m) == published
        assert m["streamd_mqtt_reconnects_total"] >= 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()


class ScoreCollector:
    """Subscribes to the daemon's per-sample scores: which (stream, ts) were scored, how often."""

    def __init__(self, port: int) -> None:
        self.scored: dict[tuple[str, float], int] = {}
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("streamd/scores/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        key = (doc["stream"], doc["ts"])
        self.scored[key] = self.scored.get(key, 0) + 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize(
    ("stop", "ack_after_scoring"),
    [("SIGKILL", "true"), ("SIGTERM", "true"), ("SIGTERM", "false")],
)
def test_restart_under_load_resumes_from_the_snapshot_and_loses_nothing(
    tmp_path: Path, stop: str, ack_after_scoring: str
) -> None:
    """A crash (SIGKILL: no drain, no final snapshot) or a clean stop (SIGTERM, as
    ``systemctl restart`` does) in mid-stream: the broker keeps what streamd did not
    acknowledge and what is published while it is down, so the next run scores every
    sample. Acknowledging on receipt (ack_after_scoring off) is covered for clean stops only:
    a crash loses what was acknowledged but not yet scored, as deploy.md says."""
    broker = PersistentBroker(tmp_path)
    broker.start()
    state = tmp_path / "state"
    state.mkdir()
    env = {
        "STATE_DIRECTORY": str(state),
        "STREAMD_STATE__SNAPSHOT_INTERVAL_S": "0.5",
        "STREAMD_ALERTS__PUBLISH_SCORES": "true",
        "STREAMD_MQTT__CLIENT_ID": "streamd-restart",
        "STREAMD_MQTT__ACK_AFTER_SCORING": ack_after_scoring,
        # the test compresses time (a sample every 300 s): the seconds around the kill
        # must not count as a silence that restarts warm-up
        "STREAMD_STATE__MAX_GAP_S": "1e9",
    }
    collector = ScoreCollector(broker.port)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        proc, http_port, _ = start(broker.port, DEFAULT_MODEL, tmp_path, env, "first")
        procs.append(proc)
        wait_http_ready(http_port)
        count = 900
        pub = Publisher(broker.port, count=count, rate=900)  # 2,700 messages over ~3 s
        pub.start()
        time.sleep(1.8)
        procs[0].send_signal(getattr(signal, stop))
        assert procs[0].wait(30) == (0 if stop == "SIGTERM" else -signal.SIGKILL)
        stopped_at = time.monotonic()
        proc, http_port, _ = start(broker.port, DEFAULT_MODEL, tmp_path, env, "second")
        procs.append(proc)
        wait_http_ready(http_port)
        recovery_s = time.monotonic() - stopped_at
        published = pub.finish()
        wait_metric(http_port, 'streamd_messages_total{result="accepted"}', 1, timeout_s=30)
        deadline = time.monotonic() + 30
        scored_from = 400  # every stream is past its warm-up here
        expected = {(f"sensors/s{k}", T0 + t * STEP_S) for t in range(scored_from, count)
                    for k in range(STREAMS)}  # fmt: skip
        while time.monotonic() < deadline and not expected <= collector.scored.keys():
            time.sleep(0.2)
        time.sleep(0.5)
        m = metric_values(scrape(http_port))
        lost = expected - collector.scored.keys()
        twice = sum(1 for k in expected if collector.scored.get(k, 0) > 1)
        restored = m["streamd_snapshot_restored_streams"]
        print(
            f"{stop}: published {published}; of the {len(expected)} samples past warm-up, "
            f"scored {len(expected & collector.scored.keys())}, lost {len(lost)}, scored twice "
            f"{twice}; restored {restored:.0f} streams; second run: accepted {accepted(m):.0f}, "
            f"duplicates {m[DUPLICATES]:.0f}, out of order {m[OUT_OF_ORDER]:.0f}, warm-up "
            f"samples {m[WARMUP]:.0f}; ready again "
            f"{recovery_s:.1f} s after the stop"
        )
        assert restored == STREAMS
        assert m[WARMUP] == 0  # no second warm-up
        assert not lost, sorted(lost)[:10]
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        collector.stop()
        broker.stop()
