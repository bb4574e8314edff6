"""Tune honestly: evaluate a grid of candidate settings, then cross-validate the pick.

Each candidate is one ``streamd evaluate`` of the corpus with some settings changed (a
``[section]`` table of overrides, and optionally other evaluate flags); every candidate's
per-file models come from one shared cache, so a grid over scoring settings trains each
file's model once. Then :mod:`streamd.tools.crossval` reports each candidate's in-sample
score and the leave-one-file-out score of picking the best (docs/quality.md).

    python bench/tuning.py --grid bench/grids/scoring.json --out out/tuning
    python bench/tuning.py --grid G --out O --only leave150 leave300   # a few of them
    python bench/tuning.py --grid G --out O --data out/nab-dev-short      # bench/short_corpus.py

A grid file is JSON: ``{"candidates": {"name": {"settings": {...}, "args": [...]}}}``, or
``{"axes": {"scoring.threshold": [0.3, 0.5], ...}, "args": [...]}`` for the product of the
axes (names made from the values).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO

from streamd.tools.crossval import crossvalidate, load_run, table

NAB_DEV = REPO.parent / "shared" / "datasets" / "nab-dev"


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def write_toml(settings: dict[str, dict[str, Any]], path: Path) -> None:
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")


def candidates(grid: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name -> {"settings": {section: {key: value}}, "args": [...]}."""
    if "candidates" in grid:
        out: dict[str, dict[str, Any]] = grid["candidates"]
        return out
    axes: dict[str, list[Any]] = grid["axes"]
    out = {}
    for values in itertools.product(*axes.values()):
        settings: dict[str, dict[str, Any]] = {}
        parts = []
        for dotted, v in zip(axes, values, strict=True):
            section, key = dotted.split(".")
            settings.setdefault(section, {})[key] = v
            parts.append(f"{key}={v}")
        out[",".join(parts)] = {"settings": settings, "args": list(grid.get("args", []))}
    return out


def run(name: str, spec: dict[str, Any], ns: argparse.Namespace) -> Path:
    dest = ns.out / name.replace("/", "_")
    if (dest / "summary.json").is_file() and not ns.again:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    cache = ns.out / "models"
    cache.mkdir(parents=True, exist_ok=True)
    if not (dest / "models").exists():
        (dest / "models").symlink_to(cache.resolve())
    conf = dest / "settings.toml"
    write_toml(spec.get("settings", {}), conf)
    cmd = [
        sys.executable, "-m", "streamd", "evaluate", "--data", str(ns.data),
        "--labels", str(ns.data / "labels.json"), "--out", str(dest), "--config", str(conf),
        "--no-plots", *spec.get("args", ["--train-head", "0.15"]),
    ]  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{name}: {done.stderr.strip()[-2000:]}")
    print(f"{name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=NAB_DEV)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", help="candidates to run (default: all)")
    ap.add_argument("--again", action="store_true", help="rerun candidates already run")
    ap.add_argument("--by", default="source", help="what a fold leaves out: source, category")
    ns = ap.parse_args(argv)
    specs = candidates(json.loads(ns.grid.read_text()))
    names = ns.only or list(specs)
    dirs = [run(name, specs[name], ns) for name in names]
    result = crossvalidate([load_run(d) for d in dirs], ns.by)
    print(table(result))
    (ns.out / "crossval.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
