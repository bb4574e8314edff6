"""``streamd run``: wire settings, model, pipeline, MQTT, HTTP and the worker together.

Threads: paho's network thread parses and queues; the ``worker`` thread drains batches
(≤ ``batch_max_size`` samples or ≤ ``batch_max_wait_ms``), scores them and publishes
alerts; ``http`` serves metrics. Signal handlers only set a flag; the main loop acts on it.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from types import FrameType

import numpy as np
from prometheus_client import CollectorRegistry

from streamd.config import Settings
from streamd.handoff import SampleQueue
from streamd.http_server import HttpServer
from streamd.inference import Forecaster
from streamd.logs import RateLimitedLog
from streamd.metrics import Metrics
from streamd.mqtt_io import MqttLink
from streamd.payload import PayloadParser, Sample
from streamd.pipeline import DUPLICATE, OUT_OF_ORDER, SCORED, WARMUP, BatchResult, Pipeline
from streamd.scoring import ScoringParams

log = logging.getLogger(__name__)
DRAIN_GRACE_S = 0.3


def topic_safe(stream: str) -> str:
    """A stream id as MQTT topic levels: wildcard characters cannot appear in a topic name."""
    return stream.replace("+", "_").replace("#", "_")


def build_pipeline(settings: Settings, model: Forecaster) -> Pipeline:
    """The scoring pipeline for ``settings`` (shared with ``replay``)."""
    sc = settings.scoring
    params = ScoringParams.from_calibration(
        model.card.calibration,
        smoothing_alpha=sc.smoothing_alpha,
        history_samples=sc.history_samples,
        prior_samples=sc.prior_samples,
        history_warmup=sc.history_warmup,
        threshold=sc.threshold,
        threshold_low=sc.threshold_low,
        enter_after=sc.enter_after,
        leave_after=sc.leave_after,
        max_anomaly_samples=sc.max_anomaly_samples,
    )
    return Pipeline(
        model,
        params,
        mode=settings.inference.mode,
        max_streams=settings.state.max_streams,
        max_gap_s=settings.state.max_gap_s,
        scaling_horizon=sc.scaling_horizon,
        scaling_warmup=sc.scaling_warmup,
    )


class Daemon:
    """One running streamd; :meth:`run` blocks until SIGTERM/SIGINT (or :meth:`request_stop`)."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry, settings.http.stream_score_cap)
        self.model = Forecaster(
            settings.model.path, intra_op_threads=settings.inference.intra_op_threads
        )
        card = self.model.card
        self.metrics.set_model(
            card.name, card.version, str(settings.model.path), settings.inference.mode
        )
        self.pipeline = build_pipeline(settings, self.model)
        self.queue = SampleQueue(settings.inference.queue_max)
        self.metrics.queue_capacity.set(settings.inference.queue_max)
        self.problems = RateLimitedLog(log, settings.logging.per_message_interval_s)
        parser = PayloadParser(
            card.features, settings.mqtt.stream_id, settings.mqtt.max_payload_bytes
        )
        self.link = MqttLink(settings.mqtt, parser, self.queue.put, self.metrics, self.problems)
        self.http = (
            HttpServer(settings.http.host, settings.http.port, self.registry, self.ready)
            if settings.http.enabled
            else None
        )
        self._stop = threading.Event()
        self._worker_done = threading.Event()
        self._worker = threading.Thread(target=self._work, name="worker", daemon=True)
        self.batches = 0

    def ready(self) -> bool:
        return self.link.connected.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()  # only queue the request; the main loop acts

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        if self.http is not None:
            self.http.start()
        self._worker.start()
        self.link.start()
        card = self.model.card
        log.info(
            "streamd running: model %s version %s (%s mode), %d features, window %d",
            card.name,
            card.version,
            self.settings.inference.mode,
            len(card.features),
            card.window,
        )
        while not self._stop.wait(0.5):
            pass
        log.info("stopping: draining %d queued samples", len(self.queue))
        self.link.pause()
        time.sleep(DRAIN_GRACE_S)  # messages already in flight still arrive and are queued
        self._worker_done.set()
        self._worker.join()
        self.link.stop()
        if self.http is not None:
            self.http.stop()
        log.info("stopped after %d batches", self.batches)
        return 0

    # -- worker thread -----------------------------------------------------------------

    def _work(self) -> None:
        inf = self.settings.inference
        wait_s = inf.batch_max_wait_ms / 1000.0
        q = self.queue
        while True:
            batch = q.drain(inf.batch_max_size)
            if not batch:
                if self._worker_done.is_set():
                    return
                q.wait(0.2)
                continue
            deadline = batch[0].received_at_s + wait_s
            while len(batch) < inf.batch_max_size:
                left = deadline - time.time()
                if left <= 0 or not q.wait(left):
                    break
                batch.extend(q.drain(inf.batch_max_size - len(batch)))
            try:
                self._process(batch)
            except Exception:  # a bug must not stop scoring every other stream
                log.exception("worker failed on a batch of %d samples; skipped", len(batch))

    def _process(self, batch: list[Sample]) -> None:
        m = self.metrics
        t0 = time.perf_counter()
        res = self.pipeline.process(batch)
        m.inference_seconds.observe(time.perf_counter() - t0)
        m.batch_size.observe(len(batch))
        self._publish_alerts(res)
        now = time.time()
        counts = np.bincount(res.status, minlength=4)
        m.messages.labels("accepted").inc(int(counts[SCORED] + counts[WARMUP]))
        if counts[OUT_OF_ORDER]:
            m.messages.labels("out_of_order").inc(int(counts[OUT_OF_ORDER]))
        if counts[DUPLICATE]:
            m.messages.labels("duplicate").inc(int(counts[DUPLICATE]))
        m.samples.labels("scored").inc(int(counts[SCORED]))
        m.samples.labels("warmup").inc(int(counts[WARMUP]))
        observe = m.latency_seconds.observe
        for s in batch:
            observe(now - s.received_at_s)
        scored = np.flatnonzero(res.status == SCORED)
        latest = {batch[i].stream: float(res.score[i]) for i in scored}
        for stream, score in latest.items():
            m.set_stream_score(stream, score)
        if self.settings.alerts.publish_scores:
            self._publish_scores(batch, res, scored)
        if res.evicted:
            m.stream_evictions.inc(res.evicted)
            for stream in res.evicted_ids:
                m.forget_stream(stream)  # no stale per-stream series for a stream we dropped
        if res.gap_resets:
            m.stream_resets.inc(res.gap_resets)
        active = self.pipeline.active_streams
        m.active_streams.set(active)
        m.stream_scores_omitted.set(max(0, active - m.exported_score_streams))
        m.queue_depth.set(len(self.queue))
        self.batches += 1

    def _publish_alerts(self, res: BatchResult) -> None:
        a_cfg = self.settings.alerts
        card = self.model.card
        for alert in res.alerts:
            if alert.state == "anomaly":
                self.metrics.anomalies.inc()
            body = json.dumps(alert.payload(card.name, card.version)).encode()
            topic = f"{a_cfg.topic_prefix}/{topic_safe(alert.stream)}"
            if self.link.publish(topic, body, a_cfg.qos):
                self.metrics.alerts_published.labels(alert.state).inc()
            else:
                self.metrics.alert_publish_failures.inc()
                self.problems.warning("alert_publish", "could not publish alert on %s", topic)
            log.info(
                "alert %s stream=%s score=%.3f id=%s",
                alert.state,
                alert.stream,
                alert.score,
                alert.alert_id,
            )

    def _publish_scores(self, batch: list[Sample], res: BatchResult, scored: np.ndarray) -> None:
        a_cfg = self.settings.alerts
        for i in scored:
            s = batch[i]
            body = json.dumps(
                {
                    "stream": s.stream,
                    "ts": s.ts_s,
                    "score": round(float(res.score[i]), 6),
                    "anomalous": bool(res.anomalous[i]),
                }
            ).encode()
            self.link.publish(f"{a_cfg.score_topic_prefix}/{topic_safe(s.stream)}", body, 0)
