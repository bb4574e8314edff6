"""The MQTT receiver process and the daemon as one unit, the way systemd treats them.

streamd runs paho in a child process (streamd.mqtt_child). These tests check that the pair
starts, stops and fails together: systemd's SIGTERM to the whole control group, a dead
receiver, a killed daemon, and a receiver that cannot start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import DEFAULT_MODEL

from streamd.demo import free_port, metric_values, scrape, start_daemon, wait_ready


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
            if b"streamd.mqtt_child" in cmdline:
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


def test_a_receiver_that_cannot_start_fails_the_start_with_the_reason(
    broker: int, tmp_path: Path
) -> None:
    """A CA file that is not PEM passes the readability check; the child's TLS setup
    refuses it, and the daemon says so instead of waiting for a connection."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    done = run_with({"STREAMD_MQTT__TLS_CA_FILE": str(ca)}, broker)
    err = done.stderr
    assert done.returncode == 1, err
    assert "MQTT receiver process did not start" in err and "mqtt.tls_ca_file" in err, err
    assert "Traceback" not in err
