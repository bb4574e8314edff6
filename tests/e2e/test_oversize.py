"""A huge payload costs the receiver nothing: it is skipped as it streams in, never held.

Mosquitto lets a client publish up to 256 MB by default. The mqtt5 link (the default on
MQTT 5) reads a PUBLISH over ``mqtt.max_payload_bytes`` in pieces and drops them as they
come, so the service's memory does not grow by the payload, and the next message of the
same connection is read as usual.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import metric_values, rss_mb, scrape, wait_ready
from tests.e2e.support import T0, start, stop
from tests.helpers import DEFAULT_MODEL

PAYLOAD_MB = 128


def test_a_128_mb_payload_is_skipped_without_holding_it(broker: int, tmp_path: Path) -> None:
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, {"STREAMD_MQTT__PROTOCOL": "5"})
    peak = [0.0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(proc.pid))
            time.sleep(0.01)

    try:
        wait_ready(http_port)
        before = rss_mb(proc.pid)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        c.connect("127.0.0.1", broker)
        c.loop_start()
        c.publish("sensors/huge", b"x" * (PAYLOAD_MB << 20), qos=1).wait_for_publish(120)
        after = json.dumps({"ts": T0, "value": 1.0})
        c.publish("sensors/after", after, qos=1).wait_for_publish(30)
        c.disconnect()
        c.loop_stop()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = metric_values(scrape(http_port))
            if m.get('streamd_messages_total{result="accepted"}', 0) >= 1:
                break
            time.sleep(0.2)
        done.set()
        watcher.join()
    finally:
        assert stop(proc) == 0
    assert m.get('streamd_messages_total{result="too_large"}') == 1
    assert m.get('streamd_messages_total{result="accepted"}') == 1  # the next one is read
    grew = peak[0] - before
    print(f"\nRSS before {before:.0f} MB, peak {peak[0]:.0f} MB (+{grew:.1f} MB)")
    assert grew < 16, f"the service grew by {grew:.0f} MB while a {PAYLOAD_MB} MB payload passed"
