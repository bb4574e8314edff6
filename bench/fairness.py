"""Fairness: does one flooding stream starve the others?

Starts its own Mosquitto and the real ``streamd run`` (publishing every score), then runs two
phases of ``--seconds`` each:

1. *quiet*: ``--victims`` streams at ``--victim-rate`` msg/s each (QoS 0, event time = wall
   time at publish);
2. *flood*: the same, plus one stream published by ``--flooders`` processes as fast as they can.

For the victim streams it reports the share of their post-warm-up samples that were scored
and the p50/p99 publish-to-score latency (from the score messages); for the flood, its
published and processed rate; and the daemon's rejections. Prints a table, writes JSON.

    python bench/fairness.py --seconds 15                      # flood of 3,000 msg/s
    python bench/fairness.py --seconds 15 --max-rounds 100000  # as before the round cap
    python bench/fairness.py --seconds 15 --flood-rate 0       # beyond the receive ceiling
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
import paho.mqtt.client as mqtt
from common import quantile
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import (
    free_port,
    metric_values,
    scrape,
    start_broker,
    start_daemon,
    wait_ready,
)

REPO = Path(__file__).resolve().parent.parent
WARMUP = 40  # samples per stream before it is scored (the bench sets the daemon's warm-ups)


def victims(port: int, streams: int, rate: float, seconds: float, sent: Any) -> None:
    """``streams`` streams at ``rate`` msg/s each, paced; event time is the publish time."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    rng = np.random.default_rng(0)
    t0 = time.time()
    n = 0
    while time.time() - t0 < seconds:
        tick = n // streams
        ahead = t0 + tick / rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
        now = time.time()
        body = b'{"ts":%.6f,"value":%.4f}' % (now, 20.0 + rng.normal())
        client.publish(f"sensors/v{n % streams}", body, qos=0)
        n += 1
    client.disconnect()
    client.loop_stop()
    sent.put(n)


def flooder(port: int, idx: int, rate: float, seconds: float, sent: Any) -> None:
    """One stream at ``rate`` msg/s (0: as fast as paho can publish)."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_queued_messages_set(10_000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.time()
    n = 0
    while time.time() - t0 < seconds:
        if rate and n % 50 == 0 and (ahead := t0 + n / rate - time.time()) > 0:
            time.sleep(ahead)
        body = b'{"ts":%.6f,"value":%.4f}' % (time.time() + idx * 1e-7, 20.0 + (n % 13) * 0.1)
        if client.publish("sensors/flood", body, qos=0).rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.0005)
            continue
        n += 1
    client.disconnect()
    client.loop_stop()
    sent.put(n)


class ScoreLog:
    """Per-stream score messages: (stream, event ts, receipt time)."""

    def __init__(self, port: int) -> None:
        self.rows: list[tuple[str, float, float]] = []
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("streamd/scores/#", qos=0)
        self.client.loop_start()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        self.rows.append((doc["stream"], doc["ts"], time.time()))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def phase(port: int, http_port: int, args: argparse.Namespace, flood: bool) -> dict[str, Any]:
    log = ScoreLog(port)
    before = metric_values(scrape(http_port))
    victim_q: Any = mp.Queue()
    flood_q: Any = mp.Queue()
    procs = [
        mp.Process(
            target=victims, args=(port, args.victims, args.victim_rate, args.seconds, victim_q)
        )
    ]
    if flood:
        procs += [
            mp.Process(
                target=flooder,
                args=(port, i, args.flood_rate / args.flooders, args.seconds, flood_q),
            )
            for i in range(args.flooders)
        ]
    t0 = time.time()
    for p in procs:
        p.start()
    victim_sent = victim_q.get(timeout=args.seconds + 60)
    flood_sent = sum(flood_q.get(timeout=args.seconds + 60) for _ in procs[1:])
    for p in procs:
        p.join(30)
    time.sleep(4.0)  # let the daemon finish what it has queued, and its scores arrive
    wall = time.time() - t0
    log.stop()
    after = metric_values(scrape(http_port))
    victim_rows = [r for r in log.rows if r[0].startswith("sensors/v")]
    latency = np.array([r[2] - r[1] for r in victim_rows]) * 1000
    # the quiet phase includes each victim's warm-up; the flood phase comes after it
    expected = max(1, victim_sent - (0 if flood else args.victims * WARMUP))
    flood_scored = sum(1 for r in log.rows if r[0] == "sensors/flood")
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    processed = sum(v for k, v in delta.items() if k.startswith("streamd_messages_total{"))
    return {
        "phase": "flood" if flood else "quiet",
        "victim_sent": victim_sent,
        "victim_scored": len(victim_rows),
        "victim_scored_share": len(victim_rows) / expected,
        "victim_p50_ms": float(np.percentile(latency, 50)) if len(latency) else float("nan"),
        "victim_p99_ms": float(np.percentile(latency, 99)) if len(latency) else float("nan"),
        "flood_sent_msg_s": flood_sent / args.seconds,
        "flood_scored_msg_s": flood_scored / args.seconds,
        "daemon_p50_ms": 1000 * quantile(delta, "streamd_end_to_end_latency_seconds", 0.5),
        "daemon_p99_ms": 1000 * quantile(delta, "streamd_end_to_end_latency_seconds", 0.99),
        "rate_limited": delta.get('streamd_messages_total{result="rate_limited"}', 0.0),
        "processed_msg_s": processed / wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", type=int, default=100)
    ap.add_argument("--victim-rate", type=float, default=10.0, help="msg/s per victim stream")
    ap.add_argument("--flooders", type=int, default=1, help="processes flooding one stream")
    ap.add_argument(
        "--flood-rate", type=float, default=3000.0, help="msg/s on the flooding stream (0: max)"
    )
    ap.add_argument(
        "--max-rounds", type=int, default=0, help="the daemon's max_rounds_per_batch (0: default)"
    )
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "default.onnx")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fairness.json")
    args = ap.parse_args()
    if args.seconds * args.victim_rate <= 2 * WARMUP:
        ap.error("--seconds x --victim-rate must exceed twice the warm-up of 40 samples")
    with tempfile.TemporaryDirectory() as tmp:
        port, http_port = free_port(), free_port()
        broker, _ = start_broker(port, Path(tmp))
        env = {
            "STREAMD_ALERTS__PUBLISH_SCORES": "true",
            "STREAMD_SCORING__SCALING_WARMUP": str(WARMUP),
            "STREAMD_SCORING__HISTORY_WARMUP": "1",
        }
        if args.max_rounds:
            env["STREAMD_INFERENCE__MAX_ROUNDS_PER_BATCH"] = str(args.max_rounds)
        proc = start_daemon(
            args.model, port, http_port, extra_env=env, log_path=Path(tmp) / "d.log"
        )
        try:
            wait_ready(http_port)
            rows = [phase(port, http_port, args, flood=False)]
            rows.append(phase(port, http_port, args, flood=True))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            broker.terminate()
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
