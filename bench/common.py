"""What the benchmarks share: publishers, process CPU and memory, metric arithmetic.

A bench script imports it as ``from common import ...`` (``python bench/X.py`` puts
``bench/`` first on ``sys.path``); broker and daemon helpers come from
:mod:`streamd.tools.harness`, which the tests share too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# re-exported: the benches take them from here
from streamd.tools.harness import process_tree as process_tree
from streamd.tools.harness import rss_mb as rss_mb
from streamd.tools.harness import scrape

REPO = Path(__file__).resolve().parent.parent
T0 = 1_767_225_600
TICKS = os.sysconf("SC_CLK_TCK")


def setting(text: str) -> tuple[str, str]:
    """One ``--set STREAMD_X__Y=V``: a daemon setting as an environment variable."""
    name, eq, value = text.partition("=")
    if not eq or not name.startswith("STREAMD_"):
        raise argparse.ArgumentTypeError(f"{text!r} is not STREAMD_SECTION__FIELD=VALUE")
    return name, value


def add_settings(ap: argparse.ArgumentParser, help_text: str) -> None:
    """``--set STREAMD_X__Y=V ...`` on ``ap``; ``dict(ns.set)`` is then the environment."""
    ap.add_argument(
        "--set", nargs="*", type=setting, default=[], metavar="STREAMD_X__Y=V", help=help_text
    )


def machine() -> dict[str, Any]:
    """What the benchmarks' JSON records about the machine they ran on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def publish_share(
    port: int,
    qos: int,
    first: int,
    streams: int,
    count: int,
    deadline: float,
    rate: float = 0.0,
    sent_to: Any = None,
    wall_ts: bool = False,
) -> None:
    """One publisher process: ``count`` messages round-robin over its ``streams``, at
    ``rate`` msg/s (0: as fast as it can); puts the number sent (and, at QoS 1,
    acknowledged by the broker) on ``sent_to``. With ``wall_ts`` each sample's ts is the
    time it is published, so whoever receives its score knows its latency."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(20000)
    acked = [0]
    client.on_publish = lambda c, u, mid, rc, p: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = 0
    t0 = time.time()
    for j in range(count):
        if rate and j % 20 == 0 and (ahead := t0 + j / rate - time.time()) > 0:
            time.sleep(ahead)
        k = first + j % streams
        ts = time.time() if wall_ts else T0 + 60 * (j // streams)
        body = b'{"ts":%.6f,"value":%.3f}' % (ts, 20.0 + (j % 97) * 0.01)
        while client.publish(f"sensors/s{k}", body, qos=qos).rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.001)  # paho's own queue is full: wait for acknowledgements
        sent += 1
        if time.time() > deadline:
            break
    while qos and acked[0] < sent and time.time() < deadline + 10:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    if sent_to is not None:
        sent_to.put(sent)


def start_publishers(
    port: int,
    qos: int,
    streams: int,
    count: int,
    procs: int,
    seconds: float,
    rate: float = 0.0,
    sent_to: Any = None,
    wall_ts: bool = False,
) -> list[mp.Process]:
    """``procs`` publisher processes sharing ``streams``, ``count`` messages and ``rate``."""
    deadline = time.time() + seconds
    per_streams = max(1, streams // procs)
    out = []
    for i in range(procs):
        p = mp.Process(
            target=publish_share,
            args=(
                port,
                qos,
                i * per_streams,
                per_streams,
                count // procs,
                deadline,
                rate / procs,
                sent_to,
                wall_ts,
            ),
            daemon=True,
        )
        p.start()
        out.append(p)
    return out


def collect_latencies(port: int, topic: str, ready: Any, stop: Any, out: Any) -> None:
    """A subscriber process: for every score message on ``topic``, the seconds between its
    sample's ``ts`` (its publish time, ``wall_ts``) and now; the list goes to ``out`` once
    ``stop`` is set."""
    loads = fast_loads()
    got: list[float] = []

    def on_message(c: Any, u: Any, msg: Any) -> None:
        got.append(time.time() - loads(msg.payload)["ts"])

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: (c.subscribe(topic), ready.set())
    client.connect("127.0.0.1", port)
    client.loop_start()
    stop.wait()
    client.loop_stop()
    out.put(got)


def fast_loads() -> Any:
    """The JSON parser a bare subscriber uses: orjson when installed, as streamd does."""
    try:
        import orjson

        return orjson.loads
    except ImportError:
        return json.loads


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User and system CPU of ``pid`` and (unless ``tree`` is false) its descendants."""
    total = 0
    for p in process_tree(pid) if tree else [pid]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def quantile(m: dict[str, float], name: str, q: float) -> float:
    """Quantile from a Prometheus histogram's cumulative buckets (linear in a bucket)."""
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), v)
        for k, v in m.items()
        if k.startswith(name + "_bucket{")
    )
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank, prev_le, prev_n = q * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9)
        prev_le, prev_n = le, n
    return prev_le


