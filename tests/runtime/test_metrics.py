"""Metrics on a fresh registry: bounded labels, the per-stream score cap."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streamd.config import HttpSettings
from streamd.runtime.metrics import LATENCY_BUCKETS, RESULTS, BatchHistogram, Metrics


def test_every_result_label_is_exported_from_the_start() -> None:
    reg = CollectorRegistry()
    Metrics(reg, HttpSettings().stream_score_cap)
    for result in RESULTS:
        assert reg.get_sample_value("streamd_messages_total", {"result": result}) == 0.0


def exported(reg: CollectorRegistry) -> set[str]:
    text = generate_latest(reg).decode()
    prefix = 'streamd_stream_last_seen_timestamp_seconds{stream="'
    return {ln[len(prefix) :].split('"')[0] for ln in text.splitlines() if ln.startswith(prefix)}


def test_per_stream_series_are_capped_and_an_exported_stream_keeps_updating() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, stream_score_cap=2)
    m.streams.update(100.0, {"a": (0.1, False, 100.0), "b": (0.2, False, 100.0)})
    m.streams.update(101.0, {"c": (0.9, False, 101.0), "a": (0.4, False, 101.0)})
    assert exported(reg) == {"a", "b"}  # c is as active as they are: no churn
    assert reg.get_sample_value("streamd_stream_anomaly_score", {"stream": "a"}) == 0.4
    m.streams.forget("a")
    m.streams.update(102.0, {"c": (0.9, False, 102.0)})
    assert exported(reg) == {"b", "c"} and len(m.streams) == 2


def test_an_anomaly_takes_the_series_of_junk_topics_seen_first() -> None:
    """150 one-message topics fill the cap; a real stream entering an anomaly still gets
    its series (the weakest exported one gives way), and keeps them after it resolves."""
    reg = CollectorRegistry()
    m = Metrics(reg, stream_score_cap=100)
    m.streams.update(0.0, {f"junk/{k}": (None, False, 0.0) for k in range(150)})
    assert len(m.streams) == 100
    m.streams.update(5.0, {"pump": (0.2, False, 5.0)})
    assert "pump" not in m.streams  # an ordinary stream waits until the junk goes stale
    m.streams.update(6.0, {"pump": (1.0, True, 6.0)})
    assert "pump" in m.streams and len(m.streams) == 100
    assert reg.get_sample_value("streamd_stream_anomalous", {"stream": "pump"}) == 1.0
    # resolved: it stays (recently anomalous) against active newcomers
    m.streams.update(7.0, {"pump": (0.1, False, 7.0)})
    m.streams.update(8.0, {f"new/{k}": (0.3, False, 8.0) for k in range(200)})
    assert reg.get_sample_value("streamd_stream_anomalous", {"stream": "pump"}) == 0.0
    # stale junk gives way to streams seen now
    m.streams.update(1000.0, {"fresh": (0.1, False, 1000.0)})
    assert "fresh" in m.streams and "pump" in m.streams


def test_batch_histogram_exposes_what_a_histogram_of_the_same_values_does() -> None:
    values = np.random.default_rng(0).exponential(0.05, 2000)
    values[: len(LATENCY_BUCKETS)] = LATENCY_BUCKETS  # on a bound: counted in that bucket
    one, many = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat_seconds", "doc", buckets=LATENCY_BUCKETS, registry=one)
    for v in values:
        reference.observe(v)
    batched = BatchHistogram("lat_seconds", "doc", LATENCY_BUCKETS, many)
    batched.observe_many(values[:700])
    batched.observe_many(values[700:])

    def lines(reg: CollectorRegistry) -> dict[str, float]:
        text = generate_latest(reg).decode()
        rows = [ln.rsplit(" ", 1) for ln in text.splitlines() if ln and ln[0] != "#"]
        return {k: float(v) for k, v in rows if "_created" not in k}

    want, got = lines(one), lines(many)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
