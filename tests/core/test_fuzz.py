"""The fuzzer of bench/fuzz.py in small: any input is a sample or a counted rejection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def test_fuzzing_finds_no_uncaught_exception_and_accounts_for_every_input(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "fuzz.py"),
            "--count",
            "30000",
            "--seed",
            "7",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads((tmp_path / "fuzz.json").read_text())
    assert out.returncode == 0, out.stdout + out.stderr
    assert result["uncaught"] == 0 and result["accounted"]
    assert sum(result["results"].values()) == 30000
    assert result["results"]["accepted"] > 1000 and len(result["results"]) >= 8
    assert result["pipeline_samples"] > 1000
