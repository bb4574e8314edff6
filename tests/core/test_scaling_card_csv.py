"""Pure building blocks: scaling, the model card, CSV reading."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streamd.core.card import ModelCard
from streamd.core.csvdata import read_series
from streamd.core.scaling import Scaler
from streamd.core.timestamps import parse_timestamp
from streamd.errors import DataError


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_scaler_round_trip_and_fit_range(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([10.0, -500.0], [2.0, 50.0], size=(200, 2))
    s = Scaler.fit(kind, x)  # type: ignore[arg-type]
    z = s.transform(x)
    if kind == "minmax":
        assert np.allclose(z.min(axis=0), 0, atol=1e-6) and np.allclose(z.max(axis=0), 1, atol=1e-6)
    else:
        assert np.allclose(z.mean(axis=0), 0, atol=1e-4) and np.allclose(
            z.std(axis=0), 1, atol=1e-4
        )
    assert np.allclose(s.inverse(z), x, rtol=1e-5)
    assert Scaler.from_dict(s.to_dict()).to_dict() == s.to_dict()


def test_constant_feature_does_not_divide_by_zero() -> None:
    s = Scaler.fit("standard", np.full((10, 1), 3.0))
    assert np.all(np.isfinite(s.transform(np.array([[3.0], [4.0]]))))


def test_scaler_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="positive scale"):
        Scaler.from_dict({"kind": "minmax", "offset": [0.0], "scale": [0.0]})


def test_card_round_trip(tiny_model) -> None:
    _, result = tiny_model
    card = result.card
    again = ModelCard.from_json(card.to_json())
    assert again.to_json() == card.to_json()
    assert again.features == ["temp", "power"] and again.window == 12


def test_card_rejects_inconsistencies(tiny_model) -> None:
    card = tiny_model[1].card
    with pytest.raises(ValueError, match=r"self_test\.x"):
        ModelCard.from_json(replace(card, window=card.window + 1).to_json())
    with pytest.raises(ValueError, match="format_version"):
        ModelCard.from_json(card.to_json().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(ValueError, match="lacks field 'features'"):
        ModelCard.from_json(card.to_json().replace('"features"', '"featurez"'))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(window=1e400), "window must be a whole number"),  # JSON inf
        (lambda d: d.update(window=10**9), "window must be 1..4096"),
        (lambda d: d.update(layers="2"), "layers must be a whole number"),
        (lambda d: d.update(self_test={"x": 3, "y_hat": []}), "self_test.x must be a list"),
        (lambda d: d.update(self_test=[1, 2]), "self_test must be an object"),
        (lambda d: d["self_test"].update(x=[["a"]]), "self_test.x must be a finite number"),
        (lambda d: d["calibration"].update(std="big"), "calibration.std must be a finite"),
        (lambda d: d["calibration"].update(extra=1), None),  # unknown keys are ignored
        (lambda d: d.update(scaler={"kind": "minmax", "offset": [[1]], "scale": 2}), "scaling"),
    ],
)
def test_a_crafted_card_is_refused_with_a_reason_never_an_other_exception(
    tiny_model, edit, message: str | None
) -> None:
    d = json.loads(tiny_model[1].card.to_json())
    edit(d)
    text = json.dumps(d).replace("Infinity", "1e400")
    if message is None:
        ModelCard.from_json(text)
        return
    with pytest.raises(ValueError, match=message):
        ModelCard.from_json(text)


def test_a_card_nested_deeper_than_json_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        ModelCard.from_json("[" * 100_000 + "]" * 100_000)


def test_parse_timestamp_forms() -> None:
    assert parse_timestamp("2026-11-22T10:00:00Z") == parse_timestamp("2026-11-22 10:00:00")
    assert parse_timestamp("1700000000.5") == 1700000000.5
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")
    with pytest.raises(ValueError):
        parse_timestamp("nan")


def test_read_series_counts_and_drops_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text(
        "timestamp,value,other\n"
        "2020-01-01 00:00:00,1.0,5\n"
        "2020-01-01 00:05:00,NaN,5\n"
        "not a time,2.0,5\n"
        "2020-01-01 00:10:00,abc,5\n"
        "2020-01-01 00:15:00,3.5,6\n"
        "2020-01-01 00:20:00\n"
    )
    s = read_series(p, ["value"])
    assert s.values[:, 0].tolist() == [1.0, 3.5]
    assert s.dropped == {"bad_timestamp": 1, "non_numeric": 1, "nan": 1, "short_row": 1}
    assert read_series(p).features == ["value", "other"]


def test_read_series_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_series(tmp_path / "missing.csv")
    p = tmp_path / "x.csv"
    p.write_text("timestamp,value\n2020-01-01 00:00:00,1\n")
    with pytest.raises(DataError, match="no column 'rpm'"):
        read_series(p, ["rpm"])
    (tmp_path / "y.csv").write_text("time,value\n1,2\n")
    with pytest.raises(DataError, match="no 'timestamp' column"):
        read_series(tmp_path / "y.csv")
