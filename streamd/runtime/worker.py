"""The worker thread: batch, score, count, publish, acknowledge.

It owns the pipeline: model swaps (prepared by the daemon's main thread on SIGHUP) and
state snapshots happen here, between two batches, so nothing else ever touches per-stream
state. Each batch is scored, its outcomes counted in the metrics, its alerts (and, with
``alerts.publish_scores``, its scores) published, and its samples acknowledged to the broker
once done with: after scoring, so a crash loses nothing the broker was told it had.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Protocol

import numpy as np

from streamd.config import Settings
from streamd.core.alerts import alert_payload, alert_topic
from streamd.core.inference import Forecaster
from streamd.core.params import ScoringParams
from streamd.core.payload import Sample
from streamd.core.pipeline import (
    DEFERRED,
    DUPLICATE,
    OUT_OF_ORDER,
    SCORED,
    WARMUP,
    BatchResult,
    build_pipeline,
)
from streamd.runtime.batcher import Batcher
from streamd.runtime.homeassistant import HomeAssistant
from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.metrics import Metrics
from streamd.runtime.mqtt.messages import Outgoing
from streamd.runtime.state_store import StateStore

log = logging.getLogger(__name__)


class Link(Protocol):
    """What the worker needs of the MQTT side (:class:`streamd.runtime.mqtt.proxy.MqttProxy`)."""

    def ack(self, samples: list[Sample]) -> None: ...

    def publish(self, items: list[Outgoing]) -> None: ...


class Worker:
    """The ``worker`` thread and the pipeline it owns."""

    def __init__(
        self,
        settings: Settings,
        model: Forecaster,
        batcher: Batcher,
        link: Link,
        metrics: Metrics,
        problems: RateLimitedLog,
        store: StateStore,
    ) -> None:
        self.settings = settings
        self.model = model
        self.pipeline = build_pipeline(settings, model)
        self.batcher = batcher
        self.link = link
        self.metrics = metrics
        self.problems = problems
        self.store = store
        self.homeassistant = HomeAssistant(settings) if settings.homeassistant.enabled else None
        self.heartbeat = time.monotonic()  # the loop's last sign of life (the watchdog reads it)
        self.batches = 0
        self._done = threading.Event()  # set at shutdown: drain what waits, then end
        self._swap: tuple[Forecaster, threading.Event] | None = None
        self._swap_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="worker", daemon=True)
        self._next_snapshot = time.monotonic() + settings.state.snapshot_interval_s

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout_s: float) -> bool:
        """Score everything that waits, then end; false if that took longer than ``timeout_s``
        (the final snapshot is then not written: the thread still owns the state)."""
        self._done.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            return False
        self.write_snapshot()
        return True

    def swap(self, model: Forecaster, timeout_s: float) -> bool:
        """Hand ``model`` (loaded and self-tested) to the loop; true once it serves."""
        done = threading.Event()
        with self._swap_lock:
            self._swap = (model, done)
        return done.wait(timeout_s)

    # -- the loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        interval = self.settings.state.snapshot_interval_s
        while True:
            self.heartbeat = now = time.monotonic()
            self._take_swap()
            if now >= self._next_snapshot:
                self.write_snapshot()
                self._next_snapshot = now + interval
            stopping = self._done.is_set()
            batch = self.batcher.next_batch(stopping)
            if not batch:
                if stopping and not len(self.batcher):
                    return
                continue
            done = batch
            try:
                done = self._process(batch)
            except Exception:  # a bug must not stop scoring every other stream
                log.exception("worker failed on a batch of %d samples; skipped", len(batch))
            finally:
                self.link.ack(done)
                self._count_refused()

    def _take_swap(self) -> None:
        with self._swap_lock:
            swap, self._swap = self._swap, None
        if swap is None:
            return
        model, done = swap
        old = self.model.card
        if self.pipeline.can_swap_to(model):
            params = ScoringParams.from_settings(self.settings.scoring, model.card.calibration)
            self.pipeline.swap_model(model, params)
            kept = "streams kept"
        else:
            self.pipeline = build_pipeline(self.settings, model)
            kept = "other inputs: every stream warms up again"
        self.model = model
        log.info(
            "model %s version %s replaced version %s (%s)",
            model.card.name,
            model.card.version,
            old.version,
            kept,
        )
        done.set()

    def _process(self, batch: list[Sample]) -> list[Sample]:
        """Score ``batch``; returns the samples done with (to acknowledge), not the deferred."""
        m = self.metrics
        t0 = time.perf_counter()
        res = self.pipeline.process(batch, self.settings.inference.max_rounds_per_batch)
        m.inference_seconds.observe(time.perf_counter() - t0)
        m.batch_size.observe(len(batch))
        self._publish_alerts(res)
        now = time.time()
        counts = np.bincount(res.status, minlength=5)
        done = batch
        deferred = res.status == DEFERRED
        if counts[DEFERRED]:
            done = self._defer(batch, deferred)
        m.messages.labels("accepted").inc(int(counts[SCORED] + counts[WARMUP]))
        if counts[OUT_OF_ORDER]:
            m.messages.labels("out_of_order").inc(int(counts[OUT_OF_ORDER]))
        if counts[DUPLICATE]:
            m.messages.labels("duplicate").inc(int(counts[DUPLICATE]))
        m.samples.labels("scored").inc(int(counts[SCORED]))
        m.samples.labels("warmup").inc(int(counts[WARMUP]))
        scored_now = batch if done is batch else [batch[i] for i in np.flatnonzero(~deferred)]
        received = np.fromiter((s.received_at_s for s in scored_now), np.float64, len(scored_now))
        m.latency_seconds.observe_many(now - received)  # deferred samples: once scored
        scored = np.flatnonzero(res.status == SCORED)
        news: dict[str, tuple[float | None, bool, float]] = {
            batch[i].stream: (None, False, batch[i].received_at_s)
            for i in np.flatnonzero(res.status <= WARMUP)
        }
        for i in scored:  # after the warm-up rows: a stream's latest score wins
            s = batch[i]
            news[s.stream] = (float(res.score[i]), bool(res.anomalous[i]), s.received_at_s)
        added, removed = m.streams.update(now, news)
        if self.homeassistant is not None:
            ha = self.homeassistant
            items = [o for s in added for o in ha.announce(s)]
            items += [o for s in removed for o in ha.withdraw(s)]
            self.link.publish(items + ha.states(now, news, m.streams))
        if self.settings.alerts.publish_scores:
            self._publish_scores(batch, res, scored)
        if res.evicted:
            m.stream_evictions.inc(res.evicted)
            for stream in res.evicted_ids:  # no stale per-stream series for a stream we dropped
                if m.streams.forget(stream) and self.homeassistant is not None:
                    self.link.publish(self.homeassistant.withdraw(stream))
        if res.gap_resets:
            m.stream_resets.inc(res.gap_resets)
        active = self.pipeline.active_streams
        m.active_streams.set(active)
        m.stream_scores_omitted.set(max(0, active - len(m.streams)))
        m.queue_depth.set(len(self.batcher))
        self.batches += 1
        return done

    def _defer(self, batch: list[Sample], deferred: np.ndarray) -> list[Sample]:
        """Move the samples the round cap deferred to the backlog; returns the samples done
        with (to acknowledge)."""
        self.batcher.defer([batch[i] for i in np.flatnonzero(deferred)])
        return [s for s, d in zip(batch, deferred, strict=True) if not d]

    def _count_refused(self) -> None:
        """QoS 0 samples of a stream sending faster than it is scored: dropped, counted."""
        refused = self.batcher.take_refused()
        if refused:
            self.metrics.messages.labels("rate_limited").inc(len(refused))
            self.problems.warning(
                "rate_limited",
                "stream %s sends faster than streamd scores it: %d QoS 0 samples dropped",
                refused[0].stream,
                len(refused),
            )

    def _publish_alerts(self, res: BatchResult) -> None:
        a_cfg = self.settings.alerts
        card = self.model.card
        items: list[Outgoing] = []
        for alert in res.alerts:
            if alert.state == "anomaly":
                self.metrics.anomalies.inc()
            body = json.dumps(alert_payload(alert, card.name, card.version)).encode()
            topic = alert_topic(a_cfg.topic_prefix, alert.stream)
            items.append(Outgoing(topic, body, a_cfg.qos, alert.state))
            log.info(
                "alert %s stream=%s score=%.3f id=%s",
                alert.state,
                alert.stream,
                alert.score,
                alert.alert_id,
            )
        self.link.publish(items)  # counted as published or failed once the receiver replies

    def _publish_scores(self, batch: list[Sample], res: BatchResult, scored: np.ndarray) -> None:
        prefix = self.settings.alerts.score_topic_prefix
        items: list[Outgoing] = []
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
            items.append(Outgoing(alert_topic(prefix, s.stream), body, 0, None))
        self.link.publish(items)

    # -- state snapshots -----------------------------------------------------------------

    def restore_snapshot(self) -> None:
        """Resume from the snapshots at start, those of this model and mode."""
        self.pipeline = self.store.restore(
            self.pipeline, lambda: build_pipeline(self.settings, self.model)
        )

    def write_snapshot(self) -> None:
        self.store.write(self.pipeline)
