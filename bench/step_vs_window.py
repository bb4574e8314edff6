"""Step vs window inference: score agreement on nab-dev and cost per message.

    python bench/step_vs_window.py [--data ../shared/datasets/nab-dev] [--out bench/results]

For each nab-dev file, a model is trained on the file's first 15% (the benchmark's
probationary period) and the file is replayed through the daemon's pipeline in both modes.
Prints a table and writes JSON: per file the mean absolute score difference, the share of
samples whose verdict differs, the correlation of scores, and both modes' time per message.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from streamd.config import Settings, load_settings
from streamd.core.csvdata import read_series
from streamd.core.inference import Forecaster
from streamd.core.pipeline import build_pipeline
from streamd.tools.replay import replay_series
from training.options import LoopConfig, TrainOptions
from training.run import train


def run_mode(
    settings: Settings, model: Path, ts: np.ndarray, values: np.ndarray, mode: str
) -> tuple[np.ndarray, np.ndarray, float]:
    s = settings.model_copy(
        update={"inference": settings.inference.model_copy(update={"mode": mode})}
    )
    pipeline = build_pipeline(s, Forecaster(model))
    t0 = time.perf_counter()
    r = replay_series(pipeline, ts, values)
    return r.score, r.is_anomaly, (time.perf_counter() - t0) / len(ts)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=Path("../shared/datasets/nab-dev"))
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--files", type=int, default=0, help="only the first N files (0: all)")
    ns = p.parse_args()
    files = sorted(ns.data.glob("*/*.csv"))[: ns.files or None]
    settings = load_settings(None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            model = Path(tmp) / f"{f.stem}.onnx"
            train(
                TrainOptions(
                    data=[str(f)],
                    out=model,
                    report_dir=Path(tmp) / f.stem,
                    head_fraction=0.15,
                    loop=LoopConfig(progress=False),
                )
            )
            series = read_series(f, ["value"], keep_invalid=True)
            s_step, a_step, t_step = run_mode(settings, model, series.ts_s, series.values, "step")
            s_win, a_win, t_win = run_mode(settings, model, series.ts_s, series.values, "window")
            rows.append(
                {
                    "file": f"{f.parent.name}/{f.name}",
                    "rows": len(series.ts_s),
                    "mean_abs_score_diff": float(np.mean(np.abs(s_step - s_win))),
                    "verdict_disagreement": float(np.mean(a_step != a_win)),
                    "score_correlation": float(np.corrcoef(s_step, s_win)[0, 1])
                    if s_step.std() and s_win.std()
                    else 1.0,
                    "step_us_per_msg": t_step * 1e6,
                    "window_us_per_msg": t_win * 1e6,
                }
            )
            r = rows[-1]
            print(
                f"{r['file']:<60} {r['mean_abs_score_diff']:8.4f} {r['verdict_disagreement']:8.4f} "
                f"{r['score_correlation']:6.3f} {r['step_us_per_msg']:8.1f} "
                f"{r['window_us_per_msg']:8.1f}",
                flush=True,
            )
    summary = {
        "mean_abs_score_diff": float(np.mean([r["mean_abs_score_diff"] for r in rows])),
        "verdict_disagreement": float(np.mean([r["verdict_disagreement"] for r in rows])),
        "step_us_per_msg": float(np.mean([r["step_us_per_msg"] for r in rows])),
        "window_us_per_msg": float(np.mean([r["window_us_per_msg"] for r in rows])),
    }
    print(
        f"{'mean over files':<60} {summary['mean_abs_score_diff']:8.4f} "
        f"{summary['verdict_disagreement']:8.4f} "
        f"{'':6} {summary['step_us_per_msg']:8.1f} {summary['window_us_per_msg']:8.1f}"
    )
    ns.out.mkdir(parents=True, exist_ok=True)
    out = ns.out / "step_vs_window.json"
    out.write_text(
        json.dumps({"machine": platform.platform(), "files": rows, "summary": summary}, indent=1)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    print(f"{'file':<60} {'|Δscore|':>8} {'verdict≠':>8} {'corr':>6} {'step µs':>8} {'win µs':>8}")
    main()
