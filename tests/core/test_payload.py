"""Parsing at the edge: every message becomes a Sample or a rejection with a known reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.config import MqttSettings
from streamd.core.payload import REASONS, PayloadParser
from streamd.errors import PayloadError

MAX_BYTES = MqttSettings().max_payload_bytes


def parser(features: list[str], stream_id: str = "topic") -> PayloadParser:
    return PayloadParser(features, stream_id, MAX_BYTES)


ONE = parser(["value"])
TWO = parser(["temp", "rpm"])


def reason(parser: PayloadParser, payload: bytes, topic: str = "sensors/a") -> str:
    with pytest.raises(PayloadError) as e:
        parser.parse(topic, payload, 100.0)
    return e.value.reason


def test_accepted_forms() -> None:
    assert ONE.parse("t", b'{"ts": 5, "value": 1}', 9.0).values == (1.0,)
    assert ONE.parse("t", b'{"value": 1}', 9.0).ts_s == 9.0  # arrival time
    assert ONE.parse("t", b"21.5", 9.0).values == (21.5,)
    iso = ONE.parse("t", b'{"ts": "2026-11-22T10:00:00Z", "value": 1}', 9.0).ts_s
    assert iso == 1795341600.0
    s = TWO.parse("t", b'{"ts": 5, "values": {"rpm": 900, "temp": 21.5}}', 9.0)
    assert s.values == (21.5, 900.0)  # card order, not payload order


@pytest.mark.parametrize(
    ("parser", "payload", "expected"),
    [
        (ONE, b"{", "not_json"),
        (ONE, b"\xff\xfe", "not_json"),
        (ONE, b"[1, 2]", "no_value"),
        (ONE, b'{"v": 1}', "no_value"),
        (ONE, b'{"value": "1"}', "bad_value"),
        (ONE, b'{"value": true}', "bad_value"),
        (ONE, b'{"value": NaN}', "non_finite"),
        (ONE, b'{"value": 1e999}', "non_finite"),
        (ONE, b"9" * 400, "non_finite"),
        (TWO, b'{"values": {"temp": 1}}', "missing_feature"),
        (TWO, b'{"values": {"temp": 1, "rpm": 2, "x": 3}}', "unknown_feature"),
        (TWO, b"3", "missing_feature"),
        (ONE, b'{"ts": "noon", "value": 1}', "bad_timestamp"),
        (ONE, b'{"ts": 1700000000000, "value": 1}', "bad_timestamp"),  # milliseconds
        (ONE, b'{"ts": -1, "value": 1}', "bad_timestamp"),
        (ONE, b" " * 5000, "too_large"),
        (ONE, b"[" * 2000 + b"]" * 2000, "not_json"),  # nesting deeper than the parser allows
    ],
)
def test_rejections_have_reasons(parser: PayloadParser, payload: bytes, expected: str) -> None:
    assert reason(parser, payload) == expected


def test_stream_id_sources() -> None:
    seg = parser(["value"], "segment:1")
    assert seg.parse("site/pump7/temp", b"1", 0).stream == "pump7"
    assert parser(["value"], "segment:-1").parse("a/b/c", b"1", 0).stream == "c"
    assert reason(seg, b"1", topic="flat") == "bad_stream_id"
    fld = parser(["value"], "field:id")
    assert fld.parse("t", b'{"id": "m1", "value": 1}', 0).stream == "m1"
    assert reason(fld, b'{"value": 1}') == "bad_stream_id"
    assert reason(ONE, b"1", topic="x" * 300) == "bad_stream_id"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=300), topic=st.text(min_size=1, max_size=40))
def test_arbitrary_bytes_never_escape(payload: bytes, topic: str) -> None:
    for p in (ONE, TWO, parser(["value"], "field:id")):
        try:
            p.parse(topic, payload, 1.0)
        except PayloadError as e:
            assert e.reason in REASONS


@settings(max_examples=400, deadline=None)
@given(doc=json_values, ts=json_values)
def test_arbitrary_json_never_escapes(doc: object, ts: object) -> None:
    payloads = [
        json.dumps(doc).encode(),
        json.dumps({"ts": ts, "value": doc}).encode(),
        json.dumps({"values": doc}).encode(),
    ]
    for payload in payloads:
        for p in (ONE, TWO):
            try:
                s = p.parse("t", payload, 1.0)
            except PayloadError as e:
                assert e.reason in REASONS
            else:
                assert all(isinstance(v, float) for v in s.values)
