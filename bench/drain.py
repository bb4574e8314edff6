"""Throughput that does not depend on how fast the publishers are: drain a backlog.

``bench/throughput.py`` measures the daemon against a ceiling that two Python publishers
set (about 5,000 msg/s at QoS 1 on a 2-core box), so its ratio is a floor. Here the
publishers work first and nobody waits for them:

1. a subscriber's persistent session is registered with Mosquitto (clean session off,
   ``sensors/#`` at ``--qos``), and the subscriber goes away;
2. N messages over S streams are published; the broker queues them for the session
   (``max_queued_messages`` large, ``max_inflight_messages 1000``, as deploy.md advises;
   at QoS 0 Mosquitto's ``queue_qos0_messages``, which is off by default, so that QoS 0
   messages are queued for an absent session at all);
3. the subscriber comes back and drains the queue as fast as it can.

Done on one broker for three subscribers: the bare paho subscriber that only parses and
counts, ``mosquitto_sub`` (libmosquitto, C: what broker and client can deliver at all) and
the real ``streamd run`` (its own ``/metrics``). The rate is taken between 10 % and 90 % of
the backlog, so connecting, model loading and the tail do not count. Prints a table and
writes JSON. The defaults are the daemon's: MQTT 5 (the mqtt5 client), window mode.

    python bench/drain.py                        # 10,000 streams, 200,000 messages
    python bench/drain.py --modes step window --qos 0
    python bench/drain.py --protocol 3.1.1       # the paho receiver
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from common import (
    REPO,
    add_settings,
    answers,
    attach_profiler,
    cpu_seconds,
    fast_loads,
    machine,
    processed,
    rate_between,
    recv_mosquitto_sub,
    register,
    rss_mb,
    start_publishers,
)
from paho.mqtt.enums import CallbackAPIVersion

from streamd.config import Settings
from streamd.tools.harness import (
    free_port,
    metric_values,
    scrape,
    start_broker,
    start_daemon,
    wait_ready,
)

BARE_ID = "bench-drain-bare"
C_ID = "bench-drain-c"
DAEMON_ID = "bench-drain-streamd"


@dataclass
class Drain:
    streams: int
    mode: str
    protocol: str
    env: dict[str, str]
    qos: int = 1
    messages: int = 0
    ceiling_msg_s: float = 0.0  # the bare paho subscriber
    c_msg_s: float = 0.0  # mosquitto_sub, the C client
    daemon_msg_s: float = 0.0
    ratio: float = 0.0  # streamd / bare paho
    ratio_c: float = 0.0  # streamd / mosquitto_sub
    daemon_processed: int = 0
    daemon_cpu_pct: float = 0.0  # both processes
    receiver_cpu_pct: float = 0.0  # of which the MQTT receiver process
    daemon_rss_mb: float = 0.0
    baseline_msg_s: float = 0.0  # the --baseline checkout, same backlog, same broker
    baseline_cpu_pct: float = 0.0


def paho_protocol(protocol: str) -> mqtt.MQTTProtocolVersion:
    return mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311


def connect_kwargs(protocol: str) -> dict[str, Any]:
    """A session that outlives the connection, in either protocol."""
    if protocol != "5":
        return {}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    return {"clean_start": False, "properties": props}


def bare_client(protocol: str) -> mqtt.Client:
    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=BARE_ID,
        protocol=paho_protocol(protocol),
        clean_session=None if protocol == "5" else False,
    )


def register_bare(port: int, protocol: str, qos: int) -> None:
    """Leave a persistent subscription for the bare subscriber on the broker."""
    client = bare_client(protocol)
    subscribed = mp.Event()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("sensors/#", qos=qos)
    client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
    client.connect("127.0.0.1", port, **connect_kwargs(protocol))
    client.loop_start()
    assert subscribed.wait(10), "the broker did not confirm the subscription"
    client.disconnect()
    client.loop_stop()


def drain_bare(port: int, protocol: str, expected: int, seconds: float, result: Any) -> None:
    """Resume the session, parse and count; report the times at 10 % and 90 % of it."""
    loads = fast_loads()
    marks = {round(expected * 0.1): 0.0, round(expected * 0.9): 0.0}
    state = {"n": 0}

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        loads(msg.payload)
        state["n"] += 1
        if state["n"] in marks:
            marks[state["n"]] = time.perf_counter()

    client = bare_client(protocol)
    client.on_message = on_message
    client.connect("127.0.0.1", port, **connect_kwargs(protocol))
    client.loop_start()
    deadline = time.perf_counter() + seconds
    while state["n"] < expected and time.perf_counter() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    (n10, t10), (n90, t90) = sorted(marks.items())
    result.put((state["n"], (n90 - n10) / (t90 - t10) if t90 > t10 > 0 else 0.0))


def preload(port: int, qos: int, streams: int, count: int, publishers: int) -> None:
    pubs = start_publishers(port, qos, streams, count, publishers, seconds=600)
    for p in pubs:
        p.join(660)


def daemon_env(case: Drain, streams: int) -> dict[str, str]:
    return {
        "STREAMD_INFERENCE__MODE": case.mode,
        "STREAMD_MQTT__QOS": str(case.qos),
        "STREAMD_MQTT__CLIENT_ID": DAEMON_ID,
        "STREAMD_MQTT__CLEAN_START": "false",
        "STREAMD_STATE__MAX_STREAMS": str(streams),
        "STREAMD_LOGGING__LEVEL": "WARNING",
    } | case.env


def drain_daemon(
    case: Drain,
    port: int,
    count: int,
    seconds: float,
    workdir: Path,
    src: Path | None,
    profile: Path | None = None,
) -> None:
    """The real ``streamd run`` (from ``src`` if given): register its session, preload,
    restart it and time the drain."""
    model = REPO / "models" / "default.onnx"
    env = daemon_env(case, case.streams)
    if src is not None:  # another checkout's streamd, ahead of the installed one (and run
        env["PYTHONPATH"] = str(src)  # from there: ``python -m`` puts the cwd first)
    log = workdir / f"streamd-{case.streams}-{case.mode}-{'baseline' if src else 'now'}.log"
    http_port = free_port()
    first = start_daemon(
        model, port, http_port, protocol=case.protocol, extra_env=env, log_path=log, cwd=src
    )
    wait_ready(http_port)
    first.send_signal(signal.SIGTERM)  # a clean stop keeps the session and its subscriptions
    first.wait(30)
    preload(port, case.qos, case.streams, count, 2)
    daemon = start_daemon(
        model, port, http_port, protocol=case.protocol, extra_env=env, log_path=log, cwd=src
    )
    profiler = None
    try:
        # from the moment /metrics answers, every 20 ms: a fast drain passes 10 % of the
        # backlog within a tenth of a second of connecting; the start-up is not the drain
        deadline = time.monotonic() + seconds
        while not answers(http_port) and time.monotonic() < deadline:
            time.sleep(0.02)
        profiler = attach_profiler(daemon.pid, profile) if profile is not None else None
        cpu0, t_cpu0 = cpu_seconds(daemon.pid), time.monotonic()
        own0 = cpu_seconds(daemon.pid, tree=False)
        samples: list[tuple[float, float]] = []
        while time.monotonic() < deadline:
            got = processed(metric_values(scrape(http_port)))
            samples.append((time.monotonic(), got))
            case.daemon_rss_mb = max(case.daemon_rss_mb, rss_mb(daemon.pid))
            if got >= count:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - t_cpu0
        all_cpu = cpu_seconds(daemon.pid) - cpu0
        case.daemon_cpu_pct = 100 * all_cpu / elapsed
        own = cpu_seconds(daemon.pid, tree=False) - own0
        case.receiver_cpu_pct = 100 * (all_cpu - own) / elapsed
        case.daemon_processed = int(samples[-1][1])
        case.daemon_msg_s = rate_between(samples, 0.1 * count, 0.9 * count)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        if profiler is not None:
            profiler.wait(30)


def run_case(
    case: Drain,
    count: int,
    seconds: float,
    workdir: Path,
    baseline: Path | None,
    profile: Path | None = None,
) -> Drain:
    port = free_port()
    extra = "queue_qos0_messages true\n" if case.qos == 0 else ""
    broker, _ = start_broker(port, workdir, "mosquitto", extra_conf=extra)
    try:
        register_bare(port, case.protocol, case.qos)
        register(port, C_ID, 4, case.qos)
        preload(port, case.qos, case.streams, count, 2)
        result: Any = mp.Queue()
        sub = mp.Process(target=drain_bare, args=(port, case.protocol, count, seconds, result))
        sub.start()
        n, case.ceiling_msg_s = result.get(timeout=seconds + 30)
        sub.join(10)
        assert n == count, f"the bare subscriber drained {n} of {count}"
        marks = recv_mosquitto_sub(port, C_ID, case.qos, count, seconds)
        assert marks.n == count, f"mosquitto_sub drained {marks.n} of {count}"
        case.c_msg_s = marks.rate()
        drain_daemon(case, port, count, seconds, workdir, None, profile)
        if baseline is not None:
            before = Drain(case.streams, case.mode, case.protocol, case.env, case.qos)
            drain_daemon(before, port, count, seconds, workdir, baseline)
            case.baseline_msg_s, case.baseline_cpu_pct = before.daemon_msg_s, before.daemon_cpu_pct
    finally:
        broker.terminate()
        broker.wait(10)
    case.messages = count
    case.ratio = case.daemon_msg_s / case.ceiling_msg_s if case.ceiling_msg_s else 0.0
    case.ratio_c = case.daemon_msg_s / case.c_msg_s if case.c_msg_s else 0.0
    return case


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="backlog drain: streamd vs a bare subscriber")
    ap.add_argument("--streams", type=int, nargs="+", default=[10000])
    ap.add_argument("--modes", nargs="+", default=[Settings().inference.mode])  # the daemon's
    ap.add_argument("--count", type=int, default=200_000, help="messages in the backlog")
    ap.add_argument("--seconds", type=float, default=120.0, help="time bound per drain")
    ap.add_argument("--protocol", choices=["3.1.1", "5"], default="5")
    ap.add_argument("--qos", type=int, choices=[0, 1], default=1, help="publish and subscribe QoS")
    add_settings(ap, "settings for streamd, as environment variables")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of an earlier streamd (git worktree add /tmp/before REV): drained "
        "too, from the same broker, for a before/after in one run",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="record the current code's drain with py-spy (pip install -e '.[bench]'; daemon "
        "and receiver, raw folded stacks per thread) into FILE; summarise with bench/folded.py",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "drain.json")
    ns = ap.parse_args(argv)
    env = dict(ns.set)
    print(
        f"{'qos':>3} {'streams':>8} {'mode':>6} {'mqtt':>5} {'paho/s':>10} {'C/s':>10} "
        f"{'streamd/s':>10} {'/paho':>6} {'/C':>6} {'cpu %':>6} {'recv %':>6} {'rss MB':>7}"
        + (f" {'before/s':>9} {'ratio':>6} {'cpu %':>6}" if ns.baseline else "")
    )
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for streams in ns.streams:
            for mode in ns.modes:
                c = run_case(
                    Drain(streams, mode, ns.protocol, env, ns.qos),
                    ns.count,
                    ns.seconds,
                    Path(tmp),
                    ns.baseline,
                    ns.profile,
                )
                cases.append(c)
                print(
                    f"{c.qos:>3} {c.streams:>8} {c.mode:>6} {c.protocol:>5} "
                    f"{c.ceiling_msg_s:>10,.0f} {c.c_msg_s:>10,.0f} {c.daemon_msg_s:>10,.0f} "
                    f"{c.ratio:>6.2f} {c.ratio_c:>6.2f} "
                    f"{c.daemon_cpu_pct:>6.0f} {c.receiver_cpu_pct:>6.0f} "
                    f"{c.daemon_rss_mb:>7.0f}"
                    + (
                        f" {c.baseline_msg_s:>9,.0f} {c.baseline_msg_s / c.ceiling_msg_s:>6.2f}"
                        f" {c.baseline_cpu_pct:>6.0f}"
                        if ns.baseline
                        else ""
                    ),
                    flush=True,
                )
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(
        json.dumps(
            {"machine": machine(), "count": ns.count, "cases": [asdict(c) for c in cases]},
            indent=2,
        )
    )
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
