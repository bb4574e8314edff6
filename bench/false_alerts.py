"""False alerts on streams that are normal throughout: how often the shipped scorer alerts
on plain noise, the cost a user pays for NAB's taste for early detections.

NAB charges a false detection a fraction of what a missed window costs, so tuning on it
rewards a detector that fires readily. A user's normal stream has no label windows: every
alert on it is a false one. Here: ``--series`` series of Gaussian noise (mean 20, sd 1, one
sample every 5 minutes, seeds 100, 101, ...), each replayed as one stream through the daemon's
pipeline with the default settings and the packaged model (what ``streamd run`` does); the
table gives each series' alerts (entries into an anomaly) and the share of its scored rows
inside one.

    python bench/false_alerts.py
    PYTHONPATH=/tmp/variant python bench/false_alerts.py --out /tmp/false_alerts-variant.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO, machine

import streamd
from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.pipeline import build_pipeline
from streamd.tools.replay import replay_series


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=6)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "default.onnx")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "false_alerts.json")
    ns = ap.parse_args(argv)
    model = Forecaster(ns.model)
    ts = 1.767e9 + 300.0 * np.arange(ns.rows)
    print(f"streamd from {Path(streamd.__file__).parent}")
    print(f"{'seed':>5} {'alerts':>7} {'rows in an anomaly':>19}")
    rows = []
    for k in range(ns.series):
        seed = 100 + k
        values = 20.0 + np.random.default_rng(seed).standard_normal((ns.rows, 1))
        scores = replay_series(build_pipeline(Settings(), model), ts, values)
        scored = np.array([s == "scored" for s in scores.status])
        share = float(scores.is_anomaly[scored].mean()) if scored.any() else 0.0
        rows.append({"seed": seed, "alerts": int(scores.entered.sum()), "anomalous_share": share})
        print(f"{seed:>5} {rows[-1]['alerts']:>7} {100 * share:>18.1f}%", flush=True)
    alerts = sum(r["alerts"] for r in rows)
    every = ns.series * ns.rows / alerts if alerts else float("inf")
    print(f"in all: {alerts} alerts in {ns.series * ns.rows:,} samples (one per {every:,.0f})")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), "streamd": streamd.__file__, "rows": ns.rows, "series": rows}
    doc["date"] = time.strftime("%Y-%m-%d")
    ns.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
