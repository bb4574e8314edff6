"""End to end over a real Mosquitto: simulate -> streamd run -> alerts and /metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streamd.config import Settings
from streamd.errors import ConfigError
from streamd.tools.demo import match
from streamd.tools.harness import (
    AlertCollector,
    free_port,
    metric_values,
    scrape,
    start_daemon,
    wait_ready,
)
from streamd.tools.simulate import publish
from streamd.tools.synth import Scenario, build
from tests.helpers import DEFAULT_MODEL

MALFORMED = [
    ("sensors/bad-json", b"{not json"),
    ("sensors/no-value", b'{"ts": 1767225600, "temp": 3}'),
    ("sensors/nan", b'{"value": NaN}'),
    ("sensors/text", b'{"value": "high"}'),
    ("sensors/bad-ts", b'{"ts": "yesterday", "value": 1}'),
    ("sensors/huge", b"[" + b"1," * 3000 + b"1]"),
    ("sensors/ms-ts", b'{"ts": 1767225600000, "value": 1}'),
]
EXPECTED_REASONS = {
    "not_json": 1,
    "no_value": 1,
    "non_finite": 1,
    "bad_value": 1,
    "bad_timestamp": 2,
    "too_large": 1,
}


RECEIVERS = {
    "process": {},  # the default: its own process, MQTT 5 through the mqtt5 client
    "thread": {"STREAMD_MQTT__RECEIVER": "thread"},
    "paho-3.1.1": {"STREAMD_MQTT__PROTOCOL": "3.1.1"},
    "paho-5": {"STREAMD_MQTT__CLIENT": "paho"},
}


@pytest.fixture(params=list(RECEIVERS))
def daemon(broker: int, tmp_path: Path, request: pytest.FixtureRequest):
    """``streamd run`` with each receiver (a process or a thread) and each MQTT client."""
    http_port = free_port()
    log = tmp_path / "streamd.log"
    env = RECEIVERS[request.param]
    proc = start_daemon(DEFAULT_MODEL, broker, http_port, extra_env=env, log_path=log)
    try:
        wait_ready(http_port)
    except TimeoutError:
        proc.kill()
        pytest.fail(f"daemon did not become ready:\n{log.read_text()[-3000:]}")
    yield http_port, proc, log
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def wait_accounted(http_port: int, expected: int, timeout_s: float = 60.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        m = metric_values(scrape(http_port))
        total = sum(v for k, v in m.items() if k.startswith("streamd_messages_total{"))
        if total >= expected or time.monotonic() > deadline:
            return m
        time.sleep(0.25)


def test_simulated_sensors_are_alerted_and_every_message_accounted(broker: int, daemon) -> None:
    http_port, _, _ = daemon
    scenario = Scenario(
        streams=10,
        samples=1300,  # 300 quiet samples after the last anomaly: alerts resolve
        anomaly_start=650,
        anomaly_end=900,
        kinds=("spike", "level_shift", "drift", "noise_burst", "dropout"),
        seed=3,
    )
    alerts = AlertCollector(broker)
    counts = publish(scenario, host="127.0.0.1", port=broker, rate=2500, qos=1, extra=MALFORMED)
    m = wait_accounted(http_port, counts["published"] + counts["extra"])
    time.sleep(1.0)
    alerts.stop()

    # every message is accounted for: accepted + each rejection = published
    by_result = {
        k.split('"')[1]: v for k, v in m.items() if k.startswith("streamd_messages_total{")
    }
    assert sum(by_result.values()) == counts["published"] + len(MALFORMED)
    assert by_result["accepted"] == counts["published"]
    for reason, n in EXPECTED_REASONS.items():
        assert by_result[reason] == n, reason
    assert m["streamd_active_streams"] == scenario.streams  # malformed topics made no streams

    # the injected anomalies are alerted, with few false alerts
    _, truth = build(scenario)
    hit, false = match(truth, alerts.alerts, scenario.step_s)
    recall = len(hit) / len(truth)
    print(f"recall {recall:.2f} ({len(hit)}/{len(truth)}), false alerts {len(false)}")
    assert recall >= 0.9
    assert len(false) <= 2

    # alerts have the documented payload, on streamd/alerts/<stream>
    opened = [a for a in alerts.alerts if a["state"] == "anomaly"]
    resolved = {a["alert_id"]: a for a in alerts.alerts if a["state"] == "resolved"}
    for a in opened:
        assert a["_topic"] == f"streamd/alerts/{a['stream']}"
        assert a["model"] == "default" and len(a["model_version"]) == 12
        assert 0 <= a["score"] <= 1 and a["threshold"] == Settings().scoring.threshold
        assert a["source"] in ("forecast", "profile")  # the seasonal profile is on by default
        assert set(a["contributions"]) == {"value"}
        assert isinstance(a["value"], float) and isinstance(a["predicted"], float)
    pairs = [resolved[a["alert_id"]] for a in opened if a["alert_id"] in resolved]
    assert pairs and all(
        r["end_ts"] >= r["start_ts"] and r["peak_score"] >= r["score"] for r in pairs
    )
    assert m['streamd_alerts_published_total{state="anomaly"}'] == len(opened)
    assert m["streamd_mqtt_connected"] == 1
    assert m["streamd_end_to_end_latency_seconds_count"] == counts["published"]


def test_health_and_clean_stop(daemon) -> None:
    http_port, proc, log = daemon
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz") as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz") as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{http_port}/nope")
    text = scrape(http_port)
    assert "streamd_model_info{" in text and "streamd_build_info{" in text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert "stopped after" in log.read_text()


def streamd_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["streamd", "run", *args], capture_output=True, text=True, timeout=60)


def test_bad_config_fails_at_start_naming_the_field(tmp_path: Path) -> None:
    conf = tmp_path / "streamd.toml"
    model = str(DEFAULT_MODEL)
    conf.write_text("[mqtt]\nport = 70000\n")
    r = streamd_run("--config", str(conf), "--model", model)
    assert r.returncode == 2 and "mqtt.port" in r.stderr and "Traceback" not in r.stderr
    conf.write_text('[inference]\nmode = "step"\nbatch_size = 3\n')
    r = streamd_run("--check-config", "--config", str(conf), "--model", model)
    assert r.returncode == 2 and "inference.batch_size" in r.stderr
    conf.write_text('[inference]\nmode = "step"\n')
    r = streamd_run("--check-config", "--config", str(conf), "--model", model)
    assert r.returncode == 0 and "self-test" in r.stdout
    r = streamd_run("--check-config", "--config", str(conf), "--model", str(tmp_path / "x.onnx"))
    assert r.returncode == 1 and "no such file" in r.stderr


def test_config_precedence_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamd.config import load_settings

    conf = tmp_path / "streamd.toml"
    conf.write_text('[mqtt]\nport = 1001\nhost = "10.0.0.1"\n[scoring]\nthreshold = 0.7\n')
    monkeypatch.setenv("STREAMD_MQTT__PORT", "1002")
    s = load_settings(conf, {"mqtt": {"host": "127.0.0.2"}})
    assert (s.mqtt.port, s.mqtt.host, s.scoring.threshold) == (1002, "127.0.0.2", 0.7)
    assert load_settings(conf, {"mqtt": {"port": 1003}}).mqtt.port == 1003


def test_config_reference_parses_back(tmp_path: Path) -> None:
    from streamd.config import defaults_as_toml, load_settings

    conf = tmp_path / "defaults.toml"
    conf.write_text(defaults_as_toml())
    assert load_settings(conf).model_dump() == load_settings(None).model_dump()


def test_password_file_and_inline_password_are_exclusive(tmp_path: Path) -> None:
    from streamd.config import load_settings
    from streamd.errors import ConfigError

    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = load_settings(None, {"mqtt": {"username": "u", "password_file": str(secret)}})
    assert s.mqtt.read_password() == "s3cret"
    with pytest.raises(ConfigError, match="mqtt: set password or password_file"):
        load_settings(None, {"mqtt": {"password": "x", "password_file": str(secret)}})
    json.dumps(s.model_dump(mode="json"))  # settings serialise (for the docs reference)


def test_numeric_choices_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamd.config import load_settings

    monkeypatch.setenv("STREAMD_MQTT__QOS", "0")
    monkeypatch.setenv("STREAMD_ALERTS__QOS", "2")
    s = load_settings(None)
    assert (s.mqtt.qos, s.alerts.qos) == (0, 2)
    monkeypatch.setenv("STREAMD_MQTT__QOS", "3")
    with pytest.raises(ConfigError, match=r"mqtt\.qos"):
        load_settings(None)
