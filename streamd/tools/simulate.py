"""``streamd simulate``: publish a synthetic scenario (:mod:`streamd.tools.synth`) to MQTT.

The ground truth (stream, kind, first and last sample and their timestamps) is written as
JSON. Bounded in samples per stream and in wall time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.synth import Scenario, build

log = logging.getLogger(__name__)


def publish(
    scenario: Scenario,
    *,
    host: str,
    port: int,
    rate: float,
    qos: int = 1,
    max_seconds: float = 600.0,
    truth_path: Path | None = None,
    extra: list[tuple[str, bytes]] | None = None,
) -> dict[str, Any]:
    """Publish the scenario round-robin at ``rate`` messages/s in total (0: as fast as possible).

    ``extra`` messages (topic, raw payload) are interleaved evenly, e.g. malformed ones for
    tests. Returns counts; stops early after ``max_seconds``.
    """
    series, truth = build(scenario)
    if truth_path is not None:
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        truth_path.write_text(json.dumps([asdict(t) for t in truth], indent=1))
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="")
    client.max_inflight_messages_set(1000)
    client.connect(host, port)
    client.loop_start()
    topics = list(series)
    extra = list(extra or [])
    total = len(topics) * scenario.samples
    every = max(1, total // (len(extra) + 1)) if extra else 0
    published = injected_extra = 0
    t0 = time.monotonic()
    infos = []
    try:
        for t in range(scenario.samples):
            ts = scenario.start_s + t * scenario.step_s
            for topic in topics:
                body = json.dumps({"ts": ts, "value": round(float(series[topic][t]), 6)})
                infos.append(client.publish(topic, body, qos=qos))
                published += 1
                if extra and published % every == 0 and injected_extra < len(extra):
                    x_topic, x_body = extra[injected_extra]
                    infos.append(client.publish(x_topic, x_body, qos=qos))
                    injected_extra += 1
                if rate > 0:
                    ahead = published / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            if time.monotonic() - t0 > max_seconds:
                log.warning("simulate: time limit reached after %d messages", published)
                break
        while injected_extra < len(extra):
            x_topic, x_body = extra[injected_extra]
            infos.append(client.publish(x_topic, x_body, qos=qos))
            injected_extra += 1
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()
    return {
        "published": published,
        "extra": injected_extra,
        "streams": len(topics),
        "anomalies": len(truth),
        "seconds": round(time.monotonic() - t0, 2),
    }
