"""Scale-out on a real 3-node NATS cluster: partitions, one owner per stream, a handover.

NATS maps ``sensors/<id>`` to ``p/<k>/sensors/<id>`` (k of 3, by a hash of ``<id>``);
streamd instance A consumes partitions 0 and 1, instance B partition 2, each on another
node, with partition snapshots in one shared directory. Samples are published over MQTT to
all three nodes, with an anomaly in two streams. Each instance publishes its scores and
alerts under a prefix of its own, so the subscriber sees who scored what.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import DEFAULT_MODEL, metric_values, scrape, wait_ready
from streamd.tools.nats import NatsCluster, nats_server_path, start_nats_cluster
from streamd.tools.synth import PROFILES, normal_series
from tests.e2e.support import T0, start

PARTITIONS, STREAMS, WARMUP = 3, 12, 40
PHASE1, PHASE2 = 160, 60  # samples per stream before and during the handover
SPIKED = {"sensors/s3": 120, "sensors/s7": 120}  # stream -> first anomalous sample


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsCluster]:
    if nats_server_path() is None:
        pytest.fail("nats-server is not installed (scripts/test.sh installs it)")
    cluster = start_nats_cluster(3, tmp_path, PARTITIONS)
    yield cluster
    cluster.stop()


def series() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    out = {}
    for i in range(STREAMS):
        name = f"sensors/s{i}"
        x = normal_series(PROFILES[i % len(PROFILES)], PHASE1 + PHASE2, 300.0, rng)
        if name in SPIKED:
            at = SPIKED[name]
            x[at : at + 6] += 40 * float(np.std(x[:at]))
        out[name] = x
    return out


class Watcher:
    """Every score and alert message, by the instance prefix it came under."""

    def __init__(self, port: int) -> None:
        self.scores: dict[str, list[tuple[str, float]]] = defaultdict(list)  # who -> (stream, ts)
        self.alerts: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="watcher",
            protocol=mqtt.MQTTv311,
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([("scores/#", 1), ("alerts/#", 1)])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(20)

    def _on_message(self, client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        kind, who, _ = m.topic.split("/", 2)
        body = json.loads(m.payload)
        with self.lock:
            if kind == "scores":
                self.scores[who].append((body["stream"], body["ts"]))
            elif body["state"] == "anomaly":
                self.alerts.append((who, body))

    def rows(self) -> set[tuple[str, float]]:
        with self.lock:
            return {row for rows in self.scores.values() for row in rows}

    def wait_for(self, want: set[tuple[str, float]], timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not want <= self.rows() and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(ports: list[int], data: dict[str, np.ndarray], rows: range) -> None:
    """Stream i goes to node i % 3, at QoS 1, every PUBACK awaited."""
    clients = []
    for k, port in enumerate(ports):
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"publisher-{k}",
            protocol=mqtt.MQTTv311,
        )
        c.max_inflight_messages_set(500)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
    infos = []
    for t in rows:
        for i, (name, x) in enumerate(data.items()):
            body = json.dumps({"ts": T0 + t * 300.0, "value": float(x[t])})
            infos.append(clients[i % len(clients)].publish(name, body, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=60)
        assert info.is_published()
    for c in clients:
        c.disconnect()
        c.loop_stop()


def instance(who: str, owned: list[int], shared: Path) -> dict[str, str]:
    return {
        "STREAMD_MQTT__PROTOCOL": "3.1.1",  # NATS speaks MQTT 3.1.1
        "STREAMD_MQTT__STATUS_TOPIC": f"streamd/{who}/status",
        "STREAMD_CLUSTER__PARTITIONS": str(PARTITIONS),
        "STREAMD_CLUSTER__OWNED": json.dumps(owned),
        "STREAMD_CLUSTER__SNAPSHOT_DIR": str(shared),
        "STREAMD_ALERTS__PUBLISH_SCORES": "true",
        "STREAMD_ALERTS__SCORE_TOPIC_PREFIX": f"scores/{who}",
        "STREAMD_ALERTS__TOPIC_PREFIX": f"alerts/{who}",
        "STREAMD_SCORING__SCALING_WARMUP": str(WARMUP),
        "STREAMD_SCORING__HISTORY_WARMUP": str(WARMUP),
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def samples(http_port: int, outcome: str) -> float:
    return metric_values(scrape(http_port)).get(f'streamd_samples_total{{outcome="{outcome}"}}', 0)


def rows_of(data: dict[str, np.ndarray], ts: range) -> set[tuple[str, float]]:
    return {(s, T0 + t * 300.0) for s in data for t in ts}


def wait_scored(ports: list[int], n: float, timeout_s: float = 90.0) -> None:
    """Until the instances on ``ports`` have scored or warmed up on ``n`` samples."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(samples(p, "scored") + samples(p, "warmup") for p in ports) >= n:
            return
        time.sleep(0.2)


