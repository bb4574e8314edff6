"""Per-stream scaling: training scales each window exactly as the daemon scales it."""

from __future__ import annotations

import numpy as np

from streamd.config import Settings
from streamd.core.feed import INPUT_CLIP
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import build_pipeline
from streamd.core.scaling import running_scaling
from streamd.core.timefeatures import encode
from streamd.tools.synth import PROFILES, normal_series
from tests.helpers import DEFAULT_MODEL
from training.data import make_windows, running_windows


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


def test_training_clips_a_windows_inputs_as_the_daemon_feeds_them_and_keeps_the_target() -> None:
    """A value thousands of scales away (a spike on a flat stretch) reaches the GRU clipped
    at ``INPUT_CLIP`` in the daemon; trained on unclipped inputs, a model would learn from
    inputs it is never fed."""
    values = np.full((80, 1), 10.0, np.float32)
    values[::2, 0] += 1e-4  # a scale at its floor: 0.1 % of the level, 0.01
    values[60, 0] = 1e5  # about 1e7 scales away
    plain = make_windows(values, 8)
    assert plain.x.max() == INPUT_CLIP and plain.y.max() == 1e5
    running = running_windows(values, 8, 40, 80, encode(np.zeros(80), []), 5000)
    assert running.x.max() == INPUT_CLIP and running.y.max() > 1e6
