"""Metrics on a fresh registry: bounded labels, the per-stream score cap."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streamd.metrics import RESULTS, Metrics


def test_every_result_label_is_exported_from_the_start() -> None:
    reg = CollectorRegistry()
    Metrics(reg)
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
