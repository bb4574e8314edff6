"""The scoring pipeline: samples -> per-stream state -> one ONNX call per round -> verdicts.

Pure apart from the model session: no network, no clock (times come in the samples). The
daemon, ``replay`` and ``evaluate`` all score through :meth:`Pipeline.process`.

A batch may hold several samples of one stream; they are processed in *rounds* (the k-th
sample of each stream in round k), so each round is one ONNX Runtime call over distinct
streams and a stream's samples are scored in arrival order. A round costs about as much as
scoring a thousand distinct streams once, so :meth:`Pipeline.process` can cap the rounds
per call: a stream's later samples come back ``DEFERRED`` for the caller to pass again.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamd import timefeatures
from streamd.inference import Forecaster
from streamd.payload import Sample
from streamd.profile import SeasonalProfile
from streamd.scoring import SOURCES, Scored, ScoreState, ScoringParams, Verdict
from streamd.state import StreamState, StreamTable

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Per-sample status codes (BatchResult.status) and their names (metric labels).
SCORED, WARMUP, OUT_OF_ORDER, DUPLICATE, DEFERRED = 0, 1, 2, 3, 4
STATUS_NAMES = ("scored", "warmup", "out_of_order", "duplicate", "deferred")
MIN_SCALE = 1e-6
SWAP_BATCH = 1024  # windows per ONNX call when a new model re-predicts every stream


@dataclass
class AlertEvent:
    """An ``anomaly`` (entered) or ``resolved`` (left) transition of one stream's source
    (``forecast`` or ``profile``, :data:`~streamd.scoring.SOURCES`)."""

    state: str
    stream: str
    source: str
    alert_id: str
    ts: float
    start_ts: float
    end_ts: float | None
    score: float
    peak_score: float
    threshold: float
    value: dict[str, float]
    predicted: dict[str, float]
    contributions: dict[str, float]

    def payload(self, model: str, model_version: str) -> dict[str, Any]:
        """The MQTT alert message (DESIGN.md): a single-feature value is a plain number."""
        one = len(self.value) == 1
        return {
            "stream": self.stream,
            "ts": self.ts,
            "state": self.state,
            "source": self.source,
            "alert_id": self.alert_id,
            "score": round(self.score, 6),
            "peak_score": round(self.peak_score, 6),
            "threshold": self.threshold,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "value": next(iter(self.value.values())) if one else self.value,
            "predicted": _number(next(iter(self.predicted.values())))
            if one
            else {k: _number(v) for k, v in self.predicted.items()},
            "contributions": self.contributions,
            "model": model,
            "model_version": model_version,
        }


def _number(v: float) -> float | None:
    """JSON has no NaN: a profile alert over a time of day the profile has not seen yet
    carries ``null`` as its expected value."""
    return None if math.isnan(v) else v


@dataclass
class OpenAlert:
    """An anomaly in progress: what its alerts report (peak, mean contributions)."""

    alert_id: str
    start_ts: float
    peak: float
    contrib_sum: F64
    n: int = 0


@dataclass
class BatchResult:
    """Per-sample outcomes in input order, plus alert transitions and table events."""

    status: npt.NDArray[np.int8]
    score: F64  # NaN where not scored
    surprise: F64  # -log10 tail probability, unclipped; NaN where not scored
    anomalous: npt.NDArray[np.bool_]
    entered: npt.NDArray[np.bool_]  # a source of the stream entered an anomaly here
    predicted: F32  # [n, features], original units, NaN where not scored
    error: F64  # RMS scaled error, NaN where not scored
    alerts: list[AlertEvent] = field(default_factory=list)
    evicted: int = 0
    evicted_ids: list[str] = field(default_factory=list)
    gap_resets: int = 0


class Pipeline:
    """Stateful scorer for up to ``max_streams`` streams of one model."""

    def __init__(
        self,
        model: Forecaster,
        params: ScoringParams,
        *,
        mode: str = "step",
        max_streams: int = 10_000,
        max_gap_s: float = float("inf"),
        scaling_horizon: int = 5000,
        scaling_warmup: int = 288,
        profile: str = "off",
        profile_bins: int = 48,
        profile_periods: float = 3.0,
    ) -> None:
        if mode not in ("step", "window"):
            raise ValueError(f"mode must be 'step' or 'window', not {mode!r}")
        card = model.card
        self.model, self.card, self.params, self.mode = model, card, params, mode
        self.max_gap_s = max_gap_s
        self.scaling_horizon = scaling_horizon
        # With per-stream scaling a stream is scored only once its scaling has seen this many
        # samples: a scale guessed from a few samples makes every later error look huge.
        self.scaling_warmup = scaling_warmup if model.card.per_stream_scaling else 0
        self.features = card.features
        self.table = StreamTable(max_streams)
        self.state = StreamState(
            max_streams,
            features=len(card.features),
            window=card.window,
            layers=card.layers,
            state_size=card.state_size,
            mode=mode,
            inputs=card.n_inputs,
        )
        self.profile = (
            None
            if profile == "off"
            else SeasonalProfile(
                max_streams, len(card.features), profile, profile_bins, profile_periods
            )
        )
        self.scores = ScoreState(max_streams, params, profile=self.profile is not None)
        self.active: dict[tuple[int, str], OpenAlert] = {}  # by (slot, source)
        self._card_offset = card.scaler.offset.astype(np.float64)
        self._card_scale = card.scaler.scale.astype(np.float64)

    @property
    def active_streams(self) -> int:
        return len(self.table)

    def can_swap_to(self, model: Forecaster) -> bool:
        """Whether ``model`` reads the same inputs, so stream windows and scaling carry over."""
        old, new = self.card, model.card
        return (
            new.features == old.features
            and new.time_features == old.time_features
            and new.window == old.window
            and new.per_stream_scaling == old.per_stream_scaling
        )

    def swap_model(self, model: Forecaster, params: ScoringParams) -> None:
        """Serve ``model`` from the next batch on, keeping every stream (a SIGHUP reload).

        The same model version changes nothing. Another version keeps windows, timestamps,
        scaling and open alerts, and relearns error histories (see :meth:`ScoreState.relearn`).
        """
        if not self.can_swap_to(model):
            raise ValueError("the new model reads other inputs; build a new Pipeline")
        same = model.card.version == self.card.version
        self.model, self.card = model, model.card
        self._card_offset = model.card.scaler.offset.astype(np.float64)
        self._card_scale = model.card.scaler.scale.astype(np.float64)
        if not same:
            self.state.restart_model_input(model.card.layers, model.card.state_size)
            self.scores.relearn(params)
            self.params = params
            if self.mode == "window":  # full windows: the new model predicts at once
                full = np.array([s for _, s in self.table.items()], np.int64)
                full = full[self.state.count[full] >= model.card.window]
                for i in range(0, len(full), SWAP_BATCH):
                    self._predict_windows(full[i : i + SWAP_BATCH])

    def process(self, samples: list[Sample], max_rounds: int | None = None) -> BatchResult:
        """Score ``samples`` (any streams, arrival order); returns one outcome per sample.

        With ``max_rounds``, a stream's samples after its first ``max_rounds`` are left
        untouched and marked ``DEFERRED``: one fast stream then cannot make the call slow
        for every other stream in it.
        """
        n, f = len(samples), len(self.features)
        res = BatchResult(
            status=np.full(n, WARMUP, np.int8),
            score=np.full(n, np.nan),
            surprise=np.full(n, np.nan),
            anomalous=np.zeros(n, bool),
            entered=np.zeros(n, bool),
            predicted=np.full((n, f), np.nan, np.float32),
            error=np.full(n, np.nan),
        )
        slots = np.empty(n, np.int64)
        rounds = np.zeros(n, np.int64)
        seen: dict[int, int] = {}
        last_ts = self.state.last_ts
        for i, s in enumerate(samples):
            look = self.table.lookup(s.stream)
            slot = look.slot
            if look.new:
                if look.evicted is not None:
                    res.evicted += 1
                    res.evicted_ids.append(look.evicted)
                    self._drop_alerts(slot)
                    seen.pop(slot, None)  # the evicted stream's earlier rows keep their round
                self.state.reset([slot])
                self.scores.reset([slot])
                if self.profile is not None:
                    self.profile.reset([slot])
            k = seen.get(slot, 0)
            if max_rounds is not None and k >= max_rounds:
                res.status[i] = DEFERRED
                slots[i] = -1
                continue
            prev = last_ts[slot]
            if s.ts_s < prev:
                res.status[i] = OUT_OF_ORDER
                slots[i] = -1
                continue
            if s.ts_s == prev:
                res.status[i] = DUPLICATE
                slots[i] = -1
                continue
            if s.ts_s - prev > self.max_gap_s and prev > -np.inf:
                self.state.reset([slot], keep_last_ts=True)
                self.scores.reset([slot])
                self._drop_alerts(slot)
                res.gap_resets += 1
            last_ts[slot] = s.ts_s
            slots[i] = slot
            seen[slot] = k + 1
            rounds[i] = k
        accepted = slots >= 0
        if not accepted.any():
            return res
        values = np.array([s.values for s in samples], dtype=np.float64).reshape(n, f)
        ts = np.fromiter((s.ts_s for s in samples), np.float64, n)
        for k in range(int(rounds[accepted].max()) + 1):
            rows = np.flatnonzero(accepted & (rounds == k))
            self._round(rows, slots[rows], values[rows], ts[rows], res)
        return res

    # -- one round: distinct slots ------------------------------------------------------

    def _scaling(self, slots: I64) -> tuple[F64, F64]:
        if not self.card.per_stream_scaling:
            return self._card_offset, self._card_scale
        st = self.state
        mean = st.scale_mean[slots]
        scale = np.sqrt(st.scale_var[slots])
        scale = np.maximum(scale, np.maximum(MIN_SCALE, 1e-3 * np.abs(mean)))
        return mean, scale

    def _learn_scaling(self, slots: I64, raw: F64) -> None:
        st = self.state
        n = st.scale_n[slots]
        w = np.maximum(1.0 / self.scaling_horizon, 1.0 / (n + 1))[:, None]
        delta = raw - st.scale_mean[slots]
        st.scale_mean[slots] += w * delta
        st.scale_var[slots] = (1 - w) * (st.scale_var[slots] + w * delta**2)
        st.scale_n[slots] = n + 1

    def _round(self, rows: I64, slots: I64, raw: F64, ts: F64, res: BatchResult) -> None:
        st, card = self.state, self.card
        # A new stream's first sample sets its scaling, so it does not start far off zero.
        fresh = st.scale_n[slots] == 0
        if card.per_stream_scaling and fresh.any():
            self._learn_scaling(slots[fresh], raw[fresh])
        offset, scale = self._scaling(slots)
        scaled = ((raw - offset) / scale).astype(np.float32)
        # the model's input row: scaled values, then (if the model reads them) time features
        inputs = scaled
        if card.time_features:
            inputs = np.concatenate([scaled, timefeatures.encode(ts, card.time_features)], axis=1)

        ready = st.has_pred[slots] & (st.scale_n[slots] >= self.scaling_warmup)
        if ready.any():
            r_rows, r_slots = rows[ready], slots[ready]
            diff = scaled[ready].astype(np.float64) - st.pred[r_slots]
            sq = diff**2
            err = np.sqrt(sq.mean(axis=1))
            o = offset[ready] if offset.ndim == 2 else offset
            sc = scale[ready] if scale.ndim == 2 else scale
            predicted = st.pred[r_slots] * sc + o
            share = sq / np.maximum(sq.sum(axis=1, keepdims=True), 1e-300)
            # per source: what the sample was compared with (original units), and each
            # feature's share of the squared difference (an alert's contributions)
            evidence = {"forecast": (predicted, share)}
            perr = None
            if self.profile is not None:
                expected = self.profile.expected(r_slots, ts[ready])
                p_sq = ((raw[ready] - expected) / sc) ** 2
                perr = np.sqrt(p_sq.mean(axis=1))
                p_share = p_sq / np.maximum(p_sq.sum(axis=1, keepdims=True), 1e-300)
                evidence["profile"] = (expected, np.nan_to_num(p_share))
            scored = self.scores.update(r_slots, err, perr)
            res.status[r_rows] = SCORED
            res.score[r_rows] = scored.score
            res.surprise[r_rows] = scored.surprise
            res.anomalous[r_rows] = scored.anomalous
            res.entered[r_rows] = scored.entered
            res.predicted[r_rows] = predicted
            res.error[r_rows] = err
            self._track_alerts(r_slots, ts[ready], raw[ready], evidence, scored, res)
            learn = np.ones(len(slots), bool)
            learn[ready] = ~scored.anomalous
        else:
            learn = np.ones(len(slots), bool)
        if self.profile is not None:  # what a time of day brings, from normal samples only
            self.profile.learn(slots[learn], ts[learn], raw[learn])
        if card.per_stream_scaling:
            keep = learn & ~fresh  # never from anomalous samples; a fresh one is already in
            self._learn_scaling(slots[keep], raw[keep])

        if self.mode == "step":
            # With per-stream scaling the GRU is fed only the last `window` samples of the
            # scaling warm-up: earlier samples, scaled by a scale guessed from a handful of
            # values, would drive the carried state far outside what the model was trained on.
            feed = st.scale_n[slots] > self.scaling_warmup - card.window
            f_slots = slots[feed]
            if len(f_slots):
                y, h_n = self.model.step(inputs[feed], st.hidden[:, f_slots])
                st.hidden[:, f_slots] = h_n
                st.pred[f_slots] = y
                st.count[f_slots] += 1
                st.has_pred[f_slots] = st.count[f_slots] >= card.window
        else:
            st.count[slots] += 1
            row = raw.astype(np.float32)  # the ring keeps raw values: scaling may still move
            if card.time_features:
                row = np.concatenate([row, inputs[:, len(self.features) :]], axis=1)
            st.push(slots, row)
            full = st.count[slots] >= card.window
            if full.any():
                self._predict_windows(slots[full])

    def _predict_windows(self, slots: I64) -> None:
        """Window mode: each slot's prediction of its next sample from its full window.

        The ring holds raw values (scaled here, with the stream's current scaling) followed by
        the time features, which need no scaling.
        """
        st = self.state
        f = len(self.features)
        win = st.windows(slots)
        o, sc = self._scaling(slots)
        o3 = o[:, None, :] if o.ndim == 2 else o
        s3 = sc[:, None, :] if sc.ndim == 2 else sc
        x = win.copy()
        x[:, :, :f] = (win[:, :, :f].astype(np.float64) - o3) / s3
        st.pred[slots] = self.model.predict_windows(x)
        st.has_pred[slots] = True

    def _drop_alerts(self, slot: int) -> None:
        """Forget a slot's open alerts (its stream was evicted or reset)."""
        for source in SOURCES:
            self.active.pop((slot, source), None)

    def _track_alerts(
        self,
        slots: I64,
        ts: F64,
        raw: F64,
        evidence: dict[str, tuple[F64, F64]],
        scored: Scored,
        res: BatchResult,
    ) -> None:
        for source, verdict in scored.sources.items():
            predicted, share = evidence[source]
            for j in np.flatnonzero(verdict.anomalous | verdict.left):
                self._track_one(source, verdict, int(j), slots, ts, raw, predicted, share, res)

    def _track_one(
        self,
        source: str,
        v: Verdict,
        j: int,
        slots: I64,
        ts: F64,
        raw: F64,
        predicted: F64,
        share: F64,
        res: BatchResult,
    ) -> None:
        """Row ``j``'s part in its stream's open ``source`` alert; an alert event if the
        source entered or left an anomaly there."""
        names = self.features
        key = (int(slots[j]), source)
        score = float(v.score[j])
        act = None if v.entered[j] else self.active.get(key)
        if act is None:  # entered here, or before a reset we did not see: track from now
            act = OpenAlert(uuid.uuid4().hex, float(ts[j]), score, np.zeros(len(names)))
            self.active[key] = act
        act.peak = max(act.peak, score)
        act.contrib_sum += share[j]
        act.n += 1
        if v.entered[j] or v.left[j]:
            contributions = {
                name: round(float(c), 4)
                for name, c in zip(names, act.contrib_sum / act.n, strict=True)
            }
            res.alerts.append(
                AlertEvent(
                    state="anomaly" if v.entered[j] else "resolved",
                    stream=self.table.ids[key[0]] or "",
                    source=source,
                    alert_id=act.alert_id,
                    ts=float(ts[j]),
                    start_ts=act.start_ts,
                    end_ts=float(ts[j]) if v.left[j] else None,
                    score=score,
                    peak_score=act.peak,
                    threshold=self.params.threshold,
                    value=dict(zip(names, map(float, raw[j]), strict=True)),
                    predicted=dict(zip(names, map(float, predicted[j]), strict=True)),
                    contributions=contributions,
                )
            )
        if v.left[j]:
            del self.active[key]
