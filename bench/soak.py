"""Soak: streamd under a steady load for a long time; RSS, latency and loss over time.

Starts its own Mosquitto and the real ``streamd run``, then publishes ``--rate`` msg/s over
``--streams`` streams for ``--seconds`` (give it half the maximum rate that
bench/throughput.py measured). Every ``--every`` seconds it prints the interval's processed
rate, p50/p99 receipt-to-verdict latency (from the daemon's histogram, this interval only)
and RSS. At the end: messages published vs processed (at QoS 1 nothing may be missing), RSS
growth from the first interval after every stream exists, and the whole run's latency.
With ``--outside``, latency is also measured from outside, exactly: each sample carries its
publish time as its ts, the daemon publishes every score (``alerts.publish_scores``), and a
subscriber takes the percentiles of (score received − published) over every scored sample
(warm-up samples give no score; use few streams so they warm up early). Writes JSON.

    python bench/soak.py                                  # 60 s
    python bench/soak.py --seconds 600 --rate 2500        # the 10-minute soak
    python bench/soak.py --receiver thread                # mqtt.receiver = "thread"
    python bench/soak.py --mode window --streams 200 --outside   # exact outside percentiles
    python bench/soak.py --set STREAMD_INFERENCE__BATCH_MAX_WAIT_MS=2   # other settings
    python bench/soak.py --profile /tmp/soak.txt && python bench/folded.py /tmp/soak.txt
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    add_settings,
    attach_profiler,
    collect_latencies,
    cpu_seconds,
    machine,
    processed,
    quantile,
    rss_mb,
    start_publishers,
)

from streamd.tools.harness import (
    free_port,
    metric_values,
    scrape,
    start_broker,
    start_daemon,
    wait_ready,
)

REPO = Path(__file__).resolve().parent.parent
LATENCY = "streamd_end_to_end_latency_seconds"


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2500.0, help="total msg/s")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--mode", default="step")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--receiver", choices=["process", "thread"], default="process")
    ap.add_argument("--every", type=float, default=5.0, help="seconds per reported interval")
    ap.add_argument("--outside", action="store_true", help="exact latency seen by a subscriber")
    add_settings(ap, "more settings for streamd, as environment variables")
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="record the daemon and its receiver with py-spy (pip install -e '.[bench]') into "
        "FILE, raw folded stacks per thread; summarise with bench/folded.py",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = ap.parse_args()
    count = int(args.rate * args.seconds)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        port, http_port = free_port(), free_port()
        broker, _ = start_broker(port, Path(tmp))
        env = {
            "STREAMD_INFERENCE__MODE": args.mode,
            "STREAMD_MQTT__QOS": str(args.qos),
            "STREAMD_STATE__MAX_STREAMS": str(args.streams),
            "STREAMD_LOGGING__LEVEL": "WARNING",
            "STREAMD_MQTT__RECEIVER": args.receiver,
            "STREAMD_ALERTS__PUBLISH_SCORES": "true" if args.outside else "false",
            **dict(args.set),
        }
        daemon = start_daemon(
            REPO / "models" / "default.onnx",
            port,
            http_port,
            extra_env=env,
            log_path=Path(tmp) / "d.log",
        )
        profiler = None
        try:
            wait_ready(http_port)
            if args.profile:
                profiler = attach_profiler(daemon.pid, args.profile)
            ready, stop, lat_q = mp.Event(), mp.Event(), mp.Queue()
            listener = mp.Process(
                target=collect_latencies,
                args=(port, "streamd/scores/#", ready, stop, lat_q),
                daemon=True,
            )
            if args.outside:
                listener.start()
                ready.wait(30)
            rss0 = rss_mb(daemon.pid)
            first = prev = metric_values(scrape(http_port))
            sent_q: Any = mp.Queue()
            t0, cpu0 = time.monotonic(), cpu_seconds(daemon.pid)
            pubs = start_publishers(
                port,
                args.qos,
                args.streams,
                count,
                args.publishers,
                args.seconds + 30,
                args.rate,
                sent_q,
                wall_ts=args.outside,
            )
            print(f"{'t s':>6} {'msg/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'rss MB':>7}")
            while any(p.is_alive() for p in pubs) or (rows and rows[-1]["msg_s"] > 0):
                time.sleep(args.every)
                m = metric_values(scrape(http_port))
                d = delta(m, prev)
                prev = m
                row = {
                    "t_s": round(time.monotonic() - t0, 1),
                    "msg_s": processed(d) / args.every,
                    "p50_ms": 1000 * quantile(d, LATENCY, 0.5),
                    "p99_ms": 1000 * quantile(d, LATENCY, 0.99),
                    "rss_mb": rss_mb(daemon.pid),
                }
                rows.append(row)
                print(
                    f"{row['t_s']:>6.0f} {row['msg_s']:>8,.0f} {row['p50_ms']:>7.1f} "
                    f"{row['p99_ms']:>7.1f} {row['rss_mb']:>7.1f}",
                    flush=True,
                )
                if time.monotonic() - t0 > args.seconds + 120:
                    break
            cpu_s = cpu_seconds(daemon.pid) - cpu0  # the daemon and its receiver
            published = sum(sent_q.get(timeout=30) for _ in pubs)
            total = delta(metric_values(scrape(http_port)), first)
            outside = np.array([])
            if args.outside:
                time.sleep(2.0)  # the last scores on their way
                stop.set()
                outside = np.array(lat_q.get(timeout=60))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            if profiler is not None:
                profiler.wait(60)  # it writes its file once the daemon has exited
            broker.terminate()
    got = processed(total)
    # RSS growth from the first interval after every stream has been seen
    settled = [r for r in rows if r["t_s"] >= args.streams / args.rate + args.every]
    base = settled[0]["rss_mb"] if settled else rss0
    summary = {
        "published": published,
        "processed": int(got),
        "missing": int(published - got),
        "rejected": int(got - total.get('streamd_messages_total{result="accepted"}', 0.0)),
        "p50_ms": 1000 * quantile(total, LATENCY, 0.5),
        "p99_ms": 1000 * quantile(total, LATENCY, 0.99),
        "cpu_us_per_msg": 1e6 * cpu_s / got if got else float("nan"),
        "outside_scores": len(outside),
        **{
            f"outside_p{q:g}_ms": float(1000 * np.quantile(outside, q / 100))
            if len(outside)
            else float("nan")
            for q in (50, 99, 99.9)
        },
        "outside_max_ms": float(1000 * outside.max()) if len(outside) else float("nan"),
        "rss_start_mb": rss0,
        "rss_settled_mb": base,
        "rss_end_mb": rows[-1]["rss_mb"] if rows else rss0,
        "rss_growth_pct": 100 * ((rows[-1]["rss_mb"] if rows else rss0) - base) / base,
    }
    print(
        " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items())
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "summary": summary,
                "intervals": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
