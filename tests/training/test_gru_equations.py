"""The exported GRU, re-implemented from its equations in plain numpy."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from streamd.core.inference import Forecaster


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def gru_step(
    x: np.ndarray, h: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """One GRU step, ``x: [batch, in]``, ``h: [batch, hidden]`` -> ``[batch, hidden]``.

    Textbook GRU (Cho et al., 2014), with ``σ`` the logistic function:

        r_t = σ(W_r x_t + U_r h_{t-1} + b_r)                 reset gate
        z_t = σ(W_z x_t + U_z h_{t-1} + b_z)                 update gate
        ñ_t = tanh(W_n x_t + U_n (r_t ⊙ h_{t-1}) + b_n)      candidate state
        h_t = z_t ⊙ h_{t-1} + (1 − z_t) ⊙ ñ_t                update gate weights the OLD state

    How torch's ``nn.GRU`` maps onto it, and how the exported ONNX ``GRU`` op stores it:

    * torch stacks gates in ``weight_ih_l{k}: [3H, in]`` / ``weight_hh_l{k}: [3H, H]`` in the
      order (r, z, n) and has two biases, ``b_ih`` and ``b_hh``; ONNX stores ``W: [1, 3H, in]``,
      ``R: [1, 3H, H]`` in the order (z, r, h) and ``B: [1, 6H] = [Wb_z, Wb_r, Wb_h, Rb_z,
      Rb_r, Rb_h]``. The exporter reorders; this function reads the ONNX order.
    * torch applies the reset gate AFTER the recurrent matmul and its bias:
      ``n_t = tanh(W_in x + b_in + r_t ⊙ (W_hn h + b_hn))``. That is not the textbook
      ``U_n (r ⊙ h)``; ONNX calls it ``linear_before_reset = 1``, which the exported node sets.
    * torch's ``h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}`` is the textbook update above: ``z``
      weights the old state (some texts swap ``z`` and ``1 − z``).
    """
    hid = h.shape[1]
    wz, wr, wh = w[:hid], w[hid : 2 * hid], w[2 * hid :]
    rz, rr, rh = r[:hid], r[hid : 2 * hid], r[2 * hid :]
    wbz, wbr, wbh, rbz, rbr, rbh = np.split(b, 6)
    z = _sigmoid(x @ wz.T + wbz + h @ rz.T + rbz)
    rg = _sigmoid(x @ wr.T + wbr + h @ rr.T + rbr)
    n = np.tanh(x @ wh.T + wbh + rg * (h @ rh.T + rbh))
    return (1.0 - z) * n + z * h


def _weights(
    path: str,
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    proto = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    layers = []
    for node in proto.graph.node:
        if node.op_type == "GRU":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["linear_before_reset"] == 1
            w, r, b = (inits[name][0] for name in node.input[1:4])
            layers.append((w, r, b))
    (gemm,) = (n for n in proto.graph.node if n.op_type == "Gemm")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
    head_w, head_b = inits[gemm.input[1]], inits[gemm.input[2]]
    if not attrs.get("transB", 0):
        head_w = head_w.T
    return layers, head_w, head_b


def test_numpy_gru_reproduces_onnx(tiny_model) -> None:
    path, _ = tiny_model
    fc = Forecaster(path)
    layers, head_w, head_b = _weights(str(path))
    assert len(layers) == fc.card.layers
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(5, fc.card.window, fc.n_features)).astype(np.float32)
    h0 = rng.normal(0, 0.3, size=(fc.card.layers, 5, fc.card.hidden_size)).astype(np.float32)

    seq = x.astype(np.float64)
    h_final = []
    for k, (w, r, b) in enumerate(layers):
        h = h0[k].astype(np.float64)
        outs = []
        for t in range(seq.shape[1]):
            h = gru_step(seq[:, t], h, w, r, b)
            outs.append(h)
        seq = np.stack(outs, axis=1)
        h_final.append(h)
    y_np = seq[:, -1] @ head_w.T + head_b

    y_ort, h_ort = fc.run(x, h0)
    assert np.max(np.abs(y_np - y_ort)) <= 1e-5
    assert np.max(np.abs(np.stack(h_final) - h_ort)) <= 1e-5
