"""The links' own reconnect schedule, against a real closed loopback port: exponential
bounds from ``reconnect_min_s`` to ``reconnect_max_s``, each delay drawn below its bound
(full jitter), sub-second delays kept sub-second (paho's own loop rounded them to seconds)."""

from __future__ import annotations

import logging
import random
import time

import pytest

from streamd.runtime.logs import RateLimitedLog
from streamd.runtime.mqtt.link import CONNECT_FAILED, Backoff
from streamd.runtime.mqtt.link_mqtt5 import Mqtt5Link
from streamd.runtime.mqtt.link_paho import PahoLink
from streamd.runtime.mqtt.messages import LinkOptions
from streamd.tools.harness import free_port


def options(
    port: int, reconnect_min_s: float, reconnect_max_s: float, protocol: str
) -> LinkOptions:
    return LinkOptions(
        host="127.0.0.1",
        port=port,
        protocol=protocol,
        client="auto",
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
        max_payload_bytes=4096,
        status_topic=None,
    )


class NoOutbox:
    def put(self, *args: object) -> None:
        raise AssertionError("nothing is received from a closed port")

    too_large = put


@pytest.mark.parametrize(("link_cls", "protocol"), [(PahoLink, "3.1.1"), (Mqtt5Link, "5")])
def test_refused_connections_back_off_within_doubling_bounds(link_cls, protocol: str) -> None:
    events: list[str] = []
    link = link_cls(
        options(free_port(), 0.05, 0.3, protocol),
        NoOutbox(),
        events.append,
        RateLimitedLog(logging.getLogger("test"), 60.0),
    )
    link.start()
    waits = []
    for _ in range(6):
        before = time.monotonic()
        while link.due_in(before) > 0:  # not yet due: an attempt now must do nothing
            failed = events.count(CONNECT_FAILED)
            link.connect_if_due(before)
            assert events.count(CONNECT_FAILED) == failed
            time.sleep(link.due_in(before))
            before = time.monotonic()
        link.connect_if_due(before)  # refused: nothing listens on the port
        waits.append(link.due_in(time.monotonic()))
    assert events.count(CONNECT_FAILED) == 6
    for wait, bound in zip(waits, [0.05, 0.1, 0.2, 0.3, 0.3, 0.3], strict=True):
        assert 0.0 <= wait <= bound, (wait, bound)


def test_equal_jitter_spreads_a_fleet_over_the_upper_half_of_the_bound() -> None:
    """A thousand clients that lost the same broker: their third attempts spread evenly
    over [2 s, 4 s), not in lockstep at 4 s, and none comes back at once (a draw near 0
    would let attempts during a short outage double the bound within a second)."""
    thirds = []
    for seed in range(1000):
        b = Backoff(1.0, 60.0, random.Random(seed))
        thirds.append([b.next() for _ in range(3)][-1])
    assert 2.0 <= min(thirds) < 2.1 and 3.9 < max(thirds) <= 4.0
    assert 2.9 < sum(thirds) / len(thirds) < 3.1  # the mean of a uniform draw in [2, 4)
    b = Backoff(1.0, 60.0, random.Random(0))
    for _ in range(20):
        assert b.next() <= 60.0
    b.reset()
    assert b.next() <= 1.0
