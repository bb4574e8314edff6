"""deploy/: install.sh in a scratch root, the systemd unit, and the notify client.

The unit is checked by systemd's own tools: ``systemd-analyze verify`` on the unit as
installed (its ExecStart exists there) and ``systemd-analyze security --offline``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

from streamd.runtime.notify import Notifier
from tests.helpers import REPO

INSTALL = REPO / "deploy" / "install.sh"
UNIT = REPO / "deploy" / "systemd" / "streamd.service"


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--system-site-packages", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    r = tmp_path_factory.mktemp("root")
    done = install(r)
    assert done.returncode == 0, done.stdout + done.stderr
    yield r


def test_install_lays_out_a_working_service(root: Path) -> None:
    venv_streamd = root / "opt/streamd/venv/bin/streamd"
    config = root / "etc/streamd/streamd.toml"
    assert venv_streamd.is_file() and config.is_file()
    assert (root / "opt/streamd/models/default.onnx").is_file()
    assert oct((root / "etc/streamd/mqtt-password").stat().st_mode & 0o777) == "0o600"
    # the config and unit point into the tree they were installed in
    settings = tomllib.loads(config.read_text())
    assert settings["model"]["path"] == str(root / "opt/streamd/models/default.onnx")
    unit = (root / "etc/systemd/system/streamd.service").read_text()
    assert f"ExecStart={venv_streamd} run --config {config}" in unit
    assert f"LoadCredential=mqtt-password:{root}/etc/streamd/mqtt-password" in unit
    # the installed command runs from its own venv and accepts the installed config
    out = subprocess.run(
        [str(venv_streamd), "run", "--config", str(config), "--check-config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "passes its self-test" in out.stdout


def test_install_again_upgrades_and_keeps_the_users_config(root: Path) -> None:
    config = root / "etc/streamd/streamd.toml"
    edited = config.read_text().replace('client_id = "streamd"', 'client_id = "box-17"')
    config.write_text(edited)
    again = install(root)
    assert again.returncode == 0, again.stderr
    assert "kept your" in again.stdout
    assert config.read_text() == edited
    assert 'client_id = "streamd"' in (root / "etc/streamd/streamd.toml.example").read_text()


def test_systemd_analyze_verify_passes_on_the_installed_unit(root: Path) -> None:
    unit = root / "etc/systemd/system/streamd.service"
    out = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    print(out.stdout + out.stderr)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_systemd_analyze_security_exposure_is_ok_or_better() -> None:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for streamd.service: ([\d.]+) (\w+)", out.stdout)
    assert found, out.stdout + out.stderr
    print(f"systemd-analyze security: exposure {found[1]} {found[2]}")
    assert found[2] in ("SAFE", "OK") and float(found[1]) < 2.0


def test_unit_declares_what_operators_rely_on() -> None:
    unit = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=streamd",
        "ConfigurationDirectory=streamd",
        "LoadCredential=mqtt-password:",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
    ):
        assert line in unit, line


def test_uninstall_keeps_config_unless_purged(tmp_path: Path, root: Path) -> None:
    scratch = tmp_path / "r"
    shutil.copytree(root / "etc", scratch / "etc")
    (scratch / "opt/streamd/models").mkdir(parents=True)
    (scratch / "opt/streamd/venv").mkdir()
    gone = install(scratch, "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not (scratch / "etc/systemd/system/streamd.service").exists()
    assert not (scratch / "opt/streamd").exists()
    assert (scratch / "etc/streamd/streamd.toml").exists()
    purged = install(scratch, "--uninstall", "--purge")
    assert purged.returncode == 0 and not (scratch / "etc/streamd").exists()


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_speaks_the_datagram_protocol(tmp_path: Path, abstract: bool) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"streamd-test-{os.getpid()}" if abstract else str(tmp_path / "n.sock")
    server.bind("\0" + name if abstract else name)
    server.settimeout(5)
    env = {
        "NOTIFY_SOCKET": ("@" + name) if abstract else name,
        "WATCHDOG_USEC": "4000000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    n = Notifier(env)
    assert n.enabled and n.watchdog_s == 4.0
    assert n.ready("connected") and n.watchdog() and n.stopping()
    got = [server.recv(1024).decode() for _ in range(3)]
    assert got[0] == "READY=1\nSTATUS=connected"
    assert got[1] == "WATCHDOG=1" and got[2].startswith("STOPPING=1")
    n.close()
    server.close()


def test_notifier_is_silent_outside_systemd() -> None:
    n = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert not n.enabled and n.watchdog_s is None and not n.ready("x")


def test_deploy_doc_carries_the_current_configuration_reference() -> None:
    from streamd.config import defaults_as_toml

    doc = (REPO / "docs" / "deploy.md").read_text()
    assert "```toml\n" + defaults_as_toml() + "\n```" in doc, "run: streamd config; update docs"
