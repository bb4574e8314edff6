"""Feeding the model: each stream's prediction of its next sample, in either mode.

``window`` re-runs the model over the stream's last ``window`` samples from a zero state,
exactly as it was trained; ``step`` runs one GRU step per sample with the hidden state
carried per stream. Either way, after :meth:`ModelFeed.advance` the stream's
``state.pred`` is the model's (scaled) prediction of its next sample.
"""

from __future__ import annotations

import numpy as np

from streamd.core.arrays import F32, F64, I64, count_up
from streamd.core.inference import Forecaster
from streamd.core.scaling import StreamScaling
from streamd.core.state import StreamState

# Scaled model inputs are clipped to this: far beyond any normal value (a few units), and far
# below where float32 arithmetic in the GRU would overflow to inf and leave NaN behind.
INPUT_CLIP = 1e3
SWAP_BATCH = 1024  # windows per ONNX call when a new model re-predicts every stream
F32_MAX = float(np.finfo(np.float32).max)


class ModelFeed:
    """One ONNX Runtime call per round of distinct streams."""

    def __init__(
        self,
        model: Forecaster,
        state: StreamState,
        scaling: StreamScaling,
        mode: str,
        scaling_warmup: int,
    ) -> None:
        self.model, self.state, self.scaling = model, state, scaling
        self.mode, self.scaling_warmup = mode, scaling_warmup
        self.features = len(model.card.features)

    def advance(self, slots: I64, raw: F64, inputs: F32) -> None:
        """Feed one sample per slot (distinct): ``raw`` rows and the model's ``inputs`` rows
        (scaled, clipped, then time features)."""
        st, card = self.state, self.model.card
        if self.mode == "step":
            # With per-stream scaling the GRU is fed only the last `window` samples of the
            # scaling warm-up: earlier samples, scaled by a scale guessed from a handful of
            # values, would drive the carried state far outside what the model was trained on.
            feed = st.scale_n[slots] > self.scaling_warmup - card.window
            f_slots = slots[feed]
            if len(f_slots):
                h = st.hidden[:, f_slots].astype(np.float32)
                y, h_n = self.model.step(inputs[feed], h)
                st.hidden[:, f_slots] = h_n
                st.pred[f_slots] = y
                st.count[f_slots] = count_up(st.count[f_slots])
                st.has_pred[f_slots] = st.count[f_slots] >= card.window
            return
        st.count[slots] = count_up(st.count[slots])
        # the ring keeps raw values (scaling may still move), within float32's range
        row = np.clip(raw, -F32_MAX, F32_MAX).astype(np.float32)
        if card.time_features:
            row = np.concatenate([row, inputs[:, self.features :]], axis=1)
        st.push(slots, row)
        full = st.count[slots] >= card.window
        if full.any():
            self.predict_windows(slots[full])

    def predict_windows(self, slots: I64) -> None:
        """Window mode: each slot's prediction of its next sample from its full window.

        The ring holds raw values (scaled here, with the stream's current scaling) followed by
        the time features, which need no scaling.
        """
        st, f = self.state, self.features
        win = st.windows(slots)
        o, sc = self.scaling.offset_scale(slots)
        o3 = o[:, None, :] if o.ndim == 2 else o
        s3 = sc[:, None, :] if sc.ndim == 2 else sc
        x = win.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            x[:, :, :f] = np.clip(
                (win[:, :, :f].astype(np.float64) - o3) / s3, -INPUT_CLIP, INPUT_CLIP
            )
        st.pred[slots] = self.model.predict_windows(x)
        st.has_pred[slots] = True

    def swap(self, model: Forecaster, slots: I64) -> None:
        """Serve ``model``: forget what the old one computed; in window mode the new one
        predicts at once for ``slots`` with a full window, step mode feeds it again."""
        self.model = model
        self.state.restart_model_input(model.card.layers, model.card.state_size)
        if self.mode == "window":
            full = slots[self.state.count[slots] >= model.card.window]
            for i in range(0, len(full), SWAP_BATCH):
                self.predict_windows(full[i : i + SWAP_BATCH])
