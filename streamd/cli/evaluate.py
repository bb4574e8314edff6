"""``streamd evaluate``: detection quality on a labelled corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamd.cli.common import (
    TRAIN_EXTRA_HINT,
    SubParsers,
    add_time_features,
    missing_extra,
    mode_override,
    writable,
)


def cmd_evaluate(ns: argparse.Namespace) -> int:
    from streamd.config import load_settings
    from streamd.tools.evaluate import evaluate
    from streamd.tools.scorecard import table

    if (ns.model is None) == (ns.train_head is None):
        print("streamd evaluate: give exactly one of --model and --train-head", file=sys.stderr)
        return 2
    trainer = None
    if ns.train_head is not None:  # only now: the online side never imports training
        try:
            from training.run import train_for_evaluation
        except ImportError as e:
            if missing_extra(e):
                print(
                    f"streamd evaluate --train-head {TRAIN_EXTRA_HINT} (missing module {e.name!r})",
                    file=sys.stderr,
                )
                return 3
            raise
        trainer = train_for_evaluation
    settings = load_settings(Path(ns.config) if ns.config else None, mode_override(ns))
    writable(Path(ns.out), "--out", directory=True)
    summary = evaluate(
        Path(ns.data),
        Path(ns.labels),
        Path(ns.out),
        settings,
        model=Path(ns.model) if ns.model else None,
        trainer=trainer,
        train_head=ns.train_head,
        plots=not ns.no_plots,
        jobs=ns.jobs,
        window=ns.window,
        time_features=ns.time_features or [],
    )
    print(table(summary))
    print(
        f"{summary['files']} files in {summary['seconds']} s; wrote {Path(ns.out) / 'summary.json'}"
    )
    return 0


def add_evaluate(sub: SubParsers) -> None:
    from training.options import TrainOptions  # plain values: no torch needed here

    p = sub.add_parser("evaluate", help="detection quality on a labelled corpus (NAB scores)")
    p.add_argument("--data", required=True, help="corpus folder (NAB layout)")
    p.add_argument("--labels", required=True, help="labels.json with a 'windows' map")
    p.add_argument("--model", help="one model for every file")
    p.add_argument("--train-head", type=float, help="train a model per file on this first fraction")
    p.add_argument("--out", default="out/evaluate")
    p.add_argument("--config", help="TOML file for the scoring and inference settings")
    p.add_argument("--mode", choices=("step", "window"))
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--jobs", type=int, default=0, help="parallel files (default: one per core)")
    p.add_argument(
        "--window",
        type=int,
        default=TrainOptions.window,
        help="window of the per-file models (%(default)s; half of it for heads under 450 rows)",
    )
    add_time_features(p, "of the per-file models")
    p.set_defaults(func=cmd_evaluate)
