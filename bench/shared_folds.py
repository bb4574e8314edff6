"""A shared model trained on real series, scored on series it never saw (k folds by file).

The question: is one model trained on the 15 % heads of many real series a better detector
for a *short* series than a model of the series' own short head? For fold ``k`` of ``K``,
the development files whose sorted index ``i`` has ``i % K != k`` train one model with
per-stream scaling (``streamd train`` on their heads); the pieces of a short-series cut
(``bench/short_corpus.py``) that come from the other files are then scored with it
(``streamd evaluate --model``). Every piece is scored by the model of the one fold that
left its source file out, and all pieces are scored together, as NAB scores a corpus.

    python bench/short_corpus.py --rows 1200 --out out/dev1200
    python bench/shared_folds.py --cut out/dev1200 --out out/shared-folds
    python -m streamd.tools.crossval out/shared-folds/all out/per-file-1200   # side by side

Each fold's training options are ``--train-args`` (default: the shipped default model's
recipe, ``training/default_model.py``), after ``--head-fraction 0.15``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import REPO

from streamd.tools.crossval import GROUPINGS

NAB_DEV = REPO.parent / "shared" / "datasets" / "nab-dev"
RECIPE = (
    "--window 32 --train-span 256 --hidden 32 --layers 2 --scaling standard "
    "--per-stream-scaling --epochs 30 --batch-size 32"
)


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with its output in ``log``; seconds taken (raises if it fails)."""
    t0 = time.perf_counter()
    with log.open("w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=NAB_DEV, help="the whole development files")
    ap.add_argument("--cut", type=Path, required=True, help="bench/short_corpus.py output")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--train-args", default=RECIPE)
    ns = ap.parse_args(argv)
    files = sorted(p.relative_to(ns.data).as_posix() for p in ns.data.glob("*/*.csv"))
    if not files:
        ap.error(f"no CSV files under {ns.data}/*/")
    cut_labels = json.loads((ns.cut / "labels.json").read_text())
    ns.out.mkdir(parents=True, exist_ok=True)
    everything = ns.out / "all" / "results"
    rows = []
    for k in range(ns.folds):
        fold = ns.out / f"fold{k}"
        test = {f for i, f in enumerate(files) if i % ns.folds == k}
        train = [ns.data / f for f in files if f not in test]
        data = fold / "data"
        shutil.rmtree(data, ignore_errors=True)
        source_of = GROUPINGS["source"]  # the file a piece was cut from
        pieces = sorted(p for p in cut_labels["windows"] if source_of(p) in test)
        for p in pieces:
            (data / p).parent.mkdir(parents=True, exist_ok=True)
            (data / p).symlink_to((ns.cut / p).resolve())
        labels = {key: {p: cut_labels[key][p] for p in pieces} for key in ("windows", "anomalies")}
        (data / "labels.json").write_text(json.dumps(labels))
        model = fold / "model.onnx"
        train_cmd = [sys.executable, "-m", "streamd", "train", "--data", *map(str, train)]
        train_cmd += ["--out", str(model), "--report", str(fold / "report"), "--quiet"]
        train_cmd += ["--head-fraction", "0.15", *shlex.split(ns.train_args)]
        train_s = run(train_cmd, fold / "train.log")
        evaluated = fold / "evaluate"
        shutil.rmtree(evaluated, ignore_errors=True)
        eval_cmd = [sys.executable, "-m", "streamd", "evaluate", "--data", str(data)]
        eval_cmd += ["--labels", str(data / "labels.json"), "--model", str(model)]
        eval_cmd += ["--out", str(evaluated), "--no-plots"]
        eval_s = run(eval_cmd, fold / "evaluate.log")
        shutil.copytree(evaluated / "results", everything, dirs_exist_ok=True)
        rows.append(
            {"fold": k, "test_files": sorted(test), "pieces": len(pieces)}
            | {"train_s": round(train_s, 1), "evaluate_s": round(eval_s, 1)}
        )
        print(f"fold {k}: {len(pieces)} pieces, train {train_s:.0f} s, evaluate {eval_s:.0f} s")
    (ns.out / "folds.json").write_text(json.dumps(rows, indent=1))
    print(f"every piece scored: python -m streamd.tools.crossval {ns.out / 'all'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
