"""Export a trained forecaster to ONNX with its model card, and verify the file.

Verification fails the export (``ExportCheckError``) unless: ``onnx.checker`` accepts the
graph; ONNX Runtime matches torch on real windows within ``TOLERANCE`` of the outputs' scale;
and feeding a window one step at a time (``time = 1``, carrying ``h_n``) gives the same
prediction as the whole window within the same bound. The file is written beside ``out`` and
moved there only once it passed, so a failed export leaves no model, and an earlier model at
``out`` is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from streamd.core.card import METADATA_KEY, ModelCard, SelfTest
from streamd.core.inference import Forecaster
from streamd.errors import StreamdError
from training.data import Windows
from training.model import GRUForecaster

# Relative to the outputs' scale (at least 1): float32 arithmetic errs in proportion to the
# values, and a model of spiky series predicts some in the hundreds of standard deviations.
TOLERANCE = 1e-5
PARITY_WINDOWS = 256


class ExportCheckError(StreamdError):
    """The exported file disagrees with the trained network."""


@dataclass(frozen=True)
class Parity:
    """Max abs differences measured after export."""

    torch_vs_ort: float
    window_vs_stepwise: float
    windows_checked: int


def to_onnx_proto(model: GRUForecaster) -> onnx.ModelProto:
    """Trace ``model`` with dynamic batch and time axes into an ONNX graph (native GRU/LSTM ops).

    This uses the TorchScript exporter: in torch 2.13 the ``torch.export`` path specialises
    the time axis of a single-layer GRU to the example length, which would break stepwise
    inference. The dynamic axes are checked on the result either way.
    """
    model.eval()
    cfg = model.config
    x = torch.zeros(3, 5, cfg.inputs)
    h0 = model.zero_state(3)
    buf = io.BytesIO()
    # The exporter warns about its own deprecation and RNN batch caveats (we always pass h0).
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x, h0),
            buf,  # type: ignore[arg-type]  # a file-like object is accepted at run time
            dynamo=False,
            input_names=["x", "h0"],
            output_names=["y_hat", "h_n"],
            dynamic_axes={
                "x": {0: "batch", 1: "time"},
                "h0": {1: "batch"},
                "y_hat": {0: "batch"},
                "h_n": {1: "batch"},
            },
            opset_version=17,
        )
    proto = onnx.load_model_from_string(buf.getvalue())
    dims = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    if not (dims["x"][0] and dims["x"][1] and dims["h0"][1]):
        raise ExportCheckError(f"exported graph lost its dynamic batch/time axes: {dims}")
    return proto


def model_version(proto: onnx.ModelProto) -> str:
    """A short content hash of the weights and graph: the same training gives the same version."""
    return hashlib.sha256(proto.graph.SerializeToString()).hexdigest()[:12]


def write_model(proto: onnx.ModelProto, card: ModelCard, out: Path) -> None:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, card.to_json()
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out))


def export_and_verify(
    model: GRUForecaster, card: ModelCard, out: Path, check: Windows
) -> tuple[ModelCard, Parity]:
    """Write ``out`` with ``card`` (version and self-test filled in) and verify it.

    ``check`` holds real windows (validation/calibration) for the parity checks; the first
    one becomes the self-test window.
    """
    proto = to_onnx_proto(model)
    onnx.checker.check_model(proto, full_check=True)
    x_check = check.x[:PARITY_WINDOWS]
    with torch.no_grad():
        y_torch, _ = model(torch.from_numpy(x_check), model.zero_state(len(x_check)))
    # The self-test expectation comes from torch: ORT must reproduce the trained network.
    # Its tolerance scales with the prediction, as the parity bound does (float32 errs in
    # proportion): the daemon refuses a file whose self-test fails at load.
    y_hat = y_torch[0]
    tolerance = 1e-4 * max(1.0, float(y_hat.abs().max()))
    self_test = SelfTest(x=x_check[0].tolist(), y_hat=y_hat.tolist(), tolerance=tolerance)
    card = replace(card, version=model_version(proto), self_test=self_test)
    partial = out.with_name(out.name + ".partial")
    write_model(proto, card, partial)
    try:
        parity = _verify(partial, card, x_check, y_torch.numpy())
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return card, parity


def _verify(path: Path, card: ModelCard, x_check: np.ndarray, y_torch: np.ndarray) -> Parity:
    """The parity checks of the module docstring on the file at ``path``."""
    fc = Forecaster(path)  # loads, checks the signature and runs the self-test
    y_ort = fc.predict_windows(x_check)
    torch_vs_ort = float(np.max(np.abs(y_ort - y_torch)))
    h = fc.zero_state(len(x_check))
    y_step = np.zeros_like(y_ort)
    for t in range(card.window):
        y_step, h = fc.step(x_check[:, t, :], h)
    window_vs_stepwise = float(np.max(np.abs(y_step - y_ort)))
    bound = TOLERANCE * max(1.0, float(np.max(np.abs(y_torch))))
    if not torch_vs_ort <= bound:
        raise ExportCheckError(
            f"ONNX Runtime differs from torch by {torch_vs_ort:.3g} > {bound:.3g}"
        )
    if not window_vs_stepwise <= bound:
        raise ExportCheckError(
            f"stepwise prediction differs from window by {window_vs_stepwise:.3g} > {bound:.3g}"
        )
    return Parity(torch_vs_ort, window_vs_stepwise, len(x_check))
