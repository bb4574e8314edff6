"""Time features: a model that reads the time of day expects a daily jump that does not come."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamd.config import Settings
from streamd.core.card import ModelCard
from streamd.core.inference import Forecaster
from streamd.core.pipeline import Pipeline, build_pipeline
from streamd.core.timefeatures import encode
from streamd.tools.replay import replay_series
from tests.helpers import pipeline, write_csv
from training.options import LoopConfig, TrainOptions
from training.run import train

STEP_S = 600.0  # ten-minute samples: 144 a day
DAY = 144
START_S = 1_700_006_400.0  # a UTC midnight


def daily_jumps(days: int, rng: np.random.Generator, missing_day: int | None = None) -> np.ndarray:
    """Low (20) all day but high (80) from 09:00 to 15:00, with a little noise."""
    hour = (np.arange(days * DAY) % DAY) / 6.0
    x = np.where((hour >= 9) & (hour < 15), 80.0, 20.0)
    if missing_day is not None:
        day = slice(missing_day * DAY, (missing_day + 1) * DAY)
        x[day] = 20.0
    return x + rng.normal(0, 1.0, len(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same data and seed, trained once without and once with the time of day."""
    d = tmp_path_factory.mktemp("tf")
    csv = write_csv(
        d / "jumps.csv", {"value": daily_jumps(8, np.random.default_rng(3))}, START_S, STEP_S
    )
    out = {}
    for name, tf in (("plain", []), ("day", ["day"])):
        train(
            TrainOptions(
                data=[str(csv)],
                out=d / f"{name}.onnx",
                report_dir=d / name,
                window=12,
                hidden_size=16,
                time_features=tf,
                loop=LoopConfig(epochs=40, patience=8, progress=False),
            )
        )
        out[name] = d / f"{name}.onnx"
    return out


def test_encode_is_the_phase_in_each_period() -> None:
    ts = START_S + np.array([0.0, 6 * 3600, 12 * 3600, 86_400 * 3.5])
    got = encode(ts, ["day", "week"])
    assert got.shape == (4, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, 0], [0, 1, 0, 0], atol=1e-6)  # sin of the day's phase
    np.testing.assert_allclose(got[:, 1], [1, 0, -1, -1], atol=1e-6)
    np.testing.assert_allclose(np.hypot(got[:, 2], got[:, 3]), 1, atol=1e-6)
    assert encode(ts, []).shape == (4, 0)


def test_card_records_time_features_and_format(models: dict[str, Path], tiny_model) -> None:
    plain_json = json.loads(Forecaster(tiny_model[0]).card.to_json())
    # a model without time features keeps format 1, which older streamd releases read
    assert plain_json["format_version"] == 1 and "time_features" not in plain_json
    fc = Forecaster(models["day"])
    assert fc.card.time_features == ["day"] and fc.card.n_inputs == 3
    assert fc.session.get_inputs()[0].shape[2] == 3
    card_json = json.loads(fc.card.to_json())
    assert card_json["format_version"] == 2 and card_json["time_features"] == ["day"]
    card_json["time_features"] = ["fortnight"]
    with pytest.raises(ValueError, match="unknown time feature 'fortnight'"):
        ModelCard.from_json(json.dumps(card_json))


def _pipeline(path: Path, mode: str) -> Pipeline:
    return pipeline(path, mode)


def test_step_and_window_modes_feed_the_same_time_features(models: dict[str, Path]) -> None:
    values = daily_jumps(2, np.random.default_rng(5))[:, None]
    ts = START_S + STEP_S * np.arange(len(values))
    step = replay_series(_pipeline(models["day"], "step"), ts, values)
    window = replay_series(_pipeline(models["day"], "window"), ts, values)
    # the first prediction of each mode has seen the same `window` samples from a zero state
    first = int(np.flatnonzero(np.isfinite(window.predicted[:, 0]))[0])
    assert first == int(np.flatnonzero(np.isfinite(step.predicted[:, 0]))[0])
    # (step mode carries its state in float16 between samples: 3 significant digits)
    np.testing.assert_allclose(step.predicted[first], window.predicted[first], rtol=1e-3)
    # the runtime really feeds the clock: the same values twelve hours later predict otherwise
    later = replay_series(_pipeline(models["day"], "window"), ts + 43_200.0, values)
    assert np.nanmax(np.abs(later.predicted - window.predicted)) > 5.0


def test_a_missing_daily_jump_is_a_large_error_only_with_the_time_of_day(
    models: dict[str, Path],
) -> None:
    values = daily_jumps(6, np.random.default_rng(11), missing_day=4)[:, None]
    ts = START_S + STEP_S * np.arange(len(values))
    hours = slice(60, 90)  # 10:00-15:00: well inside the high stretch
    ratio = {}
    for name, path in models.items():
        r = replay_series(build_pipeline(Settings(), Forecaster(path)), ts, values)
        missing = np.mean(r.error[4 * DAY :][hours])
        usual = np.mean([np.mean(r.error[d * DAY :][hours]) for d in (2, 3, 5)])
        ratio[name] = missing / usual
    # the plain model follows the values it just saw: a day without its jump looks normal
    assert ratio["plain"] < 2.0
    # the model that reads the clock expected the high stretch and misses it by far
    assert ratio["day"] > 4.0
