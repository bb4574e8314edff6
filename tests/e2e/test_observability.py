"""Prometheus and Grafana against a real running daemon.

promtool checks and unit-tests the alert rules and lints a real scrape; a real Prometheus
server scrapes the daemon and loads the rules; every metric the dashboard and the rules
name must exist in a real scrape, so neither can drift from the code.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamd.tools.harness import free_port, scrape, start_daemon, wait_port, wait_ready
from tests.e2e.support import publish_normal, wait_metric
from tests.helpers import DEFAULT_MODEL, REPO

PROM_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "streamd.json"
METRIC = re.compile(r"\bstreamd_[a-z0-9_]+")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed (scripts/test.sh installs Debian's prometheus)")
    return subprocess.run(
        [exe, *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=PROM_DIR
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A broker and a daemon that has scored some streams; yields (mqtt port, http port)."""
    from streamd.tools.harness import start_broker

    work = tmp_path_factory.mktemp("obs")
    mqtt_port, http_port = free_port(), free_port()
    broker, _ = start_broker(mqtt_port, work)
    proc = start_daemon(
        DEFAULT_MODEL,
        mqtt_port,
        http_port,
        extra_env={"STREAMD_STATE__SNAPSHOT_PATH": str(work / "state.npz")},
        log_path=work / "streamd.log",
    )
    try:
        wait_ready(http_port)
        sent = publish_normal(mqtt_port, streams=3, start=0, count=400)
        wait_metric(http_port, 'streamd_messages_total{result="accepted"}', sent)
        yield mqtt_port, http_port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        broker.terminate()
        broker.wait(10)


def scraped_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", "alerts.yml")
    print(out.stdout)
    assert out.returncode == 0 and "SUCCESS: 11 rules found" in out.stdout, out.stderr


def test_promtool_unit_tests_of_every_rule() -> None:
    out = promtool("test", "rules", "alerts_test.yml")
    print(out.stdout + out.stderr)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    rules = set(re.findall(r"- alert: (\w+)", (PROM_DIR / "alerts.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (PROM_DIR / "alerts_test.yml").read_text()))
    assert rules == tested, f"rules without a unit test: {rules - tested}"


def test_promtool_check_metrics_on_a_real_scrape(running: tuple[int, int]) -> None:
    out = promtool("check", "metrics", stdin=scrape(running[1]))
    print(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_and_rules_name_only_metrics_the_daemon_exports(
    running: tuple[int, int],
) -> None:
    names = scraped_names(scrape(running[1]))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used_by_dashboard = {m for e in exprs for m in METRIC.findall(e)}
    used_by_rules = set(METRIC.findall((PROM_DIR / "alerts.yml").read_text()))
    print(f"dashboard uses {len(used_by_dashboard)} metrics, rules {len(used_by_rules)}")
    assert not used_by_dashboard - names, f"dashboard: {used_by_dashboard - names}"
    assert not used_by_rules - names, f"alert rules: {used_by_rules - names}"
    assert len(used_by_dashboard) >= 15 and len(used_by_rules) >= 10


def test_dashboard_has_the_panels_operators_look_for() -> None:
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    for want in (
        "Messages by result",
        "Rejections by reason",
        "End-to-end latency (receipt to verdict)",
        "Inference time per batch",
        "Batch size",
        "Active streams",
        "Anomalies and alerts",
        "Top anomaly scores by stream",
        "MQTT connection",
        "Model",
    ):
        assert want in titles, want


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_prometheus_ready(port: int, timeout_s: float = 60.0) -> None:
    """Prometheus listens before its storage is up; it answers 503 until /-/ready is 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{port}/-/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"Prometheus not ready after {timeout_s} s")


def test_real_prometheus_scrapes_the_daemon_and_loads_the_rules(
    running: tuple[int, int], tmp_path: Path
) -> None:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus is not installed (scripts/test.sh installs Debian's package)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {PROM_DIR / 'alerts.yml'}\n"
        "scrape_configs:\n  - job_name: streamd\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{running[1]}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, 30)
        wait_prometheus_ready(port)
        deadline = time.monotonic() + 60
        up: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            up = query(port, 'up{job="streamd"}')
            accepted = query(port, 'streamd_messages_total{result="accepted"}')
            if up and up[0]["value"][1] == "1" and accepted:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no streamd samples in Prometheus: {up}")
        print(f"up={up[0]['value'][1]} accepted={accepted[0]['value'][1]}")
        assert float(accepted[0]["value"][1]) >= 1200
        assert query(port, "streamd_mqtt_connected")[0]["value"][1] == "1"
        model = query(port, "streamd_model_info")[0]["metric"]
        assert model["name"] == "default" and len(model["version"]) == 12
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as r:
            groups = json.load(r)["data"]["groups"]
        rules = [rule for g in groups for rule in g["rules"]]
        assert len(rules) == 11 and all(rule["health"] in ("ok", "unknown") for rule in rules)
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
