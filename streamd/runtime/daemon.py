"""``streamd run``: the daemon's lifecycle: start, supervise, reload, shut down.

The MQTT receiver (a child process, or the ``mqtt-receiver`` thread) forwards what it
receives; the ``mqtt-reader`` thread parses it into the batcher (:mod:`.mqtt.proxy`); the
``worker`` thread scores, counts, publishes and acknowledges (:mod:`.worker`); ``http``
serves metrics. Signal handlers only set a flag; the main loop here acts on it, and pings
systemd's watchdog only while the worker shows progress.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from types import FrameType

from prometheus_client import CollectorRegistry

from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import PayloadParser
from streamd.errors import ModelError
from streamd.runtime.batcher import Batcher
from streamd.runtime.http_server import HttpServer
from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.metrics import Metrics
from streamd.runtime.mqtt.proxy import MqttProxy
from streamd.runtime.notify import Notifier
from streamd.runtime.state_store import StateStore
from streamd.runtime.worker import Worker

log = logging.getLogger(__name__)
STATUS_INTERVAL_S = 5.0
RELOAD_TIMEOUT_S = 30.0


class Daemon:
    """One running streamd; :meth:`run` blocks until SIGTERM/SIGINT (or :meth:`request_stop`)."""

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
        model = self._load_model()
        self._set_model_info(model)
        self.batcher = Batcher.from_settings(settings)
        self.metrics.queue_capacity.set(settings.inference.queue_max)
        problems = RateLimitedLog(log, settings.logging.per_message_interval_s)
        mq = settings.mqtt
        parser = PayloadParser(
            model.card.features, mq.stream_id, mq.max_payload_bytes, settings.state.max_clock_skew_s
        )
        self.link = MqttProxy(
            settings, parser, self.batcher, self.metrics, problems, self.request_stop
        )
        self.worker = Worker(
            settings,
            model,
            self.batcher,
            self.link,
            self.metrics,
            problems,
            StateStore.from_settings(settings, env, self.link.partition_of, self.metrics, problems),
        )
        self.worker.restore_snapshot()
        self.http = (
            HttpServer(settings.http.host, settings.http.port, self.registry, self.ready)
            if settings.http.enabled
            else None
        )
        self._stop = threading.Event()
        self._reload = threading.Event()

    def ready(self) -> bool:
        return self.link.connected.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # only queue the request; the main loop acts
        (self._reload if signum == signal.SIGHUP else self._stop).set()

    def _load_model(self) -> Forecaster:
        return Forecaster(
            self.settings.model.resolved_path(),
            intra_op_threads=self.settings.inference.intra_op_threads,
        )

    def _set_model_info(self, model: Forecaster) -> None:
        card, s = model.card, self.settings
        self.metrics.set_model(
            card.name, card.version, str(s.model.resolved_path()), s.inference.mode
        )

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.link.start()  # first: a receiver that cannot start fails the start cleanly
        if self.http is not None:
            self.http.start()
        self.worker.start()
        card = self.worker.model.card
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
            if wd is not None and now - self.worker.heartbeat < wd / 2:
                self.notifier.watchdog()  # a stuck worker stops the pings; systemd restarts us

    def _status(self) -> str:
        conn = "connected" if self.ready() else "connecting to broker"
        w = self.worker
        return (
            f"{conn}; model {w.model.card.version}; {w.pipeline.active_streams} streams; "
            f"{w.batches} batches"
        )

    def _shutdown(self) -> int:
        st = self.settings.state
        self.notifier.stopping()
        log.info("stopping: draining %d queued samples", len(self.batcher))
        deadline = time.monotonic() + st.stop_timeout_s
        self.link.pause(st.stop_timeout_s)  # returns once everything received is queued
        left = max(1.0, deadline - time.monotonic())
        drained = self.worker.finish(left)  # and writes the final snapshot
        code = 1 if self.link.lost else 0
        if not drained:
            log.error(
                "the queue did not drain within %.1f s (stop_timeout_s); %d samples not scored",
                st.stop_timeout_s,
                len(self.batcher),
            )
            code = 1
        self.link.stop()
        if self.http is not None:
            self.http.stop()
        self.notifier.close()
        log.info("stopped after %d batches", self.worker.batches)
        return code

    def _reload_model(self) -> None:
        """SIGHUP: load and self-test ``model.path`` here; the worker swaps it in."""
        path = self.settings.model.resolved_path()
        running = self.worker.model.card
        self.notifier.reloading()
        log.info("reloading the model from %s", path)
        try:
            model = self._load_model()  # checks the graph and runs the card's self-test
            if model.card.features != running.features:
                raise ModelError(
                    str(path),
                    f"reads features {list(model.card.features)}, the running model "
                    f"{list(running.features)}; restart streamd to change features",
                )
        except Exception as e:  # whatever is wrong with a candidate, the daemon keeps serving
            self.metrics.model_reloads.labels("failed").inc()
            why = e if isinstance(e, ModelError) else f"{path}: {type(e).__name__}: {e}"
            log.error("model reload failed, keeping version %s: %s", running.version, why)
            self.notifier.ready(self._status())
            return
        if not self.worker.swap(model, RELOAD_TIMEOUT_S):
            log.error("the worker did not take the new model within %.0f s", RELOAD_TIMEOUT_S)
        self._set_model_info(model)
        self.metrics.model_reloads.labels("ok").inc()
        self.notifier.ready(self._status())
