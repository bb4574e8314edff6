"""Shared fixtures: small synthetic data and a tiny model trained once per test session."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamd.tools.synth import PROFILES, normal_series
from tests.helpers import write_csv


@pytest.fixture(scope="session")
def normal_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two features of normal synthetic sensor data, 1,500 rows at one-minute steps."""
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("data")
    return write_csv(
        d / "normal.csv",
        {
            "temp": normal_series(PROFILES[0], 1500, 60.0, rng),
            "power": normal_series(PROFILES[3], 1500, 60.0, rng),
        },
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, normal_csv: Path):
    """A small GRU trained, calibrated, exported and verified by the real pipeline."""
    from training.options import LoopConfig, TrainOptions
    from training.run import train

    out = tmp_path_factory.mktemp("model")
    result = train(
        TrainOptions(
            data=[str(normal_csv)],
            out=out / "tiny.onnx",
            report_dir=out / "report",
            window=12,
            hidden_size=16,
            layers=2,
            loop=LoopConfig(epochs=4, batch_size=64, patience=3, progress=False),
        )
    )
    return out / "tiny.onnx", result


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A real Mosquitto on a free loopback port, just for this test; yields the port."""
    from streamd.tools.harness import free_port, mosquitto_path, start_broker

    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed (scripts/test.sh installs it)")
    port = free_port()
    proc, _ = start_broker(port, tmp_path)
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
