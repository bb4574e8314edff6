"""What one batch costs the pipeline, by batch size: the fixed cost a small batch pays.

At a steady few thousand msg/s a batch holds a few dozen samples (the worker takes what
arrived within ``inference.batch_max_wait_ms``), so a batch's fixed cost (numpy's and ONNX
Runtime's per-call overhead across the pipeline's steps) sets the CPU per message far more
than the per-sample arithmetic that ``bench/per_message.py`` measures on full batches.
Here: the daemon's pipeline with the default settings and model over 1,000 streams past
their warm-up, fed batches of each size round-robin; best of ``--repeat`` runs.

    python bench/per_batch.py
    git worktree add /tmp/before HEAD~1 && PYTHONPATH=/tmp/before python bench/per_batch.py \\
        --out bench/results/per_batch-before.json     # the same on an earlier checkout
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import REPO, machine

import streamd
from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import Pipeline, build_pipeline

STREAMS = 1000
WARM_ROUNDS = 300  # samples per stream before timing: past every warm-up (100 + 100)


class Feeder:
    """Round-robin samples over the streams, one minute apart per stream."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.names = [f"sensors/s{i}" for i in range(STREAMS)]
        self.t = 0

    def feed(self, batches: int, size: int) -> None:
        for _ in range(batches):
            batch = []
            for _ in range(size):
                k, r = self.t % STREAMS, self.t // STREAMS
                value = 20.0 + (self.t % 97) * 0.01
                batch.append(Sample(self.names[k], 1.767e9 + 60 * r, (value,), time.time()))
                self.t += 1
            self.pipeline.process(batch)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 20, 100, 512])
    ap.add_argument("--samples", type=int, default=40_000, help="samples timed per size and run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "per_batch.json")
    ns = ap.parse_args(argv)
    feeder = Feeder(build_pipeline(Settings(), Forecaster(REPO / "models" / "default.onnx")))
    feeder.feed(WARM_ROUNDS * STREAMS // 500, 500)
    rows = []
    print(f"streamd from {Path(streamd.__file__).parent}")
    print(f"{'batch':>6} {'ms per batch':>13} {'µs per sample':>14}")
    for size in ns.sizes:
        batches = max(1, ns.samples // size)
        best = float("inf")
        for _ in range(ns.repeat):
            t0 = time.perf_counter()
            feeder.feed(batches, size)
            best = min(best, (time.perf_counter() - t0) / batches)
        rows.append({"batch": size, "ms_per_batch": 1e3 * best, "us_per_sample": 1e6 * best / size})
        print(f"{size:>6} {1e3 * best:>13.3f} {1e6 * best / size:>14.1f}", flush=True)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(
        json.dumps({"machine": machine(), "streamd": streamd.__file__, "rows": rows}, indent=1)
    )
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
