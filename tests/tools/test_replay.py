"""``streamd replay``: one output row per input row, in order, through the daemon's pipeline."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np

from streamd.tools.synth import PROFILES, normal_series
from tests.helpers import write_csv


def test_replay_keeps_every_row_and_marks_rejects(tiny_model, tmp_path: Path) -> None:
    path, _ = tiny_model
    rng = np.random.default_rng(11)
    src = write_csv(
        tmp_path / "in.csv",
        {
            "temp": normal_series(PROFILES[0], 60, 60.0, rng),
            "power": normal_series(PROFILES[3], 60, 60.0, rng),
        },
    )
    lines = src.read_text().splitlines()
    lines.insert(41, lines[40])  # a repeated timestamp
    lines.insert(50, lines[20])  # a backward one
    lines.insert(55, "2020-01-01 00:00:00,abc,1")  # an unreadable value
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    r = subprocess.run(
        ["streamd", "replay", "--model", str(path), "--input", str(src), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(lines) - 1
    assert [row["timestamp"] for row in rows] == [ln.split(",")[0] for ln in lines[1:]]
    status = [row["status"] for row in rows]
    assert status[40] == "duplicate" and status[49] == "out_of_order" and status[54] == "invalid"
    assert status.count("warmup") == 12 and status[-1] == "scored"
    for i in (40, 49, 54):  # a rejected row carries the previous row's score
        assert rows[i]["anomaly_score"] == rows[i - 1]["anomaly_score"]
    assert set(rows[0]) >= {
        "timestamp",
        "value_temp",
        "anomaly_score",
        "is_anomaly",
        "predicted_temp",
        "error",
    }
