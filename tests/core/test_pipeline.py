"""The scoring pipeline with a real ONNX model: order, rounds, warm-up, gaps, eviction."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.core.alerts import alert_payload
from streamd.core.pipeline import DEFERRED, DUPLICATE, OUT_OF_ORDER, SCORED, WARMUP
from streamd.tools.synth import Injection, inject
from tests.helpers import make, samples, two_feature_series


@pytest.mark.parametrize("mode", ["step", "window"])
def test_batching_equals_one_at_a_time(tiny_model, mode: str) -> None:
    a, b = two_feature_series(80, 1), two_feature_series(80, 2)
    sa, sb = samples("a", a), samples("b", b)
    mixed = [s for pair in zip(sa, sb, strict=True) for s in pair]
    batched = make(tiny_model, mode).process(mixed)  # 80 rounds of 2 streams
    single = make(tiny_model, mode)
    one_by_one = [single.process([s]) for s in mixed]
    np.testing.assert_array_equal(batched.status, [r.status[0] for r in one_by_one])
    np.testing.assert_allclose(
        batched.score, [r.score[0] for r in one_by_one], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("mode", ["step", "window"])
def test_round_cap_defers_a_fast_streams_rest_and_changes_no_score(tiny_model, mode: str) -> None:
    """A stream's samples beyond ``max_rounds`` come back DEFERRED, untouched; passing them
    again (as the daemon does) gives exactly the scores of one uncapped call."""
    fast = samples("fast", two_feature_series(70, 1))
    slow = samples("slow", two_feature_series(70, 2)[:10])
    batch = fast + slow
    whole = make(tiny_model, mode).process(batch)
    capped = make(tiny_model, mode)
    got: dict[tuple[str, float], float] = {}
    todo, calls = batch, 0
    while todo:
        res = capped.process(todo, max_rounds=8)
        calls += 1
        assert (res.status[: len(todo)] == DEFERRED).sum() == max(0, sum(
            1 for s in todo if s.stream == "fast") - 8) + max(0, sum(
            1 for s in todo if s.stream == "slow") - 8)  # fmt: skip
        for s, st, sc in zip(todo, res.status, res.score, strict=True):
            if st != DEFERRED:
                got[(s.stream, s.ts_s)] = sc
        todo = [s for s, st in zip(todo, res.status, strict=True) if st == DEFERRED]
    assert calls == 9  # 70 samples of "fast", 8 per call
    want = {(s.stream, s.ts_s): sc for s, sc in zip(batch, whole.score, strict=True)}
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-5, atol=1e-6)


def test_warmup_then_verdicts(tiny_model) -> None:
    p = make(tiny_model)
    r = p.process(samples("a", two_feature_series(40, 3)))
    window = p.card.window
    assert np.all(r.status[:window] == WARMUP) and np.all(np.isnan(r.score[:window]))
    assert np.all(r.status[window:] == SCORED) and np.all(
        (r.score[window:] >= 0) & (r.score[window:] <= 1)
    )


def test_out_of_order_and_duplicates_are_rejected_not_scored(tiny_model) -> None:
    p = make(tiny_model)
    base = samples("a", two_feature_series(30, 4))
    late = base[10]._replace(ts_s=base[-1].ts_s - 1000)
    dup = base[-1]
    r = p.process([*base, late, dup])
    assert r.status[-2] == OUT_OF_ORDER and r.status[-1] == DUPLICATE
    assert np.isnan(r.score[-2:]).all()


def test_gap_sends_stream_back_to_warmup(tiny_model) -> None:
    p = make(tiny_model, max_gap_s=600.0)
    vals = two_feature_series(40, 5)
    p.process(samples("a", vals[:30]))
    r = p.process(samples("a", vals[30:], t0=1e9 + 60.0 * 29 + 3600))
    assert r.gap_resets == 1 and np.all(r.status == WARMUP)


def test_eviction_at_the_stream_cap(tiny_model) -> None:
    p = make(tiny_model, max_streams=3)
    vals = two_feature_series(5, 6)
    results = [p.process(samples(f"s{i}", vals)) for i in range(5)]
    assert sum(r.evicted for r in results) == 2 and p.active_streams == 3
    assert [i for r in results for i in r.evicted_ids] == ["s0", "s1"]


def test_level_shift_alert_carries_feature_contributions(tiny_model, normal_csv) -> None:
    from streamd.core.csvdata import read_series

    p = make(tiny_model)
    rng = np.random.default_rng(9)
    vals = read_series(normal_csv).values[-200:].copy()  # the kind of data the model knows
    vals[:, 1] = inject(vals[:, 1], Injection("level_shift", 150, 30, 8.0), rng)
    r = p.process(samples("pump", vals))
    opened = [a for a in r.alerts if a.state == "anomaly" and 150 <= (a.ts - 1e9) / 60 < 180]
    assert opened, "the level shift was not alerted"
    alert = opened[0]
    assert alert.contributions["power"] > 0.8  # the shifted feature carries the error
    body = alert_payload(alert, "tiny", "v1")
    for key in (
        "stream",
        "ts",
        "state",
        "source",
        "score",
        "threshold",
        "value",
        "predicted",
        "model",
        "model_version",
        "alert_id",
        "peak_score",
        "start_ts",
    ):
        assert key in body
    assert body["source"] == "forecast"  # the only source with the profile off
    assert body["value"] == alert.value  # two features: a dict by name
