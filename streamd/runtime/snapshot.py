"""State snapshots: every stream's state on disk, so a restart resumes without a warm-up.

A snapshot is one ``.npz`` file (numpy arrays, no pickle): the per-slot rows of the
pipeline's :class:`~streamd.core.state.StreamState` and :class:`~streamd.core.scoring.ScoreState`
for the streams held, in least-recently-seen order, the open alerts, and a JSON header
naming the model version and mode it belongs to. It is written atomically (temporary file,
fsync, rename, fsync of the directory), so a power cut leaves the old or the new snapshot,
never half of one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamd.core.alerts import OpenAlert
from streamd.core.history import ErrorHistory
from streamd.core.hysteresis import Hysteresis
from streamd.core.pipeline import Pipeline
from streamd.core.profile import SeasonalProfile
from streamd.core.scoring import ScoreState
from streamd.core.state import StreamState

FORMAT = 1
PROFILE_KEYS = ("p.", "cp.")  # the seasonal profile's arrays: optional in a snapshot


class SnapshotMismatch(Exception):
    """The snapshot belongs to another model, mode or format; it is not loaded."""


class SnapshotDamaged(Exception):
    """The snapshot cannot be read (empty, truncated, or arrays that do not fit)."""


@dataclass(frozen=True)
class Restored:
    streams: list[str]
    open_alerts: int
    saved_at: float


def slot_arrays(p: Pipeline) -> Iterator[tuple[str, np.ndarray, int]]:
    """``(key, array, slot axis)`` of every per-slot array in use (not the other mode's).

    The forecast error's history and hysteresis keep the ``c.`` keys they had before the
    scorer had a second source, so older snapshots still load; the seasonal profile's
    (``p.``, ``cp.``) are absent from snapshots taken without it, and those streams learn
    it afresh.
    """
    Part = StreamState | ScoreState | ErrorHistory | Hysteresis | SeasonalProfile
    sc = p.scores
    parts: list[tuple[str, Part]] = [("s", p.state), ("c", sc), ("c", sc.history), ("c", sc.alert)]
    if sc.profile_history is not None and sc.profile_alert is not None and p.profile is not None:
        parts += [("cp", sc.profile_history), ("cp", sc.profile_alert), ("p", p.profile)]
    for prefix, part in parts:
        for name, axis in part.SLOT_FIELDS:
            array = getattr(part, name)
            if array.shape[axis]:
                yield f"{prefix}.{name}", array, axis


def _other_axes(array: np.ndarray, axis: int) -> tuple[int, ...]:
    return array.shape[:axis] + array.shape[axis + 1 :]


def _header(p: Pipeline) -> dict[str, object]:
    return {
        "format": FORMAT,
        "model": p.card.name,
        "model_version": p.card.version,
        "mode": p.mode,
        "features": list(p.features),
        "window": p.card.window,
    }


def save(pipeline: Pipeline, path: Path, keep: Callable[[str], bool] | None = None) -> int:
    """Write the state of ``pipeline``'s streams (those ``keep`` accepts, if given) to
    ``path`` atomically; returns the bytes written.

    Raises OSError (read-only or full disk, missing directory): the caller counts and logs.
    """
    items = pipeline.table.items()
    if keep is not None:
        items = [(stream, slot) for stream, slot in items if keep(stream)]
    ids = [stream for stream, _ in items]
    slots = np.array([slot for _, slot in items], np.int64)
    arrays: dict[str, np.ndarray] = {}
    for key, array, axis in slot_arrays(pipeline):
        arrays[key] = np.take(array, slots, axis=axis)
    position = {slot: i for i, (_, slot) in enumerate(items)}
    open_alerts = [
        (position[slot], source, a)
        for (slot, source), a in pipeline.alerts.open.items()
        if slot in position
    ]
    header = _header(pipeline) | {
        "saved_at": time.time(),
        "streams": ids,
        "alerts": [
            {
                "row": row,
                "source": source,
                "alert_id": a.alert_id,
                "start_ts": a.start_ts,
                "peak": a.peak,
                "n": a.n,
            }
            for row, source, a in open_alerts
        ],
    }
    arrays["alert_contrib"] = np.array(
        [a.contrib_sum for *_, a in open_alerts], np.float64
    ).reshape(len(open_alerts), len(pipeline.features))
    arrays["header"] = np.array(json.dumps(header))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path.stat().st_size


def load(pipeline: Pipeline, path: Path) -> Restored:
    """Restore the streams in ``path`` into ``pipeline`` (empty, or holding other streams:
    partition snapshots load one after the other).

    Raises :class:`SnapshotMismatch` when it belongs to another model version, mode or
    format, and :class:`SnapshotDamaged` when it cannot be read, whatever the damage (the
    pipeline may then hold part of it: build a new one).
    """
    try:
        return _load(pipeline, path)
    except SnapshotMismatch:
        raise
    except Exception as e:  # any damage: numpy, zipfile, json, shapes, types
        raise SnapshotDamaged(f"{type(e).__name__}: {e}") from e


def _load(pipeline: Pipeline, path: Path) -> Restored:
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        want = _header(pipeline)
        for key, value in want.items():
            if header.get(key) != value:
                raise SnapshotMismatch(
                    f"snapshot {key} is {header.get(key)!r}, the running one is {value!r}"
                )
        ids: list[str] = header["streams"]
        keep = ids[-pipeline.table.capacity :]  # the most recently seen, if the cap shrank
        first = len(ids) - len(keep)
        slots = np.array([pipeline.table.lookup(stream).slot for stream in keep], np.int64)
        rows = np.arange(first, len(ids))
        for key, array, axis in slot_arrays(pipeline):
            optional = key.startswith(PROFILE_KEYS)
            if optional and key not in z.files:
                continue  # the profile was off when this was taken: learn it afresh
            saved = z[key]
            if optional and _other_axes(saved, axis) != _other_axes(array, axis):
                continue  # taken with other profile bins
            index = (slice(None),) * axis + (slots,)
            array[index] = np.take(saved, rows, axis=axis)
            if key == "p.mean" and "p.seen" in z.files:
                # before 2026-12-02 unseen bins were flagged apart and held 0; now they are NaN
                array[slots] = np.where(z["p.seen"][rows][..., None], array[slots], np.nan)
        contrib = z["alert_contrib"]
    restored = 0
    for a, c in zip(header["alerts"], contrib, strict=True):
        if a["row"] < first:
            continue
        slot = int(slots[a["row"] - first])
        source = a.get("source", "forecast")  # older snapshots: the forecast's only
        if source not in pipeline.scores.sources:
            continue  # the profile was on then and is off now: its anomaly is dropped
        alert = OpenAlert(a["alert_id"], a["start_ts"], a["peak"], c.copy(), a["n"])
        pipeline.alerts.open[slot, source] = alert
        restored += 1
    return Restored(keep, restored, float(header["saved_at"]))
