"""deploy/container/Containerfile, checked without a container engine (CI has none).

What can go wrong in the file without building it: a COPY of a path that moved, an
environment the daemon refuses, a health check that does not tell a live daemon from a dead
one. Each is checked here against the real daemon, as the image would run it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from streamd.tools.harness import free_port, wait_ready
from tests.e2e.support import start, stop
from tests.helpers import DEFAULT_MODEL, REPO

CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [ln for ln in CONTAINERFILE.read_text().splitlines() if not ln.startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def healthcheck() -> list[str]:
    (rest,) = [rest for word, rest in instructions() if word == "HEALTHCHECK"]
    return shlex.split(rest.split(" CMD ", 1)[1])


def test_every_copied_path_exists_in_the_repository() -> None:
    copies = [rest for word, rest in instructions() if word == "COPY" and "--from" not in rest]
    sources = [src for rest in copies for src in rest.split()[:-1]]
    assert sources, "the image copies nothing from the repository"
    for src in sources:
        assert (REPO / src).exists(), f"Containerfile copies {src}, which does not exist"


def test_the_image_runs_as_a_non_root_user_with_state_in_a_volume() -> None:
    words = dict(instructions())
    assert words["USER"] not in {"root", "0"}
    assert "/var/lib/streamd" in words["VOLUME"]
    assert image_env()["STREAMD_STATE__SNAPSHOT_PATH"].startswith("/var/lib/streamd/")
    assert words["ENTRYPOINT"] == '["streamd"]' and words["CMD"] == '["run"]'


def test_the_daemon_accepts_the_image_environment() -> None:
    env = {**os.environ, **image_env()}
    done = subprocess.run(
        [sys.executable, "-m", "streamd", "run", "--check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "configuration ok" in done.stdout


def test_the_health_check_tells_a_live_daemon_from_a_dead_one(broker: int, tmp_path: Path) -> None:
    cmd = healthcheck()
    assert cmd[0] == "python"
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, {})
    try:
        wait_ready(http_port)
        live = [sys.executable, *[c.replace("9841", str(http_port)) for c in cmd[1:]]]
        assert subprocess.run(live, timeout=30).returncode == 0
    finally:
        assert stop(proc) == 0
    dead = [sys.executable, *[c.replace("9841", str(free_port())) for c in cmd[1:]]]
    assert subprocess.run(dead, capture_output=True, timeout=30).returncode != 0
