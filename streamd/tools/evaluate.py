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

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamd.config import PACKAGED_MODEL, Settings
from streamd.core.csvdata import read_series
from streamd.core.inference import Forecaster
from streamd.core.pipeline import build_pipeline
from streamd.core.timestamps import parse_timestamp
from streamd.errors import DataError, StreamdError
from streamd.tools.baselines import raw_error_score, rolling_zscore
from streamd.tools.nab import probation_rows
from streamd.tools.replay import replay_series
from streamd.tools.scorecard import DETECTORS, FileOutcome, plot_file, summarize, write_results


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


# Heads shorter than this train a model with half the window: with a few hundred rows a
# model of 32 steps fits too few windows. Measured (docs/quality.md): heads of 180 and 300
# rows score higher with window 16, heads of 600 rows and more with window 32; no dev
# file's head lies between 300 and 600, so any bound there is the same rule.
SHORT_HEAD_ROWS = 450


def model_for(
    path: Path,
    rows: int,
    model: Path | None,
    trainer: Trainer | None,
    train_head: float | None,
    workdir: Path,
    window: int,
    time_features: list[str],
) -> tuple[Path, str]:
    """The model for ``path`` (``rows`` data rows) and what it is: the given one, or one
    trained on the file's head: with ``window``, or half of it where the head is shorter
    than :data:`SHORT_HEAD_ROWS` rows or too short for the full window to train, validate
    and calibrate on; where it is too short for that too, the packaged shared model."""
    if model is not None:
        return model, "given model"
    if trainer is None or train_head is None:
        raise ValueError("give a model, or a trainer and the head fraction it trains on")
    calendar = "".join(f"-{t}" for t in time_features)
    head = round(rows * train_head)
    why = f"a {head}-row head" if head < SHORT_HEAD_ROWS else ""
    error = ""
    for w in (window, window // 2) if not why else (window // 2,):
        out = workdir / "models" / f"{path.stem}-head{train_head:g}-w{w}{calendar}.onnx"
        if not out.is_file():  # training is seeded: same file and head give the same model
            try:
                trainer(
                    data=path,
                    out=out,
                    report_dir=workdir / "models" / f"{path.stem}-w{w}",
                    head_fraction=train_head,
                    window=w,
                    time_features=time_features,
                )
            except DataError as e:  # too few rows to train, validate and calibrate on
                why, error = why or e.message, e.message
                continue
        shorter = "" if w == window else f", window {w}: {why}"
        return out, f"trained on the first {train_head:.0%}{shorter}"
    return PACKAGED_MODEL, f"shared model: {error}"


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
    series = read_series(path, ["value"], keep_invalid=True)
    model_path, which = model_for(
        path, len(series.ts_s), model, trainer, train_head, workdir, window, time_features
    )
    fc = Forecaster(model_path, intra_op_threads=settings.inference.intra_op_threads)
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
        str(path),
        series.timestamps,
        values,
        windows,
        scores,
        r.score,
        which,
        time.perf_counter() - t0,
    )


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
    errors: dict[str, str] = {}
    names = sorted(windows_by_file)
    for rel in names:
        if not (data / rel).is_file():
            errors[rel] = "listed in the labels but not in --data"
    todo = [rel for rel in names if rel not in errors]
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
            for rel in todo
        }
        for k, fut in enumerate(as_completed(futures), 1):
            rel = futures[fut]
            try:
                f = fut.result()
            except (StreamdError, ValueError, OSError) as e:  # that file only: the rest go on
                errors[rel] = str(e)
                print(f"[{k:>2}/{len(todo)}] {rel}: {e}", file=sys.stderr, flush=True)
                continue
            outcomes[rel] = f
            print(
                f"[{k:>2}/{len(todo)}] {rel:<62} {f.seconds:6.1f} s  ({f.model})",
                file=sys.stderr,
                flush=True,
            )
    if not outcomes:
        raise DataError(str(data), f"no file could be evaluated ({len(errors)} failed)")
    summary: dict[str, Any] = {"files": len(outcomes), "detectors": summarize(outcomes)}
    for rel, f in outcomes.items():
        for det in DETECTORS:
            write_results(out, det, rel, f)
    if plots:
        thr = {d: summary["detectors"][d]["profiles"]["standard"]["threshold"] for d in DETECTORS}
        for rel, f in outcomes.items():
            plot_file(out, rel, f, thr)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["model"] = str(model) if model else f"trained per file on the first {train_head:.0%}"
    summary["models"] = {rel: f.model for rel, f in sorted(outcomes.items())}
    summary["errors"] = errors
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
