"""Training benchmark: wall time of the documented command that rebuilds the default model.

Runs ``python -m training.default_model`` (see models/README.md) into a temporary folder
``--runs`` times, and checks that each run reproduces ``models/default.onnx`` (same version,
a hash of graph and weights). Prints a table and writes JSON. Needs the ``train`` extra.

    python bench/train_time.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine

from streamd.core.inference import Forecaster

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_time.json")
    args = ap.parse_args()
    shipped = Forecaster(REPO / "models" / "default.onnx").card.version
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "model.onnx"
            cmd = [
                sys.executable,
                "-m",
                "training.default_model",
                "--out",
                str(model),
                "--report",
                str(Path(tmp) / "report"),
                "--quiet",
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True)
            wall = time.perf_counter() - t0
            version = Forecaster(model).card.version
        rows.append(
            {
                "run": run + 1,
                "wall_s": wall,
                "version": version,
                "same_as_shipped": version == shipped,
            }
        )
        print(
            f"run {run + 1}: {wall:.1f} s, version {version} "
            f"({'same as' if version == shipped else 'differs from'} models/default.onnx)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "shipped_version": shipped,
                "runs": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0 if all(r["same_as_shipped"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