def test_partitions_have_one_owner_and_move_warm_without_loss(
    nats: NatsCluster, tmp_path: Path
) -> None:
    shared = tmp_path / "partitions"
    shared.mkdir()
    data = series()
    ports = nats.mqtt_ports
    watcher = Watcher(ports[2])
    a, a_http, _ = start(ports[0], DEFAULT_MODEL, tmp_path, instance("A", [0, 1], shared), "A")
    b, b_http, _ = start(ports[1], DEFAULT_MODEL, tmp_path, instance("B", [2], shared), "B")
    b2 = None
    try:
        wait_ready(a_http, 60)
        wait_ready(b_http, 60)
        publish(ports, data, range(PHASE1))
        wait_scored([a_http, b_http], STREAMS * PHASE1)
        scored = sum(samples(p, "scored") for p in (a_http, b_http))
        deadline = time.monotonic() + 30
        while len(watcher.rows()) < scored and time.monotonic() < deadline:
            time.sleep(0.2)
        with watcher.lock:
            owner = {s: who for who, rows in watcher.scores.items() for s, _ in rows}
            by_owner = {who: {s for s, _ in rows} for who, rows in watcher.scores.items()}
        assert sorted(owner) == sorted(data), "every stream is scored"
        assert not by_owner["A"] & by_owner["B"], "no stream is scored by two instances"
        alerted = {(who, body["stream"]) for who, body in watcher.alerts}
        assert {(owner[s], s) for s in SPIKED} <= alerted, "the owner alerts"

        stop(a)  # A's partitions wait in their sessions, their state in the shared directory
        assert sorted(p.name for p in shared.iterdir()) == ["partition-0.npz", "partition-1.npz"]
        publish(ports, data, range(PHASE1, PHASE1 + PHASE2))
        stop(b)  # B hands back partition 2 too; B2 takes all three, on the third node
        b2, b2_http, _ = start(
            ports[2], DEFAULT_MODEL, tmp_path, instance("B2", [0, 1, 2], shared), "B2"
        )
        wait_ready(b2_http, 60)
        watcher.wait_for(rows_of(data, range(PHASE1, PHASE1 + PHASE2)))
        time.sleep(1.0)  # anything scored twice would come now
        assert samples(b2_http, "warmup") == 0, "the new owner resumes warm"
    finally:
        for p in (a, b, b2):
            if p is not None and p.poll() is None:
                p.kill()
        watcher.close()
    with watcher.lock:
        rows = [(s, ts) for who in watcher.scores for s, ts in watcher.scores[who]]
        moved = {s for s, _ in watcher.scores["B2"]}
    assert len(rows) == len(set(rows)), "no sample is scored twice"
    phase2 = rows_of(data, range(PHASE1, PHASE1 + PHASE2))
    assert phase2 <= set(rows), f"{len(phase2 - set(rows))} samples of the handover lost"
    assert {s for s, who in owner.items() if who == "A"} <= moved, "A's streams moved to B2"
    print(
        f"\nstreams by owner {{A: {len(by_owner['A'])}, B: {len(by_owner['B'])}}}; scored "
        f"{len(rows)} ({len(phase2)} of them in the handover, all once); B2 scored "
        f"{len(watcher.scores['B2'])} of {len(moved)} streams with 0 warm-up; "
        f"alerts {sorted(alerted)}"
    )


def test_an_instance_of_several_partitions_keeps_topics_and_snapshots_apart(
    broker: int, tmp_path: Path
) -> None:
    """On Mosquitto, over MQTT 5 (the mqtt5 link): one session per owned partition, the
    partition prefix stripped from stream ids, each partition's streams in its own file."""
    shared = tmp_path / "partitions"
    shared.mkdir()
    env = instance("X", [0, 2], shared) | {"STREAMD_MQTT__PROTOCOL": "5"}
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, env, "X")
    watcher = Watcher(broker)
    try:
        wait_ready(http_port, 60)
        rng = np.random.default_rng(1)
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pub")
        c.connect("127.0.0.1", broker)
        c.loop_start()
        infos = []
        for t in range(WARMUP * 3 + 40):
            for topic in ("p/0/sensors/a", "p/2/sensors/b", "p/1/sensors/c"):
                body = json.dumps({"ts": T0 + t * 300.0, "value": float(rng.normal())})
                infos.append(c.publish(topic, body, qos=1))
        for info in infos:
            info.wait_for_publish(30)
        c.disconnect()
        c.loop_stop()
        wait_scored([http_port], 2 * (WARMUP * 3 + 40))
    finally:
        stop(proc)
        watcher.close()
    assert {s for s, _ in watcher.rows()} == {"sensors/a", "sensors/b"}  # p/1 is not ours
    from streamd.config import load_settings
    from streamd.core.inference import Forecaster
    from streamd.core.pipeline import build_pipeline
    from streamd.runtime import snapshot

    model = Forecaster(DEFAULT_MODEL)
    for k, stream in ((0, "sensors/a"), (2, "sensors/b")):
        p = build_pipeline(load_settings(None), model)
        assert snapshot.load(p, shared / f"partition-{k}.npz").streams == [stream]


@pytest.mark.parametrize(
    ("cluster", "error"),
    [
        ({"partitions": 3}, "must own partitions"),
        ({"partitions": 3, "owned": [3], "snapshot_dir": "/s"}, "distinct partitions 0..2"),
        ({"partitions": 3, "owned": [0]}, "snapshot_dir is required"),
        (
            {"partitions": 3, "owned": [0], "snapshot_dir": "/s", "topic_prefix": "p/"},
            "{partition}",
        ),
        ({"partitions": 2, "instances": 3, "instance": 2, "snapshot_dir": "/s"}, "below"),
    ],
)
def test_a_cluster_setting_that_cannot_work_fails_at_start(cluster: dict, error: str) -> None:
    from streamd.config import load_settings
    from streamd.errors import ConfigError

    with pytest.raises(ConfigError, match=error):
        load_settings(None, {"cluster": cluster})


def test_instance_k_of_m_owns_every_mth_partition() -> None:
    from streamd.config import load_settings

    s = load_settings(None, {"cluster": {"partitions": 8, "instances": 3, "instance": 1,
                                         "snapshot_dir": "/s"}})  # fmt: skip
    assert s.cluster.owned_partitions() == [1, 4, 7]
    assert s.cluster.client_id(4) == "streamd-p4" and s.cluster.prefix(4) == "p/4/"
