"""``streamd run``: wire settings, model, pipeline, MQTT, HTTP and the worker together.

Processes and threads: a child process (or, with ``mqtt.receiver = "thread"``, the
``mqtt-receiver`` thread) runs the MQTT client (:mod:`streamd.mqtt_child`) and forwards what
it receives; the ``mqtt-reader`` thread parses and queues it (:mod:`streamd.mqtt_proxy`); the
``worker`` thread drains batches (≤ ``batch_max_size`` samples or ≤ ``batch_max_wait_ms``),
scores them and publishes alerts through the receiver; ``http`` serves metrics. Signal
handlers only set a flag; the main loop acts on it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Mapping
from operator import attrgetter
from types import FrameType

import numpy as np
from prometheus_client import CollectorRegistry

from streamd import snapshot
from streamd.backlog import StreamBacklog
from streamd.config import Settings
from streamd.errors import ModelError
from streamd.handoff import SampleQueue
from streamd.http_server import HttpServer
from streamd.inference import Forecaster
from streamd.logs import RateLimitedLog
from streamd.metrics import Metrics
from streamd.mqtt_proxy import MqttProxy
from streamd.notify import Notifier
from streamd.payload import PayloadParser, Sample
from streamd.pipeline import (
    DEFERRED,
    DUPLICATE,
    OUT_OF_ORDER,
    SCORED,
    WARMUP,
    BatchResult,
    Pipeline,
)
from streamd.reorder import ReorderBuffer
from streamd.scoring import ScoringParams

log = logging.getLogger(__name__)
STATUS_INTERVAL_S = 5.0
RELOAD_TIMEOUT_S = 30.0


def topic_safe(stream: str) -> str:
    """A stream id as MQTT topic levels: wildcard characters cannot appear in a topic name."""
    return stream.replace("+", "_").replace("#", "_")


def scoring_params(settings: Settings, model: Forecaster) -> ScoringParams:
    """The scoring settings with ``model``'s calibration."""
    sc = settings.scoring
    return ScoringParams.from_calibration(
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


def build_pipeline(settings: Settings, model: Forecaster) -> Pipeline:
    """The scoring pipeline for ``settings`` (shared with ``replay``)."""
    sc = settings.scoring
    return Pipeline(
        model,
        scoring_params(settings, model),
        mode=settings.inference.mode,
        max_streams=settings.state.max_streams,
        max_gap_s=settings.state.max_gap_s,
        scaling_horizon=sc.scaling_horizon,
        scaling_warmup=sc.scaling_warmup,
        profile=sc.profile,
        profile_bins=sc.profile_bins,
        profile_periods=sc.profile_periods,
    )


class Daemon:
    """One running streamd; :meth:`run` blocks until SIGTERM/SIGINT (or :meth:`request_stop`).

    The worker thread owns the pipeline: model swaps (SIGHUP) and periodic snapshots happen
    there, between batches. The main thread only handles signals, systemd notifications and
    the watchdog, which it pings only while the worker shows progress.
    """

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry, settings.http.stream_score_cap)
        self.notifier = Notifier(dict(env))
        self.model = self._load_model()
        card = self.model.card
        self.metrics.set_model(
            card.name, card.version, str(settings.model.path), settings.inference.mode
        )
        self.pipeline = build_pipeline(settings, self.model)
        self.snapshot_path = settings.state.resolved_snapshot_path(env)
        self._restore_snapshot()
        self.queue = SampleQueue(settings.inference.queue_max)
        self.reorder = ReorderBuffer(settings.state.reorder_window_ms / 1000.0)
        inf = settings.inference
        self.backlog = StreamBacklog(inf.stream_backlog_max, inf.queue_max)
        self.metrics.queue_capacity.set(settings.inference.queue_max)
        self.problems = RateLimitedLog(log, settings.logging.per_message_interval_s)
        parser = PayloadParser(
            card.features, settings.mqtt.stream_id, settings.mqtt.max_payload_bytes
        )
        self.link = MqttProxy(
            settings, parser, self.queue.put, self.metrics, self.problems, self.request_stop
        )
        self.http = (
            HttpServer(settings.http.host, settings.http.port, self.registry, self.ready)
            if settings.http.enabled
            else None
        )
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._worker_done = threading.Event()
        self._worker = threading.Thread(target=self._work, name="worker", daemon=True)
        self._swap: tuple[Forecaster, threading.Event] | None = None
        self._swap_lock = threading.Lock()
        self.heartbeat = time.monotonic()  # the worker's last sign of life
        self._next_snapshot = time.monotonic() + settings.state.snapshot_interval_s
        self.batches = 0

    def ready(self) -> bool:
        return self.link.connected.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # only queue the request; the main loop acts
        (self._reload if signum == signal.SIGHUP else self._stop).set()

    def _load_model(self) -> Forecaster:
        return Forecaster(
            self.settings.model.path, intra_op_threads=self.settings.inference.intra_op_threads
        )

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.link.start()  # first: a receiver that cannot start fails the start cleanly
        if self.http is not None:
            self.http.start()
        self._worker.start()
        card = self.model.card
        log.info(
            "streamd running: model %s version %s (%s mode), %d features, window %d",
            card.name,
            card.version,
            self.settings.inference.mode,
            len(card.features),
            card.window,
        )
        self._supervise()
        return self._shutdown()

    def _supervise(self) -> None:
        """Main loop: READY once connected, STATUS, watchdog pings, reloads; until stop."""
        notified_ready = False
        last_status = 0.0
        tick = 0.5 if self.notifier.watchdog_s is None else min(0.5, self.notifier.watchdog_s / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                self._reload_model()
            if not notified_ready and self.ready():
                self.notifier.ready(self._status())
                notified_ready = True
            elif now - last_status >= STATUS_INTERVAL_S:
                self.notifier.status(self._status())
                last_status = now
            wd = self.notifier.watchdog_s
            if wd is not None and now - self.heartbeat < wd / 2:
                self.notifier.watchdog()  # a stuck worker stops the pings; systemd restarts us

    def _waiting(self) -> int:
        """Samples not yet scored: queued, held for reordering, or in a stream's backlog."""
        return len(self.queue) + len(self.reorder) + len(self.backlog)

    def _status(self) -> str:
        conn = "connected" if self.ready() else "connecting to broker"
        return (
            f"{conn}; model {self.model.card.version}; {self.pipeline.active_streams} streams; "
            f"{self.batches} batches"
        )

    def _shutdown(self) -> int:
        st = self.settings.state
        self.notifier.stopping()
        log.info("stopping: draining %d queued samples", self._waiting())
        self.link.pause()  # returns once everything received is queued
        self._worker_done.set()
        self._worker.join(st.stop_timeout_s)
        code = 1 if self.link.lost else 0
        if self._worker.is_alive():
            log.error(
                "the queue did not drain within %.1f s (stop_timeout_s); %d samples not scored",
                st.stop_timeout_s,
                self._waiting(),
            )
            code = 1
        else:
            self._write_snapshot()
        self.link.stop()
        if self.http is not None:
            self.http.stop()
        self.notifier.close()
        log.info("stopped after %d batches", self.batches)
        return code

    # -- model reload (main thread prepares, worker swaps) -------------------------------

    def _reload_model(self) -> None:
        path = self.settings.model.path
        self.notifier.reloading()
        log.info("reloading the model from %s", path)
        try:
            model = self._load_model()  # checks the graph and runs the card's self-test
            old = self.model.card
            if model.card.features != old.features:
                raise ModelError(
                    str(path),
                    f"reads features {list(model.card.features)}, the running model "
                    f"{list(old.features)}; restart streamd to change features",
                )
        except (ModelError, OSError) as e:
            self.metrics.model_reloads.labels("failed").inc()
            log.error("model reload failed, keeping version %s: %s", self.model.card.version, e)
            self.notifier.ready(self._status())
            return
        done = threading.Event()
        with self._swap_lock:
            self._swap = (model, done)
        if not done.wait(RELOAD_TIMEOUT_S):
            log.error("the worker did not take the new model within %.0f s", RELOAD_TIMEOUT_S)
        card = model.card
        self.metrics.set_model(card.name, card.version, str(path), self.settings.inference.mode)
        self.metrics.model_reloads.labels("ok").inc()
        self.notifier.ready(self._status())

    def _take_swap(self) -> None:
        with self._swap_lock:
            swap, self._swap = self._swap, None
        if swap is None:
            return
        model, done = swap
        old = self.model.card
        if self.pipeline.can_swap_to(model):
            self.pipeline.swap_model(model, scoring_params(self.settings, model))
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

    # -- state snapshots ----------------------------------------------------------------

    def _restore_snapshot(self) -> None:
        path = self.snapshot_path
        if path is None:
            log.info("no state snapshots (set state.snapshot_path or run under systemd)")
            return
        if not path.exists():
            log.info("no state snapshot at %s yet; streams start cold", path)
            return
        try:
            got = snapshot.load(self.pipeline, path)
        except (snapshot.SnapshotMismatch, ValueError, OSError, KeyError) as e:
            self.metrics.snapshot_discarded.inc()
            log.warning("state snapshot %s not loaded: %s", path, e)
            self.pipeline = build_pipeline(self.settings, self.model)  # drop partial restores
            return
        self.metrics.snapshot_restored_streams.set(got.streams)
        self.metrics.active_streams.set(self.pipeline.active_streams)
        log.info(
            "restored %d streams (%d open alerts) from %s, written %.0f s ago",
            got.streams,
            got.open_alerts,
            path,
            time.time() - got.saved_at,
        )

    def _write_snapshot(self) -> None:
        path = self.snapshot_path
        if path is None:
            return
        t0 = time.perf_counter()
        try:
            size = snapshot.save(self.pipeline, path)
        except OSError as e:
            self.metrics.snapshot_writes.labels("failed").inc()
            self.problems.error("snapshot", "cannot write state snapshot %s: %s", path, e)
            return
        self.metrics.snapshot_writes.labels("ok").inc()
        self.metrics.snapshot_last_success.set(time.time())
        log.debug(
            "snapshot of %d streams, %d bytes, in %.1f ms",
            self.pipeline.active_streams,
            size,
            (time.perf_counter() - t0) * 1000,
        )

    # -- worker thread -----------------------------------------------------------------

    def _work(self) -> None:
        interval = self.settings.state.snapshot_interval_s
        while True:
            self.heartbeat = now = time.monotonic()
            self._take_swap()
            if now >= self._next_snapshot:
                self._write_snapshot()
                self._next_snapshot = now + interval
            batch = self._next_batch()
            if not batch:
                if self._worker_done.is_set() and not self._waiting():
                    return
                continue
            done = batch
            try:
                done = self._process(batch)
            except Exception:  # a bug must not stop scoring every other stream
                log.exception("worker failed on a batch of %d samples; skipped", len(batch))
            finally:
                self.link.ack(done)

    def _next_batch(self) -> list[Sample]:
        """The next batch of due samples, or [] after waiting up to 0.2 s for one.

        Samples move from the queue into the reorder buffer, which releases them
        ``reorder_window_ms`` after arrival; a batch then waits up to ``batch_max_wait_ms``
        to fill. At shutdown everything held is due at once.
        """
        inf, q, buf = self.settings.inference, self.queue, self.reorder
        room = max(0, inf.queue_max - len(buf))
        buf.add(q.drain(room))
        stopping = self._worker_done.is_set()
        if len(self.backlog):  # what fast streams left over goes first, without waiting
            batch = self.backlog.take(inf.max_rounds_per_batch)
            batch.extend(buf.release(time.time(), max(0, inf.batch_max_size - len(batch))))
            batch.sort(key=attrgetter("ts_s"))
            return batch
        batch = buf.release(math.inf if stopping else time.time(), inf.batch_max_size)
        if not batch:
            if not stopping:
                q.wait(max(0.0, min(0.2, buf.next_due() - time.time())))
            return batch
        deadline = batch[0].received_at_s + buf.hold_s + inf.batch_max_wait_ms / 1000.0
        while len(batch) < inf.batch_max_size:
            left = deadline - time.time()
            if left <= 0:
                break
            q.wait(min(left, max(0.0, buf.next_due() - time.time())))
            buf.add(q.drain(max(0, inf.queue_max - len(buf))))
            more = buf.release(time.time(), inf.batch_max_size - len(batch))
            if more:
                batch.extend(more)
                batch.sort(key=attrgetter("ts_s"))  # each stream's samples in time order
        return batch

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
        latest = {batch[i].stream: (float(res.score[i]), bool(res.anomalous[i])) for i in scored}
        for stream, (score, anomalous) in latest.items():
            m.set_stream_score(stream, score, anomalous)
        seen = {
            batch[i].stream: batch[i].received_at_s for i in np.flatnonzero(res.status <= WARMUP)
        }
        for stream, when in seen.items():
            m.set_stream_seen(stream, when)
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
        m.queue_depth.set(self._waiting())
        self.batches += 1
        return done

    def _defer(self, batch: list[Sample], deferred: np.ndarray) -> list[Sample]:
        """Move the samples the round cap deferred to the backlog; those it refuses are
        dropped (``rate_limited``). Returns the samples done with (to acknowledge)."""
        refused = self.backlog.put([batch[i] for i in np.flatnonzero(deferred)])
        if refused:
            self.metrics.messages.labels("rate_limited").inc(len(refused))
            self.problems.warning(
                "rate_limited",
                "stream %s sends faster than streamd scores it: %d samples dropped",
                refused[0].stream,
                len(refused),
            )
        return [s for s, d in zip(batch, deferred, strict=True) if not d] + refused

    def _publish_alerts(self, res: BatchResult) -> None:
        a_cfg = self.settings.alerts
        card = self.model.card
        items: list[tuple[str, bytes, int, str | None]] = []
        for alert in res.alerts:
            if alert.state == "anomaly":
                self.metrics.anomalies.inc()
            body = json.dumps(alert.payload(card.name, card.version)).encode()
            topic = f"{a_cfg.topic_prefix}/{topic_safe(alert.stream)}"
            items.append((topic, body, a_cfg.qos, alert.state))
            log.info(
                "alert %s stream=%s score=%.3f id=%s",
                alert.state,
                alert.stream,
                alert.score,
                alert.alert_id,
            )
        self.link.publish(items)  # counted as published or failed once the receiver replies

    def _publish_scores(self, batch: list[Sample], res: BatchResult, scored: np.ndarray) -> None:
        a_cfg = self.settings.alerts
        items: list[tuple[str, bytes, int, str | None]] = []
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
            items.append((f"{a_cfg.score_topic_prefix}/{topic_safe(s.stream)}", body, 0, None))
        self.link.publish(items)
