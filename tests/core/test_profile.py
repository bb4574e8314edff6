"""The seasonal profile (streamd.core.profile) and the scorer's second source that reads it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streamd.core.alerts import alert_payload
from streamd.core.profile import SeasonalProfile
from streamd.core.scoring import ScoreState
from streamd.runtime import snapshot
from tests.helpers import make, samples, two_feature_series
from tests.helpers import scoring_params as params

DAY = 86_400.0


def test_a_bin_expects_nothing_until_its_time_of_day_was_seen() -> None:
    prof = SeasonalProfile(1, features=1, period="day", bins=48, periods=3.0)
    slot = np.array([0])
    assert np.isnan(prof.expected(slot, np.array([0.0])))[0, 0]
    prof.learn(slot, np.array([0.0]), np.array([[5.0]]))
    # the same half hour a day later expects what it saw; another half hour nothing yet
    assert prof.expected(slot, np.array([DAY + 60.0]))[0, 0] == 5.0
    assert np.isnan(prof.expected(slot, np.array([DAY / 2])))[0, 0]


def test_averages_decay_in_time_not_in_samples() -> None:
    """A stream sampled every minute and one every five forget at the same pace."""
    prof = SeasonalProfile(2, features=1, period="day", bins=48, periods=3.0)
    bin_s = DAY / 48
    for slot, step in ((0, 60.0), (1, 300.0)):
        s = np.array([slot])
        for t in np.arange(0.0, DAY + bin_s, step):  # a day at level 1, then a bin width at 0
            prof.learn(s, np.array([t]), np.array([[1.0 if t < DAY else 0.0]]))
    expected = math.exp(-1 / 3)  # one bin width of a memory of three
    np.testing.assert_allclose(prof.mean[:, 0, 0], [expected, expected], atol=0.02)


def test_a_level_far_from_the_profile_enters_an_anomaly_the_forecast_error_misses() -> None:
    p = params(history_warmup=200, smoothing_alpha=0.3, enter_after=1, threshold=0.5)
    rng = np.random.default_rng(0)
    with_profile, without = ScoreState(1, p, profile=True), ScoreState(1, p)
    slots = np.array([0])
    entered = {"with": False, "without": False}
    for i in range(600):
        error = np.array([0.1 + 0.05 * rng.standard_normal()])  # the forecast keeps up
        residual = np.array([0.1 + 0.05 * abs(rng.standard_normal())])
        if i >= 500:
            residual = residual + 1.0  # far from what this time of day brings
        r = with_profile.update(slots, error, residual)
        entered["with"] |= bool(r.entered[0])
        entered["without"] |= bool(without.update(slots, error).entered[0])
    assert entered == {"with": True, "without": False}


def test_an_unseen_time_of_day_neither_scores_nor_teaches_the_profile_history() -> None:
    st = ScoreState(1, params(), profile=True)
    assert st.profile_history is not None
    r = st.update(np.array([0]), np.array([0.1]), np.array([np.nan]))
    assert np.isfinite(r.score[0])
    assert st.profile_history.n[0] == 0 and st.history.n[0] == 1


def test_each_source_enters_and_leaves_its_own_anomalies() -> None:
    """A profile anomaly that begins inside the forecast's still alerts, and the forecast's
    ending does not end it: one hysteresis for both would merge them into one alert."""
    st = ScoreState(1, params(history_warmup=100, leave_after=3), profile=True)
    slots = np.array([0])
    rng = np.random.default_rng(1)
    events: list[tuple[int, str, str]] = []
    for i in range(160):
        error = np.array([0.1 + 0.02 * rng.standard_normal()])
        residual = np.array([0.1 + 0.02 * abs(rng.standard_normal())])
        if 120 <= i < 130:
            error = error + 2.0  # the forecast misses for 10 samples
        if 125 <= i < 140:
            residual = residual + 2.0  # far from the profile from the 6th of them on
        r = st.update(slots, error, residual)
        for source, v in r.sources.items():
            if v.entered[0] or v.left[0]:
                events.append((i, source, "anomaly" if v.entered[0] else "resolved"))
        assert r.anomalous[0] == any(bool(v.anomalous[0]) for v in r.sources.values())
    assert events == [
        (121, "forecast", "anomaly"),
        (126, "profile", "anomaly"),
        (132, "forecast", "resolved"),
        (142, "profile", "resolved"),
    ]


def test_a_profile_alert_names_its_source_reports_the_profile_and_survives_a_restart(
    tiny_model, tmp_path: Path
) -> None:
    """Two days teach the profile; on the third, a level far from what the time of day
    brings opens a profile alert that carries the profile's value as ``predicted``."""
    n = 2 * 1440 + 200  # one-minute samples
    usual = two_feature_series(n, 4)
    vals = usual.copy()
    vals[-150:, 1] += 5.0 * usual[:, 1].std()
    stream = samples("pump", vals)
    p = make(tiny_model, "step", history_warmup=200, profile="day", leave_after=12)
    opened = [a for a in p.process(stream[:-100]).alerts if a.state == "anomaly"]
    profile_alerts = [a for a in opened if a.source == "profile"]
    assert profile_alerts, f"no profile alert; got {[(a.source, a.ts) for a in opened]}"
    a = profile_alerts[0]
    assert a.ts >= stream[-150].ts_s  # not before the level moved
    assert p.profile is not None
    slot = p.table.slot_of("pump")
    assert slot is not None
    expected = p.profile.expected(np.array([slot]), np.array([a.ts]))[0]
    assert a.predicted == pytest.approx(dict(zip(p.features, expected, strict=True)), rel=0.05)
    assert alert_payload(a, "tiny", "v1")["source"] == "profile"

    path = tmp_path / "state.npz"
    snapshot.save(p, path)
    q = make(tiny_model, "step", history_warmup=200, profile="day", leave_after=12)
    snapshot.load(q, path)
    assert set(q.alerts.open) == set(p.alerts.open)
    open_id = q.alerts.open[slot, "profile"].alert_id
    back = samples("pump", usual[-100:], t0=stream[-100].ts_s)  # the usual level again
    kept, restored = p.process(back), q.process(back)
    ends = [(x.source, x.alert_id) for x in kept.alerts if x.state == "resolved"]
    assert ends == [(x.source, x.alert_id) for x in restored.alerts if x.state == "resolved"]
    assert ("profile", open_id) in ends
