"""Home Assistant MQTT discovery: each stream that matters appears as two entities.

With ``homeassistant.enabled``, each stream that holds per-stream series (the capped set of
:mod:`.stream_series`: streams in or lately in an anomaly first) gets two retained
discovery configs under ``<discovery_prefix>/``: a ``binary_sensor`` (device class
``problem``: on while the stream is in an anomaly) and a ``sensor`` (its anomaly score),
both reading the retained JSON state on ``<state_topic_prefix>/<stream>``, both available
while the daemon's ``mqtt.status_topic`` says ``online``, and both on one device, this
streamd instance. A stream that loses its series (displaced or evicted) has its configs
removed with empty retained messages, as Home Assistant expects. States go out when a
stream's anomaly starts or ends, else at most every ``state_interval_s``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from streamd import __version__
from streamd.config import Settings
from streamd.core.alerts import alert_topic
from streamd.runtime.mqtt.messages import Outgoing


def object_id(stream: str) -> str:
    """A discovery object id for ``stream``: its own name where allowed, and a short hash so
    that ``a/b`` and ``a_b`` stay two.

    >>> object_id("sensors/pump #7")
    'sensors_pump_7_6cd672'
    """
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", stream).strip("_")[:64] or "stream"
    return f"{slug}_{hashlib.sha1(stream.encode('utf-8')).hexdigest()[:6]}"


class HomeAssistant:
    """Discovery configs and throttled states of the streams that matter."""

    def __init__(self, settings: Settings) -> None:
        ha, mq = settings.homeassistant, settings.mqtt
        self.prefix, self.state_prefix = ha.discovery_prefix, ha.state_topic_prefix
        self.interval_s = ha.state_interval_s
        self.node = object_id(mq.client_id)
        self.availability = mq.status_topic if mq.availability else None
        self.device = {
            "identifiers": [f"streamd_{self.node}"],
            "name": f"streamd {mq.client_id}",
            "manufacturer": "streamd",
            "model": "streamd anomaly detector",
            "sw_version": __version__,
        }
        self._sent: dict[str, tuple[bool, float]] = {}  # stream -> last (anomalous, at)

    def _config_topics(self, stream: str) -> tuple[str, str]:
        oid = object_id(stream)
        return (
            f"{self.prefix}/binary_sensor/{self.node}/{oid}_anomaly/config",
            f"{self.prefix}/sensor/{self.node}/{oid}_score/config",
        )

    def announce(self, stream: str) -> list[Outgoing]:
        """The retained discovery configs of a stream that now holds series."""
        state = alert_topic(self.state_prefix, stream)
        oid = object_id(stream)
        common: dict[str, Any] = {"state_topic": state, "device": self.device}
        if self.availability is not None:
            common |= {
                "availability_topic": self.availability,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        anomaly = common | {
            "name": f"{stream} anomaly",
            "unique_id": f"streamd_{self.node}_{oid}_anomaly",
            "device_class": "problem",
            "value_template": "{{ 'ON' if value_json.anomalous else 'OFF' }}",
        }
        score = common | {
            "name": f"{stream} anomaly score",
            "unique_id": f"streamd_{self.node}_{oid}_score",
            "state_class": "measurement",
            "value_template": "{{ value_json.score }}",
        }
        b_topic, s_topic = self._config_topics(stream)
        return [
            Outgoing(b_topic, json.dumps(anomaly).encode(), 1, None, retain=True),
            Outgoing(s_topic, json.dumps(score).encode(), 1, None, retain=True),
        ]

    def withdraw(self, stream: str) -> list[Outgoing]:
        """Empty retained configs (and state): Home Assistant removes the entities."""
        self._sent.pop(stream, None)
        topics = [*self._config_topics(stream), alert_topic(self.state_prefix, stream)]
        return [Outgoing(t, b"", 1, None, retain=True) for t in topics]

    def states(
        self, now: float, news: dict[str, tuple[float | None, bool, float]], exported: Any
    ) -> list[Outgoing]:
        """Retained states of exported streams whose anomaly changed or whose last state is
        older than the interval."""
        out = []
        for stream, (score, anomalous, _) in news.items():
            if score is None or stream not in exported:
                continue
            last = self._sent.get(stream)
            if last is not None and last[0] == anomalous and now - last[1] < self.interval_s:
                continue
            self._sent[stream] = (anomalous, now)
            body = json.dumps({"score": round(score, 4), "anomalous": anomalous, "ts": now})
            out.append(
                Outgoing(alert_topic(self.state_prefix, stream), body.encode(), 0, None, True)
            )
        return out
