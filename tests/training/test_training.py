"""The offline pipeline end to end: train -> calibrate -> export -> verify -> report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from streamd.core.card import METADATA_KEY, ModelCard
from streamd.core.inference import Forecaster
from streamd.errors import ModelError
from training.data import STATEFUL_STRIDE_DIVISOR, SplitFractions, Windows, load_dataset
from training.export import TOLERANCE, ExportCheckError, export_and_verify
from training.loop import every_step_loss
from training.model import ForecasterConfig, GRUForecaster
from training.options import LoopConfig, TrainOptions
from training.run import train


def test_export_passes_parity_checks(tiny_model) -> None:
    path, result = tiny_model
    assert result.parity.torch_vs_ort <= TOLERANCE
    assert result.parity.window_vs_stepwise <= TOLERANCE
    assert result.parity.windows_checked > 10
    fc = Forecaster(path)
    assert fc.self_test() <= 1e-4
    cal = fc.card.calibration
    assert cal.n > 0 and cal.std > 0 and cal.threshold == cal.quantiles["0.999"]
    assert fc.card.training["data_rows"] == 1500 and fc.card.training["versions"]["torch"]


def test_report_has_plots_summary_and_index(tiny_model) -> None:
    path, result = tiny_model
    report = path.parent / "report"
    for name in ("loss.png", "predictions.png", "calibration.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in (report / "index.html").read_text()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["version"] == result.card.version
    assert len(summary["val_loss_curve"]) == summary["epochs_run"]


def test_split_is_chronological_and_scaler_fit_on_train_only(normal_csv: Path) -> None:
    ds = load_dataset(
        [str(normal_csv)], features=None, window=10, fractions=SplitFractions(0.2, 0.2)
    )
    # minmax fit on the train part: its windows span exactly [0, 1] per feature
    train_all = np.concatenate([ds.train.x[:, 0, :], ds.train.y])
    assert np.allclose(train_all.min(axis=0), 0, atol=1e-6)
    assert np.allclose(train_all.max(axis=0), 1, atol=1e-6)
    # 1500 rows -> 900/300/300 rows -> windows of 10
    assert (len(ds.train), len(ds.validation), len(ds.calibration)) == (890, 290, 290)
    np.testing.assert_array_equal(ds.validation.x[1, :-1], ds.validation.x[0, 1:])


def test_a_train_span_makes_only_the_train_windows_long(normal_csv: Path) -> None:
    ds = load_dataset(
        [str(normal_csv)],
        features=None,
        window=10,
        fractions=SplitFractions(0.2, 0.2),
        train_span=96,
    )
    assert ds.train.x.shape[1] == 96
    assert ds.validation.x.shape[1] == ds.calibration.x.shape[1] == 10
    # 900 train rows -> 804 windows of 96, every 96 // 32 = 3rd
    stride = 96 // STATEFUL_STRIDE_DIVISOR
    assert len(ds.train) == len(range(0, 900 - 96, stride))
    np.testing.assert_array_equal(ds.train.x[1, :-stride], ds.train.x[0, stride:])
    np.testing.assert_array_equal(ds.train.y[0], ds.train.x[1, -stride])


def test_files_too_short_for_the_train_span_share_the_shortest_span(
    normal_csv: Path, tmp_path: Path
) -> None:
    """A file whose train part is shorter than ``train_span`` cuts the span to fit; all
    train windows then keep their last steps up to the shortest span, targets unchanged."""
    lines = normal_csv.read_text().splitlines()
    short = tmp_path / "short.csv"
    # the first 300 rows (a 180-row train part): inside the long file's train part, so the
    # min-max scaler fitted on both is the one fitted on the long file alone
    short.write_text("\n".join(lines[:301]) + "\n")
    ds = load_dataset(
        [str(normal_csv), str(short)],
        features=None,
        window=10,
        fractions=SplitFractions(0.2, 0.2),
        train_span=400,
    )
    assert ds.train.x.shape[1] == 179  # the short file's span: its train part less one row
    alone = load_dataset(
        [str(normal_csv)], features=None, window=10, fractions=SplitFractions(0.2, 0.2),
        train_span=400,
    )  # fmt: skip
    n = len(alone.train)
    np.testing.assert_array_equal(ds.train.x[:n], alone.train.x[:, -179:])
    np.testing.assert_array_equal(ds.train.y[:n], alone.train.y)


def test_a_long_window_is_trained_on_every_forecast_after_the_window() -> None:
    """The every-step loss is the mean of what each prefix of ``window`` or more steps,
    run from a zero state as :meth:`forward` runs it, forecasts of its next row."""
    torch.manual_seed(0)
    model = GRUForecaster(ForecasterConfig(features=2, time_inputs=1, hidden_size=8))
    window, span = 4, 12
    x = torch.randn(3, span, 3)
    y = torch.randn(3, 2)
    next_rows = torch.cat([x[:, 1:, :2], y[:, None, :]], dim=1)
    per_prefix = [
        torch.mean((model(x[:, : t + 1], model.zero_state(3))[0] - next_rows[:, t]) ** 2)
        for t in range(window - 1, span)
    ]
    expected = torch.stack(per_prefix).mean()
    torch.testing.assert_close(every_step_loss(model, x, y, window), expected)


def test_too_few_rows_is_a_clear_error(normal_csv: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamd",
            "train",
            "--data",
            str(normal_csv),
            "--out",
            str(tmp_path / "m.onnx"),
            "--report",
            str(tmp_path / "r"),
            "--window",
            "400",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert "too few for window 400" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nonexistent.csv"], "no such file"),
        (["--features", "rpm"], "no column 'rpm'"),
        (["--train-span", "5"], "--train-span: must be 0 or at least the window"),
    ],
)
def test_user_errors_give_one_line(
    normal_csv: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["--out", str(tmp_path / "m.onnx"), "--report", str(tmp_path / "r"), "--quiet"]
    if "--data" not in args:
        base += ["--data", str(normal_csv)]
    r = subprocess.run(
        [sys.executable, "-m", "streamd", "train", *args, *base],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr


def _tiny_options(normal_csv: Path, out: Path, **kw: object) -> TrainOptions:
    return TrainOptions(
        data=[str(normal_csv)],
        out=out / "m.onnx",
        report_dir=out / "r",
        window=8,
        hidden_size=8,
        layers=1,
        head_fraction=0.5,
        loop=LoopConfig(epochs=2, patience=2, progress=False),
        **kw,  # type: ignore[arg-type]
    )


def test_same_seed_same_model(normal_csv: Path, tmp_path: Path) -> None:
    a = train(_tiny_options(normal_csv, tmp_path / "a"))
    b = train(_tiny_options(normal_csv, tmp_path / "b"))
    assert a.card.version == b.card.version
    assert a.summary["validation_loss"] == b.summary["validation_loss"]


def test_an_export_that_fails_its_checks_keeps_the_model_that_was_there(
    normal_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m.onnx").write_bytes(b"the model from before")
    monkeypatch.setattr("training.export.TOLERANCE", -1.0)  # no export can pass
    with pytest.raises(ExportCheckError, match="differs from torch"):
        train(_tiny_options(normal_csv, tmp_path))
    assert (tmp_path / "m.onnx").read_bytes() == b"the model from before"
    assert not list(tmp_path.glob("*.partial"))


def test_the_parity_bound_scales_with_the_outputs(tiny_model, tmp_path: Path) -> None:
    """float32 errs in proportion to the values: a network whose predictions are in the
    thousands (as a model of spiky series gives) differs from torch by far more than 1e-5 in
    absolute terms, and must still export, and load."""
    _, result = tiny_model
    card = result.card
    torch.manual_seed(0)
    model = GRUForecaster(ForecasterConfig(features=2, hidden_size=16, layers=2)).eval()
    with torch.no_grad():
        model.head.weight.mul_(1e4)  # predictions up to about 1,200
    x = np.random.default_rng(0).normal(size=(64, card.window, 2)).astype(np.float32)
    check = Windows(x, np.zeros((64, 2), np.float32))
    _, parity = export_and_verify(model, card, tmp_path / "big.onnx", check)
    assert parity.torch_vs_ort > TOLERANCE  # an absolute bound would have refused it
    fc = Forecaster(tmp_path / "big.onnx")  # runs the card's self-test
    assert fc.self_test() <= fc.card.self_test.tolerance


def test_lstm_counterpart_exports_with_the_same_contract(normal_csv: Path, tmp_path: Path) -> None:
    r = train(_tiny_options(normal_csv, tmp_path, cell="lstm"))
    assert r.card.cell == "lstm" and r.card.state_size == 16
    assert r.parity.torch_vs_ort <= TOLERANCE and r.parity.window_vs_stepwise <= TOLERANCE
    fc = Forecaster(tmp_path / "m.onnx")
    assert fc.zero_state(3).shape == (1, 3, 16)


def _rewrite_card(src: Path, dst: Path, edit) -> None:
    proto = onnx.load(str(src))
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            card = json.loads(p.value)
            edit(card)
            p.value = json.dumps(card)
    onnx.save(proto, str(dst))


def test_model_that_fails_its_self_test_is_refused(tiny_model, tmp_path: Path) -> None:
    path, _ = tiny_model
    bad = tmp_path / "bad.onnx"
    _rewrite_card(
        path, bad, lambda c: c["self_test"].update(y_hat=[v + 0.5 for v in c["self_test"]["y_hat"]])
    )
    with pytest.raises(ModelError, match="self-test failed"):
        Forecaster(bad)


def test_model_card_of_the_wrong_shape_is_refused(tiny_model, tmp_path: Path) -> None:
    path, _ = tiny_model
    bad = tmp_path / "bad.onnx"
    _rewrite_card(path, bad, lambda c: c.update(layers=3))
    with pytest.raises(ModelError, match="layers"):
        Forecaster(bad)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="cannot load"):
        Forecaster(garbage)


def test_inspect_prints_card_and_self_test(tiny_model) -> None:
    path, result = tiny_model
    r = subprocess.run(
        [sys.executable, "-m", "streamd", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "self-test passed" in r.stdout and result.card.version in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "streamd", "inspect", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ModelCard.from_json(r.stdout).version == result.card.version
