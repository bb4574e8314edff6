"""Reproduce ``models/default.onnx``: train on the project's synthetic normal sensors.

    python -m training.default_model            # writes models/default.onnx, reports/default/

One series per profile in :data:`streamd.tools.synth.PROFILES` (temperatures, pressures, power, …
at very different scales), 14 days at 5-minute steps, each scaled by its own statistics so
that one model serves any of them; the daemon scales each stream the same way.
"""

from __future__ import annotations

import argparse
import csv
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from streamd.tools.synth import PROFILES, normal_series
from training.options import LoopConfig, TrainOptions
from training.run import TrainResult, train

STEP_S = 300.0
DAYS = 14
SEED = 2026
# Train windows of 8 model windows, trained on every step from the 32nd: the state that step
# mode (the default) carries for thousands of steps is then one the model has seen. Each long
# window holds 225 targets, so batches are 32 windows, not 128.
TRAIN_SPAN = 256
START_S = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()


def write_training_data(folder: Path) -> list[str]:
    """One CSV per profile; the same seed always writes the same files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    n = int(DAYS * 86_400 / STEP_S)
    paths = []
    for profile in PROFILES:
        values = normal_series(profile, n, STEP_S, rng, start_s=START_S)
        path = folder / f"{profile.name}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value"])
            for i, v in enumerate(values):
                w.writerow([f"{START_S + i * STEP_S:.0f}", f"{v:.6f}"])
        paths.append(str(path))
    return paths


def main(argv: list[str] | None = None) -> TrainResult:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="models/default.onnx")
    p.add_argument("--report", default="reports/default")
    p.add_argument("--quiet", action="store_true")
    ns = p.parse_args(argv)
    report = Path(ns.report)
    data = write_training_data(report / "data")
    result = train(
        TrainOptions(
            data=data,
            out=Path(ns.out),
            report_dir=report,
            window=32,
            train_span=TRAIN_SPAN,
            hidden_size=32,
            layers=2,
            scaling="standard",
            per_stream_scaling=True,
            loop=LoopConfig(epochs=30, batch_size=32, patience=5, seed=0, progress=not ns.quiet),
            name="default",
        )
    )
    s = result.summary
    print(
        f"default model {s['version']}: validation loss {s['validation_loss']:.5g}, "
        f"threshold {result.card.calibration.threshold:.5g}, {s['epochs_run']} epochs, "
        f"{s['total_seconds']:.0f} s"
    )
    return result


if __name__ == "__main__":
    main()
