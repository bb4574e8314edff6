"""`streamd evaluate --train-head` on any series length; one bad file costs only itself."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streamd.config import PACKAGED_MODEL
from streamd.errors import ConfigError, DataError, ModelError, PayloadError, StreamdError
from streamd.tools.evaluate import SHORT_HEAD_ROWS, model_for
from streamd.tools.synth import PROFILES, Injection, inject, normal_series
from tests.helpers import write_csv


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("mqtt.port", "must be > 0"),
        DataError("a.csv", "too few rows"),
        ModelError("m.onnx", "no card"),
        PayloadError("not_json", "at byte 3"),
    ],
)
def test_errors_cross_a_process_pool_intact(error: StreamdError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert vars(back) == vars(error)


def timestamps(path: Path) -> list[str]:
    with path.open() as fh:
        return [row["timestamp"] for row in csv.DictReader(fh)]


def test_any_length_evaluates_and_a_bad_file_is_reported_alone(tmp_path: Path) -> None:
    """A short head (a 1,300-row series: 195 rows) trains a model with half the window;
    heads too short for that as well fall back to the shared model; a 400-row series is
    scored from about its 200th row (100 samples of scaling, then 100 of error history) and
    its anomaly found; a 150-row one is evaluated (every row written) though too short
    for a verdict; an error in one file costs that file only."""
    rng = np.random.default_rng(3)
    data = tmp_path / "corpus" / "short"
    data.mkdir(parents=True)
    shifted = inject(
        normal_series(PROFILES[4], 400, 300.0, rng), Injection("level_shift", 300, 30, 6.0), rng
    )
    write_csv(data / "short.csv", {"value": shifted}, step_s=300.0)
    write_csv(data / "tiny.csv", {"value": normal_series(PROFILES[0], 150, 300.0, rng)}, step_s=300)
    write_csv(data / "medium.csv", {"value": normal_series(PROFILES[1], 1300, 300.0, rng)},
              step_s=300.0)  # fmt: skip
    write_csv(data / "bad.csv", {"value": normal_series(PROFILES[0], 400, 300.0, rng)}, step_s=300)
    ts = timestamps(data / "short.csv")
    labels = tmp_path / "corpus" / "labels.json"
    labels.write_text(
        json.dumps(
            {
                "windows": {
                    "short/short.csv": [[ts[290] + ".000000", ts[340] + ".000000"]],
                    "short/tiny.csv": [],
                    "short/medium.csv": [],
                    # a limit that is no row of the file: an error raised in a worker process
                    "short/bad.csv": [["1999-01-01 00:00:00.000000", "1999-01-02 00:00:00"]],
                }
            }
        )
    )
    out = tmp_path / "eval"
    r = subprocess.run(
        ["streamd", "evaluate", "--data", str(tmp_path / "corpus"), "--labels", str(labels),
         "--train-head", "0.15", "--no-plots", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 3
    assert "is not a row of the file" in summary["errors"]["short/bad.csv"]
    models = summary["models"]
    assert models["short/medium.csv"] == "trained on the first 15%, window 16: a 195-row head"
    assert models["short/short.csv"].startswith("shared model: 60 usable rows")
    assert models["short/tiny.csv"].startswith("shared model")
    for name, n in (("short", 400), ("tiny", 150), ("medium", 1300)):
        path = out / "results" / "streamd" / "short" / f"streamd_{name}.csv"
        assert len(list(csv.DictReader(path.open()))) == n
    assert summary["detectors"]["streamd"]["events"]["windows_detected"] == 1


@pytest.mark.parametrize(
    ("rows", "fits", "windows", "which"),
    [
        (3000, (32, 16), [32], "trained on the first 15%"),
        (2980, (32, 16), [16], "trained on the first 15%, window 16: a 447-row head"),
        (3000, (16,), [32, 16], "trained on the first 15%, window 16: too few rows for 32"),
        (3000, (), [32, 16], "shared model: too few rows for 16"),
    ],
)
def test_the_window_halves_for_a_short_head_or_one_too_short_for_it(
    tmp_path: Path, rows: int, fits: tuple[int, ...], windows: list[int], which: str
) -> None:
    """Heads of SHORT_HEAD_ROWS rows or more train with the full window; shorter ones, or
    ones the trainer finds too short for it, with half; then the shared model."""
    tried: list[int] = []

    def trainer(*, data: Path, out: Path, window: int, **_: object) -> None:
        tried.append(window)
        if window not in fits:
            raise DataError(str(data), f"too few rows for {window}")

    path, which_model = model_for(tmp_path / "a.csv", rows, None, trainer, 0.15, tmp_path, 32, [])
    assert tried == windows and which_model == which
    assert SHORT_HEAD_ROWS == 450 and (path == PACKAGED_MODEL) == (not fits)
