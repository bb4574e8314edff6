"""Outages at full size, with the daemon's defaults: is anything the broker handed over lost?

Four cases over a real Mosquitto (sessions on disk, ``max_queued_messages`` large and
``max_inflight_messages`` at its ceiling, 65535), each counted from streamd's own
``/metrics`` (the tests run smaller versions of the first three, tests/e2e/test_hostile.py):

* backlog: streamd stops (session kept), the broker queues S streams x N samples, streamd
  starts again: 6 x 1,500 (a 25-minute outage of 1 Hz sensors) and 100 x 200;
* pause: SIGSTOP for 20 s while 10 streams publish 500 msg/s at QoS 1, then SIGCONT;
* broker kills: the broker SIGKILLed and restarted 5 times under 600 msg/s of QoS 1; once
  with Mosquitto, once with a NATS server (JetStream on disk; MQTT 3.1.1, so streamd runs
  its paho receiver there).

"unscored" is published minus accepted; a sample scored twice would show as accepted
beyond published, and one scored out of its order as ``out_of_order``. In the kill cases a
second subscriber (the witness: its own persistent session, QoS 1, the same topics) records
every sample the broker delivers; "never delivered" counts the published samples it never
got, which the broker acknowledged to the publisher and then lost in a crash, and
"delivered late" the samples it got for the first time after a newer sample of the same
stream (streamd, with no reorder window, refuses such a sample as ``out_of_order``). The
witness's session is not streamd's: the broker may lose or reorder a message for one
session and not the other, so these tell what the broker does, not which sample streamd
missed.

    python bench/outages.py                      # all cases, about 2 minutes
    python bench/outages.py --only pause --out bench/results/outages-pause.json
    python bench/outages.py --only kills kills-nats --reorder-window-ms 500
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from common import machine
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import (
    DEFAULT_MODEL,
    free_port,
    metric_values,
    scrape,
    start_daemon,
    wait_ready,
)
from streamd.tools.outages import STEP_S, T0, NatsBroker, PersistentBroker, Publisher

Broker = PersistentBroker | NatsBroker


def result(m: dict[str, float], name: str) -> float:
    return m.get(f'streamd_messages_total{{result="{name}"}}', 0.0)


# ``--reorder-window-ms``: the daemon's ``state.reorder_window_ms`` (0, its default, unless
# given), to tell samples a broker lost from resends a publisher sent behind newer ones.
REORDER_MS = [0.0]


def daemon(broker: Broker, work: Path, name: str) -> tuple[Any, int]:
    http = free_port()
    env = {"STREAMD_MQTT__CLIENT_ID": "streamd-outages", "STREAMD_STATE__MAX_GAP_S": "1e9",
           "STREAMD_STATE__REORDER_WINDOW_MS": str(REORDER_MS[0])}  # fmt: skip
    if isinstance(broker, NatsBroker):
        env["STREAMD_MQTT__PROTOCOL"] = "3.1.1"
    proc = start_daemon(
        DEFAULT_MODEL, broker.port, http, extra_env=env, log_path=work / f"{name}.log"
    )
    wait_ready(http, 60)
    return proc, http


def settle(
    http: int, published: int, timeout_s: float = 120.0, quiet_s: float = 40.0
) -> dict[str, float]:
    """Metrics once every published sample is scored, or once nothing has been counted for
    ``quiet_s`` with the queue empty (redeliveries count as ``out_of_order`` or ``duplicate``,
    so a count of all results reaches ``published`` before the last samples are scored;
    ``quiet_s`` outlasts NATS's 30 s ack_wait, after which it redelivers)."""
    deadline = time.monotonic() + timeout_s
    last, since = -1.0, time.monotonic()
    while True:
        m = metric_values(scrape(http))
        counted = sum(v for k, v in m.items() if k.startswith("streamd_messages_total{"))
        if counted != last:
            last, since = counted, time.monotonic()
        idle = m["streamd_queue_depth"] == 0
        done = idle and (result(m, "accepted") >= published or time.monotonic() - since > quiet_s)
        if done or time.monotonic() > deadline:
            return m
        time.sleep(0.25)


def row(case: str, published: int, m: dict[str, float], seconds: float) -> dict[str, Any]:
    accepted = result(m, "accepted")
    return {
        "case": case,
        "published": published,
        "accepted": int(accepted),
        "unscored": int(published - accepted),
        "rate_limited": int(result(m, "rate_limited")),
        "out_of_order": int(result(m, "out_of_order")),
        "duplicate": int(result(m, "duplicate")),
        "seconds": round(seconds, 1),
    }


def stop(proc: Any) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def backlog(work: Path, streams: int, per_stream: int) -> dict[str, Any]:
    broker = PersistentBroker(work)
    broker.start()
    try:
        proc, _ = daemon(broker, work, "register")
        stop(proc)
        pub = Publisher(broker.port, count=per_stream, rate=20_000, streams=streams)
        pub.start()
        published = pub.finish(300)
        t0 = time.monotonic()
        proc, http = daemon(broker, work, "backlog")
        m = settle(http, published)
        stop(proc)
        return row(f"backlog {streams} x {per_stream}", published, m, time.monotonic() - t0)
    finally:
        broker.stop()


def pause(work: Path, seconds: float = 20.0, rate: float = 500.0) -> dict[str, Any]:
    broker = PersistentBroker(work)
    broker.start()
    try:
        proc, http = daemon(broker, work, "pause")
        streams = 10
        pub = Publisher(broker.port, count=int(rate * (seconds + 10) / streams), rate=rate,
                        streams=streams)  # fmt: skip
        pub.start()
        time.sleep(3.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        proc.send_signal(signal.SIGCONT)
        published = pub.finish(120)
        m = settle(http, published)
        time.sleep(2.0)  # the witness gets its last redeliveries
        stop(proc)
        return row(f"SIGSTOP {seconds:.0f} s at {rate:.0f} msg/s", published, m,
                   time.monotonic() - t0)  # fmt: skip
    finally:
        broker.stop()


class Witness:
    """A subscriber of its own with a persistent QoS 1 session: the (topic, ts) of every
    sample the broker delivers, across its restarts (paho reconnects by itself)."""

    def __init__(self, port: int) -> None:
        self.seen: set[tuple[str, float]] = set()
        self.newest: dict[str, float] = {}  # per stream: the newest ts delivered so far
        self.late = 0  # first deliveries of a sample after a newer one of its stream
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="outages-witness",
            clean_session=False,
            protocol=mqtt.MQTTv311,  # what both brokers speak
        )
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # paho takes floats
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("sensors/#", qos=1)
        self.client.on_message = lambda c, u, msg: self._got(msg.topic, json.loads(msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _got(self, topic: str, body: dict[str, Any]) -> None:
        key = (topic, body["ts"])
        if key not in self.seen:
            self.seen.add(key)
            self.late += int(body["ts"] < self.newest.get(topic, float("-inf")))
        self.newest[topic] = max(body["ts"], self.newest.get(topic, float("-inf")))

    def never_delivered(self, pub: Publisher) -> int:
        """How many of ``pub``'s samples the witness never got."""
        self.client.disconnect()
        self.client.loop_stop()
        sent = {(f"sensors/s{k}", T0 + t * STEP_S) for t in range(pub.count)
                for k in range(pub.streams)}  # fmt: skip
        return len(sent - self.seen)


def broker_kills(
    work: Path, make: type[Broker], kills: int = 5, rate: float = 600.0
) -> dict[str, Any]:
    broker = make(work)
    broker.start()
    try:
        proc, http = daemon(broker, work, "kills")
        witness = Witness(broker.port)
        count = 3000
        pub = Publisher(broker.port, count=count, rate=rate)
        pub.start()
        t0 = time.monotonic()
        span = 3 * count / rate
        for _ in range(kills):
            time.sleep(span / (kills + 1))
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGKILL)
            broker.proc.wait()
            time.sleep(0.5)
            broker.start()
        published = pub.finish(120)
        m = settle(http, published)
        time.sleep(2.0)  # the witness gets its last redeliveries
        stop(proc)
        name = "NATS" if make is NatsBroker else "Mosquitto"
        out = row(f"{name} SIGKILL x {kills} at {rate:.0f} msg/s", published, m,
                  time.monotonic() - t0)  # fmt: skip
        out["reconnects"] = int(m.get("streamd_mqtt_reconnects_total", 0))
        out["never_delivered"] = witness.never_delivered(pub)
        out["delivered_late"] = witness.late
        return out
    finally:
        broker.stop()


CASES = {
    "backlog": lambda w: [backlog(w / "b6", 6, 1500), backlog(w / "b100", 100, 200)],
    "pause": lambda w: [pause(w / "p")],
    "kills": lambda w: [broker_kills(w / "k", PersistentBroker)],
    "kills-nats": lambda w: [broker_kills(w / "k", NatsBroker)],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), default=list(CASES))
    ap.add_argument("--out", type=Path, default=Path("bench/results/outages.json"))
    ap.add_argument("--reorder-window-ms", type=float, default=0.0)
    ns = ap.parse_args(argv)
    REORDER_MS[0] = ns.reorder_window_ms
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ns.only:
            work = Path(tmp) / name
            for sub in ("b6", "b100", "p", "k"):
                (work / sub).mkdir(parents=True, exist_ok=True)
            rows += CASES[name](work)
    cols = ["published", "accepted", "unscored", "rate_limited", "out_of_order", "duplicate"]
    cols += ["never_delivered", "delivered_late"]
    print(f"{'case':<34} " + " ".join(f"{c:>15}" for c in cols))
    for r in rows:
        print(f"{r['case']:<34} " + " ".join(f"{r.get(c, '-'):>15}" for c in cols))
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), "reorder_window_ms": ns.reorder_window_ms}
    ns.out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
