"""The MQTT receiver and the daemon as one unit, the way systemd treats them.

By default streamd runs paho in a child process (streamd.runtime.mqtt.child). These tests check that
the pair starts, stops and fails together: systemd's SIGTERM to the whole control group, a
dead receiver, a killed daemon, and a receiver that cannot start. With ``mqtt.receiver =
"thread"`` the same loop runs in the daemon's process: one process, which starts, fails and
stops as one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import free_port, metric_values, scrape, start_daemon, wait_ready
from tests.helpers import DEFAULT_MODEL


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out.extend(int(c) for c in task.read_text().split())
    return out


def receiver_of(pid: int, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children(pid):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"streamd.runtime.mqtt.child" in cmdline:
                return child
        time.sleep(0.05)
    raise AssertionError(f"no receiver process under {pid}")


def gone(pid: int, timeout_s: float) -> bool:
    """True once ``pid`` has exited (a zombie counts: its parent has not reaped it yet)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def started(broker: int, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    http_port = free_port()
    log = tmp_path / "streamd.log"
    proc = start_daemon(DEFAULT_MODEL, broker, http_port, log_path=log)
    wait_ready(http_port)
    return proc, http_port, receiver_of(proc.pid), log


def test_sigterm_to_the_whole_group_stops_both_cleanly(broker: int, tmp_path: Path) -> None:
    """systemd's default KillMode signals every process of the unit: the receiver must
    ignore it and let the daemon drain, snapshot and stop it."""
    proc, http_port, child, log = started(broker, tmp_path)
    try:
        assert metric_values(scrape(http_port))["streamd_mqtt_connected"] == 1
        os.kill(child, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
        assert gone(child, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "stopped after" in text and "receiver process exited" not in text


def test_a_dead_receiver_stops_the_daemon_with_exit_code_1(broker: int, tmp_path: Path) -> None:
    """Restart=on-failure then restarts the pair; the broker's session kept the messages."""
    proc, _, child, log = started(broker, tmp_path)
    try:
        os.kill(child, signal.SIGKILL)
        assert proc.wait(30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "the MQTT receiver process exited (code -9); stopping streamd" in log.read_text()


def test_a_killed_daemon_takes_its_receiver_with_it(broker: int, tmp_path: Path) -> None:
    """No orphan holding the session (and the client id) after SIGKILL or an OOM kill."""
    proc, _, child, _ = started(broker, tmp_path)
    try:
        proc.kill()
        proc.wait(10)
        assert gone(child, 10), "the receiver outlived the daemon"
    finally:
        if not gone(child, 0):
            os.kill(child, signal.SIGKILL)


def run_with(env: dict[str, str], broker: int) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "streamd", "run", "--model", str(DEFAULT_MODEL)]
    cmd += ["--mqtt-port", str(broker), "--http-port", str(free_port())]
    return subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_an_unreadable_tls_file_fails_the_start_naming_the_field(
    broker: int, tmp_path: Path
) -> None:
    done = run_with({"STREAMD_MQTT__TLS_CA_FILE": str(tmp_path / "no-such-ca.pem")}, broker)
    assert done.returncode == 2
    assert "mqtt.tls_ca_file: cannot read" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_receiver_that_cannot_start_fails_the_start_with_the_reason(
    broker: int, tmp_path: Path, kind: str
) -> None:
    """A CA file that is not PEM passes the readability check; the receiver's TLS setup
    refuses it, and the daemon says so instead of waiting for a connection."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    done = run_with({"STREAMD_MQTT__TLS_CA_FILE": str(ca), "STREAMD_MQTT__RECEIVER": kind}, broker)
    err = done.stderr
    assert done.returncode == 1, err
    assert f"MQTT receiver {kind} did not start" in err and "mqtt.tls_ca_file" in err, err
    assert "Traceback" not in err


def test_with_the_thread_receiver_streamd_is_one_process_that_receives_and_stops_cleanly(
    broker: int, tmp_path: Path
) -> None:
    """No child process; QoS 1 messages are received, scored and acknowledged through the
    thread; SIGTERM drains and stops (exit 0) with the receiver thread, not a lost one."""
    http_port = free_port()
    log = tmp_path / "streamd.log"
    env = {"STREAMD_MQTT__RECEIVER": "thread"}
    proc = start_daemon(DEFAULT_MODEL, broker, http_port, extra_env=env, log_path=log)
    try:
        wait_ready(http_port)
        assert children(proc.pid) == []  # the receiver is a thread of this process
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", broker)
        client.loop_start()
        for i in range(50):
            payload = json.dumps({"ts": 1_767_225_600 + 60 * i, "value": float(i % 7)})
            client.publish(f"sensors/s{i % 5}", payload, qos=1).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = metric_values(scrape(http_port))
            if m.get('streamd_messages_total{result="accepted"}', 0) >= 50:
                break
            time.sleep(0.1)
        assert m['streamd_messages_total{result="accepted"}'] == 50
        assert m["streamd_active_streams"] == 5 and m["streamd_mqtt_connected"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "stopped after" in text and "receiver thread exited" not in text, text[-2000:]
