"""Honest tuning: leave-one-out cross-validation over evaluation runs.

Each run is one ``streamd evaluate --out DIR`` of the same corpus with other settings (a
candidate configuration). Tuning picks the candidate with the best NAB score; its
in-sample score flatters it, since it was picked on the very files it is scored on. The
cross-validated score measures the *procedure* instead: for each file, the candidate is
picked on the other files only, and that candidate's rows of the left-out file are kept;
the kept rows of all files are then scored together, as NAB scores a corpus (one threshold
per profile, swept). A candidate that wins in-sample but not cross-validated fitted the
files rather than the problem.

What is left out together is a group (``--by``): a ``source`` (a file, with the pieces that
``bench/short_corpus.py`` cut from it, so no piece is scored by a pick made on its
neighbours) or a whole ``category`` (the harder question: does the pick carry over to a
kind of series it never saw, as the held-out benchmark asks).

    python -m streamd.tools.crossval out/tuning/*        # a table; --json for the figures
    python -m streamd.tools.crossval --by category out/tuning/*
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamd.core.arrays import F64
from streamd.tools.nab import PROFILES, FileRows, prepare, sweep

STANDARD = PROFILES[0]
GROUPINGS: dict[str, Callable[[str], str]] = {
    "source": lambda f: re.sub(r"_part\d+\.csv$", ".csv", f),
    "category": lambda f: f.split("/", 1)[0],
}


@dataclass(frozen=True)
class Run:
    """One candidate's output: per file (``category/file.csv``) the detector's row scores
    and the label windows (inclusive row ranges)."""

    name: str
    scores: dict[str, F64]
    windows: dict[str, list[tuple[int, int]]]


def windows_of(labels: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` rows of each run of 1s in ``labels``."""
    edges = np.diff(np.concatenate([[0], labels.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def load_run(out: Path, detector: str = "streamd") -> Run:
    """Read ``<out>/results/<detector>/<category>/<detector>_<file>.csv`` files."""
    root = out / "results" / detector
    scores: dict[str, F64] = {}
    windows: dict[str, list[tuple[int, int]]] = {}
    for path in sorted(root.glob("*/*.csv")):
        rel = f"{path.parent.name}/{path.name.removeprefix(detector + '_')}"
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        scores[rel] = np.array([float(r["anomaly_score"]) for r in rows])
        windows[rel] = windows_of(np.array([int(r["label"]) for r in rows]))
    if not scores:
        raise FileNotFoundError(f"no {detector} results under {root}")
    return Run(out.name, scores, windows)


def _rows(run: Run, files: list[str], first_ids: dict[str, int]) -> list[FileRows]:
    return [prepare(f, run.scores[f], run.windows[f], first_ids[f]) for f in files]


def crossvalidate(runs: list[Run], by: str = "source") -> dict[str, object]:
    """In-sample scores of every run, and the leave-one-group-out score of picking the best.

    Returns ``in_sample`` (run -> profile -> normalised score), ``picked`` (group -> the run
    picked without it) and ``cross_validated`` (profile -> normalised score).
    """
    group = GROUPINGS[by]
    files = sorted(runs[0].scores)
    for r in runs[1:]:
        if sorted(r.scores) != files:
            raise ValueError(f"run {r.name} covers other files than {runs[0].name}")
    first_ids, wid = {}, 0
    for f in files:  # one window numbering for every run: the windows are the corpus's
        first_ids[f] = wid
        wid += len(runs[0].windows[f])
    rows = {r.name: dict(zip(files, _rows(r, files, first_ids), strict=True)) for r in runs}
    in_sample = {
        r.name: {p.name: sweep(list(rows[r.name].values()), p).normalized for p in PROFILES}
        for r in runs
    }
    picked: dict[str, str] = {}
    for left_out in sorted({group(f) for f in files}):
        others = [f for f in files if group(f) != left_out]
        scored = {
            r.name: sweep([rows[r.name][f] for f in others], STANDARD).normalized for r in runs
        }
        picked[left_out] = max(scored, key=lambda name: (scored[name], name))
    held_out = [rows[picked[group(f)]][f] for f in files]
    cross_validated = {p.name: sweep(held_out, p).normalized for p in PROFILES}
    return {"in_sample": in_sample, "picked": picked, "cross_validated": cross_validated}


def table(result: dict[str, object]) -> str:
    in_sample = result["in_sample"]
    cv = result["cross_validated"]
    picked = result["picked"]
    assert isinstance(in_sample, dict) and isinstance(cv, dict) and isinstance(picked, dict)
    names = [p.name for p in PROFILES]
    lines = [f"{'candidate':<32} " + " ".join(f"{n[:14]:>14}" for n in names)]
    for run, scores in sorted(in_sample.items(), key=lambda kv: -kv[1]["standard"]):
        lines.append(f"{run:<32} " + " ".join(f"{scores[n]:>14.1f}" for n in names))
    lines.append(
        f"{'cross-validated (pick the best)':<32} " + " ".join(f"{cv[n]:>14.1f}" for n in names)
    )
    counts: dict[str, int] = {}
    for run in picked.values():
        counts[run] = counts.get(run, 0) + 1
    lines.append("picked per fold: " + ", ".join(f"{r} {k}" for r, k in sorted(counts.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="streamd evaluate --out folders")
    ap.add_argument("--detector", default="streamd")
    ap.add_argument("--by", choices=sorted(GROUPINGS), default="source", help="what is left out")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args(argv)
    result = crossvalidate([load_run(p, ns.detector) for p in ns.runs], ns.by)
    print(json.dumps(result, indent=1) if ns.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
