"""``streamd train``: train, calibrate and export a model (needs the ``train`` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamd.cli.common import (
    TRAIN_EXTRA_HINT,
    SubParsers,
    add_time_features,
    missing_extra,
    writable,
)


def cmd_train(ns: argparse.Namespace) -> int:
    try:
        from training.options import LoopConfig, TrainOptions
        from training.run import train
    except ImportError as e:
        if missing_extra(e):
            print(f"streamd train {TRAIN_EXTRA_HINT} (missing module {e.name!r})", file=sys.stderr)
            return 3
        raise
    writable(Path(ns.out), "--out")
    writable(Path(ns.report), "--report", directory=True)
    opts = TrainOptions(
        data=ns.data,
        out=Path(ns.out),
        report_dir=Path(ns.report),
        features=ns.features,
        window=ns.window,
        train_span=ns.train_span,
        hidden_size=ns.hidden,
        layers=ns.layers,
        dropout=ns.dropout,
        cell=ns.cell,
        scaling=ns.scaling,
        per_stream_scaling=ns.per_stream_scaling,
        time_features=ns.time_features or [],
        head_fraction=ns.head_fraction,
        validation_fraction=ns.validation_fraction,
        calibration_fraction=ns.calibration_fraction,
        loop=LoopConfig(
            epochs=ns.epochs,
            batch_size=ns.batch_size,
            learning_rate=ns.lr,
            patience=ns.patience,
            seed=ns.seed,
            progress=not ns.quiet,
        ),
        name=ns.name,
    )
    result = train(opts)
    s = result.summary
    stopped = (
        f"stopped early at epoch {s['epochs_run']} (best {s['best_epoch']}: no better "
        f"validation loss for {ns.patience} epochs)"
        if s["stopped_early"]
        else f"{s['epochs_run']} epochs (best {s['best_epoch']})"
    )
    print(
        f"trained {s['name']} version {s['version']}: {s['parameters']} parameters, "
        f"{stopped}, validation loss {s['validation_loss']:.4g}, {s['train_seconds']:.1f} s"
    )
    print(
        f"parity: torch vs ONNX Runtime {result.parity.torch_vs_ort:.2e}, window vs stepwise "
        f"{result.parity.window_vs_stepwise:.2e} over {result.parity.windows_checked} windows"
    )
    print(f"calibration threshold {result.card.calibration.threshold:.4g}")
    print(f"wrote {ns.out} and {Path(ns.report) / 'index.html'}")
    return 0


def add_train(sub: SubParsers) -> None:
    from training.options import LoopConfig as L  # plain values: no torch needed here
    from training.options import TrainOptions as T

    p = sub.add_parser("train", help="train, calibrate and export a model (needs the train extra)")
    p.add_argument("--data", nargs="+", required=True, metavar="CSV", help="normal data, CSV files")
    p.add_argument("--out", required=True, metavar="MODEL.onnx")
    p.add_argument("--report", required=True, metavar="DIR", help="folder for plots and summary")
    p.add_argument("--features", nargs="+", help="feature columns (default: all but timestamp)")
    p.add_argument("--window", type=int, default=T.window, help="input window T (%(default)s)")
    p.add_argument(
        "--train-span",
        type=int,
        default=T.train_span,
        metavar="STEPS",
        help="train on windows this long, on every step from the window on, so that the "
        "state 'step' mode carries stays in distribution (%(default)s: the window; the "
        "default model uses 256)",
    )
    p.add_argument("--hidden", type=int, default=T.hidden_size, help="units a layer (%(default)s)")
    p.add_argument("--layers", type=int, default=T.layers, help="recurrent layers (%(default)s)")
    p.add_argument("--dropout", type=float, default=T.dropout, help="dropout between layers")
    p.add_argument("--cell", choices=("gru", "lstm"), default=T.cell)
    p.add_argument(
        "--scaling",
        choices=("minmax", "standard"),
        default=T.scaling,
        help="default minmax; with --per-stream-scaling the daemon's running standard scaling",
    )
    p.add_argument(
        "--per-stream-scaling",
        action="store_true",
        help="scale each file by its own statistics; the daemon then scales each stream itself",
    )
    add_time_features(p, "(default: none)")
    p.add_argument(
        "--head-fraction",
        type=float,
        default=T.head_fraction,
        help="train on only the first fraction of each file's rows (e.g. 0.15)",
    )
    p.add_argument("--validation-fraction", type=float, default=T.validation_fraction)
    p.add_argument("--calibration-fraction", type=float, default=T.calibration_fraction)
    p.add_argument("--epochs", type=int, default=L.epochs, help="most epochs (%(default)s)")
    p.add_argument("--batch-size", type=int, default=L.batch_size)
    p.add_argument("--lr", type=float, default=L.learning_rate, help="Adam's rate (%(default)s)")
    p.add_argument("--patience", type=int, default=L.patience, help="early stopping, epochs")
    p.add_argument("--seed", type=int, default=L.seed)
    p.add_argument("--name", default=T.name, help="model name (default: output file stem)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
