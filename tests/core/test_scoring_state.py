"""Pure core: stream table, scorer (score meaning, hysteresis, learning rules)."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.core.arrays import COUNT_MAX, count_up
from streamd.core.history import log10_tail, score_from_z
from streamd.core.scoring import ScoreState
from streamd.core.state import StreamTable
from tests.helpers import scoring_params as params


def test_stream_table_evicts_least_recently_seen() -> None:
    t = StreamTable(3)
    for s in ("a", "b", "c"):
        t.lookup(s)
    t.lookup("a")  # a is fresh again; b is now the oldest
    look = t.lookup("d")
    assert look.evicted == "b" and look.new
    assert t.slot_of("b") is None and t.slot_of("d") == look.slot
    assert len(t) == 3


def test_score_meaning_is_tail_probability() -> None:
    # z = 4.265 is a one-in-100,000 upper tail: score 0.5
    assert score_from_z(np.array([4.2649]))[0] == pytest.approx(0.5, abs=1e-4)
    assert score_from_z(np.array([-3.0]))[0] < 0.01
    assert score_from_z(np.array([100.0]))[0] == 1.0
    z = np.linspace(-5, 60, 200)
    assert np.all(np.diff(log10_tail(z)) < 0)  # monotone, no jump at the switch-over


def test_hysteresis_enter_after_k_leave_after_m() -> None:
    st = ScoreState(2, params())
    slots = np.array([0])
    normal, huge = np.array([0.1]), np.array([5.0])
    assert not st.update(slots, huge).anomalous[0]  # one sample above: not yet
    r = st.update(slots, huge)
    assert r.entered[0] and r.anomalous[0]
    for _ in range(2):
        r = st.update(slots, normal)
        assert r.anomalous[0] and not r.left[0]
    r = st.update(slots, normal)
    assert r.left[0] and not r.anomalous[0]
    assert not st.anomalous[1]  # the other stream is untouched


def test_counters_of_a_stream_that_ran_for_2_to_the_31_samples_saturate_instead_of_wrapping() -> (
    None
):
    """Per-stream counters are 32-bit: wrapped to negative, the history's sample count would
    put the stream back into its warm-up (silent for ever) and a quiet run would never leave."""
    st = ScoreState(1, params())
    slots = np.array([0])
    for _ in range(150):
        st.update(slots, np.array([0.1]))
    st.history.n[0] = COUNT_MAX
    st.alert.below[0] = COUNT_MAX
    st.update(slots, np.array([0.1]))
    assert st.history.n[0] == COUNT_MAX and st.alert.below[0] == COUNT_MAX
    r = [st.update(slots, np.array([5.0])) for _ in range(2)]
    assert r[-1].entered[0]  # not warming up: it still gives verdicts
    assert count_up(np.array([COUNT_MAX - 1, COUNT_MAX], np.int32)).tolist() == [COUNT_MAX] * 2


def test_history_does_not_learn_from_anomalous_samples() -> None:
    st = ScoreState(1, params(leave_after=1000, max_anomaly_samples=10_000))
    slots = np.array([0])
    for _ in range(200):
        st.update(slots, np.array([0.1]))
    hist, n = st.history.hist[0].copy(), st.history.n[0]
    for _ in range(500):  # a long anomaly
        r = st.update(slots, np.array([3.0]))
    assert r.anomalous[0]
    assert st.history.n[0] == n and np.array_equal(st.history.hist[0], hist)
    assert r.score[0] == 1.0  # still fully anomalous: it never became "normal"


def test_noise_at_calibration_level_rarely_scores_high() -> None:
    rng = np.random.default_rng(0)
    p = params(smoothing_alpha=0.3, threshold=0.5)  # one in 100,000
    st = ScoreState(50, p)
    slots = np.arange(50)
    scores = []
    for _ in range(400):
        err = np.abs(rng.normal(p.cal_mean, p.cal_std, 50))
        scores.append(st.update(slots, err).score)
    assert np.mean(np.concatenate(scores) >= p.threshold) < 1e-3


def test_an_endless_anomaly_becomes_the_new_normal() -> None:
    st = ScoreState(1, params(leave_after=1000, max_anomaly_samples=50))
    slots = np.array([0])
    for _ in range(100):
        st.update(slots, np.array([0.1]))
    events = [st.update(slots, np.array([3.0])) for _ in range(300)]
    assert sum(bool(e.entered[0]) for e in events) == 1
    assert sum(bool(e.left[0]) for e in events) == 1  # resolved once, then learnt as normal
    assert not events[-1].anomalous[0] and events[-1].score[0] < 0.3


def test_history_warmup_learns_a_streams_own_error_level_before_verdicts() -> None:
    # This stream's normal error is 10 calibration std above the card's: after its warm-up it
    # is judged against its own history, not flagged for ever.
    st = ScoreState(1, params(history_warmup=100, smoothing_alpha=0.3))
    slots = np.array([0])
    rng = np.random.default_rng(1)
    during = [st.update(slots, np.array([0.6 + 0.05 * rng.standard_normal()])) for _ in range(100)]
    assert not any(bool(r.anomalous[0]) for r in during)
    after = [st.update(slots, np.array([0.6 + 0.05 * rng.standard_normal()])) for _ in range(300)]
    assert not any(bool(r.anomalous[0]) for r in after)
    r = [st.update(slots, np.array([3.0])) for _ in range(3)]
    assert r[-1].anomalous[0]  # a real jump still alerts


def test_errors_that_recur_stop_being_rare() -> None:
    """A large error every 50 samples (a daily step a forecaster cannot time) is learnt as
    normal, while a larger one never seen still alerts."""
    st = ScoreState(1, params(history_warmup=500, smoothing_alpha=1.0, enter_after=1))
    slots = np.array([0])
    entered = [
        bool(st.update(slots, np.array([0.6 if i % 50 == 0 else 0.1])).entered[0])
        for i in range(3000)
    ]
    assert not any(entered)
    assert st.update(slots, np.array([5.0])).entered[0]
