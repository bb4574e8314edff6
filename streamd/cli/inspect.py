"""``streamd inspect``: show and verify a model file, with ONNX Runtime only."""

from __future__ import annotations

import argparse

from streamd.cli.common import SubParsers


def cmd_inspect(ns: argparse.Namespace) -> int:
    from streamd.tools.inspect import card_json, describe

    print(card_json(ns.model) if ns.json else describe(ns.model))
    return 0


def add_inspect(sub: SubParsers) -> None:
    p = sub.add_parser("inspect", help="show and verify a model file (card, I/O, self-test)")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=cmd_inspect)
