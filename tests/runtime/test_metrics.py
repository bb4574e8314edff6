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


def test_per_stream_scores_are_capped_and_the_rest_counted() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, stream_score_cap=2)
    assert m.set_stream_score("a", 0.1, False) and m.set_stream_score("b", 0.2, False)
    assert not m.set_stream_score("c", 0.9, False)  # over the cap: left out
    assert m.set_stream_score("a", 0.4, False)  # an exported stream keeps updating
    assert reg.get_sample_value("streamd_stream_anomaly_score", {"stream": "a"}) == 0.4
    assert reg.get_sample_value("streamd_stream_anomaly_score", {"stream": "c"}) is None
    m.forget_stream("a")
    assert m.set_stream_score("c", 0.9, False) and m.exported_score_streams == 2


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
