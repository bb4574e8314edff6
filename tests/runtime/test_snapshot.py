"""State snapshots and model swaps at the pipeline level, with a real ONNX model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamd.config import ScoringSettings
from streamd.core.inference import Forecaster
from streamd.core.params import ScoringParams
from streamd.core.pipeline import SCORED, WARMUP, Pipeline
from streamd.runtime import snapshot
from streamd.tools.synth import Injection, inject
from tests.helpers import make, samples, two_feature_series


def fed(tiny_model, mode: str, n: int = 160, **kw: object) -> tuple[Pipeline, list, list]:
    """A pipeline fed ``n`` samples of three streams (one with a spike at the end); the
    profile off and anomalies that end soon unless ``kw`` says otherwise."""
    kw = {"profile": "off", "leave_after": 12} | kw
    p = make(tiny_model, mode, history_warmup=40, **kw)
    data = {s: two_feature_series(n + 120, seed) for seed, s in enumerate(("a", "b", "c"))}
    data["c"][:, 0] = inject(
        data["c"][:, 0], Injection("spike", n - 5, 4, 8.0), np.random.default_rng(0)
    )
    series = {s: samples(s, v) for s, v in data.items()}
    first = [x for i in range(n) for x in (series["a"][i], series["b"][i], series["c"][i])]
    rest = [x for i in range(n, n + 120) for x in (series["a"][i], series["b"][i], series["c"][i])]
    p.process(first)
    return p, first, rest


@pytest.mark.parametrize("mode", ["step", "window"])
def test_restored_pipeline_scores_exactly_like_the_one_that_kept_running(
    tiny_model, mode: str, tmp_path: Path
) -> None:
    p, _, rest = fed(tiny_model, mode)
    assert p.alerts.open, "the spike should leave an anomaly open across the snapshot"
    path = tmp_path / "state.npz"
    assert snapshot.save(p, path) > 0
    q = make(tiny_model, mode, history_warmup=40, profile="off", leave_after=12)
    got = snapshot.load(q, path)
    assert (len(got.streams), got.open_alerts) == (3, len(p.alerts.open))

    kept, restored = p.process(rest), q.process(rest)
    assert np.all(restored.status == SCORED)  # no second warm-up
    np.testing.assert_array_equal(kept.status, restored.status)
    np.testing.assert_allclose(kept.score, restored.score, rtol=1e-6, atol=1e-9)
    assert [(a.state, a.stream, a.start_ts, a.peak_score) for a in kept.alerts] == [
        (a.state, a.stream, a.start_ts, a.peak_score) for a in restored.alerts
    ]
    open_ids = {a.alert_id for a in p.alerts.open.values()} | {a.alert_id for a in kept.alerts}
    resumed = [a for a in restored.alerts if a.state == "resolved" and a.alert_id in open_ids]
    assert resumed, "an anomaly open at the snapshot ends with its original alert id"


def test_restore_keeps_timestamps_so_redelivered_samples_are_not_rescored(
    tiny_model, tmp_path: Path
) -> None:
    p, first, _ = fed(tiny_model, "window")
    snapshot.save(p, tmp_path / "s.npz")
    q = make(tiny_model, "window")
    snapshot.load(q, tmp_path / "s.npz")
    again = q.process(first[-30:])  # a broker redelivering what was already scored
    assert not np.any(again.status == SCORED) and not np.any(again.status == WARMUP)


def test_snapshot_of_another_model_or_mode_is_refused(tiny_model, tmp_path: Path) -> None:
    p, _, _ = fed(tiny_model, "window", n=40)
    path = tmp_path / "s.npz"
    snapshot.save(p, path)
    with pytest.raises(snapshot.SnapshotMismatch, match="mode"):
        snapshot.load(make(tiny_model, "step"), path)
    other = make(tiny_model, "window")
    other.card = type(other.card)(**{**other.card.__dict__, "version": "0" * 12})
    with pytest.raises(snapshot.SnapshotMismatch, match="model_version"):
        snapshot.load(other, path)


def test_a_smaller_stream_cap_keeps_the_most_recent_streams(tiny_model, tmp_path: Path) -> None:
    p, _, _ = fed(tiny_model, "window", n=30)
    snapshot.save(p, tmp_path / "s.npz")
    q = make(tiny_model, "window", max_streams=2)
    assert snapshot.load(q, tmp_path / "s.npz").streams == ["b", "c"]
    assert [s for s, _ in q.table.items()] == ["b", "c"]


def test_failed_write_leaves_the_previous_snapshot_intact(tiny_model, tmp_path: Path) -> None:
    p, _, _ = fed(tiny_model, "window", n=30)
    path = tmp_path / "s.npz"
    snapshot.save(p, path)
    before = path.read_bytes()
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(OSError):
        snapshot.save(p, tmp_path / "not-a-dir" / "s.npz")
    assert path.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_snapshot_holds_no_pickles(tiny_model, tmp_path: Path) -> None:
    p, _, _ = fed(tiny_model, "step", n=30)
    snapshot.save(p, tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
    assert header["streams"] == ["a", "b", "c"] and header["mode"] == "step"


@pytest.mark.parametrize("mode", ["step", "window"])
def test_swap_to_the_same_model_changes_nothing(tiny_model, mode: str) -> None:
    p, _, rest = fed(tiny_model, mode)
    q, _, _ = fed(tiny_model, mode)
    fresh = Forecaster(tiny_model[0])
    q.swap_model(fresh, ScoringParams.from_settings(ScoringSettings(), fresh.card.calibration))
    np.testing.assert_allclose(p.process(rest).score, q.process(rest).score, rtol=1e-6)


def test_swap_to_a_new_version_keeps_streams_and_relearns_errors(
    tiny_model, tmp_path: Path
) -> None:
    p, _, rest = fed(tiny_model, "window")
    open_before = set(p.alerts.open)
    copy = tmp_path / "v2.onnx"
    shutil.copy(tiny_model[0], copy)
    new = Forecaster(copy)
    new.card = type(new.card)(**{**new.card.__dict__, "version": "f" * 12})
    p.swap_model(
        new, ScoringParams.from_settings(ScoringSettings(history_warmup=40), new.card.calibration)
    )
    assert p.card.version == "f" * 12 and p.active_streams == 3
    assert set(p.alerts.open) == open_before  # an open anomaly still gets its "resolved"
    r = p.process(rest)
    assert np.all(r.status == SCORED)  # windows carried over: the new model predicts at once
    # while error histories relearn, no stream enters a new anomaly
    early = [a for a in r.alerts if a.ts < rest[3 * 40].ts_s]
    assert all(a.state == "resolved" for a in early) and len(early) <= len(open_before)


def test_the_seasonal_profile_survives_a_restart_and_older_snapshots_still_load(
    tiny_model, tmp_path: Path
) -> None:
    p, _, rest = fed(tiny_model, "step", profile="day")
    assert p.profile is not None and not np.isnan(p.profile.mean).all()
    path = tmp_path / "state.npz"
    snapshot.save(p, path)
    q = make(tiny_model, "step", history_warmup=40, profile="day", leave_after=12)
    snapshot.load(q, path)
    assert q.profile is not None
    kept, restored = p.process(rest), q.process(rest)
    np.testing.assert_allclose(kept.score, restored.score, rtol=1e-6, atol=1e-9)

    plain, _, _ = fed(tiny_model, "step")  # taken without the profile
    snapshot.save(plain, path)
    r = make(tiny_model, "step", history_warmup=40, profile="day", leave_after=12)
    assert snapshot.load(r, path).streams == ["a", "b", "c"]
    assert r.profile is not None and np.isnan(r.profile.mean).all()  # learnt afresh
    assert np.all(r.process(rest).status == SCORED)  # the forecast history was restored


def test_a_snapshot_that_flags_unseen_profile_bins_apart_loads_them_as_unseen(
    tiny_model, tmp_path: Path
) -> None:
    """Snapshots before 2026-12-02 held ``p.seen`` beside a ``p.mean`` of 0 for unseen bins."""
    p, _, _ = fed(tiny_model, "step", profile="day")
    assert p.profile is not None
    path = tmp_path / "state.npz"
    snapshot.save(p, path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    seen = ~np.isnan(arrays["p.mean"]).any(axis=2)
    assert seen.any() and not seen.all()
    arrays["p.seen"], arrays["p.mean"] = seen, np.nan_to_num(arrays["p.mean"], nan=0.0)
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)  # type: ignore[arg-type]
    q = make(tiny_model, "step", history_warmup=40, profile="day", leave_after=12)
    snapshot.load(q, old)
    assert q.profile is not None
    slots = [q.table.slot_of(s) for s in ("a", "b", "c")]
    np.testing.assert_array_equal(
        q.profile.mean[slots], p.profile.mean[[p.table.slot_of(s) for s in ("a", "b", "c")]]
    )


def test_partition_snapshots_hold_their_own_streams_and_load_side_by_side(
    tiny_model, tmp_path: Path
) -> None:
    p, _, _ = fed(tiny_model, "window", n=30)
    part = {"a": 0, "b": 1, "c": 1}
    for k in (0, 1):
        snapshot.save(p, tmp_path / f"partition-{k}.npz", lambda s, k=k: part[s] == k)
    q = make(tiny_model, "window")
    assert snapshot.load(q, tmp_path / "partition-1.npz").streams == ["b", "c"]
    assert snapshot.load(q, tmp_path / "partition-0.npz").streams == ["a"]
    assert sorted(s for s, _ in q.table.items()) == ["a", "b", "c"]
    for stream in "abc":  # each stream's state is its own, whichever file it came from
        mine, theirs = p.table.lookup(stream).slot, q.table.lookup(stream).slot
        assert p.state.last_ts[mine] == q.state.last_ts[theirs]
