"""What an evaluation writes and prints: NAB's results layout, a plot per file, the tables.

The scores themselves come from :mod:`streamd.tools.nab`: one threshold per detector and
profile swept over the corpus. The per-category figures are each category's own normalised
score at that corpus threshold (not swept again), which shows where the corpus score is won
or lost.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamd.core.arrays import F64
from streamd.tools.nab import PROFILES, FileRows, Profile, events, prepare, sweep

DETECTORS = ("zscore", "gru_raw", "streamd")


@dataclass
class FileOutcome:
    """One file's rows and what each detector made of them (``scores``: the value NAB
    thresholds, per row); ``streamd_score`` is the daemon's own score, ``model`` says which
    model scored the file and why."""

    name: str
    timestamps: list[str]
    values: F64
    windows: list[tuple[int, int]]
    scores: dict[str, F64]
    streamd_score: F64
    model: str
    seconds: float


def at_threshold(files: list[FileRows], profile: Profile, threshold: float) -> float:
    """The normalised NAB score of ``files`` at a given threshold (no sweep)."""
    null = perfect = total = 0.0
    for f in files:
        fire = f.scores >= threshold
        best: dict[int, float] = {}
        for r in np.flatnonzero(fire):
            w = int(f.window_id[r])
            if w >= 0:
                best[w] = max(best.get(w, -profile.fn), profile.tp * f.sigmoid[r])
            else:
                total += profile.fp * f.sigmoid[r]
        wins = set(int(w) for w in f.window_id[f.window_id >= 0]) | set(best)
        missed = f.n_windows - len(wins)  # windows inside the probationary period
        total += sum(best.get(w, -profile.fn) for w in wins) - profile.fn * missed
        null -= profile.fn * f.n_windows
        perfect += profile.tp * f.n_windows
    return 100.0 * (total - null) / (perfect - null) if perfect != null else 0.0


def summarize(outcomes: dict[str, FileOutcome]) -> dict[str, Any]:
    """NAB's three profiles, event figures and the per-category breakdown, per detector."""
    names = sorted(outcomes)
    out: dict[str, Any] = {}
    for det in DETECTORS:
        rows, wid = [], 0
        for rel in names:
            f = outcomes[rel]
            rows.append(prepare(rel, f.scores[det], f.windows, wid))
            wid += len(f.windows)
        profiles = {p.name: sweep(rows, p) for p in PROFILES}
        standard = next(p for p in PROFILES if p.name == "standard")
        threshold = profiles["standard"].threshold
        categories = sorted({rel.split("/", 1)[0] for rel in names})
        by_category = {
            c: round(
                at_threshold(
                    [r for r, rel in zip(rows, names, strict=True) if rel.startswith(c + "/")],
                    standard,
                    threshold,
                ),
                1,
            )
            for c in categories
        }
        out[det] = {
            "profiles": {k: asdict(v) for k, v in profiles.items()},
            "events": asdict(events(rows, threshold)),
            "categories": by_category,
        }
    return out


def write_results(out: Path, detector: str, rel: str, f: FileOutcome) -> None:
    category, file = rel.split("/", 1)
    dest = out / "results" / detector / category / f"{detector}_{file}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    label = np.zeros(len(f.values), int)
    for a, b in f.windows:
        label[a : b + 1] = 1
    with dest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for i, ts in enumerate(f.timestamps):
            w.writerow([ts, f"{f.values[i]:.10g}", f"{f.scores[detector][i]:.6f}", label[i]])


def plot_file(out: Path, rel: str, f: FileOutcome, thresholds: dict[str, float]) -> None:
    """The values with the label windows and streamd's alerts above; below, streamd's own
    score (what the daemon exports) beside the two baselines' scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
    x = np.arange(len(f.values))
    ax1.plot(x, f.values, lw=0.7, color="black")
    for a, b in f.windows:
        for ax in (ax1, ax2):
            ax.axvspan(a, b, color="tab:orange", alpha=0.25)
    fired = f.scores["streamd"] >= thresholds["streamd"]
    ax1.plot(x[fired], f.values[fired], "v", color="tab:red", label="streamd alert")
    ax1.set_title(f"{rel} ({f.model})")
    ax1.legend(loc="upper left")
    ax2.plot(x, f.streamd_score, lw=0.8, color="tab:red", label="streamd score")
    ax2.plot(x[fired], f.streamd_score[fired], "v", color="tab:red")
    for name, color in (("zscore", "tab:grey"), ("gru_raw", "tab:blue")):
        ax2.plot(x, f.scores[name], lw=0.6, color=color, label=name, alpha=0.6)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("anomaly score")
    ax2.set_xlabel("row")
    ax2.legend(loc="upper left")
    fig.tight_layout()
    dest = out / "plots" / (rel.replace("/", "__").removesuffix(".csv") + ".png")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=80)
    plt.close(fig)


def table(summary: dict[str, Any]) -> str:
    head = (
        f"{'detector':<10} {'standard':>9} {'low_FP':>8} {'low_FN':>8} {'threshold':>10} "
        f"{'precision':>9} {'recall':>7} {'F1':>6} {'delay (rows)':>12}"
    )
    lines = [head, "-" * len(head)]
    for det, d in summary["detectors"].items():
        std, low_fp, low_fn = (
            d["profiles"][k]["normalized"]
            for k in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
        )
        thr = d["profiles"]["standard"]["threshold"]
        e = d["events"]
        lines.append(
            f"{det:<10} {std:>9.1f} {low_fp:>8.1f} {low_fn:>8.1f} {thr:>10.4f} "
            f"{e['precision']:>9.2f} {e['recall']:>7.2f} {e['f1']:>6.2f} "
            f"{e['mean_delay_rows']:>12.1f}"
        )
    cats = summary["detectors"]["streamd"]["categories"]
    lines.append("")
    lines.append(
        "streamd by category (standard, at the corpus threshold): "
        + ", ".join(f"{c} {v:.1f}" for c, v in cats.items())
    )
    for rel, why in summary.get("errors", {}).items():
        lines.append(f"not evaluated: {rel}: {why}")
    return "\n".join(lines)
