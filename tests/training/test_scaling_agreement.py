"""Per-stream scaling: training scales each window exactly as the daemon scales it."""

from __future__ import annotations

import numpy as np

from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import build_pipeline
from streamd.core.scaling import running_scaling
from streamd.core.timefeatures import encode
from streamd.tools.synth import PROFILES, normal_series
from tests.helpers import DEFAULT_MODEL
from training.data import running_windows


def test_training_windows_are_the_windows_the_daemon_predicts_from() -> None:
    rng = np.random.default_rng(2)
    values = normal_series(PROFILES[4], 700, 300.0, rng)[:, None]
    # Serving learns its scaling only from samples that are not hot (a glitch must not move
    # it). With a threshold of 0.8 and warm-ups long enough for the scale to settle, none of
    # this normal series is hot, so every sample is learnt, as in training; the defaults
    # (0.3, warm-ups of 100) hold out the odd early sample, by design.
    scoring = {"threshold": 0.8, "scaling_warmup": 288, "history_warmup": 300}
    # window mode keeps the raw window to compare (step mode feeds the same scaled inputs)
    settings = Settings.model_validate({"scoring": scoring, "inference": {"mode": "window"}})
    model = Forecaster(DEFAULT_MODEL)  # trained with per-stream scaling
    pipeline = build_pipeline(settings, model)
    window = model.card.window
    served_offset, served_scale, served_x = [], [], {}
    for i, v in enumerate(values[:, 0]):
        pipeline.process([Sample("s", 1.7e9 + 300.0 * i, (float(v),), 0.0)])
        # after row i: what row i + 1 (and the window before it) is scaled with
        o, s = pipeline.scaling.offset_scale(np.array([0]))
        served_offset.append(o[0, 0])
        served_scale.append(s[0, 0])
        if i + 1 >= window:
            raw = pipeline.state.windows(np.array([0]))[0, :, 0].astype(np.float64)
            served_x[i + 1] = (raw - o[0, 0]) / s[0, 0]
    offsets, scales = running_scaling(values, settings.scoring.scaling_horizon)
    # the pipeline learns every sample until it scores (scaling_warmup), then all that are
    # not hot: on this normal series, every one
    np.testing.assert_allclose(offsets[1:, 0], served_offset[:-1], rtol=1e-12)
    np.testing.assert_allclose(scales[1:, 0], served_scale[:-1], rtol=1e-12)
    w = running_windows(
        values.astype(np.float32), window, 300, 700, encode(np.zeros(700), []), 5000
    )
    for k, target in enumerate(range(300, 700)):
        np.testing.assert_allclose(w.x[k, :, 0], served_x[target], rtol=1e-5, atol=1e-5)
