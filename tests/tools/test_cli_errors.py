"""What a user typing the CLI gets wrong gets one line naming the flag or field, exit code 2,
before any work is done; never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import DEFAULT_MODEL, REPO


def streamd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamd", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        timeout=120,
    )


def one_line(r: subprocess.CompletedProcess[str], code: int, starts: str) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(starts), r.stderr


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    p = tmp_path / "a-file"
    p.write_text("")
    return p


def test_an_output_that_cannot_be_written_is_refused_before_the_replay(
    a_file: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text("timestamp,value\n" + "".join(f"{60 * i},1.0\n" for i in range(50)))
    r = streamd("replay", "--model", str(DEFAULT_MODEL), "--input", str(csv),
                "--output", str(a_file / "out.csv"))  # fmt: skip
    one_line(r, 2, "streamd replay: --output: cannot write")


def test_train_outputs_are_checked_before_training(a_file: Path) -> None:
    r = streamd("train", "--data", "x.csv", "--out", str(a_file / "m.onnx"), "--report", "r")
    one_line(r, 2, "streamd train: --out: cannot write")


def test_a_list_from_the_environment_that_is_not_json_names_its_variable() -> None:
    r = streamd("run", "--check-config", env={"STREAMD_MQTT__TOPICS": "a/#"})
    one_line(r, 2, "streamd run: mqtt.topics: STREAMD_MQTT__TOPICS='a/#' is not JSON")


def test_a_mistyped_variable_is_warned_about_not_ignored_silently() -> None:
    r = streamd("run", "--check-config", env={"STREAMD_MQTTT__HOST": "broker"})
    assert r.returncode == 0, r.stderr
    assert "STREAMD_MQTTT__HOST is not a streamd setting (did you mean STREAMD_MQTT__HOST?)" in (
        r.stderr
    )
