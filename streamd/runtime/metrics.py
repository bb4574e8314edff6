"""Prometheus metrics of the daemon, on a registry passed in (tests build a fresh one).

Names follow DESIGN.md (prefix ``streamd_``, unit suffixes). Every label set is bounded:
``result`` takes the values of :data:`RESULTS`; the per-stream score gauge is capped.
"""

from __future__ import annotations

import platform
import threading

import numpy as np
import numpy.typing as npt
import onnxruntime
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from streamd import __version__
from streamd.core.payload import REASONS
from streamd.runtime.stream_series import StreamSeries

RESULTS = ("accepted", *REASONS, "out_of_order", "duplicate", "rate_limited")
# Fine from 1 to 20 ms, where receipt-to-verdict latency lives at a steady rate, so a p99
# read from the buckets (histogram_quantile interpolates inside one) can show a change of a
# millisecond there; 0.25 s and 1 s are bounds because the shipped alert rules compare to them.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.0125, 0.015, 0.02, 0.03,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class BatchHistogram:
    """A Prometheus histogram that takes a whole batch of observations in one numpy call.

    ``Histogram.observe`` takes a lock and searches the buckets once per value: per message
    that was a visible share of the worker's time (docs/performance.md has the figures).
    Exposition is the same as a ``Histogram`` of the same name and buckets (``_bucket``,
    ``_count``, ``_sum``).
    """

    def __init__(
        self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation = name, documentation
        self._bounds = np.array(buckets, np.float64)
        self._counts = np.zeros(len(buckets) + 1, np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        counts = np.bincount(
            np.searchsorted(self._bounds, values, side="left"), minlength=len(self._counts)
        )
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> list[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        les = [floatToGoString(b) for b in self._bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        family = HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=[(le, float(c)) for le, c in zip(les, cumulative, strict=True)],
            sum_value=total,
        )
        return [family]


class Metrics:
    """All metrics of one daemon."""

    def __init__(self, registry: CollectorRegistry, stream_score_cap: int) -> None:
        self.registry = registry
        self.messages = Counter(
            "streamd_messages",
            "MQTT messages received, by result (accepted or rejection reason)",
            ["result"],
            registry=registry,
        )
        for r in RESULTS:
            self.messages.labels(r)
        self.samples = Counter(
            "streamd_samples",
            "Accepted samples by outcome (scored, or still warming up)",
            ["outcome"],
            registry=registry,
        )
        for o in ("scored", "warmup"):
            self.samples.labels(o)
        self.anomalies = Counter(
            "streamd_anomalies",
            "Anomalies entered: each an anomaly alert (per source of a stream: forecast, profile)",
            registry=registry,
        )
        self.alerts_published = Counter(
            "streamd_alerts_published",
            "Alert messages published, by state",
            ["state"],
            registry=registry,
        )
        for s in ("anomaly", "resolved"):
            self.alerts_published.labels(s)
        self.alert_publish_failures = Counter(
            "streamd_alert_publish_failures",
            "Alert messages the MQTT client refused",
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "streamd_inference_seconds",
            "Time of one ONNX Runtime batch (all rounds)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "streamd_batch_size",
            "Samples per inference batch",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.latency_seconds = BatchHistogram(
            "streamd_end_to_end_latency_seconds",
            "Receipt of a message to its verdict",
            LATENCY_BUCKETS,
            registry,
        )
        self.active_streams = Gauge(
            "streamd_active_streams", "Streams with state held", registry=registry
        )
        self.stream_evictions = Counter(
            "streamd_stream_evictions",
            "Streams evicted at the stream cap (least recently seen)",
            registry=registry,
        )
        self.stream_resets = Counter(
            "streamd_stream_resets", "Streams sent back to warm-up after a gap", registry=registry
        )
        self.queue_depth = Gauge(
            "streamd_queue_depth",
            "Samples waiting for the worker (queued, or held to restore their order)",
            registry=registry,
        )
        self.queue_capacity = Gauge(
            "streamd_queue_capacity", "Size of the bounded queue", registry=registry
        )
        self.mqtt_connected = Gauge(
            "streamd_mqtt_connected", "1 while connected to the broker", registry=registry
        )
        self.mqtt_reconnects = Counter(
            "streamd_mqtt_reconnects", "Connections after the first", registry=registry
        )
        self.mqtt_connect_failures = Counter(
            "streamd_mqtt_connect_failures",
            "Refused or failed connection attempts",
            registry=registry,
        )
        self.model_info = Info("streamd_model", "The model in use", registry=registry)
        self.build_info = Info("streamd_build", "streamd build", registry=registry)
        self.build_info.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "onnxruntime": onnxruntime.__version__,
            }
        )
        self.streams = StreamSeries(
            Gauge(
                "streamd_stream_anomaly_score",
                "Latest anomaly score of a stream (capped set: the streams that matter most)",
                ["stream"],
                registry=registry,
            ),
            Gauge(
                "streamd_stream_anomalous",
                "1 while a stream is in an anomaly (same capped set as the score)",
                ["stream"],
                registry=registry,
            ),
            Gauge(
                "streamd_stream_last_seen_timestamp_seconds",
                "When a stream's last accepted sample arrived (same capped set as the score)",
                ["stream"],
                registry=registry,
            ),
            stream_score_cap,
        )
        self.stream_scores_omitted = Gauge(
            "streamd_stream_scores_omitted",
            "Streams left out of the per-stream score gauge (cap)",
            registry=registry,
        )
        self.model_reloads = Counter(
            "streamd_model_reloads",
            "Model reloads (SIGHUP), by result; a failed one keeps the old model",
            ["result"],
            registry=registry,
        )
        self.snapshot_writes = Counter(
            "streamd_snapshot_writes",
            "State snapshot writes, by result",
            ["result"],
            registry=registry,
        )
        for r in ("ok", "failed"):
            self.model_reloads.labels(r)
            self.snapshot_writes.labels(r)
        self.snapshot_last_success = Gauge(
            "streamd_snapshot_last_success_timestamp_seconds",
            "When the state snapshot was last written",
            registry=registry,
        )
        self.snapshot_discarded = Counter(
            "streamd_snapshot_discarded",
            "Snapshots not loaded at start (another model or mode, or damaged)",
            registry=registry,
        )
        self.snapshot_restored_streams = Gauge(
            "streamd_snapshot_restored_streams",
            "Streams restored from the snapshot at start",
            registry=registry,
        )

    def set_model(self, name: str, version: str, path: str, mode: str) -> None:
        self.model_info.info({"name": name, "version": version, "path": path, "mode": mode})
