"""Per-message costs of the daemon's hot path, each optimisation against what it replaced.

In one process and one run (so the ratios are comparable), microseconds per message for:

- parsing a payload: ``json.loads`` (before) vs ``orjson.loads`` (now), inside
  :class:`streamd.core.payload.PayloadParser`;
- recording end-to-end latency: ``prometheus_client.Histogram.observe`` per sample (before)
  vs :class:`streamd.runtime.metrics.BatchHistogram` per batch (now);
- the worker's scoring of a batch of distinct streams (the default settings and model), for scale;
- CPU per message by stage of the default path, receive to publish (``bench/stages.py``).

Prints a table and writes JSON.

    python bench/per_message.py
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
from prometheus_client import CollectorRegistry, Histogram
from stages import MESSAGES, stage_costs

from streamd.config import Settings
from streamd.core import payload
from streamd.core.inference import Forecaster
from streamd.core.payload import PayloadParser, Sample
from streamd.core.pipeline import build_pipeline
from streamd.runtime.metrics import LATENCY_BUCKETS, BatchHistogram

REPO = Path(__file__).resolve().parent.parent
BATCH = 1024


def per_message_us(fn: Callable[[], None], messages: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``fn`` (which handles ``messages``), in µs per message."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / messages * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "per_message.json")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    bodies = [
        b'{"ts":%d,"value":%.3f}' % (1_767_225_600 + 60 * i, 20 + rng.normal())
        for i in range(BATCH * 10)
    ]
    s = Settings()
    parser = PayloadParser(["value"], "topic", s.mqtt.max_payload_bytes, s.state.max_clock_skew_s)

    arrival = time.time()  # after the samples' timestamps: none is from the future

    def parse_all() -> None:
        for i, b in enumerate(bodies):
            parser.parse("sensors/s1", b, arrival, i, 1)

    rows: list[tuple[str, str, float]] = []
    rows.append(("parse", "orjson (now)", per_message_us(parse_all, len(bodies), args.repeat)))
    stdlib = mock.Mock(loads=json.loads, JSONDecodeError=ValueError)
    with mock.patch.object(payload, "orjson", stdlib):  # the parser as it was: json.loads
        before = per_message_us(parse_all, len(bodies), args.repeat)
    rows.append(("parse", "json (before)", before))

    latencies = rng.exponential(0.01, BATCH * 10)
    hist = Histogram("a_seconds", "", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    batch_hist = BatchHistogram("b_seconds", "", LATENCY_BUCKETS, CollectorRegistry())
    received = [Sample("s", 0.0, (0.0,), float(x)) for x in latencies]

    def per_sample() -> None:
        observe = hist.observe
        for s in received:
            observe(1.0 - s.received_at_s)

    def per_batch() -> None:
        for i in range(0, len(received), BATCH):
            chunk = received[i : i + BATCH]
            got = np.fromiter((s.received_at_s for s in chunk), np.float64, len(chunk))
            batch_hist.observe_many(1.0 - got)

    rows.append(
        (
            "latency metric",
            "Histogram.observe per sample (before)",
            per_message_us(per_sample, len(received), args.repeat),
        )
    )
    rows.append(
        (
            "latency metric",
            "BatchHistogram per batch (now)",
            per_message_us(per_batch, len(received), args.repeat),
        )
    )

    model = Forecaster(REPO / "models" / "default.onnx", intra_op_threads=1)
    pipe = build_pipeline(Settings(), model)
    streams = [f"sensors/s{k}" for k in range(BATCH)]
    t = [0]

    def score() -> None:
        t[0] += 1
        pipe.process([Sample(s, float(t[0]), (20.0,), 0.0) for s in streams], 8)

    for _ in range(40):  # past the window's warm-up
        score()
    rows.append(
        (
            "scoring",
            f"Pipeline.process, {BATCH} streams x 1 (default settings)",
            per_message_us(score, BATCH, args.repeat),
        )
    )

    for mode in ("window", "step"):
        stages = stage_costs(REPO / "models" / "default.onnx", args.repeat, mode)
        variant = f"{mode} mode, {MESSAGES} streams a batch"
        for stage, us in stages.items():
            rows.append((f"by stage: {stage}", variant, us))
        rows.append(("by stage: total", f"{variant} (CPU, two processes)", sum(stages.values())))

    print(f"{'stage':<30} {'variant':<44} {'us/msg':>8}")
    for stage, variant, us in rows:
        print(f"{stage:<30} {variant:<44} {us:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "python": sys.version.split()[0],
                "rows": [{"stage": s, "variant": v, "us_per_message": u} for s, v, u in rows],
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
