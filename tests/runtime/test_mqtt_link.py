"""The receiver's own reconnect schedule (``streamd.runtime.mqtt.client.MqttLink``), against a
real closed loopback port: paho's loop rounded sub-second delays to whole seconds; streamd's
must not."""

from __future__ import annotations

import logging
import time

from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.mqtt.client import CONNECT_FAILED, MqttLink
from streamd.runtime.mqtt.messages import LinkOptions
from streamd.tools.harness import free_port


def options(port: int, reconnect_min_s: float, reconnect_max_s: float) -> LinkOptions:
    return LinkOptions(
        host="127.0.0.1",
        port=port,
        protocol="5",
        client_id="streamd-backoff-test",
        clean_start=False,
        session_expiry_s=60,
        topics=["sensors/#"],
        qos=1,
        keepalive_s=30,
        reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
        username=None,
        password=None,
        tls_ca_file=None,
        tls_cert_file=None,
        tls_key_file=None,
    )


def test_refused_connections_back_off_from_the_minimum_doubling_to_the_maximum() -> None:
    events: list[str] = []
    link = MqttLink(
        options(free_port(), reconnect_min_s=0.05, reconnect_max_s=0.3),
        forward=lambda raw: None,
        report=events.append,
        problems=RateLimitedLog(logging.getLogger("test"), 60.0),
    )
    link.start()
    waits = []
    for _ in range(5):
        before = time.monotonic()
        while link.due_in(before) > 0:  # not yet due: an attempt now must do nothing
            failed = events.count(CONNECT_FAILED)
            link.connect_if_due(before)
            assert events.count(CONNECT_FAILED) == failed
            time.sleep(link.due_in(before))
            before = time.monotonic()
        link.connect_if_due(before)  # refused: nothing listens on the port
        after = time.monotonic()
        # the next attempt is due `delay` after a moment between `before` and `after`
        waits.append((link.due_in(after), link.due_in(before)))
    assert events.count(CONNECT_FAILED) == 5
    for (low, high), delay in zip(waits, [0.05, 0.1, 0.2, 0.3, 0.3], strict=True):
        assert low <= delay <= high, (low, delay, high)
