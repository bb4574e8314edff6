"""Load a streamd ONNX model and run it with ONNX Runtime on the CPU (no torch).

The file contract (see DESIGN.md): inputs ``x: [batch, time, features]`` and
``h0: [layers, batch, state]``; outputs ``y_hat: [batch, features]`` (the next step,
scaled) and ``h_n: [layers, batch, state]``. The same file serves a full window and a
single stateful step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamd.core.arrays import F32
from streamd.core.card import METADATA_KEY, ModelCard
from streamd.errors import ModelError

INPUTS = ("x", "h0")
OUTPUTS = ("y_hat", "h_n")


class Forecaster:
    """A loaded model: its card and an ONNX Runtime session.

    Loading checks the graph's inputs and outputs against the contract and the card, then
    runs the card's self-test, so a file that would mis-predict never serves.
    """

    def __init__(
        self, path: str | Path, *, intra_op_threads: int = 1, cpu_mem_arena: bool = False
    ) -> None:
        self.path = str(path)
        p = Path(path)
        if not p.is_file():
            raise ModelError(self.path, "no such file")
        ort.disable_telemetry_events()  # telemetry is Windows-only today; never phone home
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        # The arena keeps the peak allocation of one large call for the life of the process.
        opts.enable_cpu_mem_arena = cpu_mem_arena
        try:
            self.session = ort.InferenceSession(
                str(p), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # ORT raises several private exception types for bad files
            raise ModelError(
                self.path, f"ONNX Runtime cannot load it ({str(e).strip()[:200]})"
            ) from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(self.path, f"no model card (metadata key {METADATA_KEY!r})")
        try:
            self.card = ModelCard.from_json(meta[METADATA_KEY])
        except ValueError as e:
            raise ModelError(self.path, f"bad model card: {e}") from e
        try:
            self._check_signature()
        except (IndexError, TypeError) as e:  # inputs of another rank than the contract's
            raise ModelError(self.path, f"inputs or outputs of the wrong shape ({e})") from e
        self.self_test()

    @property
    def n_features(self) -> int:
        return len(self.card.features)

    def _check_signature(self) -> None:
        ins = {i.name: i.shape for i in self.session.get_inputs()}
        outs = {o.name: o.shape for o in self.session.get_outputs()}
        if set(ins) != set(INPUTS) or not set(OUTPUTS) <= set(outs):
            raise ModelError(
                self.path,
                f"inputs {sorted(ins)} / outputs {sorted(outs)}, expected {INPUTS} -> {OUTPUTS}",
            )
        x_feat = ins["x"][2]
        if isinstance(x_feat, int) and x_feat != self.card.n_inputs:
            raise ModelError(
                self.path,
                f"x has {x_feat} columns but the card lists {self.card.n_inputs} "
                f"({self.n_features} features, time features {self.card.time_features})",
            )
        h_shape = ins["h0"]
        if isinstance(h_shape[0], int) and h_shape[0] != self.card.layers:
            raise ModelError(self.path, f"h0 has {h_shape[0]} layers, card says {self.card.layers}")
        if isinstance(h_shape[2], int) and h_shape[2] != self.card.state_size:
            raise ModelError(
                self.path, f"h0 width {h_shape[2]}, card says state size {self.card.state_size}"
            )

    def zero_state(self, batch: int) -> F32:
        """Initial hidden state ``[layers, batch, state]``."""
        return np.zeros((self.card.layers, batch, self.card.state_size), dtype=np.float32)

    def run(self, x: F32, h0: F32) -> tuple[F32, F32]:
        """One ONNX Runtime call: ``x: [batch, time, features]``, ``h0: [layers, batch, state]``."""
        y_hat, h_n = self.session.run(list(OUTPUTS), {"x": x, "h0": h0})
        return y_hat, h_n

    def predict_windows(self, x: F32) -> F32:
        """Next-step predictions ``[batch, features]`` for full windows ``[batch, window,
        inputs]`` from a zero state."""
        y_hat, _ = self.run(np.ascontiguousarray(x, dtype=np.float32), self.zero_state(len(x)))
        return y_hat

    def step(self, x_t: F32, h: F32) -> tuple[F32, F32]:
        """One stateful step: ``x_t: [batch, inputs]`` -> (prediction, new state)."""
        return self.run(np.ascontiguousarray(x_t[:, None, :], dtype=np.float32), h)

    def self_test(self) -> float:
        """Run the card's self-test; return the max abs difference or raise ``ModelError``."""
        st = self.card.self_test
        try:
            x = np.asarray(st.x, dtype=np.float32)[None]
            expected = np.asarray(st.y_hat, dtype=np.float32)
            got = self.predict_windows(x)[0]
        except Exception as e:  # a wrong-shaped graph fails inside ORT with its own types
            raise ModelError(self.path, f"self-test could not run ({str(e).strip()[:200]})") from e
        diff = float(np.max(np.abs(got - expected)))
        if not diff <= st.tolerance:
            raise ModelError(
                self.path, f"self-test failed: max abs difference {diff:.3g} > {st.tolerance:g}"
            )
        return diff
