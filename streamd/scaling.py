"""Feature scaling shared by training (fit) and the runtime (transform, inverse).

Scaled values are ``(x - offset) / scale`` per feature. ``minmax`` maps the training
range onto [0, 1]; ``standard`` gives zero mean and unit variance. A constant feature
gets scale 1 so that it never divides by zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

ScalingKind = Literal["minmax", "standard"]
FloatArray = npt.NDArray[np.float32]


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
