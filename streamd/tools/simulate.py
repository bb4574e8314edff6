"""``streamd simulate``: publish synthetic sensor streams with injected anomalies to MQTT.

Each stream follows one :data:`streamd.tools.synth.PROFILES` profile; anomalies of the chosen kinds
are injected after a warm-up, and the ground truth (stream, kind, first and last sample and
their timestamps) is written as JSON. Bounded in samples per stream and in wall time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.synth import ANOMALY_KINDS, PROFILES, Injection, inject, normal_series

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scenario:
    """What to publish."""

    streams: int = 6
    samples: int = 1200
    step_s: float = 300.0
    start_s: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    kinds: tuple[str, ...] = ANOMALY_KINDS
    anomaly_start: int = 500  # no anomaly before this sample (warm-up and history)
    anomaly_length: int = 24
    magnitude: float = 3.0  # in units of the stream's standard deviation
    seed: int = 0
    topic_prefix: str = "sensors"


@dataclass(frozen=True)
class Truth:
    stream: str
    topic: str
    kind: str
    start_index: int
    end_index: int
    start_ts: float
    end_ts: float


def build(scenario: Scenario) -> tuple[dict[str, np.ndarray], list[Truth]]:
    """Series per topic and the injected anomalies; one anomaly per stream, kinds in turn."""
    rng = np.random.default_rng(scenario.seed)
    series: dict[str, np.ndarray] = {}
    truth: list[Truth] = []
    for i in range(scenario.streams):
        profile = PROFILES[i % len(PROFILES)]
        topic = f"{scenario.topic_prefix}/{profile.name}-{i:03d}"
        values = normal_series(profile, scenario.samples, scenario.step_s, rng, scenario.start_s)
        if scenario.kinds and scenario.anomaly_start + scenario.anomaly_length < scenario.samples:
            kind = scenario.kinds[i % len(scenario.kinds)]
            start = int(
                rng.integers(scenario.anomaly_start, scenario.samples - scenario.anomaly_length)
            )
            length = scenario.anomaly_length
            magnitude = scenario.magnitude * (2.0 if kind == "spike" else 1.0)
            values = inject(values, Injection(kind, start, length, magnitude), rng)
            end = start + length - 1
            truth.append(
                Truth(
                    topic,
                    topic,
                    kind,
                    start,
                    end,
                    scenario.start_s + start * scenario.step_s,
                    scenario.start_s + end * scenario.step_s,
                )
            )
        series[topic] = values
    return series, truth


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
