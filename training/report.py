"""The training report: PNG plots, ``summary.json`` and an ``index.html`` that shows them."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen on edge boxes or CI
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from streamd.core.card import ModelCard
from training.loop import History

MAX_PLOT_POINTS = 2000


def plot_losses(hist: History, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.arange(1, len(hist.train_loss) + 1)
    ax.plot(epochs, hist.train_loss, label="train")
    ax.plot(epochs, hist.val_loss, label="validation")
    ax.axvline(hist.best_epoch, color="grey", ls="--", label=f"best (epoch {hist.best_epoch})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled units)")
    ax.legend()
    ax.set_title("Loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_predictions(
    actual: npt.NDArray[np.float32],
    predicted: npt.NDArray[np.float32],
    features: list[str],
    path: Path,
) -> None:
    """Prediction vs actual on the validation slice, in original units, one panel per feature."""
    n = min(len(actual), MAX_PLOT_POINTS)
    fig, axes = plt.subplots(len(features), 1, figsize=(10, 2.6 * len(features)), squeeze=False)
    for i, name in enumerate(features):
        ax = axes[i][0]
        ax.plot(actual[:n, i], label="actual", lw=1)
        ax.plot(predicted[:n, i], label="predicted", lw=1, alpha=0.8)
        ax.set_ylabel(name)
        ax.legend(loc="upper right")
    axes[0][0].set_title("Validation: next-step prediction vs actual")
    axes[-1][0].set_xlabel("validation sample")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_calibration(errors: npt.NDArray[np.float64], threshold: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(errors, bins=60, color="tab:blue", alpha=0.8)
    ax.axvline(threshold, color="tab:red", ls="--", label=f"default threshold {threshold:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel("per-sample error (RMS over features, scaled units)")
    ax.set_ylabel("count")
    ax.set_title("Calibration errors (held-back normal data)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_index(out: Path, card: ModelCard, summary: dict[str, Any]) -> None:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v))}</td></tr>"
        for k, v in summary.items()
        if not isinstance(v, dict | list)
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>streamd model {html.escape(card.name)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
th{{text-align:left;padding-right:1em}}
img{{max-width:100%;border:1px solid #ddd;margin:1em 0}}</style>
</head><body>
<h1>Model {html.escape(card.name)} <small>version {html.escape(card.version)}</small></h1>
<table>{rows}</table>
<h2>Loss</h2><img src="loss.png" alt="loss curves">
<h2>Validation predictions</h2><img src="predictions.png" alt="prediction vs actual">
<h2>Calibration</h2><img src="calibration.png" alt="calibration error histogram">
<p>Full figures: <a href="summary.json">summary.json</a></p>
</body></html>
"""
    (out / "index.html").write_text(page)


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
