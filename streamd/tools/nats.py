"""A NATS server cluster on loopback, speaking MQTT, for the scale-out tests and benchmark.

NATS routes each stream to one partition with a subject mapping (``partition(n, i)``: a
hash of the i-th wildcard token, the same on every node), and its MQTT listener turns
topics into subjects and back (``a/b`` is ``a.b``). With the mapping
``sensors.* -> p.{{partition(n,1)}}.sensors.{{wildcard(1)}}``, a sample published to
``sensors/pump1`` on any node is delivered to subscribers of ``p/<k>/sensors/#`` on every
node, for one ``k``. MQTT in NATS needs JetStream (sessions and QoS 1 messages live in
streams), so each node has a ``server_name`` and a store directory; the cluster is ready
once every node reports JetStream healthy. The caller stops what this starts
(:meth:`NatsCluster.stop`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streamd.tools.harness import free_port, wait_port


def nats_server_path() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )


def partition_mapping(partitions: int, root: str = "sensors") -> str:
    """The account mapping that splits ``<root>/<id>`` into ``partitions`` partitions."""
    return (
        f'mappings = {{ "{root}.*": '
        f'"p.{{{{partition({partitions},1)}}}}.{root}.{{{{wildcard(1)}}}}" }}'
    )


@dataclass
class Node:
    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    monitor_port: int
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class NatsCluster:
    nodes: list[Node]
    workdir: Path

    @property
    def mqtt_ports(self) -> list[int]:
        return [n.mqtt_port for n in self.nodes]

    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes if n.proc is not None]

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(15)
                except subprocess.TimeoutExpired:
                    node.proc.kill()


def start_nats_cluster(
    size: int, workdir: Path, partitions: int, timeout_s: float = 60.0
) -> NatsCluster:
    """``size`` nodes routed to each other, each with JetStream and an MQTT listener."""
    exe = nats_server_path()
    if exe is None:
        raise FileNotFoundError("nats-server is not installed")
    nodes = [Node(f"n{i}", free_port(), free_port(), free_port(), free_port()) for i in range(size)]
    cluster = NatsCluster(nodes, workdir)
    for node in nodes:
        routes = ", ".join(
            f'"nats-route://127.0.0.1:{o.cluster_port}"' for o in nodes if o is not node
        )
        conf = workdir / f"{node.name}.conf"
        conf.write_text(
            f"server_name: {node.name}\n"
            f"listen: 127.0.0.1:{node.client_port}\n"
            f"http: 127.0.0.1:{node.monitor_port}\n"
            f'jetstream {{ store_dir: "{workdir / node.name}" }}\n'
            f"cluster {{ name: streamd, listen: 127.0.0.1:{node.cluster_port}, "
            f"routes: [{routes}] }}\n"
            f"mqtt {{ listen: 127.0.0.1:{node.mqtt_port} }}\n"
            f"{partition_mapping(partitions)}\n"
        )
        with open(workdir / f"{node.name}.log", "wb") as log:
            node.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            wait_port(node.mqtt_port, timeout_s)
            url = f"http://127.0.0.1:{node.monitor_port}/healthz"
            wait_healthy(url, node.name, deadline - time.monotonic())
    except BaseException:
        cluster.stop()
        raise
    return cluster


def wait_healthy(url: str, name: str, timeout_s: float) -> None:
    """JetStream up and current on the node whose monitor ``url`` this is."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if json.loads(r.read()).get("status") == "ok":
                    return
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.2)
    raise TimeoutError(f"NATS node {name} not healthy: {last}")
