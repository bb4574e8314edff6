"""Where the worker keeps its streams' state between runs: one snapshot, or one per partition.

Alone, streamd writes every stream to ``state.snapshot_path``. Partitioned (``[cluster]``),
it writes each owned partition's streams to ``cluster.snapshot_dir/partition-<k>.npz``, a
directory the instances share: whichever instance owns partition k next restores exactly
those streams, so a partition moves between instances without a warm-up, and the
timestamps in it make the broker's redeliveries duplicates rather than samples scored
twice. A snapshot that does not fit (another model or mode) or is damaged costs only its
own streams: a damaged file is moved aside (``.bad``) and never stops the start.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

from streamd.config import Settings
from streamd.core.pipeline import Pipeline
from streamd.runtime import snapshot
from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.metrics import Metrics

log = logging.getLogger(__name__)


class StateStore:
    """The snapshot files of one instance: ``(path, partition)`` pairs, partition None when
    the instance is not partitioned."""

    def __init__(
        self,
        files: list[tuple[Path, int | None]],
        partition_of: MutableMapping[str, int],
        metrics: Metrics,
        problems: RateLimitedLog,
        max_clock_skew_s: float,
    ) -> None:
        self.files = files
        self.partition_of = partition_of  # stream -> partition, kept by the MQTT reader
        self.metrics = metrics
        self.problems = problems
        self.max_clock_skew_s = max_clock_skew_s

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        environ: Mapping[str, str],
        partition_of: MutableMapping[str, int],
        metrics: Metrics,
        problems: RateLimitedLog,
    ) -> StateStore:
        cluster = settings.cluster
        files: list[tuple[Path, int | None]]
        if cluster.partitions:
            files = [(cluster.snapshot_path(k), k) for k in cluster.owned_partitions()]
        else:
            path = settings.state.resolved_snapshot_path(environ)
            files = [] if path is None else [(path, None)]
        return cls(files, partition_of, metrics, problems, settings.state.max_clock_skew_s)

    def restore(self, pipeline: Pipeline, rebuild: Callable[[], Pipeline]) -> Pipeline:
        """``pipeline`` with every usable snapshot loaded (``rebuild`` makes a fresh one when
        a failed load may have left part of a file behind)."""
        if not self.files:
            log.info("no state snapshots (set state.snapshot_path or run under systemd)")
            return pipeline
        loaded: list[tuple[Path, snapshot.Restored]] = []
        for path, partition in self.files:
            if not path.exists():
                log.info("no state snapshot at %s yet; its streams start cold", path)
                continue
            try:
                got = snapshot.load(pipeline, path)
            except (snapshot.SnapshotMismatch, snapshot.SnapshotDamaged) as e:
                self._discard(path, e)
                pipeline = rebuild()
                for good, _ in loaded:  # what loaded before, into the fresh pipeline
                    snapshot.load(pipeline, good)
                continue
            loaded.append((path, got))
            if partition is not None:
                for stream in got.streams:
                    self.partition_of[stream] = partition
        future = pipeline.reset_streams_after(time.time() + self.max_clock_skew_s)
        if future:
            self.metrics.stream_resets.inc(len(future))
            log.warning(
                "%d restored streams had a last sample in the future (e.g. %r): reset to warm-up",
                len(future),
                future[0],
            )
        self.metrics.snapshot_restored_streams.set(
            sum(len(got.streams) for _, got in loaded) - len(future)
        )
        self.metrics.active_streams.set(pipeline.active_streams)
        for path, got in loaded:
            log.info(
                "restored %d streams (%d open alerts) from %s, written %.0f s ago",
                len(got.streams),
                got.open_alerts,
                path,
                time.time() - got.saved_at,
            )
        return pipeline

    def _discard(self, path: Path, e: Exception) -> None:
        self.metrics.snapshot_discarded.inc()
        if isinstance(e, snapshot.SnapshotMismatch):
            log.warning("state snapshot %s not loaded: %s; its streams start cold", path, e)
            return
        aside = path.with_name(path.name + ".bad")
        try:
            os.replace(path, aside)
            where = f"moved to {aside}"
        except OSError as err:
            where = f"not moved aside ({err.strerror})"
        log.error("state snapshot %s is damaged (%s), %s; its streams start cold", path, e, where)

    def write(self, pipeline: Pipeline) -> None:
        """Write every file; a failure is counted and logged, never raised."""
        for path, partition in self.files:
            t0 = time.perf_counter()
            try:
                size = snapshot.save(pipeline, path, self._member(partition))
            except OSError as e:
                self.metrics.snapshot_writes.labels("failed").inc()
                self.problems.error("snapshot", "cannot write state snapshot %s: %s", path, e)
                continue
            self.metrics.snapshot_writes.labels("ok").inc()
            self.metrics.snapshot_last_success.set(time.time())
            ms = 1e3 * (time.perf_counter() - t0)
            log.debug("snapshot %s: %d bytes in %.1f ms", path, size, ms)

    def _member(self, partition: int | None) -> Callable[[str], bool] | None:
        """Which streams go to ``partition``'s file (None: all of them)."""
        if partition is None:
            return None
        of = self.partition_of
        return lambda stream: of.get(stream) == partition
