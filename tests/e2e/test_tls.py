"""TLS to a real Mosquitto TLS listener that requires client certificates.

The test makes its own CA, server and client certificates with openssl; a client
certificate from another CA is refused with a clear log line and retried with backoff,
and the daemon keeps running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamd.tools.harness import (
    free_port,
    metric_values,
    mosquitto_path,
    scrape,
    start_daemon,
    wait_port,
)
from streamd.tools.harness import wait_ready as wait_http_ready
from tests.helpers import DEFAULT_MODEL


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)  # fmt: skip


def make_cert(d: Path, name: str, ca: str, san: str | None = None) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", f"{name}.pem",
            cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "server", "ca", san="IP:127.0.0.1,DNS:localhost")
    make_cert(d, "client", "ca")
    make_cert(d, "rogue", "rogue-ca")
    return d


@pytest.fixture
def tls_broker(certs: Path, tmp_path: Path) -> Iterator[int]:
    exe = mosquitto_path()
    if exe is None:
        pytest.fail("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'server.pem'}\n"
        f"keyfile {certs / 'server.key'}\nrequire_certificate true\n"
        "use_identity_as_username true\nlog_type error\n"
        # as root, Mosquitto would switch to its own user, who cannot read pytest's tmp dirs
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.PIPE)
    wait_port(port)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["mqtt5", "paho"])
def link(request: pytest.FixtureRequest) -> str:
    """Each MQTT client of the receiver does TLS its own way: both are tested."""
    return str(request.param)


def tls_env(certs: Path, client: str, link: str) -> dict[str, str]:
    return {
        "STREAMD_MQTT__CLIENT": link,
        "STREAMD_MQTT__TLS_CA_FILE": str(certs / "ca.pem"),
        "STREAMD_MQTT__TLS_CERT_FILE": str(certs / f"{client}.pem"),
        "STREAMD_MQTT__TLS_KEY_FILE": str(certs / f"{client}.key"),
        "STREAMD_MQTT__RECONNECT_MIN_S": "1",
        "STREAMD_MQTT__RECONNECT_MAX_S": "4",
    }


def test_connects_with_ca_and_client_certificate(
    tls_broker: int, certs: Path, tmp_path: Path, link: str
) -> None:
    http_port = free_port()
    log = tmp_path / "d.log"
    proc = start_daemon(
        DEFAULT_MODEL, tls_broker, http_port, extra_env=tls_env(certs, "client", link), log_path=log
    )
    try:
        wait_http_ready(http_port)
        m = metric_values(scrape(http_port))
        assert m["streamd_mqtt_connected"] == 1
        assert m["streamd_mqtt_connect_failures_total"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_certificate_from_another_ca_is_refused_clearly_and_retried(
    tls_broker: int, certs: Path, tmp_path: Path, link: str
) -> None:
    http_port = free_port()
    log = tmp_path / "d.log"
    env = tls_env(certs, "rogue", link) | {"STREAMD_LOGGING__PER_MESSAGE_INTERVAL_S": "0"}
    proc = start_daemon(DEFAULT_MODEL, tls_broker, http_port, extra_env=env, log_path=log)
    try:
        deadline = time.monotonic() + 30
        failures = 0.0
        while time.monotonic() < deadline and failures < 3:
            with contextlib.suppress(OSError):  # still starting
                failures = metric_values(scrape(http_port))["streamd_mqtt_connect_failures_total"]
            time.sleep(0.5)
        assert failures >= 3, log.read_text()[-2000:]
        assert proc.poll() is None  # no crash loop: it keeps running and retrying
        m = metric_values(scrape(http_port))
        assert m["streamd_mqtt_connected"] == 0
        text = log.read_text()
        print(text.splitlines()[-1])
        assert "cannot connect to broker" in text or "closed the connection before" in text
        assert "unknown ca" in text.lower()  # the TLS alert from the broker
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_wrong_server_ca_fails_verification_with_its_reason(
    tls_broker: int, certs: Path, tmp_path: Path, link: str
) -> None:
    http_port = free_port()
    log = tmp_path / "d.log"
    env = tls_env(certs, "client", link) | {
        "STREAMD_MQTT__TLS_CA_FILE": str(certs / "rogue-ca.pem")
    }
    proc = start_daemon(DEFAULT_MODEL, tls_broker, http_port, extra_env=env, log_path=log)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "CERTIFICATE_VERIFY_FAILED" not in log.read_text():
            time.sleep(0.3)
        assert "certificate verify failed" in log.read_text()
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
