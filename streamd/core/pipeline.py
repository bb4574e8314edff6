"""The scoring pipeline: samples -> per-stream state -> one ONNX call per round -> verdicts.

Pure apart from the model session: no network, no clock (times come in the samples). The
daemon, ``replay`` and ``evaluate`` all score through :meth:`Pipeline.process`.

A batch may hold several samples of one stream; they are processed in *rounds* (the k-th
sample of each stream in round k), so each round is one ONNX Runtime call over distinct
streams and a stream's samples are scored in arrival order. A round costs a whole model
call however few streams it holds, so :meth:`Pipeline.process` can cap the rounds per call:
a stream's later samples come back ``DEFERRED`` for the caller to pass again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from streamd.core import timefeatures
from streamd.core.alerts import AlertEvent, AlertTracker
from streamd.core.arrays import F32, F64, I64, clip, nan_to_num
from streamd.core.feed import INPUT_CLIP, ModelFeed
from streamd.core.inference import Forecaster
from streamd.core.params import ScoringParams
from streamd.core.payload import Sample
from streamd.core.profile import SeasonalProfile
from streamd.core.scaling import StreamScaling
from streamd.core.scoring import ScoreState
from streamd.core.state import StreamState, StreamTable

if TYPE_CHECKING:
    from streamd.config import Settings

# Per-sample status codes (BatchResult.status) and their names (metric labels).
SCORED, WARMUP, OUT_OF_ORDER, DUPLICATE, DEFERRED = 0, 1, 2, 3, 4
STATUS_NAMES = ("scored", "warmup", "out_of_order", "duplicate", "deferred")


@dataclass(frozen=True)
class PipelineOptions:
    """What the pipeline takes from the settings beside the scorer's constants
    (``inference.mode``, ``state.max_streams``/``max_gap_s``, ``scoring.scaling_*`` and
    ``scoring.profile*``; their defaults and meaning are in :mod:`streamd.config`)."""

    mode: str
    max_streams: int
    max_gap_s: float
    scaling_horizon: int
    scaling_warmup: int
    profile: str
    profile_bins: int
    profile_periods: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineOptions:
        sc, st = settings.scoring, settings.state
        return cls(
            mode=settings.inference.mode,
            max_streams=st.max_streams,
            max_gap_s=st.max_gap_s,
            scaling_horizon=sc.scaling_horizon,
            scaling_warmup=sc.scaling_warmup,
            profile=sc.profile,
            profile_bins=sc.profile_bins,
            profile_periods=sc.profile_periods,
        )


def build_pipeline(settings: Settings, model: Forecaster) -> Pipeline:
    """The scoring pipeline for ``settings`` and ``model`` (the daemon, replay, evaluate)."""
    params = ScoringParams.from_settings(settings.scoring, model.card.calibration)
    return Pipeline(model, params, PipelineOptions.from_settings(settings))


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

    def __init__(self, model: Forecaster, params: ScoringParams, options: PipelineOptions) -> None:
        mode, max_streams = options.mode, options.max_streams
        if mode not in ("step", "window"):
            raise ValueError(f"mode must be 'step' or 'window', not {mode!r}")
        card = model.card
        self.model, self.card, self.params, self.mode = model, card, params, mode
        self.max_gap_s = options.max_gap_s
        # With per-stream scaling a stream is scored only once its scaling has seen this many
        # samples: a scale guessed from a few samples makes every later error look huge.
        self.scaling_warmup = options.scaling_warmup if model.card.per_stream_scaling else 0
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
            if options.profile == "off"
            else SeasonalProfile(
                max_streams,
                len(card.features),
                options.profile,
                options.profile_bins,
                options.profile_periods,
            )
        )
        self.scores = ScoreState(max_streams, params, profile=self.profile is not None)
        self.alerts = AlertTracker(card.features)
        self.scaling = StreamScaling(card, self.state, options.scaling_horizon)
        self.feed = ModelFeed(model, self.state, self.scaling, mode, self.scaling_warmup)

    @property
    def active_streams(self) -> int:
        return len(self.table)

    def reset_streams_after(self, limit_ts: float) -> list[str]:
        """Send back to warm-up every stream whose last sample is later than ``limit_ts``
        (restored state from a clock that ran ahead): it would take no real sample before
        then. Returns their ids."""
        slots = [slot for _, slot in self.table.items() if self.state.last_ts[slot] > limit_ts]
        for slot in slots:
            self._reset(slot)
        return [self.table.ids[slot] or "" for slot in slots]

    def _reset(self, slot: int) -> None:
        """A slot back to a new stream's state (its open alerts forgotten)."""
        self.state.reset([slot])
        self.scores.reset([slot])
        if self.profile is not None:
            self.profile.reset([slot])
        self.alerts.drop(slot)

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
        self.scaling.use(model.card)
        if not same:
            self.scores.relearn(params)
            self.params = params
            self.feed.swap(model, np.array([s for _, s in self.table.items()], np.int64))

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
                    seen.pop(slot, None)  # the evicted stream's earlier rows keep their round
                self._reset(slot)
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
                self.alerts.drop(slot)
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

    def _round(self, rows: I64, slots: I64, raw: F64, ts: F64, res: BatchResult) -> None:
        st, card = self.state, self.card
        # A new stream's first sample sets its scaling, so it does not start far off zero.
        fresh = st.scale_n[slots] == 0
        if fresh.any():
            self.scaling.learn(slots[fresh], raw[fresh])
        offset, scale = self.scaling.offset_scale(slots)
        with np.errstate(over="ignore"):  # an absurd value scales to inf: its error is clipped
            scaled = ((raw - offset) / scale).astype(np.float32)
        # the model's input row: scaled values (clipped: no glitch drives the GRU to NaN),
        # then (if the model reads them) time features
        inputs = clip(scaled, -INPUT_CLIP, INPUT_CLIP)
        if card.time_features:
            inputs = np.concatenate([inputs, timefeatures.encode(ts, card.time_features)], axis=1)

        ready = st.has_pred[slots] & (st.scale_n[slots] >= self.scaling_warmup)
        if ready.any():
            r_rows, r_slots = rows[ready], slots[ready]
            diff = scaled[ready].astype(np.float64) - st.pred[r_slots]
            sq = diff**2
            err = np.sqrt(sq.mean(axis=1))
            o = offset[ready] if offset.ndim == 2 else offset
            sc = scale[ready] if scale.ndim == 2 else scale
            predicted = st.pred[r_slots] * sc + o
            with np.errstate(invalid="ignore"):  # an infinite difference has no share
                share = nan_to_num(sq / np.maximum(sq.sum(axis=1, keepdims=True), 1e-300))
            # per source: what the sample was compared with (original units), and each
            # feature's share of the squared difference (an alert's contributions)
            evidence = {"forecast": (predicted, share)}
            perr = None
            if self.profile is not None:
                expected = self.profile.expected(r_slots, ts[ready])
                with np.errstate(over="ignore", invalid="ignore"):  # a huge glitch: inf error
                    p_sq = ((raw[ready] - expected) / sc) ** 2
                    perr = np.sqrt(p_sq.mean(axis=1))
                    p_share = p_sq / np.maximum(p_sq.sum(axis=1, keepdims=True), 1e-300)
                evidence["profile"] = (expected, nan_to_num(p_share))
            scored = self.scores.update(r_slots, err, perr)
            res.status[r_rows] = SCORED
            res.score[r_rows] = scored.score
            res.surprise[r_rows] = scored.surprise
            res.anomalous[r_rows] = scored.anomalous
            res.entered[r_rows] = scored.entered
            res.predicted[r_rows] = predicted
            res.error[r_rows] = err
            res.alerts += self.alerts.track(
                self.table.ids,
                r_slots,
                ts[ready],
                raw[ready],
                evidence,
                scored,
                self.params.threshold,
            )
            learn = np.ones(len(slots), bool)
            # normal samples: below the threshold, or quiet inside an anomaly (see scoring)
            learn[ready] = (~scored.anomalous & (scored.score < self.params.threshold)) | (
                scored.score < self.params.threshold_low
            )
        else:
            learn = np.ones(len(slots), bool)
        learn &= np.isfinite(scaled).all(axis=1)  # beyond float32: nothing to learn from
        if self.profile is not None:  # what a time of day brings, from normal samples only
            self.profile.learn(slots[learn], ts[learn], raw[learn])
        keep = learn & ~fresh  # never from anomalous samples; a fresh one is already in
        self.scaling.learn(slots[keep], raw[keep])
        self.feed.advance(slots, raw, inputs)
