"""Cost per message of the scoring pipeline in step and window mode, batched across streams.

    python bench/mode_cost.py [--streams 1000] [--samples 400] [--out bench/results]

Feeds S synthetic streams one sample each per batch (batch = S) through the daemon's pipeline
with the default model, and times the batches after warm-up. Pipeline only: no MQTT, no JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from streamd.config import load_settings
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import build_pipeline
from streamd.tools.synth import PROFILES, normal_series

MODEL = Path(__file__).resolve().parent.parent / "models" / "default.onnx"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    ns = p.parse_args()
    rng = np.random.default_rng(0)
    data = np.stack(
        [
            normal_series(PROFILES[i % len(PROFILES)], ns.samples, 300.0, rng)
            for i in range(ns.streams)
        ]
    )
    ids = [f"sensors/s{i}" for i in range(ns.streams)]
    results = {}
    print(f"{'mode':<8} {'threads':>7} {'streams':>8} {'µs/msg (warm)':>14} {'msgs/s':>10}")
    for mode, threads in (("step", 1), ("step", 2), ("window", 1), ("window", 2)):
        settings = load_settings(
            None, {"inference": {"mode": mode}, "state": {"max_streams": ns.streams}}
        )
        pipe = build_pipeline(settings, Forecaster(MODEL, intra_op_threads=threads))
        warm = settings.scoring.scaling_warmup + 5
        t_warm = 0.0
        n_warm = 0
        for t in range(ns.samples):
            batch = [
                Sample(ids[i], 1e9 + 300.0 * t, (float(data[i, t]),), 0.0)
                for i in range(ns.streams)
            ]
            t0 = time.perf_counter()
            pipe.process(batch)
            dt = time.perf_counter() - t0
            if t >= warm:
                t_warm += dt
                n_warm += ns.streams
        us = t_warm / max(1, n_warm) * 1e6
        results[f"{mode}_threads{threads}"] = {
            "us_per_msg": us,
            "msgs_per_s": 1e6 / us,
            "streams": ns.streams,
            "measured_msgs": n_warm,
        }
        print(f"{mode:<8} {threads:>7} {ns.streams:>8} {us:>14.1f} {1e6 / us:>10.0f}")
    ratio = results["window_threads1"]["us_per_msg"] / results["step_threads1"]["us_per_msg"]
    print(f"window / step cost ratio (1 thread each): {ratio:.1f}x")
    ns.out.mkdir(parents=True, exist_ok=True)
    (ns.out / "mode_cost.json").write_text(
        json.dumps({"machine": platform.platform(), **results}, indent=1)
    )


if __name__ == "__main__":
    main()
