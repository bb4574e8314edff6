"""Throughput, latency and memory of ``streamd run`` against a bare MQTT subscriber.

For each case (QoS x streams x mode) the benchmark starts its own Mosquitto on a free
loopback port, then, under the same publisher processes and message count:

1. the *ceiling*: a bare paho subscriber that only parses (orjson when installed) and counts;
2. the real ``streamd run`` process: sustained processed messages per second from its own
   ``/metrics``, its CPU and peak RSS (``/proc``), p50/p99 receipt-to-verdict latency from its
   histogram, evictions at the stream cap.

Everything is bounded by ``--count`` messages and ``--seconds`` per phase. Prints a table and
writes JSON. On these machines run-to-run noise is large: compare ratios within one run.

    python bench/throughput.py         # QoS 0/1 x 1k/10k streams x step/window
    python bench/throughput.py --streams 1000000 --count 1000000 --max-streams 10000 --qos 1 \\
        --modes step --seconds 400                      # stream explosion: RSS stays bounded
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
    cpu_seconds,
    fast_loads,
    machine,
    processed,
    quantile,
    rss_mb,
    start_publishers,
)
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import (
    free_port,
    metric_values,
    scrape,
    start_broker,
    start_daemon,
    wait_ready,
)

PROTOCOL = ["3.1.1"]  # streamd's mqtt.protocol in this run (--protocol)

# -- load ------------------------------------------------------------------------------


def bare_subscriber(
    port: int, qos: int, expected: int, seconds: float, ready: Any, result: Any
) -> None:
    """Counts and parses messages; reports (count, first, last) receipt times."""
    loads = fast_loads()
    state = {"n": 0, "first": 0.0, "last": 0.0}

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        loads(msg.payload)
        now = time.perf_counter()
        if state["n"] == 0:
            state["first"] = now
        state["n"] += 1
        state["last"] = now

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: (c.subscribe("sensors/#", qos=qos), ready.set())
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.perf_counter() + seconds
    while state["n"] < expected and time.perf_counter() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    result.put((state["n"], state["first"], state["last"]))


# -- measurements ----------------------------------------------------------------------


@dataclass
class Case:
    qos: int
    streams: int
    mode: str
    messages: int = 0
    ceiling_msg_s: float = 0.0
    daemon_msg_s: float = 0.0
    ratio: float = 0.0
    processed: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    daemon_cpu_pct: float = 0.0
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    evictions: int = 0
    baseline_msg_s: float = 0.0  # the --baseline checkout, same publishers, same run
    baseline_p99_ms: float = 0.0
    baseline_cpu_pct: float = 0.0


def measure_daemon(
    case: Case,
    port: int,
    count: int,
    procs: int,
    seconds: float,
    workdir: Path,
    max_streams: int,
    src: Path | None,
) -> None:
    """The real ``streamd run`` (from ``src`` if given) under the same publishers."""
    http_port = free_port()
    env = {
        "STREAMD_INFERENCE__MODE": case.mode,
        "STREAMD_MQTT__QOS": str(case.qos),
        "STREAMD_MQTT__CLEAN_START": "true",
        "STREAMD_STATE__MAX_STREAMS": str(max_streams or min(case.streams, 100_000)),
        "STREAMD_LOGGING__LEVEL": "WARNING",
        "STREAMD_MQTT__PROTOCOL": PROTOCOL[0],
    }
    if src is not None:  # another checkout's streamd, ahead of the installed one (and run
        env["PYTHONPATH"] = str(src)  # from there: ``python -m`` puts the cwd first)
    tag = "baseline" if src is not None else "now"
    log = workdir / f"streamd-{case.qos}-{case.streams}-{case.mode}-{tag}.log"
    daemon = start_daemon(
        REPO / "models" / "default.onnx", port, http_port, extra_env=env, log_path=log, cwd=src
    )
    try:
        wait_ready(http_port)
        case.rss_start_mb = rss_mb(daemon.pid)
        cpu0, base = cpu_seconds(daemon.pid), processed(metric_values(scrape(http_port)))
        pubs = start_publishers(port, case.qos, case.streams, count, procs, seconds)
        t_first = t_last = None
        done, peak = base, case.rss_start_mb
        deadline = time.monotonic() + seconds + 30
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = time.monotonic()
            m = metric_values(scrape(http_port))
            peak = max(peak, rss_mb(daemon.pid))
            got = processed(m)
            if got > done:
                t_first = t_first or now
                t_last, done = now, got
            if got - base >= count or (
                not any(p.is_alive() for p in pubs) and now - (t_last or now) > 3
            ):
                break
        cpu1 = cpu_seconds(daemon.pid)
        for p in pubs:
            p.join(10)
        case.processed = int(done - base)
        span = max((t_last or 0) - (t_first or 0), 0.25)
        case.daemon_msg_s = case.processed / span
        case.daemon_cpu_pct = 100 * (cpu1 - cpu0) / span
        case.p50_ms = 1000 * quantile(m, "streamd_end_to_end_latency_seconds", 0.5)
        case.p99_ms = 1000 * quantile(m, "streamd_end_to_end_latency_seconds", 0.99)
        case.rss_peak_mb = peak
        case.evictions = int(m.get("streamd_stream_evictions_total", 0))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)


def run_case(
    case: Case,
    count: int,
    procs: int,
    seconds: float,
    workdir: Path,
    max_streams: int = 0,
    baseline: Path | None = None,
) -> Case:
    port = free_port()
    broker, _ = start_broker(port, workdir)
    try:
        # 1. the ceiling: a bare subscriber under the same publishers
        ready, result = mp.Event(), mp.Queue()
        sub = mp.Process(
            target=bare_subscriber, args=(port, case.qos, count, seconds, ready, result)
        )
        sub.start()
        ready.wait(10)
        pubs = start_publishers(port, case.qos, case.streams, count, procs, seconds)
        n, first, last = result.get(timeout=seconds + 30)
        for p in pubs:
            p.join(30)
        sub.join(10)
        case.ceiling_msg_s = n / max(last - first, 1e-9)

        # 2. the daemon (and, with a baseline checkout, the daemon as it was)
        measure_daemon(case, port, count, procs, seconds, workdir, max_streams, None)
        if baseline is not None:
            before = Case(case.qos, case.streams, case.mode)
            measure_daemon(before, port, count, procs, seconds, workdir, max_streams, baseline)
            case.baseline_msg_s = before.daemon_msg_s
            case.baseline_p99_ms = before.p99_ms
            case.baseline_cpu_pct = before.daemon_cpu_pct
    finally:
        broker.terminate()
        broker.wait(10)
    case.messages = count
    case.ratio = case.daemon_msg_s / case.ceiling_msg_s if case.ceiling_msg_s else 0.0
    return case


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="streamd throughput vs a bare MQTT subscriber")
    ap.add_argument("--qos", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--streams", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--modes", nargs="+", default=["step", "window"])
    ap.add_argument("--count", type=int, default=60000, help="messages per phase")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0, help="time bound per phase")
    ap.add_argument(
        "--max-streams", type=int, default=0, help="streamd's stream cap (default: the streams)"
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of an earlier streamd (git worktree add /tmp/before REV): measured "
        "too, under the same publishers, for a before/after in one run",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "throughput.json")
    ap.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1", help="streamd's MQTT")
    ns = ap.parse_args(argv)
    PROTOCOL[0] = ns.protocol
    cases = []
    header = (
        f"{'qos':>3} {'streams':>8} {'mode':>6} {'ceiling/s':>10} {'streamd/s':>10} {'ratio':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'cpu %':>6} {'rss MB':>7} {'peak MB':>8} {'evicted':>8}"
        + (f" {'before/s':>9} {'ratio':>6} {'p99 ms':>7}" if ns.baseline else "")
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for qos in ns.qos:
            for streams in ns.streams:
                for mode in ns.modes:
                    c = run_case(
                        Case(qos, streams, mode),
                        ns.count,
                        ns.publishers,
                        ns.seconds,
                        Path(tmp),
                        ns.max_streams,
                        ns.baseline,
                    )
                    cases.append(c)
                    print(
                        f"{c.qos:>3} {c.streams:>8} {c.mode:>6} {c.ceiling_msg_s:>10,.0f} "
                        f"{c.daemon_msg_s:>10,.0f} {c.ratio:>6.2f} "
                        f"{c.p50_ms:>7.1f} {c.p99_ms:>7.1f} "
                        f"{c.daemon_cpu_pct:>6.0f} {c.rss_start_mb:>7.0f} {c.rss_peak_mb:>8.0f} "
                        f"{c.evictions:>8,}"
                        + (
                            f" {c.baseline_msg_s:>9,.0f} {c.baseline_msg_s / c.ceiling_msg_s:>6.2f}"
                            f" {c.baseline_p99_ms:>7.1f}"
                            if ns.baseline and c.ceiling_msg_s
                            else ""
                        ),
                        flush=True,
                    )
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "args": {k: str(v) for k, v in vars(ns).items()},
                "cases": [asdict(c) for c in cases],
            },
            indent=1,
        )
    )
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
