"""NAB scoring against hand-computed cases of its published definition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from streamd.tools.nab import PROFILES, events, prepare, probation_rows, scaled_sigmoid, sweep
from tests.helpers import write_csv

STANDARD = PROFILES[0]


def test_probation_is_15_percent_capped_at_750() -> None:
    assert probation_rows(1000) == 150 and probation_rows(10_000) == 750


def corpus(scores: np.ndarray, windows: list[tuple[int, int]]):
    return [prepare("f", scores, windows, 0)]


def test_null_and_perfect_detectors_score_0_and_100() -> None:
    n = 1000
    windows = [(400, 449), (700, 749)]
    null = sweep(corpus(np.zeros(n), windows), STANDARD)
    assert null.normalized == pytest.approx(0.0)
    perfect = np.zeros(n)
    perfect[[400, 700]] = 1.0  # the first row of each window
    r = sweep(corpus(perfect, windows), STANDARD)
    assert r.normalized == pytest.approx(100.0) and r.threshold == 1.0


def test_late_detection_and_false_positive_costs() -> None:
    n = 1000
    windows = [(400, 449)]
    s = np.zeros(n)
    s[424] = 1.0  # middle of the 50-row window: position -(449 - 424 + 1) / 50 = -0.52
    s[300] = 1.0  # a false positive before any window: -1 * A_FP
    r = sweep(corpus(s, windows), STANDARD)
    tp = scaled_sigmoid(-0.52) / scaled_sigmoid(-1.0)
    assert r.raw == pytest.approx(tp - 0.11)
    assert r.normalized == pytest.approx(100 * (tp - 0.11 + 1) / 2)


def test_false_positive_right_after_a_window_costs_less() -> None:
    n = 1000
    windows = [(400, 449)]
    near, far = np.zeros(n), np.zeros(n)
    near[[400, 455]] = 1.0
    far[[400, 900]] = 1.0
    assert sweep(corpus(near, windows), STANDARD).raw > sweep(corpus(far, windows), STANDARD).raw
    # distance past the window in units of (width - 1): 6 / 49
    expected = 1.0 + 0.11 * scaled_sigmoid(abs(449 - 455) / 49)
    assert sweep(corpus(near, windows), STANDARD).raw == pytest.approx(expected)


def test_sweep_prefers_the_threshold_that_drops_noise() -> None:
    n = 1000
    s = np.full(n, 0.1)
    s[500] = 0.9
    r = sweep(corpus(s, [(480, 529)]), STANDARD)
    assert r.threshold == 0.9 and r.fp == 0


def test_probationary_rows_are_not_scored() -> None:
    s = np.zeros(1000)
    s[10] = 1.0  # inside the probationary 150 rows: no false positive
    s[600] = 1.0
    assert sweep(corpus(s, [(600, 649)]), STANDARD).normalized == pytest.approx(100.0)


def test_event_figures() -> None:
    s = np.zeros(1000)
    s[[610, 611, 612]] = 1.0  # one detection, 10 rows into the window
    s[[300, 800]] = 1.0  # two false detections
    ev = events(corpus(s, [(600, 649), (900, 949)]), 0.5)
    assert (ev.detections, ev.true_detections, ev.windows, ev.windows_detected) == (3, 1, 2, 1)
    assert ev.precision == pytest.approx(1 / 3) and ev.recall == 0.5
    assert ev.mean_delay_rows == 10 and ev.mean_delay_fraction == pytest.approx(0.2)
    assert math.isclose(ev.f1, 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))


def test_evaluate_end_to_end_on_a_small_labelled_corpus(tmp_path: Path) -> None:
    """`streamd evaluate --model` on a NAB-layout corpus: every output, and the shift found."""
    import csv
    import subprocess

    from streamd.tools.synth import PROFILES, Injection, inject, normal_series
    from tests.helpers import DEFAULT_MODEL

    rng = np.random.default_rng(5)
    data = tmp_path / "corpus" / "synthetic"
    data.mkdir(parents=True)
    shifted = inject(
        normal_series(PROFILES[4], 1500, 300.0, rng), Injection("level_shift", 1100, 80, 5.0), rng
    )
    write_csv(data / "with_anomaly.csv", {"value": shifted}, step_s=300.0)
    write_csv(
        data / "normal.csv", {"value": normal_series(PROFILES[0], 1500, 300.0, rng)}, step_s=300.0
    )
    with (data / "with_anomaly.csv").open() as fh:
        ts = [row["timestamp"] for row in csv.DictReader(fh)]
    labels = tmp_path / "corpus" / "labels.json"
    labels.write_text(
        json.dumps(
            {
                "windows": {
                    "synthetic/with_anomaly.csv": [[ts[1080] + ".000000", ts[1155] + ".000000"]],
                    "synthetic/normal.csv": [],
                }
            }
        )
    )
    out = tmp_path / "eval"
    r = subprocess.run(
        [
            "streamd",
            "evaluate",
            "--data",
            str(tmp_path / "corpus"),
            "--labels",
            str(labels),
            "--model",
            str(DEFAULT_MODEL),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "streamd" in r.stdout and "zscore" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    full = summary["detectors"]["streamd"]
    assert (
        full["events"]["windows_detected"] == 1 and full["profiles"]["standard"]["normalized"] > 50
    )
    for det in ("zscore", "gru_raw", "streamd"):
        rows = list(
            csv.DictReader((out / "results" / det / "synthetic" / f"{det}_with_anomaly.csv").open())
        )
        assert len(rows) == 1500 and rows[1100]["label"] == "1" and rows[0]["label"] == "0"
        assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(list((out / "plots").glob("*.png"))) == 2
