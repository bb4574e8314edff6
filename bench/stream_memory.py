"""Memory per stream: what one more stream costs the daemon, and where the bytes go.

Loads the default model, then builds the daemon's pipeline (the settings asked for) with
room for ``--streams`` streams, gives every stream a few samples, and reads the process's
RSS growth from before the pipeline was built (the model's memory, once per process, is
left out), so the figure holds every per-stream cost (the stream table, the per-slot arrays)
but not the queue of a saturated daemon, which ``bench/throughput.py``'s peak RSS adds.
Beside it, the per-slot arrays by name (the state a snapshot holds), in bytes per stream.

    python bench/stream_memory.py                        # 100,000 streams, profile on and off
    python bench/stream_memory.py --streams 10000 --mode window
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, machine, rss_mb

from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import build_pipeline
from streamd.runtime.snapshot import slot_arrays

SAMPLES = 3  # per stream: enough to touch every per-slot array a scored stream uses


def measure(streams: int, mode: str, profile: str) -> dict[str, Any]:
    settings = Settings(
        state={"max_streams": streams}, inference={"mode": mode}, scoring={"profile": profile}
    )
    model = Forecaster(REPO / "models" / "default.onnx")
    names = [f"sensors/site-{i // 1000:03d}/dev-{i:06d}/temperature" for i in range(streams)]
    gc.collect()
    # before the pipeline is built: arrays filled at construction (NaN) are touched there
    before = rss_mb(os.getpid())
    pipeline = build_pipeline(settings, model)
    for t in range(SAMPLES):
        for k in range(0, streams, 512):
            batch = names[k : k + 512]
            pipeline.process([Sample(n, 1.767e9 + 60 * t, (20.0 + t,), time.time()) for n in batch])
    gc.collect()
    grown = rss_mb(os.getpid()) - before
    arrays = {key: a.nbytes / a.shape[axis] for key, a, axis in slot_arrays(pipeline)}
    return {
        "streams": streams,
        "mode": mode,
        "profile": profile,
        "bytes_per_stream": grown * 2**20 / streams,
        "arrays_bytes_per_stream": sum(arrays.values()),
        "arrays": arrays,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--mode", default=Settings().inference.mode)
    ap.add_argument("--profiles", nargs="+", default=["day", "off"])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "stream_memory.json")
    ns = ap.parse_args(argv)
    # each in a fresh process, so one measurement cannot reuse memory another freed
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        rows = [pool.apply(measure, (ns.streams, ns.mode, p)) for p in ns.profiles]
    print(f"{'streams':>8} {'mode':>6} {'profile':>7} {'B/stream':>9} {'arrays B':>9}")
    for r in rows:
        print(
            f"{r['streams']:>8} {r['mode']:>6} {r['profile']:>7} "
            f"{r['bytes_per_stream']:>9.0f} {r['arrays_bytes_per_stream']:>9.0f}"
        )
    for r in rows:
        print(f"\nper-slot arrays, profile {r['profile']} (bytes per stream):")
        for key, b in sorted(r["arrays"].items(), key=lambda kv: -kv[1]):
            print(f"  {b:6.0f}  {key}")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
