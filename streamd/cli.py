"""The ``streamd`` command line: one entry point, one subcommand per job.

Handlers import their modules lazily, so ``streamd inspect`` never loads torch and
``streamd train`` can say clearly that the ``train`` extra is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from streamd import __version__
from streamd.errors import StreamdError

TRAIN_EXTRA_HINT = (
    "streamd train needs the 'train' extra: "
    "pip install torch==2.13.0 && pip install 'streamd[train]'"
)


def _cmd_train(ns: argparse.Namespace) -> int:
    try:
        from training.loop import LoopConfig
        from training.run import TrainOptions, train
    except ImportError as e:
        if e.name and e.name.split(".")[0] in {"torch", "onnx", "onnxscript", "matplotlib", "tqdm"}:
            print(f"streamd: {TRAIN_EXTRA_HINT} (missing module {e.name!r})", file=sys.stderr)
            return 3
        raise
    opts = TrainOptions(
        data=ns.data,
        out=Path(ns.out),
        report_dir=Path(ns.report),
        features=ns.features,
        window=ns.window,
        hidden_size=ns.hidden,
        layers=ns.layers,
        dropout=ns.dropout,
        cell=ns.cell,
        scaling=ns.scaling,
        per_stream_scaling=ns.per_stream_scaling,
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
    print(
        f"trained {s['name']} version {s['version']}: {s['parameters']} parameters, "
        f"{s['epochs_run']} epochs (best {s['best_epoch']}), validation loss "
        f"{s['validation_loss']:.4g}, {s['train_seconds']:.1f} s training"
    )
    print(
        f"parity: torch vs ONNX Runtime {result.parity.torch_vs_ort:.2e}, window vs stepwise "
        f"{result.parity.window_vs_stepwise:.2e} over {result.parity.windows_checked} windows"
    )
    print(f"calibration threshold {result.card.calibration.threshold:.4g}")
    print(f"wrote {ns.out} and {Path(ns.report) / 'index.html'}")
    return 0


def _cmd_inspect(ns: argparse.Namespace) -> int:
    from streamd.model_info import card_json, describe

    print(card_json(ns.model) if ns.json else describe(ns.model))
    return 0


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train, calibrate and export a model (needs the train extra)")
    p.add_argument("--data", nargs="+", required=True, metavar="CSV", help="normal data, CSV files")
    p.add_argument("--out", required=True, metavar="MODEL.onnx")
    p.add_argument("--report", required=True, metavar="DIR", help="folder for plots and summary")
    p.add_argument("--features", nargs="+", help="feature columns (default: all but timestamp)")
    p.add_argument("--window", type=int, default=32, help="input window length T (default 32)")
    p.add_argument("--hidden", type=int, default=32, help="hidden units per layer (default 32)")
    p.add_argument("--layers", type=int, default=2, help="stacked recurrent layers (default 2)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout between layers")
    p.add_argument("--cell", choices=("gru", "lstm"), default="gru")
    p.add_argument("--scaling", choices=("minmax", "standard"), default="minmax")
    p.add_argument(
        "--per-stream-scaling",
        action="store_true",
        help="scale each file by its own statistics; the daemon then scales each stream itself",
    )
    p.add_argument(
        "--head-fraction",
        type=float,
        default=1.0,
        help="train on only the first fraction of each file's rows (e.g. 0.15)",
    )
    p.add_argument("--validation-fraction", type=float, default=0.15)
    p.add_argument("--calibration-fraction", type=float, default=0.15)
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="model name (default: output file stem)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _add_inspect(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inspect", help="show and verify a model file (card, I/O, self-test)")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=_cmd_inspect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamd", description="Streaming anomaly detection for edge boxes."
    )
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    adders: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
        _add_train,
        _add_inspect,
    ]
    for add in adders:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; every :class:`StreamdError` becomes one line on stderr and its exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ns = build_parser().parse_args(argv)
    try:
        rc: int = ns.func(ns)
    except StreamdError as e:
        print(f"streamd {ns.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return rc
