"""The daemon's lifecycle as systemd and operators drive it, over a real Mosquitto.

systemd's notify protocol against a real ``AF_UNIX`` datagram socket; SIGHUP model reload
(good and corrupt files); state snapshots across a restart; a snapshot location that
cannot be written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from streamd.tools.harness import free_port, metric_values, scrape, wait_ready
from tests.e2e.support import publish_normal, start, stop, wait_metric
from tests.helpers import DEFAULT_MODEL


def model_version(m: dict[str, float]) -> str:
    (key,) = [k for k in m if k.startswith("streamd_model_info{")]
    return key.split('version="')[1].split('"')[0]


def new_version_of(model: Path, out: Path, version: str) -> Path:
    """``model`` with another version in its card: what a retrained model looks like."""
    m = onnx.load(str(model))
    for prop in m.metadata_props:
        if prop.key == "streamd":
            card = json.loads(prop.value)
            card["version"] = version
            prop.value = json.dumps(card)
    onnx.save(m, str(out))
    return out


class NotifySocket:
    """The service manager's end of the notify protocol: a bound datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def collect(self, until: str, timeout_s: float = 30.0) -> list[str]:
        """Read until a message containing ``until`` arrives; returns all messages so far."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            if until in self.messages[-1]:
                return self.messages
        raise AssertionError(f"no {until!r} within {timeout_s} s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def test_notify_protocol_watchdog_and_sighup_reload(
    broker: int, tmp_path: Path, notify: NotifySocket
) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    proc, http_port, log = start(broker, model, tmp_path, env)
    try:
        msgs = notify.collect("READY=1")
        assert any("STATUS=connected" in m for m in msgs if "READY=1" in m)
        notify.collect("WATCHDOG=1")
        before = metric_values(scrape(http_port))
        old_version = model_version(before)

        # a retrained model replaces the file; SIGHUP swaps it in
        new_version_of(DEFAULT_MODEL, tmp_path / "next.onnx", "a1b2c3d4e5f6")
        (tmp_path / "next.onnx").replace(model)
        proc.send_signal(signal.SIGHUP)
        msgs = notify.collect("READY=1")
        reload_msgs = msgs[msgs.index(next(m for m in msgs if "RELOADING=1" in m)) :]
        assert "MONOTONIC_USEC=" in reload_msgs[0] and any("READY=1" in m for m in reload_msgs)
        m = metric_values(scrape(http_port))
        assert model_version(m) == "a1b2c3d4e5f6" != old_version
        assert m['streamd_model_reloads_total{result="ok"}'] == 1

        # a corrupt file: the reload fails, the running model keeps serving
        model.write_bytes(b"\x08\x01 not an onnx model")
        proc.send_signal(signal.SIGHUP)
        m = wait_metric(http_port, 'streamd_model_reloads_total{result="failed"}', 1)
        assert m['streamd_model_reloads_total{result="failed"}'] == 1
        assert model_version(m) == "a1b2c3d4e5f6"
        wait_ready(http_port, 5)
        sent = publish_normal(broker, streams=2, start=0, count=50)
        m = wait_metric(http_port, 'streamd_messages_total{result="accepted"}', sent)
        assert m['streamd_messages_total{result="accepted"}'] == sent

        assert stop(proc) == 0
        msgs = notify.collect("STOPPING=1")
        kinds = [k for m in msgs for k in ("READY=1", "WATCHDOG=1", "STOPPING=1") if k in m]
        first_ready = kinds.index("READY=1")
        assert "WATCHDOG=1" in kinds[first_ready:] and kinds[-1] == "STOPPING=1"
        text = log.read_text()
        assert "model reload failed, keeping version a1b2c3d4e5f6" in text
    finally:
        if proc.poll() is None:
            proc.kill()


def test_restart_restores_state_without_a_second_warmup(broker: int, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    env = {"STATE_DIRECTORY": str(state), "STREAMD_MQTT__CLIENT_ID": "streamd-restart"}
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env, "first")
    try:
        wait_ready(http_port)
        sent = publish_normal(broker, streams=3, start=0, count=400)
        m = wait_metric(http_port, 'streamd_messages_total{result="accepted"}', sent)
        assert m['streamd_samples_total{outcome="scored"}'] > 0
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (state / "state.npz").is_file()

    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env, "second")
    try:
        wait_ready(http_port)
        m = metric_values(scrape(http_port))
        assert m["streamd_snapshot_restored_streams"] == 3
        assert m["streamd_active_streams"] == 3
        # the same 3 streams go on: every sample is scored at once, none warms up again
        more = publish_normal(broker, streams=3, start=400, count=40)
        m = wait_metric(http_port, 'streamd_messages_total{result="accepted"}', more)
        assert m['streamd_samples_total{outcome="scored"}'] == more
        assert m['streamd_samples_total{outcome="warmup"}'] == 0
        assert "restored 3 streams" in log.read_text()
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_snapshot_of_another_model_is_discarded_with_a_metric(broker: int, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    env = {"STATE_DIRECTORY": str(state)}
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, env, "first")
    wait_ready(http_port)
    publish_normal(broker, streams=2, start=0, count=40)
    wait_metric(http_port, 'streamd_messages_total{result="accepted"}', 80)
    assert stop(proc) == 0
    other = new_version_of(DEFAULT_MODEL, tmp_path / "other.onnx", "0123456789ab")
    proc, http_port, log = start(broker, other, tmp_path, env, "second")
    try:
        wait_ready(http_port)
        m = metric_values(scrape(http_port))
        assert m["streamd_snapshot_discarded_total"] == 1
        assert m["streamd_snapshot_restored_streams"] == 0
        assert "model_version" in log.read_text()
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_unwritable_snapshot_is_counted_and_scoring_goes_on(broker: int, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {
        "STREAMD_STATE__SNAPSHOT_PATH": str(blocker / "state.npz"),
        "STREAMD_STATE__SNAPSHOT_INTERVAL_S": "0.5",
    }
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env)
    try:
        wait_ready(http_port)
        sent = publish_normal(broker, streams=2, start=0, count=400)
        m = wait_metric(http_port, 'streamd_snapshot_writes_total{result="failed"}', 2)
        m = wait_metric(http_port, 'streamd_messages_total{result="accepted"}', sent)
        assert m['streamd_snapshot_writes_total{result="failed"}'] >= 2
        assert m['streamd_snapshot_writes_total{result="ok"}'] == 0
        assert m['streamd_messages_total{result="accepted"}'] == sent
        assert m['streamd_samples_total{outcome="scored"}'] > 0
        assert "cannot write state snapshot" in log.read_text()
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a state directory that can really fill up or turn read-only."""
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {got.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Fill ``directory``'s file system to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_full_then_read_only_state_directory(broker: int, tmp_path: Path, small_fs: Path) -> None:
    """ENOSPC, then space again, then EROFS: each failed write is counted and logged, no
    partial file is left, and scoring never stops."""
    env = {
        "STATE_DIRECTORY": str(small_fs),
        "STREAMD_STATE__SNAPSHOT_INTERVAL_S": "0.3",
        "STREAMD_LOGGING__PER_MESSAGE_INTERVAL_S": "0",  # log every failure, not one per 10 s
    }
    filler = fill(small_fs)
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env)
    failed = 'streamd_snapshot_writes_total{result="failed"}'
    ok = 'streamd_snapshot_writes_total{result="ok"}'
    try:
        wait_ready(http_port)
        sent = publish_normal(broker, streams=2, start=0, count=200)
        m = wait_metric(http_port, failed, 2)
        assert m[ok] == 0 and m[failed] >= 2
        assert "No space left on device" in log.read_text()
        assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]  # no partial file
        filler.unlink()  # space again: the next write succeeds
        m = wait_metric(http_port, ok, 1)
        assert (small_fs / "state.npz").exists()
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
        before = m[failed]
        m = wait_metric(http_port, failed, before + 2)
        assert m[failed] >= before + 2
        assert "Read-only file system" in log.read_text()
        sent += publish_normal(broker, streams=2, start=200, count=200)
        m = wait_metric(http_port, 'streamd_messages_total{result="accepted"}', sent)
        assert m['streamd_messages_total{result="accepted"}'] == sent
        assert m['streamd_samples_total{outcome="scored"}'] > 0
        print(
            f"state directory full, then read-only: {m[failed]:.0f} failed and {m[ok]:.0f} "
            f"good snapshot writes; {sent} messages sent, all accepted"
        )
        assert stop(proc) == 0  # the final snapshot fails too; streamd still exits cleanly
    finally:
        if proc.poll() is None:
            proc.kill()


def test_password_never_reaches_the_logs(broker: int, tmp_path: Path) -> None:
    secret = "s3cret-Pa55-" + str(free_port())
    (tmp_path / "mqtt-password").write_text(secret + "\n")
    env = {
        "STREAMD_MQTT__USERNAME": "streamd",
        "STREAMD_MQTT__PASSWORD_FILE": str(tmp_path / "mqtt-password"),
        "STREAMD_LOGGING__LEVEL": "DEBUG",
        "STREAMD_LOGGING__FORMAT": "json",
    }
    proc, http_port, log = start(broker, DEFAULT_MODEL, tmp_path, env)
    try:
        wait_ready(http_port)
        publish_normal(broker, streams=1, start=0, count=20)
        wait_metric(http_port, 'streamd_messages_total{result="accepted"}', 20)
        proc.send_signal(signal.SIGHUP)  # a reload logs too
        wait_metric(http_port, 'streamd_model_reloads_total{result="ok"}', 1)
        metrics_text = scrape(http_port)
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) > 5 and any("connected to" in rec["msg"] for rec in lines)
    assert secret not in text and secret not in metrics_text
