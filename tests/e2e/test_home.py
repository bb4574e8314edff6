"""The MQTT conventions smart-home users rely on, over a real Mosquitto: availability with a
last will, and Home Assistant discovery (opt-in) for the streams that matter."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from streamd.tools.harness import wait_ready
from tests.e2e.support import start, stop
from tests.e2e.test_hostile import anomalous_stream, publish_all, wait_counted
from tests.helpers import DEFAULT_MODEL


def retained(port: int, topic: str, timeout_s: float = 5.0) -> dict[str, bytes]:
    """Every retained message under ``topic`` (a filter), as a fresh subscriber gets them."""
    got: dict[str, bytes] = {}
    done = threading.Event()
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got[msg.topic] = msg.payload

    c.on_message = on_message
    c.on_subscribe = lambda *a: threading.Timer(1.0, done.set).start()
    c.connect("127.0.0.1", port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    done.wait(timeout_s)
    c.disconnect()
    c.loop_stop()
    return got


CLIENTS = {"mqtt5": {}, "paho-3.1.1": {"STREAMD_MQTT__PROTOCOL": "3.1.1"}}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_online_is_retained_and_offline_follows_a_crash_and_a_clean_stop(
    broker: int, tmp_path: Path, client: str
) -> None:
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, CLIENTS[client], "a")
    wait_ready(http_port)
    assert retained(broker, "streamd/status") == {"streamd/status": b"online"}
    proc.send_signal(signal.SIGKILL)  # the receiver sees its pipe close and exits: no DISCONNECT
    proc.wait(10)
    deadline_s = 10.0
    got = {}
    while deadline_s > 0 and got.get("streamd/status") != b"offline":
        got = retained(broker, "streamd/status", timeout_s=2.0)
        deadline_s -= 2.0
    assert got == {"streamd/status": b"offline"}  # the last will
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, CLIENTS[client], "b")
    wait_ready(http_port)
    assert retained(broker, "streamd/status") == {"streamd/status": b"online"}
    assert stop(proc) == 0
    assert retained(broker, "streamd/status") == {"streamd/status": b"offline"}


def test_home_assistant_discovery_is_retained_for_streams_that_matter(
    broker: int, tmp_path: Path
) -> None:
    env = {"STREAMD_HOMEASSISTANT__ENABLED": "true"}
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, env, "ha")
    try:
        wait_ready(http_port)
        messages = anomalous_stream("sensors/pump", n=830)
        publish_all(broker, messages)
        wait_counted(http_port, len(messages))
        configs = retained(broker, "homeassistant/#")
        assert len(configs) == 2, sorted(configs)
        kinds = {topic.split("/")[1]: json.loads(body) for topic, body in configs.items()}
        assert set(kinds) == {"binary_sensor", "sensor"}
        for doc in kinds.values():
            for field in ("name", "unique_id", "state_topic", "availability_topic", "device"):
                assert field in doc, field
            assert doc["state_topic"] == "streamd/state/sensors/pump"
            assert doc["availability_topic"] == "streamd/status"
            assert doc["device"]["identifiers"] and doc["device"]["sw_version"]
        assert kinds["binary_sensor"]["device_class"] == "problem"
        state = json.loads(retained(broker, "streamd/state/#")["streamd/state/sensors/pump"])
        assert state["anomalous"] is True and 0.0 <= state["score"] <= 1.0
    finally:
        assert stop(proc) == 0


def test_no_discovery_unless_enabled(broker: int, tmp_path: Path) -> None:
    proc, http_port, _ = start(broker, DEFAULT_MODEL, tmp_path, {}, "noha")
    try:
        wait_ready(http_port)
        messages = anomalous_stream("sensors/pump", n=400)
        publish_all(broker, messages)
        wait_counted(http_port, len(messages))
        assert retained(broker, "homeassistant/#", timeout_s=2.0) == {}
        assert retained(broker, "streamd/state/#", timeout_s=2.0) == {}
    finally:
        stop(proc)
