"""``streamd replay``: score a CSV through the daemon's own scoring path."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamd.cli.common import SubParsers, mode_override, writable


def cmd_replay(ns: argparse.Namespace) -> int:
    from streamd.config import load_settings
    from streamd.tools.replay import replay_csv, write_replay

    settings = load_settings(Path(ns.config) if ns.config else None, mode_override(ns))
    output = writable(Path(ns.output), "--output")

    def progress(done: int, total: int) -> None:
        print(f"  {done:,} of {total:,} rows", file=sys.stderr, flush=True)

    r = replay_csv(settings, Path(ns.model), Path(ns.input), progress)
    write_replay(output, r)
    n_alerts = int(r.scores.entered.sum())
    print(f"replayed {len(r.timestamps)} rows: {n_alerts} anomalies entered; wrote {ns.output}")
    return 0


def add_replay(sub: SubParsers) -> None:
    p = sub.add_parser("replay", help="score a CSV through the daemon's scoring path")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, metavar="CSV")
    p.add_argument("--output", required=True, metavar="CSV")
    p.add_argument("--config", help="TOML file for the scoring and inference settings")
    p.add_argument("--mode", choices=("step", "window"))
    p.set_defaults(func=cmd_replay)
