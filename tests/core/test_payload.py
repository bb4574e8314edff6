"""Parsing at the edge: every message becomes a Sample or a rejection with a known reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.config import MqttSettings, StateSettings
from streamd.core.payload import REASONS, PayloadParser
from streamd.errors import PayloadError

MAX_BYTES = MqttSettings().max_payload_bytes
MAX_FUTURE_S = StateSettings().max_clock_skew_s


def parser(features: list[str], stream_id: str = "topic") -> PayloadParser:
    return PayloadParser(features, stream_id, MAX_BYTES, MAX_FUTURE_S)


NOW = 1_800_000_000.0  # arrival time: 2027-01-15
ONE = parser(["value"])
TWO = parser(["temp", "rpm"])


def reason(parser: PayloadParser, payload: bytes, topic: str = "sensors/a") -> str:
    with pytest.raises(PayloadError) as e:
        parser.parse(topic, payload, NOW)
    return e.value.reason


def test_accepted_forms() -> None:
    assert ONE.parse("t", b'{"ts": 5, "value": 1}', NOW).values == (1.0,)
    assert ONE.parse("t", b'{"value": 1}', NOW).ts_s == NOW  # arrival time
    assert ONE.parse("t", b"21.5", NOW).values == (21.5,)
    iso = ONE.parse("t", b'{"ts": "2026-11-22T10:00:00Z", "value": 1}', NOW).ts_s
    assert iso == 1795341600.0
    s = TWO.parse("t", b'{"ts": 5, "values": {"rpm": 900, "temp": 21.5}}', NOW)
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
        (ONE, b'{"value": 1.7e308}', "out_of_range"),  # finite, but a glitch: squares to inf
        (ONE, b"-2e15", "out_of_range"),
        (ONE, b'{"ts": 1800000301, "value": 1}', "future_timestamp"),  # 301 s ahead
        (ONE, b'{"ts": "2099-01-01T00:00:00Z", "value": 1}', "future_timestamp"),
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


@pytest.mark.parametrize(
    "device",
    [
        b'"pump\\u0000x"',  # NUL: a malformed PUBLISH for the alert topic
        b'"pump\\nFAKE log line"',  # a newline: lines injected into text logs
        b'"pump\\ud800"',  # a lone surrogate: not encodable as UTF-8
        b'"pump\\u001b[31m"',  # an escape sequence
        b'"pump\\u0085"',  # a C1 control character
    ],
)
def test_a_stream_id_with_control_characters_or_surrogates_is_rejected(device: bytes) -> None:
    fld = parser(["value"], "field:device")
    assert reason(fld, b'{"device": ' + device + b', "value": 1}') == "bad_stream_id"


def test_a_printable_stream_id_of_any_script_is_accepted_and_a_sample_at_the_skew_limit() -> None:
    fld = parser(["value"], "field:device")
    assert fld.parse("t", '{"device": "Pumpe #2 Ölkühler", "value": 1}'.encode(), NOW).stream == (
        "Pumpe #2 Ölkühler"
    )
    assert ONE.parse("t", b'{"ts": 1800000300, "value": 1}', NOW).ts_s == NOW + 300


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
