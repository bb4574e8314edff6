"""``streamd train``: data -> trained, calibrated, exported and verified model, plus a report."""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

import streamd
from streamd.core import timefeatures
from streamd.core.card import Calibration, ModelCard, SelfTest
from streamd.errors import DataError
from training import report
from training.calibrate import calibrate, sample_errors
from training.data import SplitFractions, load_dataset
from training.export import Parity, export_and_verify
from training.loop import fit, predict, seed_everything
from training.model import ForecasterConfig, GRUForecaster, count_parameters
from training.options import LoopConfig, TrainOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    card: ModelCard
    parity: Parity
    summary: dict[str, Any]


def train(opts: TrainOptions) -> TrainResult:
    """Run the whole offline pipeline; raises ``StreamdError`` subclasses for user errors."""
    t_start = time.perf_counter()
    if opts.window < 2:
        raise DataError("--window", "must be at least 2")
    if opts.train_span and opts.train_span < opts.window:
        raise DataError("--train-span", f"must be 0 or at least the window ({opts.window})")
    seed_everything(opts.loop.seed)
    ds = load_dataset(
        opts.data,
        features=opts.features,
        window=opts.window,
        scaling=opts.scaling,
        head_fraction=opts.head_fraction,
        fractions=SplitFractions(opts.validation_fraction, opts.calibration_fraction),
        per_stream_scaling=opts.per_stream_scaling,
        time_features=opts.time_features,
        train_span=opts.train_span or None,
    )
    cfg = ForecasterConfig(
        features=len(ds.features),
        time_inputs=timefeatures.width(ds.time_features),
        hidden_size=opts.hidden_size,
        layers=opts.layers,
        dropout=opts.dropout,
        cell=opts.cell,
    )
    model = GRUForecaster(cfg)
    hist = fit(model, ds.train, ds.validation, opts.loop)

    cal_errors = sample_errors(ds.calibration.y, predict(model, ds.calibration))
    calibration: Calibration = calibrate(cal_errors)
    name = opts.name or Path(opts.out).stem
    training_facts: dict[str, Any] = {
        "files": [Path(f).name for f in ds.files],
        "data_rows": ds.rows,
        "data_span": list(ds.span),
        "data_sha256": ds.sha256,
        "dropped_rows": ds.dropped,
        "head_fraction": opts.head_fraction,
        "train_span": ds.train.x.shape[1],
        "windows": {
            "train": len(ds.train),
            "validation": len(ds.validation),
            "calibration": len(ds.calibration),
        },
        "epochs_run": len(hist.train_loss),
        "best_epoch": hist.best_epoch,
        "validation_loss": hist.best_val_loss,
        "parameters": count_parameters(model),
        "seconds": round(hist.seconds, 2),
        "loop": asdict(opts.loop),
        "dropout": opts.dropout,
        "versions": {
            "streamd": streamd.__version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
    }
    draft = ModelCard(
        name=name,
        version="",
        cell=opts.cell,
        features=ds.features,
        window=opts.window,
        layers=opts.layers,
        hidden_size=opts.hidden_size,
        scaler=ds.scaler,
        per_stream_scaling=ds.per_stream_scaling,
        time_features=ds.time_features,
        calibration=calibration,
        self_test=SelfTest(x=[], y_hat=[]),
        training=training_facts,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    check_windows = ds.calibration if len(ds.calibration) else ds.validation
    card, parity = export_and_verify(model, draft, Path(opts.out), check_windows)

    opts.report_dir.mkdir(parents=True, exist_ok=True)
    report.plot_losses(hist, opts.report_dir / "loss.png")
    plot_pred = predict(model, ds.plot_validation)
    report.plot_predictions(
        ds.plot_scaler.inverse(ds.plot_validation.y),
        ds.plot_scaler.inverse(plot_pred),
        ds.features,
        opts.report_dir / "predictions.png",
    )
    report.plot_calibration(cal_errors, calibration.threshold, opts.report_dir / "calibration.png")
    val_mae = np.mean(
        np.abs(ds.plot_scaler.inverse(plot_pred) - ds.plot_scaler.inverse(ds.plot_validation.y)),
        axis=0,
    )
    summary: dict[str, Any] = {
        "model": str(opts.out),
        "name": card.name,
        "version": card.version,
        "cell": card.cell,
        "features": card.features,
        "window": card.window,
        "layers": card.layers,
        "hidden_size": card.hidden_size,
        "parameters": training_facts["parameters"],
        "train_seconds": training_facts["seconds"],
        "total_seconds": round(time.perf_counter() - t_start, 2),
        "epochs_run": training_facts["epochs_run"],
        "best_epoch": hist.best_epoch,
        "stopped_early": hist.stopped_early,
        "validation_loss": hist.best_val_loss,
        "validation_mae_original_units_first_file": dict(
            zip(ds.features, map(float, val_mae), strict=True)
        ),
        "calibration": asdict(calibration),
        "parity": asdict(parity),
        "train_loss_curve": hist.train_loss,
        "val_loss_curve": hist.val_loss,
        "data": {k: training_facts[k] for k in ("files", "data_rows", "data_span", "windows")},
    }
    report.write_summary(opts.report_dir, summary)
    report.write_index(opts.report_dir, card, summary)
    return TrainResult(card, parity, summary)


def train_for_evaluation(
    *,
    data: Path,
    out: Path,
    report_dir: Path,
    head_fraction: float,
    window: int,
    time_features: list[str],
) -> None:
    """The trainer ``streamd evaluate --train-head`` hands the evaluation: a model of one
    file's head, seeded and quiet, on one thread (the evaluation runs a process per core)."""
    torch.set_num_threads(1)
    train(
        TrainOptions(
            data=[str(data)],
            out=out,
            report_dir=report_dir,
            head_fraction=head_fraction,
            window=window,
            time_features=time_features,
            loop=LoopConfig(progress=False),
        )
    )
