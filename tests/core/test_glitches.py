"""One glitch value must not blind a stream: the default model, a std-3.5 stream, a glitch,
then a real anomaly (issue: reliability II, item 3).

The glitch is an anomaly of its own: its alert stays open until ``scoring.leave_after``
(300) quiet samples have passed, and an anomaly inside it raises no second alert (the
stream stays anomalous). So the real anomaly comes 600 samples later, after the glitch's
alert has resolved: what must hold is that the glitch left nothing behind (scaling, error
history), not that one open alert carries two onsets."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.config import Settings
from streamd.core.inference import Forecaster
from streamd.core.payload import Sample
from streamd.core.pipeline import SCORED, build_pipeline
from tests.helpers import DEFAULT_MODEL

N, GLITCH_AT, ANOMALY_AT = 1800, 900, 1500


def stream(glitch: float | None, mode: str) -> tuple[list[int], list[float], float, float]:
    """(samples where an anomaly entered, scores, scale before and 200 samples after the
    glitch) of a daily-ish cycle with noise (std about 3.5), +25 for 30 samples at ANOMALY_AT."""
    rng = np.random.default_rng(1)
    t = np.arange(N)
    v = 20 + 2 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2.8, N)
    if glitch is not None:
        v[GLITCH_AT] = glitch
    v[ANOMALY_AT : ANOMALY_AT + 30] += 25
    settings = Settings.model_validate({"inference": {"mode": mode}})
    p = build_pipeline(settings, Forecaster(DEFAULT_MODEL))
    entered, scores, before, after = [], [], 0.0, 0.0
    for i in range(N):
        r = p.process([Sample("s", 1.7e9 + 60 * i, (float(v[i]),), 0.0)])
        if i == GLITCH_AT - 1:
            before = float(np.sqrt(p.state.scale_var[0, 0]))
        if i == GLITCH_AT + 200:
            after = float(np.sqrt(p.state.scale_var[0, 0]))
        if r.entered[0]:
            entered.append(i)
        if r.status[0] == SCORED:
            scores.append(float(r.score[0]))
    return entered, scores, before, after


@pytest.mark.parametrize("mode", ["window", "step"])
@pytest.mark.parametrize("glitch", [1e3, 1e6, 1e30, 1.7e308])
def test_a_glitch_alerts_then_leaves_scaling_and_detection_as_they_were(
    glitch: float, mode: str
) -> None:
    entered, scores, before, after = stream(glitch, mode)
    assert after == pytest.approx(before, rel=0.05)  # one value moves the scale by < 5 %
    assert any(GLITCH_AT <= i < GLITCH_AT + 5 for i in entered)  # the glitch is an anomaly
    assert any(ANOMALY_AT <= i < ANOMALY_AT + 30 for i in entered)  # and the later one too
    assert np.isfinite(scores).all() and min(scores[-100:]) < 0.5  # no score stuck at 1.0


def test_without_a_glitch_the_anomaly_alerts_the_same() -> None:
    entered, _, _, _ = stream(None, "window")
    assert any(ANOMALY_AT <= i < ANOMALY_AT + 30 for i in entered)
