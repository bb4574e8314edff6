"""The ``streamd`` command line: one entry point, one subcommand per job.

Each subcommand has its module here; handlers import what they need lazily, so
``streamd inspect`` never loads torch and ``streamd train`` can say clearly that the
``train`` extra is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from streamd import __version__
from streamd.cli import evaluate, inspect, replay, run, simulate, train
from streamd.errors import StreamdError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamd", description="Streaming anomaly detection for edge boxes."
    )
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_train(sub)
    run.add_run(sub)
    replay.add_replay(sub)
    evaluate.add_evaluate(sub)
    simulate.add_simulate(sub)
    inspect.add_inspect(sub)
    run.add_config(sub)
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
