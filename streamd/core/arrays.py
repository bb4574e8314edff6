"""Array types the core shares, named by dtype: ``F32 = NDArray[float32]`` and so on."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
B = npt.NDArray[np.bool_]

# The scorer runs once per batch, and at a few thousand msg/s batches hold a few dozen
# samples, so numpy's per-call overhead, not the arithmetic, is what a batch costs. These
# two do what np.clip and np.nan_to_num do for float arrays in a half and a third of the
# time on small arrays (bench/per_batch.py).
_A = TypeVar("_A", bound=npt.NDArray[Any])


def clip(a: _A, lo: npt.ArrayLike, hi: npt.ArrayLike) -> _A:
    """``np.clip(a, lo, hi)`` (NaN stays NaN, the dtype stays ``a``'s), without np.clip's
    dispatch overhead."""
    return cast(_A, np.minimum(np.maximum(a, lo), hi))


# Per-stream counters (samples seen, consecutive samples above a threshold, ...) are 32-bit:
# 4 bytes a counter a stream. They saturate instead of wrapping, so a stream that has run
# for 2^31 samples stays counted as long past every warm-up, never as a fresh one.
COUNT_MAX = int(np.iinfo(np.int32).max)


def count_up(c: I32) -> I32:
    """``c + 1``, saturating at :data:`COUNT_MAX`."""
    return np.minimum(c, COUNT_MAX - 1) + 1


def nan_to_num(a: _A, nan: float = 0.0) -> _A:
    """``np.nan_to_num(a, nan=nan)`` for a float array: NaN -> ``nan``, ±inf -> ±its max."""
    big = float(np.finfo(a.dtype).max)
    return cast(_A, np.minimum(np.maximum(np.where(np.isnan(a), nan, a), -big), big))
