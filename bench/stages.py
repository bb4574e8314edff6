"""CPU per message by stage of the default path, in one process, for ``bench/per_message.py``.

Each stage runs the daemon's own code on what the stage before it produced, for a batch
of :data:`MESSAGES` MQTT 5 QoS 1 PUBLISH packets over as many streams as a worker batch
holds (the default ``batch_max_size``), past the streams' warm-up, in ``window`` mode (the
default) and in ``step`` mode:

* receive: ``mqtt5.read`` through the receiver's :class:`PacketReader` into its
  :class:`Outbox` (the receiver process);
* hand-off: the receiver's batches pickled over a socket pair and read back (both ends);
* parse: :meth:`PayloadParser.parse` per message (the daemon's reader thread);
* batch: the :class:`Batcher`'s queue and ``next_batch`` (reader thread and worker);
* infer: ONNX Runtime calls (``Forecaster.run``) inside ``Pipeline.process``;
* score: the rest of ``Pipeline.process`` (windows, scaling, scoring, hysteresis);
* metrics and publish: the rest of ``Worker._process`` (counters, latency, per-stream
  series, alerts handed to the link).

The real path runs these in two processes and three threads, so their sum is CPU per
message, not latency. What is left out: system calls of the broker socket and the
acknowledgements (the drain benchmark has them).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mqtt5
from prometheus_client import CollectorRegistry

from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import PayloadParser, Sample
from streamd.runtime.batcher import Batcher
from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.metrics import Metrics
from streamd.runtime.mqtt.child import Outbox
from streamd.runtime.mqtt.pipe import Pipe
from streamd.runtime.mqtt.reader5 import PacketReader
from streamd.runtime.state_store import StateStore
from streamd.runtime.worker import Worker

MESSAGES = Settings().inference.batch_max_size
STAGES = ("receive", "hand-off", "parse", "batch", "infer", "score", "metrics and publish")


class _Link:
    """The worker's link to the receiver, without a receiver: what it publishes is dropped."""

    def ack(self, samples: list[Sample]) -> None:
        pass

    def publish(self, items: list[Any]) -> None:
        pass


class _Timed:
    """Wraps ``fn`` and sums the seconds spent in it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.seconds += time.perf_counter() - t0


def _packets(round_: int) -> bytes:
    """One PUBLISH per stream, as a broker sends them (QoS 1, no properties)."""
    out = bytearray()
    for k in range(MESSAGES):
        body = b'{"ts":%d,"value":%.3f}' % (1_767_225_600 + 300 * round_, 20 + (k % 7) * 0.1)
        packet = mqtt5.PublishPacket(
            topic=f"sensors/s{k}", payload=body, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=k + 1
        )
        out += packet.write()
    return bytes(out)


def stage_costs(model_path: Path, repeat: int, mode: str) -> dict[str, float]:
    """Best-of-``repeat`` µs per message of each of :data:`STAGES`, in inference ``mode``."""
    base = Settings()
    settings = base.model_copy(
        update={"inference": base.inference.model_copy(update={"mode": mode})}
    )
    model = Forecaster(model_path, intra_op_threads=1)
    metrics = Metrics(CollectorRegistry(), settings.http.stream_score_cap)
    problems = RateLimitedLog(logging.getLogger("bench"), 60.0)
    store = StateStore([], {}, metrics, problems, settings.state.max_clock_skew_s)
    batcher = Batcher.from_settings(settings)
    worker = Worker(settings, model, batcher, _Link(), metrics, problems, store)
    infer = _Timed(model.run)
    model.run = infer  # type: ignore[method-assign]
    process = _Timed(worker.pipeline.process)
    worker.pipeline.process = process  # type: ignore[method-assign]
    parser = PayloadParser(
        ["value"], "topic", settings.mqtt.max_payload_bytes, settings.state.max_clock_skew_s
    )
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    sender, reader = Pipe(a), Pipe(b)
    outbox = Outbox(sender)
    sent: list[Any] = []
    sender.send = sent.append  # type: ignore[method-assign]  # timed in the hand-off stage
    packets = PacketReader(
        outbox,
        settings.mqtt.max_payload_bytes,
        lambda p, now: outbox.put(p.topic, p.payload, now, p.packet_id or 0, int(p.qos)),
        lambda why: None,
    )
    best = dict.fromkeys(STAGES, float("inf"))
    warmup = max(settings.scoring.scaling_warmup, settings.scoring.history_warmup) + 40
    for round_ in range(warmup + repeat):
        data = _packets(round_)
        t0 = time.perf_counter()
        packets.feed(data)
        outbox.flush()
        t1 = time.perf_counter()
        received = []
        for batch in sent:  # the real Pipe.send, then the daemon's end reads
            Pipe.send(sender, batch)
            received += reader.read_some()
        while sender.pending_output():
            sender.write_some()
            received += reader.read_some()
        sent.clear()
        t2 = time.perf_counter()
        samples = [
            parser.parse(topic, payload, at, mid, qos)
            for r in received
            for topic, payload, at, mid, qos in zip(
                r.topics, r.payloads, r.received_at_s, r.mids, r.qos, strict=True
            )
        ]
        t3 = time.perf_counter()
        for s in samples:
            batcher.put(s)
        batch = batcher.next_batch(stopping=True)
        t4 = time.perf_counter()
        infer.seconds = process.seconds = 0.0
        worker._process(batch)
        t5 = time.perf_counter()
        if round_ < warmup:
            continue
        n = len(samples)
        assert n == len(batch) == MESSAGES, (n, len(batch))
        costs = {
            "receive": t1 - t0,
            "hand-off": t2 - t1,
            "parse": t3 - t2,
            "batch": t4 - t3,
            "infer": infer.seconds,
            "score": process.seconds - infer.seconds,
            "metrics and publish": (t5 - t4) - process.seconds,
        }
        for stage, seconds in costs.items():
            best[stage] = min(best[stage], seconds / n * 1e6)
    a.close()
    b.close()
    return best
