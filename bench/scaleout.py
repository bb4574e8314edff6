"""Partitioned scale-out on a 3-node NATS cluster: 1 instance against 2, by backlog drain.

The input is split into two partitions by the cluster's subject mapping
(:mod:`streamd.tools.nats`). Each case first registers its partition sessions (instances
start and stop), then a backlog of N messages over S streams is published to all three
nodes at QoS 1 and queued in those sessions, then the case's instances start and drain it:

* 1 instance owning partitions 0 and 1 (two sessions in one receiver);
* 2 instances owning one partition each, on different nodes.

The aggregate rate is taken between 10 % and 90 % of the backlog from the instances' own
``/metrics``; CPU is measured for the NATS servers (all three) and for streamd (every
process) over the same drain. On a 2-core box the instances and three brokers share the
two cores, so expect little gain: the figure says how much.

    python bench/scaleout.py                      # 200 streams, 30,000 messages
    python bench/scaleout.py --messages 60000 --out bench/results/scaleout.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cpu_seconds, machine, publish_share, rate_between

from streamd.tools.harness import (
    DEFAULT_MODEL,
    free_port,
    metric_values,
    scrape,
    start_daemon,
    wait_ready,
)
from streamd.tools.nats import NatsCluster, start_nats_cluster

PARTITIONS = 2


def instance_env(case: str, owned: list[int], shared: Path, who: int) -> dict[str, str]:
    return {
        "STREAMD_MQTT__PROTOCOL": "3.1.1",
        "STREAMD_MQTT__STATUS_TOPIC": f"streamd/{case}-{who}/status",
        "STREAMD_CLUSTER__PARTITIONS": str(PARTITIONS),
        "STREAMD_CLUSTER__OWNED": json.dumps(owned),
        "STREAMD_CLUSTER__SESSION_ID": f"{case}-p{{partition}}",
        "STREAMD_CLUSTER__SNAPSHOT_DIR": str(shared),
    }


def start_instances(
    cluster: NatsCluster, case: str, owners: list[list[int]], work: Path
) -> list[tuple[subprocess.Popen[bytes], int]]:
    out = []
    for who, owned in enumerate(owners):
        http = free_port()
        env = instance_env(case, owned, work, who)
        port = cluster.mqtt_ports[who % len(cluster.mqtt_ports)]
        proc = start_daemon(
            DEFAULT_MODEL, port, http, extra_env=env, log_path=work / f"{case}-{who}.log"
        )
        out.append((proc, http))
    for _, http in out:
        wait_ready(http, 60)
    return out


def stop_instances(instances: list[tuple[subprocess.Popen[bytes], int]]) -> None:
    for proc, _ in instances:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in instances:
        proc.wait(60)


def preload(cluster: NatsCluster, streams: int, messages: int) -> None:
    """The backlog, from one publisher per node, every PUBACK awaited."""
    ports = cluster.mqtt_ports
    procs = [
        mp.Process(
            target=publish_share,
            args=(port, 1, k * (streams // len(ports)), streams // len(ports)),
            kwargs={"count": messages // len(ports), "deadline": time.time() + 600},
        )
        for k, port in enumerate(ports)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(660)


def drain(
    cluster: NatsCluster, case: str, owners: list[list[int]], ns: argparse.Namespace, work: Path
) -> dict[str, Any]:
    case_dir = work / case
    case_dir.mkdir()
    stop_instances(start_instances(cluster, case, owners, case_dir))  # sessions registered
    t0 = time.monotonic()
    preload(cluster, ns.streams, ns.messages)
    published_s = time.monotonic() - t0
    expected = ns.messages - ns.messages % len(cluster.mqtt_ports)
    broker0 = sum(cpu_seconds(pid) for pid in cluster.pids())
    samples: list[tuple[float, float]] = [(time.monotonic(), 0.0)]  # they drain as they connect
    instances = start_instances(cluster, case, owners, case_dir)
    pids = [proc.pid for proc, _ in instances]
    streamd0 = sum(cpu_seconds(pid) for pid in pids)
    deadline = time.monotonic() + ns.seconds
    done = 0.0
    while done < expected and time.monotonic() < deadline:
        done = sum(
            metric_values(scrape(http)).get('streamd_messages_total{result="accepted"}', 0.0)
            for _, http in instances
        )
        samples.append((time.monotonic(), done))
        time.sleep(0.25)
    elapsed = samples[-1][0] - samples[0][0]
    broker_cpu = sum(cpu_seconds(pid) for pid in cluster.pids()) - broker0
    streamd_cpu = sum(cpu_seconds(pid) for pid in pids) - streamd0
    stop_instances(instances)
    rate = rate_between(samples, 0.1 * expected, 0.9 * expected) if done >= expected else 0.0
    return {
        "case": case,
        "instances": len(owners),
        "owned": owners,
        "expected": expected,
        "drained": done,
        "msg_per_s": round(rate),
        "publish_msg_per_s": round(expected / published_s),
        "broker_cpu_s": round(broker_cpu, 1),
        "broker_cores": round(broker_cpu / elapsed, 2),
        "streamd_cpu_s": round(streamd_cpu, 1),
        "streamd_cores": round(streamd_cpu / elapsed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--messages", type=int, default=30_000)
    ap.add_argument("--seconds", type=float, default=300.0, help="longest drain")
    ap.add_argument("--out", type=Path, default=Path("bench/results/scaleout.json"))
    ns = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cluster = start_nats_cluster(3, work, PARTITIONS)
        try:
            results.append(drain(cluster, "one", [[0, 1]], ns, work))
            results.append(drain(cluster, "two", [[0], [1]], ns, work))
        finally:
            cluster.stop()
    print(f"{'instances':>9} {'msg/s':>8} {'publish msg/s':>14} {'broker cores':>13} "
          f"{'streamd cores':>14}")  # fmt: skip
    for r in results:
        print(
            f"{r['instances']:>9} {r['msg_per_s']:>8} {r['publish_msg_per_s']:>14} "
            f"{r['broker_cores']:>13} {r['streamd_cores']:>14}"
        )
    if results[0]["msg_per_s"]:
        print(f"2 instances / 1: {results[1]['msg_per_s'] / results[0]['msg_per_s']:.2f}")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    args = vars(ns) | {"out": str(ns.out)}
    ns.out.write_text(
        json.dumps({"machine": machine(), "args": args, "results": results}, indent=1)
    )
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
