"""The receiver on a thread (``mqtt.receiver = "thread"``), driven in-process over a real broker.

tests/test_receiver.py runs ``streamd run`` as users do; here the daemon's side
(:class:`MqttProxy`) is built directly, so that the thread can be ended under it, which
cannot be done to a thread from outside the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from streamd.config import load_settings
from streamd.core.payload import PayloadParser, Sample
from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.metrics import Metrics
from streamd.runtime.mqtt.proxy import MqttProxy
from streamd.runtime.mqtt.receivers import ReceiverThread

log = logging.getLogger("test_receivers")


@pytest.fixture
def proxy(broker: int) -> Iterator[tuple[MqttProxy, threading.Event, Metrics]]:
    settings = load_settings(
        None, {"mqtt": {"port": broker, "receiver": "thread", "client_id": "t-receivers"}}
    )
    metrics = Metrics(CollectorRegistry(), settings.http.stream_score_cap)
    lost = threading.Event()

    class Sink:
        def __init__(self) -> None:
            self.samples: list[Sample] = []

        def put(self, sample: Sample) -> bool:
            self.samples.append(sample)
            return True

        def reconnected(self) -> None:
            pass

        def close(self) -> None:
            pass

    p = MqttProxy(
        settings,
        PayloadParser(
            ["value"], "topic", settings.mqtt.max_payload_bytes, settings.state.max_clock_skew_s
        ),
        Sink(),
        metrics,
        RateLimitedLog(log, 1.0),
        lost.set,
    )
    p.start()
    try:
        yield p, lost, metrics
    finally:
        p.stop()


def test_a_receiver_thread_that_ends_stops_the_daemon(
    proxy: tuple[MqttProxy, threading.Event, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    """As a dead receiver process does: ``on_lost`` (the daemon then exits with code 1)."""
    p, lost, metrics = proxy
    assert p.connected.wait(10)
    receiver = p._receiver
    assert isinstance(receiver, ReceiverThread)
    with caplog.at_level(logging.ERROR, logger="streamd.runtime.mqtt.proxy"):
        receiver.kill()  # its loop sees its pipe closed and returns
        assert lost.wait(10) and p.lost
    assert receiver.wait(5)
    assert "the MQTT receiver thread exited (code 0); stopping streamd" in caplog.text
    assert not p.connected.is_set()
    assert metrics.registry.get_sample_value("streamd_mqtt_connected") == 0


def test_stopping_ends_the_receiver_thread_without_calling_it_lost(
    proxy: tuple[MqttProxy, threading.Event, Metrics],
) -> None:
    p, lost, _ = proxy
    assert p.connected.wait(10)
    receiver = p._receiver
    assert receiver is not None
    p.stop()
    assert receiver.wait(0) and receiver.outcome() == "code 0"
    assert not lost.is_set() and not p.lost
