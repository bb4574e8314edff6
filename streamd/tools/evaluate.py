"""``streamd evaluate``: detection quality on a labelled corpus (NAB layout), three detectors.

For each file: a model (one given model, or one trained on the file's first part), the
daemon's own pipeline over every row, then three detectors side by side:

* ``zscore``: a rolling z-score of the value (no model);
* ``gru_raw``: the model's calibrated prediction error as the score (no smoothing, history or
  hysteresis);
* ``streamd``: the full scorer; a row fires where one of the stream's sources *enters* an
  anomaly (an alert), scored with the anomaly score there.

Writes ``<out>/summary.json``, the benchmark's results layout
(``<out>/results/<detector>/<category>/<detector>_<file>.csv``) and a PNG per file.

Training a per-file model needs torch, which the online side never imports: the caller
(the CLI) hands in a :class:`Trainer`, such as :func:`training.run.train_for_evaluation`.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamd.config import Settings
from streamd.core.arrays import F64
from streamd.core.csvdata import read_series
from streamd.core.inference import Forecaster
from streamd.core.pipeline import build_pipeline
from streamd.core.timestamps import parse_timestamp
from streamd.errors import DataError
from streamd.tools.baselines import raw_error_score, rolling_zscore
from streamd.tools.nab import PROFILES, FileRows, events, prepare, probation_rows, sweep
from streamd.tools.replay import replay_series

DETECTORS = ("zscore", "gru_raw", "streamd")


class Trainer(Protocol):
    """Trains, calibrates and exports a model of ``data``'s first ``head_fraction`` rows to
    ``out``. Called in a worker process (one per core), so it must be picklable: a
    module-level function."""

    def __call__(
        self,
        *,
        data: Path,
        out: Path,
        report_dir: Path,
        head_fraction: float,
        window: int,
        time_features: list[str],
    ) -> None: ...


@dataclass
class FileOutcome:
    name: str
    timestamps: list[str]
    values: F64
    windows: list[tuple[int, int]]
    scores: dict[str, F64]
    seconds: float


def window_rows(timestamps: list[str], limits: list[list[str]], path: str) -> list[tuple[int, int]]:
    """Label windows (timestamps) -> inclusive row indices (first row with that time)."""
    first: dict[float, int] = {}
    for i, t in enumerate(timestamps):
        try:
            first.setdefault(parse_timestamp(t), i)
        except ValueError:
            continue
    out = []
    for start, end in limits:
        try:
            out.append((first[parse_timestamp(start)], first[parse_timestamp(end)]))
        except KeyError as e:
            raise DataError(
                path, f"label window limit {e.args[0]} is not a row of the file"
            ) from None
    return sorted(out)


def _model_for(
    path: Path,
    model: Path | None,
    trainer: Trainer | None,
    train_head: float | None,
    workdir: Path,
    window: int,
    time_features: list[str],
) -> Path:
    if model is not None:
        return model
    if trainer is None or train_head is None:
        raise ValueError("give a model, or a trainer and the head fraction it trains on")
    calendar = "".join(f"-{t}" for t in time_features)
    out = workdir / "models" / f"{path.stem}-head{train_head:g}-w{window}{calendar}.onnx"
    if out.is_file():  # training is seeded: same file and head give the same model
        return out
    trainer(
        data=path,
        out=out,
        report_dir=workdir / "models" / path.stem,
        head_fraction=train_head,
        window=window,
        time_features=time_features,
    )
    return out


def evaluate_file(
    path: Path,
    limits: list[list[str]],
    settings: Settings,
    model: Path | None,
    trainer: Trainer | None,
    train_head: float | None,
    workdir: Path,
    window: int,
    time_features: list[str],
) -> FileOutcome:
    t0 = time.perf_counter()
    model_path = _model_for(path, model, trainer, train_head, workdir, window, time_features)
    fc = Forecaster(model_path, intra_op_threads=settings.inference.intra_op_threads)
    series = read_series(path, ["value"], keep_invalid=True)
    # NAB's probationary period is for learning: the stream learns its error level through it.
    learn = max(settings.scoring.history_warmup, probation_rows(len(series.ts_s)))
    settings = settings.model_copy(
        update={"scoring": settings.scoring.model_copy(update={"history_warmup": learn})}
    )
    pipeline = build_pipeline(settings, fc)
    r = replay_series(pipeline, series.ts_s, series.values)
    onset = r.entered  # where an alert fires: a source of the stream enters an anomaly
    cal = fc.card.calibration
    values = series.values[:, 0]
    scores = {
        "zscore": rolling_zscore(np.nan_to_num(values)),
        "gru_raw": raw_error_score(r.error, cal.mean, cal.std),
        # Alerts only, ranked by how rare their error was (unclipped, so a sweep can tell
        # strong alerts from weak ones): surprise / (surprise + 10) is 0.5 at p = 1e-10.
        "streamd": np.where(onset, r.surprise / (r.surprise + 10.0), 0.0),
    }
    windows = window_rows(series.timestamps, limits, str(path))
    return FileOutcome(
        str(path), series.timestamps, values, windows, scores, time.perf_counter() - t0
    )


def write_results(out: Path, detector: str, rel: str, f: FileOutcome) -> None:
    category, file = rel.split("/", 1)
    dest = out / "results" / detector / category / f"{detector}_{file}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    label = np.zeros(len(f.values), int)
    for a, b in f.windows:
        label[a : b + 1] = 1
    with dest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for i, ts in enumerate(f.timestamps):
            w.writerow([ts, f"{f.values[i]:.10g}", f"{f.scores[detector][i]:.6f}", label[i]])


def plot_file(out: Path, rel: str, f: FileOutcome, thresholds: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
    x = np.arange(len(f.values))
    ax1.plot(x, f.values, lw=0.7, color="black")
    for a, b in f.windows:
        for ax in (ax1, ax2):
            ax.axvspan(a, b, color="tab:orange", alpha=0.25)
    fired = f.scores["streamd"] >= thresholds["streamd"]
    ax1.plot(x[fired], f.values[fired], "v", color="tab:red", label="streamd alert")
    ax1.set_title(rel)
    ax1.legend(loc="upper left")
    for name, color in (("zscore", "tab:grey"), ("gru_raw", "tab:blue")):
        ax2.plot(x, f.scores[name], lw=0.6, color=color, label=name, alpha=0.8)
    ax2.axhline(thresholds["gru_raw"], color="tab:blue", ls="--", lw=0.8)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("anomaly score")
    ax2.set_xlabel("row")
    ax2.legend(loc="upper left")
    fig.tight_layout()
    dest = out / "plots" / (rel.replace("/", "__").removesuffix(".csv") + ".png")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=80)
    plt.close(fig)


def evaluate(
    data: Path,
    labels: Path,
    out: Path,
    settings: Settings,
    *,
    model: Path | None = None,
    trainer: Trainer | None = None,
    train_head: float | None = None,
    plots: bool = True,
    jobs: int = 0,
    window: int,
    time_features: list[str],
) -> dict[str, Any]:
    """Run the whole evaluation; returns (and writes) the summary."""
    try:
        spec = json.loads(labels.read_text())
        windows_by_file: dict[str, list[list[str]]] = spec["windows"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(str(labels), f"not a labels file with a 'windows' map ({e})") from e
    t0 = time.perf_counter()
    outcomes: dict[str, FileOutcome] = {}
    names = sorted(windows_by_file)
    for rel in names:
        if not (data / rel).is_file():
            raise DataError(str(data / rel), "listed in the labels but not in --data")
    # Files are independent (a model each): one process per core.
    with ProcessPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        futures = {
            pool.submit(
                evaluate_file,
                data / rel,
                windows_by_file[rel],
                settings,
                model,
                trainer,
                train_head,
                out,
                window,
                time_features,
            ): rel
            for rel in names
        }
        for k, fut in enumerate(as_completed(futures), 1):
            rel = futures[fut]
            f = fut.result()
            outcomes[rel] = f
            print(
                f"[{k:>2}/{len(names)}] {rel:<62} {f.seconds:6.1f} s", file=sys.stderr, flush=True
            )
    summary: dict[str, Any] = {"files": len(names), "detectors": {}}
    for det in DETECTORS:
        rows: list[FileRows] = []
        wid = 0
        for rel in names:
            f = outcomes[rel]
            rows.append(prepare(rel, f.scores[det], f.windows, wid))
            wid += len(f.windows)
        profiles = {p.name: sweep(rows, p) for p in PROFILES}
        ev = events(rows, profiles["standard"].threshold)
        summary["detectors"][det] = {
            "profiles": {k: asdict(v) for k, v in profiles.items()},
            "events": asdict(ev),
        }
        for rel in names:
            write_results(out, det, rel, outcomes[rel])
    if plots:
        thr = {d: summary["detectors"][d]["profiles"]["standard"]["threshold"] for d in DETECTORS}
        for rel in names:
            plot_file(out, rel, outcomes[rel], thr)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["model"] = str(model) if model else f"trained per file on the first {train_head:.0%}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def table(summary: dict[str, Any]) -> str:
    head = (
        f"{'detector':<10} {'standard':>9} {'low_FP':>8} {'low_FN':>8} {'threshold':>10} "
        f"{'precision':>9} {'recall':>7} {'F1':>6} {'delay (rows)':>12}"
    )
    lines = [head, "-" * len(head)]
    for det, d in summary["detectors"].items():
        std, low_fp, low_fn = (
            d["profiles"][k]["normalized"]
            for k in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
        )
        thr = d["profiles"]["standard"]["threshold"]
        e = d["events"]
        lines.append(
            f"{det:<10} {std:>9.1f} {low_fp:>8.1f} {low_fn:>8.1f} {thr:>10.4f} "
            f"{e['precision']:>9.2f} {e['recall']:>7.2f} {e['f1']:>6.2f} "
            f"{e['mean_delay_rows']:>12.1f}"
        )
    return "\n".join(lines)
