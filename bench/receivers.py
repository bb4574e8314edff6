"""Which MQTT client receives fastest: the candidates for streamd's receive path, one broker.

Each candidate drains the same backlog as ``bench/drain.py`` does (``--count`` messages over
``--streams`` streams, queued by Mosquitto for the candidate's persistent session) and only
parses (orjson) and counts, acknowledging each QoS 1 message; the rate is taken between 10 %
and 90 % of the backlog. Candidates:

* ``paho``: paho-mqtt 2.x driven by one select loop through its external-loop calls, manual
  acknowledgements, as streamd's receiver runs it;
* ``mqtt5``: the ``mqtt5`` packet codec (Rust, sans-IO) under a plain socket loop of our own
  (MQTT 5 only);
* ``pymosquitto``: libmosquitto through ctypes (its own loop; acknowledges on receipt, as
  libmosquitto 2.0 cannot defer a PUBACK);
* ``gmqtt``: the asyncio client (acknowledges when its callback returns);
* ``mosquitto_sub``: the C client, ``-C N``, its output counted: the practical ceiling.

Prints a table and writes JSON. ``python bench/receivers.py [--qos 0] [--count 200000]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import select
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from common import REPO, Marks, fast_loads, machine, register, start_publishers
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import free_port, start_broker

CANDIDATES = ("paho", "mqtt5", "pymosquitto", "gmqtt", "mosquitto_sub")
PROTOCOL = {"paho": 4, "mqtt5": 5, "pymosquitto": 4, "gmqtt": 4, "mosquitto_sub": 4}


def recv_paho(port: int, cid: str, qos: int, n: int, seconds: float) -> Marks:
    loads, marks, acks = fast_loads(), Marks(n), []

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        loads(msg.payload)
        marks.add()
        if msg.qos:
            acks.append(msg.mid)

    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=cid,
        clean_session=False,
        manual_ack=True,
    )
    c.on_message = on_message
    c.on_socket_register_write = lambda *a: None
    c.connect("127.0.0.1", port)
    deadline = time.perf_counter() + seconds
    while marks.n < n and time.perf_counter() < deadline:
        sock = c.socket()
        r, _, _ = select.select([sock], [], [], 0.1)
        if r:
            for _ in range(64):
                before = marks.n
                c.loop_read()
                if marks.n == before:
                    break
        for mid in acks:
            c.ack(mid, 1)
        acks.clear()
        if c.want_write():
            c.loop_write()
        c.loop_misc()
    c.disconnect()
    return marks


def recv_mqtt5(port: int, cid: str, qos: int, n: int, seconds: float) -> Marks:
    import mqtt5

    loads, marks = fast_loads(), Marks(n)
    sock = socket.create_connection(("127.0.0.1", port))
    connect = mqtt5.ConnectPacket(cid, clean_start=False, session_expiry_interval=3600)
    sock.sendall(connect.write())
    buf = bytearray()
    deadline = time.perf_counter() + seconds
    publish = mqtt5.PublishPacket
    while marks.n < n and time.perf_counter() < deadline:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
        view, pos, acks = memoryview(buf), 0, []
        while True:
            try:
                packet, size = mqtt5.read(view[pos:])
            except IndexError:  # not a whole packet yet
                break
            pos += size
            if type(packet) is publish:
                loads(packet.payload)
                marks.add()
                if packet.packet_id is not None:
                    acks.append(b"\x40\x02" + packet.packet_id.to_bytes(2, "big"))
        view.release()
        del buf[:pos]
        if acks:
            sock.sendall(b"".join(acks))
    sock.sendall(mqtt5.DisconnectPacket().write())
    sock.close()
    return marks


def recv_pymosquitto(port: int, cid: str, qos: int, n: int, seconds: float) -> Marks:
    from pymosquitto.client import Mosquitto

    loads, marks = fast_loads(), Marks(n)
    m = Mosquitto(client_id=cid, clean_start=False)

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        loads(msg.payload)
        marks.add()
        if marks.n >= n:
            client.disconnect()

    m.on_message = on_message
    m.connect("127.0.0.1", port)
    m.loop_forever(int(seconds * 1000))
    return marks


def recv_gmqtt(port: int, cid: str, qos: int, n: int, seconds: float) -> Marks:
    import asyncio

    from gmqtt import Client
    from gmqtt.mqtt.constants import MQTTv311

    loads, marks = fast_loads(), Marks(n)

    async def run() -> None:
        done = asyncio.Event()
        c = Client(cid, clean_session=False)

        def on_message(client: Any, topic: str, payload: bytes, q: int, props: Any) -> int:
            loads(payload)
            marks.add()
            if marks.n >= n:
                done.set()
            return 0

        c.on_message = on_message
        await c.connect("127.0.0.1", port, version=MQTTv311)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), seconds)
        await c.disconnect()

    asyncio.run(run())
    return marks


def worker(name: str, port: int, cid: str, qos: int, n: int, seconds: float, out: Any) -> None:
    t0 = time.process_time()
    marks = globals()[f"recv_{name}"](port, cid, qos, n, seconds)
    out.put((marks.n, marks.rate(), time.process_time() - t0))


def measure(name: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    cid = f"bench-recv-{name}"
    register(port, cid, PROTOCOL[name], args.qos)
    for p in start_publishers(port, args.qos, args.streams, args.count, 2, seconds=600):
        p.join(660)
    time.sleep(0.5)
    out: Any = mp.Queue()
    proc = mp.Process(target=worker, args=(name, port, cid, args.qos, args.count, 120, out))
    proc.start()
    n, rate, cpu = out.get(timeout=180)
    proc.join(30)
    return {"receiver": name, "received": n, "msg_s": rate, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--qos", type=int, choices=(0, 1), default=1)
    ap.add_argument("--only", nargs="*", choices=CANDIDATES, default=list(CANDIDATES))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "receivers.json")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="streamd-receivers-"))
    port = free_port()
    extra = "queue_qos0_messages true\n" if args.qos == 0 else ""
    broker, _ = start_broker(port, work, "mosquitto", max_inflight=1000, extra_conf=extra)
    rows = []
    try:
        for name in args.only:
            rows.append(measure(name, port, args))
            r = rows[-1]
            print(f"{name:<14} {r['received']:>8} {r['msg_s']:>10,.0f} msg/s", flush=True)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    ceiling = next((r["msg_s"] for r in rows if r["receiver"] == "mosquitto_sub"), 0.0)
    print(f"\nQoS {args.qos}, {args.count:,} messages over {args.streams:,} streams")
    print(f"{'receiver':<14} {'msg/s':>10} {'x C client':>10}")
    for r in rows:
        ratio = r["msg_s"] / ceiling if ceiling else float("nan")
        print(f"{r['receiver']:<14} {r['msg_s']:>10,.0f} {ratio:>10.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "qos": args.qos, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