def processed(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("streamd_messages_total{"))


def attach_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the daemon and its receiver process, raw folded stacks per thread, until
    the daemon exits (``--nonblocking``: sampling must not slow what it measures)."""
    cmd = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--threads", "--nonblocking"]
    return subprocess.Popen(
        [*cmd, "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def answers(http_port: int) -> bool:
    """Whether the daemon's /metrics answers yet."""
    try:
        scrape(http_port)
    except OSError:
        return False
    return True


def rate_between(samples: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Messages per second between the counts ``lo`` and ``hi``, interpolating the
    ``(time, count)`` samples of a scrape loop."""

    def when(target: float) -> float:
        for (t0, n0), (t1, n1) in itertools.pairwise(samples):
            if n0 <= target <= n1 and n1 > n0:
                return t0 + (t1 - t0) * (target - n0) / (n1 - n0)
        raise ValueError(f"the count never reached {target:.0f}")

    return (hi - lo) / (when(hi) - when(lo))


class Marks:
    """Counts messages and notes when 10 % and 90 % of ``expected`` had come."""

    def __init__(self, expected: int) -> None:
        self.n = 0
        self.lo, self.hi = round(expected * 0.1), round(expected * 0.9)
        self.t_lo = self.t_hi = 0.0

    def add(self, k: int = 1) -> None:
        before, self.n = self.n, self.n + k
        if before < self.lo <= self.n:
            self.t_lo = time.perf_counter()
        if before < self.hi <= self.n:
            self.t_hi = time.perf_counter()

    def rate(self) -> float:
        return (self.hi - self.lo) / (self.t_hi - self.t_lo) if self.t_hi > self.t_lo > 0 else 0.0


def register(port: int, client_id: str, protocol: int, qos: int) -> None:
    """A persistent subscription to sensors/# for ``client_id``, then gone."""
    v5 = protocol == 5
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
    )
    done = mp.Event()
    c.on_subscribe = lambda *a: done.set()
    kwargs: dict[str, Any] = {}
    if v5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        kwargs = {"clean_start": False, "properties": props}
    c.connect("127.0.0.1", port, **kwargs)
    c.subscribe("sensors/#", qos=qos)
    c.loop_start()
    assert done.wait(10), "no SUBACK"
    c.disconnect()
    c.loop_stop()


def recv_mosquitto_sub(port: int, cid: str, qos: int, n: int, seconds: float) -> Marks:
    marks = Marks(n)
    exe = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    cmd = [exe, "-h", "127.0.0.1", "-p", str(port), "-i", cid, "-c", "-q", str(qos)]
    proc = subprocess.Popen([*cmd, "-t", "sensors/#", "-C", str(n)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    deadline = time.perf_counter() + seconds
    while marks.n < n and time.perf_counter() < deadline:
        chunk = proc.stdout.read1(1 << 20)
        if not chunk:
            break
        marks.add(chunk.count(b"\n"))
    proc.kill()
    proc.wait()
    return marks
