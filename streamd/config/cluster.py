"""``[cluster]``: partitioned input, for several instances behind one broker cluster.

A stream's state (model window, scaling, error history, open alert) lives in one process,
so each stream must reach exactly one instance. The broker does the routing: a
deterministic mapping puts each stream's topic under one of ``partitions`` prefixes (NATS:
``p/<k>/sensors/pump1`` for ``sensors/pump1``; docs/scale-out.md). An instance consumes the
partitions it owns, each over an MQTT session of its own (``session_id``), so a partition's
queued messages wait in its session while nobody owns it and go to whoever takes it over;
its streams' state goes to a snapshot of its own in ``snapshot_dir``, shared by the
instances, so the new owner resumes warm.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamd.config.topics import check_topic_name

PLACEHOLDER = "{partition}"


class ClusterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: int = Field(
        0,
        ge=0,
        le=1024,
        description="partitions the broker splits the input into (NATS: partition(N, ...) "
        "in its subject mapping); 0: not partitioned",
    )
    owned: list[int] = Field(
        [], description="the partitions this instance consumes (or set instance/instances)"
    )
    instance: int = Field(
        0,
        ge=0,
        description="this is instance INSTANCE of INSTANCES: it owns each partition k with "
        "k % instances == instance",
    )
    instances: int = Field(0, ge=0, description="0: use owned")
    topic_prefix: str = Field(
        "p/{partition}/",
        description="what the broker's mapping puts before a stream's topic; stripped, so the "
        "stream id (alerts, metrics, snapshots) stays the original topic",
    )
    session_id: str = Field(
        "streamd-p{partition}",
        description="MQTT client id of each partition's session: whichever instance owns the "
        "partition resumes it, with the messages queued while it moved",
    )
    snapshot_dir: Path | None = Field(
        None,
        description="shared directory of the partition snapshots (partition-<k>.npz); "
        "required when partitioned",
    )

    @model_validator(mode="after")
    def _check(self) -> ClusterSettings:
        if not self.partitions:
            return self
        for name in ("topic_prefix", "session_id"):
            if PLACEHOLDER not in getattr(self, name):
                raise ValueError(f"{name} must contain {PLACEHOLDER}")
        check_topic_name(self.topic_prefix.replace(PLACEHOLDER, "0") + "x")
        if self.instances:
            if self.owned:
                raise ValueError("set owned or instance/instances, not both")
            if self.instance >= min(self.instances, self.partitions):
                raise ValueError("instance must be below instances and partitions")
        elif not self.owned:
            raise ValueError("a partitioned instance must own partitions: set owned or instances")
        bad = [k for k in self.owned if not 0 <= k < self.partitions]
        if bad or len(set(self.owned)) != len(self.owned):
            raise ValueError(f"owned must be distinct partitions 0..{self.partitions - 1}")
        if self.snapshot_dir is None:
            raise ValueError("snapshot_dir is required when partitioned (a shared directory)")
        return self

    def owned_partitions(self) -> list[int]:
        """The partitions this instance consumes, in order; empty when not partitioned."""
        if not self.partitions:
            return []
        if self.instances:
            return list(range(self.instance, self.partitions, self.instances))
        return sorted(self.owned)

    def prefix(self, k: int) -> str:
        return self.topic_prefix.replace(PLACEHOLDER, str(k))

    def client_id(self, k: int) -> str:
        return self.session_id.replace(PLACEHOLDER, str(k))

    def snapshot_path(self, k: int) -> Path:
        assert self.snapshot_dir is not None
        return self.snapshot_dir / f"partition-{k}.npz"
