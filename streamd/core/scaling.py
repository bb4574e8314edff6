"""Feature scaling shared by training (fit) and the runtime (transform, inverse).

Scaled values are ``(x - offset) / scale`` per feature. ``minmax`` maps the training
range onto [0, 1]; ``standard`` gives zero mean and unit variance. A constant feature
gets scale 1 so that it never divides by zero.

A model trained with per-stream scaling has the identity as its card's scaler: the runtime
keeps each stream's running mean and variance instead (:func:`running_offset_scale`,
:func:`learn_running`, over the arrays of :class:`streamd.core.state.StreamState`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from streamd.core.arrays import F64, I32, I64, clip, count_up

if TYPE_CHECKING:
    from streamd.core.card import ModelCard
    from streamd.core.state import StreamState

ScalingKind = Literal["minmax", "standard"]
FloatArray = npt.NDArray[np.float32]
# The smallest per-stream scale: a stream that has been constant so far must not make
# every later change look infinitely large.
MIN_SCALE = 1e-6
# After its first CLIP_AFTER samples, a stream's running statistics move by at most
# CLIP_SIGMAS of its scale per sample: one glitch changes the scale by a few percent at most.
CLIP_AFTER = 30
CLIP_SIGMAS = 4.0


@dataclass(frozen=True)
class Scaler:
    """Per-feature affine scaling; ``offset`` and ``scale`` have shape ``[features]``."""

    kind: ScalingKind
    offset: FloatArray
    scale: FloatArray

    @classmethod
    def fit(cls, kind: ScalingKind, values: npt.NDArray[np.floating[Any]]) -> Scaler:
        """Fit on ``values: [rows, features]`` (the training part only).

        >>> s = Scaler.fit("minmax", np.array([[0.0], [10.0]]))
        >>> s.transform(np.array([[5.0]])).tolist()
        [[0.5]]
        """
        v = np.asarray(values, dtype=np.float64)
        if kind == "minmax":
            offset = v.min(axis=0)
            scale = v.max(axis=0) - offset
        elif kind == "standard":
            offset = v.mean(axis=0)
            scale = v.std(axis=0)
        else:
            raise ValueError(f"unknown scaling kind {kind!r}")
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(kind, offset.astype(np.float32), scale.astype(np.float32))

    def transform(self, values: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """Original units -> scaled units (broadcasts over leading axes)."""
        return ((np.asarray(values, dtype=np.float32) - self.offset) / self.scale).astype(
            np.float32
        )

    def inverse(self, scaled: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """Scaled units -> original units."""
        return (np.asarray(scaled, dtype=np.float32) * self.scale + self.offset).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        kind = d["kind"]
        if kind not in ("minmax", "standard"):
            raise ValueError(f"unknown scaling kind {kind!r}")
        offset = np.asarray(d["offset"], dtype=np.float32)
        scale = np.asarray(d["scale"], dtype=np.float32)
        if offset.shape != scale.shape or offset.ndim != 1:
            raise ValueError("scaling offset and scale must be equal-length lists")
        if not (np.all(np.isfinite(offset)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("scaling parameters must be finite with positive scale")
        return cls(kind, offset, scale)


def running_offset_scale(mean: F64, var: F64) -> tuple[F64, F64]:
    """Offset and scale ``[n, features]`` of streams from their running mean and variance.

    The scale is at least :data:`MIN_SCALE` and 0.1 % of the mean's size.

    >>> o, s = running_offset_scale(np.array([[100.0]]), np.array([[0.0]]))
    >>> o.tolist(), s.tolist()
    ([[100.0]], [[0.1]])
    """
    scale = np.sqrt(var)
    scale = np.maximum(scale, np.maximum(MIN_SCALE, 1e-3 * np.abs(mean)))
    return mean, scale


def learn_running(n: I32, mean: F64, var: F64, slots: I64, raw: F64, horizon: int) -> None:
    """Move the running mean and variance of ``slots`` (distinct) towards ``raw: [k, features]``.

    An exponentially weighted estimate whose weight is ``1 / (n + 1)`` at first (the plain
    mean) and never less than ``1 / horizon``, each step clipped to :data:`CLIP_SIGMAS` of
    the scale once :data:`CLIP_AFTER` samples are in; ``n``, ``mean`` and ``var`` are
    updated in place.

    >>> n, mean, var = np.zeros(1, np.int32), np.zeros((1, 1)), np.zeros((1, 1))
    >>> for x in [10.0, 12.0] * 50 + [1e6]:
    ...     learn_running(n, mean, var, np.array([0]), np.array([[x]]), horizon=5000)
    >>> round(float(np.sqrt(var[0, 0])), 2)  # from 1.0; unclipped, the glitch made it 99,000
    1.07
    """
    count = n[slots]
    w = np.maximum(1.0 / horizon, 1.0 / count_up(count))[:, None]
    delta = raw - mean[slots]
    bound = np.where(
        (count >= CLIP_AFTER)[:, None],
        CLIP_SIGMAS * np.maximum(np.sqrt(var[slots]), MIN_SCALE),
        np.inf,
    )
    delta = clip(delta, -bound, bound)
    mean[slots] += w * delta
    var[slots] = (1 - w) * (var[slots] + w * delta**2)
    n[slots] = count_up(count)


class StreamScaling:
    """How each stream's samples are scaled for the model: by the card's scaler, or (for a
    model trained with per-stream scaling) by the stream's own running statistics, kept in
    ``scale_n``/``scale_mean``/``scale_var`` of :class:`streamd.core.state.StreamState`."""

    def __init__(self, card: ModelCard, state: StreamState, horizon: int) -> None:
        self.state, self.horizon = state, horizon
        self.per_stream = card.per_stream_scaling
        self.use(card)

    def use(self, card: ModelCard) -> None:
        """Scale as ``card`` says from now on (a model swap keeps per-stream statistics)."""
        self._offset = card.scaler.offset.astype(np.float64)
        self._scale = card.scaler.scale.astype(np.float64)

    def offset_scale(self, slots: I64) -> tuple[F64, F64]:
        """Offset and scale for ``slots``: ``[features]`` (the card's) or ``[n, features]``."""
        if not self.per_stream:
            return self._offset, self._scale
        return running_offset_scale(self.state.scale_mean[slots], self.state.scale_var[slots])

    def learn(self, slots: I64, raw: F64) -> None:
        """Teach ``slots`` (distinct) the raw rows ``raw`` (per-stream scaling only)."""
        if self.per_stream and len(slots):
            st = self.state
            learn_running(st.scale_n, st.scale_mean, st.scale_var, slots, raw, self.horizon)


def running_scaling(values: F64, horizon: int) -> tuple[F64, F64]:
    """Offset and scale ``[rows, features]`` with which serving scales each row of one stream.

    Row ``i`` (and the window before it) is scaled by the running statistics of rows before
    it, as :class:`StreamScaling` has them when row ``i`` arrives; the first row sets them.
    Training calls this so that a model trained with per-stream scaling sees exactly the
    transform it will be served with.

    >>> o, s = running_scaling(np.array([[10.0], [12.0], [11.0]]), horizon=5000)
    >>> o[:, 0].tolist(), s[:, 0].round(3).tolist()
    ([10.0, 10.0, 11.0], [0.01, 0.01, 1.0])
    """
    rows, features = values.shape
    n, mean, var = np.zeros(1, np.int32), np.zeros((1, features)), np.zeros((1, features))
    slot = np.zeros(1, np.int64)
    offsets, scales = np.empty((rows, features)), np.empty((rows, features))
    for i in range(rows):
        if i == 0:
            learn_running(n, mean, var, slot, values[:1], horizon)
        o, s = running_offset_scale(mean, var)
        offsets[i], scales[i] = o[0], s[0]
        if i > 0:
            learn_running(n, mean, var, slot, values[i : i + 1], horizon)
    return offsets, scales
