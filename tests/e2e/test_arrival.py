"""Arrival order and rate over a real broker: late samples are scored in order within the
reorder window, and a flooding stream is rate-limited rather than slowing every other stream."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import metric_values, scrape, wait_ready
from streamd.tools.synth import PROFILES, normal_series
from tests.e2e.support import STEP_S, T0, start
from tests.helpers import DEFAULT_MODEL


def counted(http_port: int) -> float:
    m = metric_values(scrape(http_port))
    return sum(v for k, v in m.items() if k.startswith("streamd_messages_total{"))


def publish_with_late_pairs(port: int, http_port: int, pairs: int, lag_s: float | None) -> int:
    """Samples 0..N of one stream where every tenth one arrives after the next: ``lag_s``
    later, or (``None``) only once streamd has taken in everything before it."""
    n = 300 + 10 * pairs
    values = normal_series(PROFILES[0], n, STEP_S, np.random.default_rng(1))
    order: list[int] = list(range(300))
    for p in range(pairs):
        base = 300 + 10 * p
        order += [*range(base, base + 8), base + 9, base + 8]  # base+8 arrives late
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for i, t in enumerate(order):
        late = i >= 300 and (i - 300) % 10 == 9
        if late and lag_s is not None:
            time.sleep(lag_s)
        elif late:
            for info in infos:
                info.wait_for_publish(5)
            deadline = time.monotonic() + 20
            while counted(http_port) < len(infos) and time.monotonic() < deadline:
                time.sleep(0.02)
        body = json.dumps({"ts": T0 + t * STEP_S, "value": float(values[t])})
        infos.append(client.publish("sensors/late", body, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=30)
    client.disconnect()
    client.loop_stop()
    return len(infos)


@pytest.mark.parametrize("window_ms", [200, 0])
def test_daemon_scores_samples_that_arrive_late_within_the_window(
    broker: int, tmp_path: Path, window_ms: int
) -> None:
    env = {"STREAMD_STATE__REORDER_WINDOW_MS": str(window_ms)}
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env, f"w{window_ms}")
    try:
        wait_ready(http_port)
        # with the window: 50 ms late; without: late after its newer sample was taken in
        sent = publish_with_late_pairs(broker, http_port, 10, 0.05 if window_ms else None)
        deadline = time.monotonic() + 20
        while counted(http_port) < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        m = metric_values(scrape(http_port))
        late = m['streamd_messages_total{result="out_of_order"}']
        accepted = m['streamd_messages_total{result="accepted"}']
        print(f"reorder window {window_ms} ms: sent {sent}, accepted {accepted}, late {late}")
        if window_ms:
            assert late == 0 and accepted == sent
        else:
            assert late == 10 and accepted == sent - 10
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("max_inflight", [200, 65535])
def test_after_a_backlog_the_window_reaches_back_as_far_as_the_brokers_inflight_limit(
    tmp_path: Path, max_inflight: int
) -> None:
    """20 streams send 30 samples each, then 3 older ones each, in one burst, as a broker
    delivers a backlog with a publisher's resends behind it. streamd acknowledges a sample a
    window after it arrives, so the broker sends ``max_inflight`` of the burst at first and
    the rest windows later: the older samples, 600 messages back, are all scored only when
    the limit covers the burst; below it, some of them come too late (docs/deploy.md,
    "Publishers that reorder")."""
    from streamd.tools.harness import free_port, start_broker

    port = free_port()
    broker, _ = start_broker(port, tmp_path, max_inflight=max_inflight)
    env = {"STREAMD_STATE__REORDER_WINDOW_MS": "1000"}
    proc, http_port, log = start(port, DEFAULT_MODEL, tmp_path, env, f"i{max_inflight}")
    try:
        wait_ready(http_port)
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        client.max_inflight_messages_set(0)  # the publisher sends the burst at once
        client.connect("127.0.0.1", port)
        client.loop_start()
        newer = [(k, t) for t in range(10, 40) for k in range(20)]
        older = [(k, t) for t in range(7, 10) for k in range(20)]
        infos = [
            client.publish(f"sensors/s{k}", json.dumps({"ts": T0 + t * STEP_S, "value": 20.0}), 1)
            for k, t in newer + older
        ]
        for info in infos:
            info.wait_for_publish(timeout=30)
        client.disconnect()
        client.loop_stop()
        deadline = time.monotonic() + 30
        while counted(http_port) < len(infos) and time.monotonic() < deadline:
            time.sleep(0.1)
        m = metric_values(scrape(http_port))
        late = m['streamd_messages_total{result="out_of_order"}']
        accepted = m['streamd_messages_total{result="accepted"}']
        print(f"max_inflight_messages {max_inflight}: accepted {accepted:.0f}, late {late:.0f}")
        assert accepted + late == len(infos)
        if max_inflight < len(newer):
            # how many come too late depends on how the broker's refills, batch by batch as
            # streamd acknowledges, interleave with the scoring (21 to 60 of 60 in CI runs):
            # an older sample is late only where a newer one of its stream was already
            # released; the contrast with the limit that covers the burst is that some are
            assert late > 0
        else:
            assert late == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.terminate()
        broker.wait(10)


@pytest.mark.parametrize("qos", [1, 0])
def test_a_flooding_stream_is_scored_whole_at_qos_1_and_rate_limited_at_qos_0(
    broker: int, tmp_path: Path, qos: int
) -> None:
    """One stream bursts 3,000 samples; with 2 rounds per batch and a backlog of 100 it
    cannot take whole batches. At QoS 1 nothing is dropped: what waits beyond the backlog
    holds the receiver back (back-pressure), and every sample is scored, in order. At QoS 0
    what does not fit its backlog is dropped as rate_limited (logged with its name). Every
    message is counted once. How the other streams fare is measured by bench/fairness.py."""
    env = {
        "STREAMD_INFERENCE__MAX_ROUNDS_PER_BATCH": "2",
        "STREAMD_INFERENCE__STREAM_BACKLOG_MAX": "100",
        "STREAMD_MQTT__QOS": str(qos),
    }
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env, f"flood{qos}")
    try:
        wait_ready(http_port)
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", broker)
        client.loop_start()
        infos = []
        for t in range(3000):
            body = json.dumps({"ts": T0 + t, "value": 20.0 + (t % 7) * 0.1})
            infos.append(client.publish("sensors/flood", body, qos=qos))
            if t % 100 == 0:
                slow = json.dumps({"ts": T0 + t, "value": 5.0})
                infos.append(client.publish("sensors/slow", slow, qos=qos))
        for info in infos:
            info.wait_for_publish(timeout=30)
        client.disconnect()
        client.loop_stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = metric_values(scrape(http_port))
            counted = sum(v for k, v in m.items() if k.startswith("streamd_messages_total{"))
            if counted >= len(infos) and m["streamd_queue_depth"] == 0:
                break
            time.sleep(0.2)
        limited = m['streamd_messages_total{result="rate_limited"}']
        accepted = m['streamd_messages_total{result="accepted"}']
        late = m['streamd_messages_total{result="out_of_order"}']
        print(
            f"flood at QoS {qos}: sent {len(infos)}, accepted {accepted:.0f}, limited {limited:.0f}"
        )
        assert counted == len(infos) and late == 0
        if qos:
            assert accepted == len(infos) and limited == 0
        else:
            assert limited > 0 and accepted + limited == len(infos)
            assert "stream sensors/flood sends faster than streamd scores it" in log.read_text()
        seen = 'streamd_stream_last_seen_timestamp_seconds{stream="sensors/slow"}'
        assert seen in m
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
