"""Outage helpers the fault tests and ``bench/outages.py`` share: brokers that keep their
sessions on disk across restarts (and SIGKILLs) — Mosquitto, which saves every
``autosave_interval``, and a NATS server, whose MQTT layer writes each QoS 1 message to a
JetStream file store before it acknowledges it — and a QoS 1 publisher that rides them out.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import free_port, mosquitto_path, wait_port
from streamd.tools.nats import nats_server_path, wait_healthy
from streamd.tools.synth import PROFILES, normal_series

T0 = 1_767_225_600.0
STEP_S = 300.0


class PersistentBroker:
    """Mosquitto with an on-disk session store, restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
            # unacknowledged messages a subscriber may hold: streamd acknowledges a QoS 1
            # message once it is scored, after its reorder window. After the restart the
            # broker sends the daemon's whole backlog at once only if this covers it; with
            # 1000, the publisher's resends sat behind more than 1000 newer messages in one CI
            # run and came a window late (docs/deploy.md, "Publishers that reorder")
            "max_queued_messages 100000\nmax_inflight_messages 65535\nlog_type error\n"
            # as root, Mosquitto would switch to its own user, who cannot write here
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = mosquitto_path()
        if exe is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # Mosquitto writes its session store on SIGTERM
            self.proc.wait(10)


class NatsBroker:
    """One NATS server with JetStream on disk and an MQTT listener (MQTT 3.1.1 only),
    restartable on the same ports and store: the same interface as :class:`PersistentBroker`."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.monitor_port = free_port(), free_port()
        self.conf = workdir / "nats.conf"
        self.conf.write_text(
            f"server_name: outages\nlisten: 127.0.0.1:{free_port()}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{workdir / "jetstream"}" }}\n'
            f"mqtt {{ listen: 127.0.0.1:{self.port} }}\n"
        )
        self.log = workdir / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = nats_server_path()
        if exe is None:
            raise FileNotFoundError("nats-server is not installed")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port, 60)
        wait_healthy(f"http://127.0.0.1:{self.monitor_port}/healthz", "outages", 60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


class Publisher(threading.Thread):
    """Publishes ``count`` samples per stream at ``rate`` msg/s, QoS 1, persistent session,
    riding out broker restarts (paho keeps unacknowledged QoS 1 messages and resends)."""

    def __init__(self, port: int, count: int, rate: float, streams: int = 3) -> None:
        super().__init__(daemon=True)
        rng = np.random.default_rng(5)
        self.streams = streams
        self.series = [
            normal_series(PROFILES[i % len(PROFILES)], count, STEP_S, rng) for i in range(streams)
        ]
        self.count, self.rate = count, rate
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"fault-publisher-{port}",
            clean_session=False,
        )
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)  # unbounded: nothing dropped while away
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # paho takes float seconds
        self.client.connect("127.0.0.1", port)
        self.acked: set[int] = set()
        self.client.on_publish = lambda c, u, mid, rc, props: self.acked.add(mid)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def run(self) -> None:
        t0 = time.monotonic()
        for t in range(self.count):
            for k in range(self.streams):
                body = json.dumps({"ts": T0 + t * STEP_S, "value": float(self.series[k][t])})
                self.infos.append(self.client.publish(f"sensors/s{k}", body, qos=1))
            ahead = len(self.infos) / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    def finish(self, timeout_s: float = 60.0) -> int:
        self.join(timeout_s)
        deadline = time.monotonic() + timeout_s
        # messages published while the broker was away are queued and sent on reconnect
        # (their info says "not connected"), so count PUBACKs rather than wait on infos
        while len(self.acked) < len(self.infos) and time.monotonic() < deadline:
            time.sleep(0.05)
        unacked = len(self.infos) - len(self.acked)
        self.client.disconnect()
        self.client.loop_stop()
        if unacked:
            raise RuntimeError(f"{unacked} messages never acknowledged by the broker")
        return len(self.infos)
