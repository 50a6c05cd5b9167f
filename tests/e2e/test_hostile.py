"""Hostile input: property-based tests (hypothesis) and a fuzz run of 10^5 messages.

Whatever arrives, the parse step never raises, every rejected input lands in the dead-letter queue
with a reason from the closed set, and valid records are unaffected; whatever text ends up in a
name, the encoded line protocol stays one parseable line that InfluxDB stores back exactly.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from bytewax.testing import TestingSource, run_main
from capture import Capture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinwatch import lineprotocol as lp
from twinwatch.config import load_config
from twinwatch.engine.parse import Parser
from twinwatch.flows.dataflow import build_flow
from twinwatch.influx import InfluxV1Writer
from twinwatch.schema import DEAD_LETTER_REASONS, Reading

CHLORINE = "city/water/sejong-wtp/clearwell/chlorine"
T0 = datetime(2026, 11, 20, tzinfo=UTC)
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def config():
    return load_config(environ={"TWINWATCH__SERVICES__ALERTMANAGER__URL": "http://127.0.0.1:9"})


@pytest.fixture(scope="module")
def parser(config):
    return Parser(config)


@SETTINGS
@given(topic=st.text(max_size=120), payload=st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(parser, topic, payload):
    oks, errs = parser.split([(topic, payload)])
    assert len(oks) + len(errs) == 1
    assert all(e.reason in DEAD_LETTER_REASONS and e.detail for e in errs)


json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
times = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.just(UTC),
    ).map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat()),  # naive
    st.text(max_size=30),
    st.integers(),
    st.none(),
)


@SETTINGS
@given(
    value=json_junk, time=times, extra=st.dictionaries(st.text(max_size=8), json_junk, max_size=3)
)
def test_hostile_json_on_a_real_topic(parser, value, time, extra):
    doc = {**extra, "time": time, "value": value}
    payload = json.dumps(doc, allow_nan=True, default=str).encode()
    oks, errs = parser.split([(CHLORINE, payload)])
    assert len(oks) + len(errs) == 1
    for r in oks:  # whatever got through is a sane reading
        assert math.isfinite(r.value) and r.time.tzinfo is not None
        assert datetime(1677, 9, 22, tzinfo=UTC) <= r.time
        assert r.time < datetime.now(UTC) + timedelta(days=1)
    assert all(e.reason in DEAD_LETTER_REASONS for e in errs)


# names with every character InfluxDB's line protocol treats specially (backslashes are tested
# with their documented exceptions in test_lineprotocol.py)
hostile_name = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\\\x00"),
    min_size=1,
    max_size=24,
).filter(lambda s: s.strip())


@pytest.mark.services
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(site=hostile_name, sensor=hostile_name, unit=hostile_name)
def test_hostile_names_round_trip_through_real_influxdb(influxdb, site, sensor, unit):
    """Real InfluxDB 1.6.7: a reading whose tags hold `, = " ' space newline` and any unicode
    is one valid line, and the tag values come back exactly (newlines as the two chars \\n)."""
    db = "hostile"
    influxdb.create_database(db)
    lp.reset()
    r = Reading(T0, "water", site, "asset", sensor, "q", unit, 1.5)
    (line,) = lp.encode(r)
    assert "\n" not in line
    want = {
        k: v.replace("\n", "\\n") for k, v in (("site", site), ("sensor", sensor), ("unit", unit))
    }
    with InfluxV1Writer(influxdb.url, db) as w:
        w.query("DROP SERIES FROM reading")  # each example starts empty
        w.write([line])
        rows = [
            dict(zip(s["columns"], v))
            for res in w.query("SELECT value, site, sensor, unit FROM reading")
            for s in res.get("series", [])
            for v in s["values"]
        ]
    assert [(x["site"], x["sensor"], x["unit"], x["value"]) for x in rows] == [
        (want["site"], want["sensor"], want["unit"], 1.5)
    ]


def _hostile(rng: random.Random, i: int) -> tuple[str, bytes]:
    kind = i % 10
    t = (T0 + timedelta(seconds=i)).isoformat()
    if kind == 0:
        return CHLORINE, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    if kind == 1:
        return CHLORINE, b'{"time":"%s","value":%s}' % (
            t.encode(),
            rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"nan"]),
        )
    if kind == 2:
        return CHLORINE, json.dumps({"time": t, "value": [[{"a": [None, {}]}]] * 3}).encode()
    if kind == 3:
        topic = rng.choice(
            [
                'city/water/x,y=1 z/a/"b"',
                "city/water/sejong-wtp/clearwell/chlorine\n",
                "city/../../etc/passwd",
                "city/water/'; DROP DATABASE twinwatch;--/a/b",
                "city/water/sejong-wtp/clearwell/chlorine/extra",
                "",
                "#",
                "$SYS/x",
            ]
        )
        return topic, b'{"time":"%s","value":1}' % t.encode()
    if kind == 4:
        far = rng.choice(
            [
                "0001-01-01T00:00:00Z",
                "9999-12-31T23:59:59Z",
                "1600-02-29T00:00:00Z",
                "2300-01-01T00:00:00Z",
                "2026-13-45T99:99:99Z",
                "2026-11-20T00:00:00",
            ]
        )
        return CHLORINE, b'{"time":"%s","value":0.5}' % far.encode()
    if kind == 5:
        return CHLORINE, rng.choice(
            [
                b'{"time":"%s","value":"0.5"}',
                b'{"time":"%s","value":true}',
                b'{"time":"%s"}',
                b'{"time":"%s","value":null}',
                b'["%s", 0.5]',
            ]
        ) % t.encode()
    if kind == 6:
        return CHLORINE, b'{"time":"%s","value":0.5,"unit":"\\u0000\\ud800"}' % t.encode()
    if kind == 7:
        return CHLORINE, b'{"time":"%s","value":0.5' % t.encode()  # truncated
    if kind == 8:
        return "city/security/sejong-soc/gw-1/firewall", json.dumps(
            {"time": t, "action": "deny", "src_ip": "x" * 100, "dst_port": -1}
        ).encode()
    if i % 1000 == 9:  # a few huge payloads
        return CHLORINE, b'{"time":"%s","value":1,"pad":"%s"}' % (t.encode(), b"A" * 70_000)
    return CHLORINE, b"\x00" * rng.randint(1, 8)


def test_fuzz_100k_hostile_messages_through_the_flow(config):
    """10^5 hostile messages interleaved with 10^4 valid readings (duplicates and out-of-order
    among them) through the real dataflow: no crash, every hostile one dead-lettered with a
    reason, every valid one stored with its exact value."""
    rng = random.Random(20261123)
    valid = []
    for i in range(10_000):
        t = T0 + timedelta(minutes=i % 2000)  # repeats: duplicates; shuffled: out of order
        valid.append(
            (
                CHLORINE,
                b'{"time":"%s","value":%r}' % (t.isoformat().encode(), 0.5 + (i % 2000) / 10_000),
            )
        )
    rng.shuffle(valid)
    hostile = [_hostile(rng, i) for i in range(100_000)]
    stream = hostile + valid
    rng.shuffle(stream)
    batches = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    influx, alerts, dead = Capture(), Capture(), Capture()
    run_main(
        build_flow(
            config,
            TestingSource(batches),
            influx_sink=influx,
            alert_sink=alerts,
            dead_letter_sink=dead,
        )
    )
    assert len(dead.items) == len(hostile)
    assert {d.reason for d in dead.items} <= set(DEAD_LETTER_REASONS)
    assert {
        "bad_encoding",
        "non_finite",
        "bad_schema",
        "bad_topic",
        "unknown_sensor",
        "bad_time",
        "bad_json",
        "too_large",
    } <= {d.reason for d in dead.items}
    readings = [r for r in influx.items if type(r) is Reading]
    assert len(readings) == len(valid)
    stored = {(r.time, r.value) for r in readings}
    assert stored == {(T0 + timedelta(minutes=m), 0.5 + m / 10_000) for m in range(2000)}


# --- issue #15: the whole payload grammar, datetime edges, encodings, nesting ----------------

FIREWALL = "city/security/sejong-soc/gw-1/firewall"
SSHD = "city/security/sejong-soc/gw-1/sshd"

edge_years = st.sampled_from(
    [1, 2, 1676, 1677, 1678, 1970, 2025, 2026, 2261, 2262, 2263, 9998, 9999]
)
edge_offsets = st.one_of(
    st.just("Z"),
    st.builds(
        lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
        st.sampled_from("+-"),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
    st.just(""),  # naive: rejected
)
edge_times = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{off}"
    ),
    edge_years,
    st.integers(1, 12),
    st.sampled_from([1, 28, 29, 30, 31]),  # 31 Feb, 29 Feb of non-leap years
    st.sampled_from([0, 12, 23, 24]),
    st.sampled_from([0, 59, 60]),
    st.sampled_from([0, 59, 60]),
    st.sampled_from(["", ".5", ".999999", ".1234567891"]),
    edge_offsets,
)


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def _with_encoding(text: str, how: str) -> bytes:
    data = text.encode()
    if how == "utf16":
        return text.encode("utf-16")
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "latin1":
        return text.encode("latin-1", "replace") + b"\xe9"
    if how == "invalid_in_string" and b'":"' in data:
        i = data.index(b'":"') + 3
        return data[:i] + b"\xff\xc3\x28\xed\xa0\x80" + data[i:]
    if how == "overlong":
        return data.replace(b"a", b"\xc1\xa1", 1)
    return data


payload_fields = st.fixed_dictionaries(
    {"time": st.one_of(edge_times, times)},
    optional={
        "value": st.one_of(json_junk, st.floats(), st.integers(-(2**70), 2**70)),
        "unit": st.one_of(st.text(max_size=12), st.just("mg/L"), st.just("\ud800")),
        "line": st.text(max_size=200),
        "action": st.sampled_from(["allow", "deny", "drop", "DROP", ""]),
        "src_ip": st.text(max_size=70),
        "dst_port": st.integers(-5, 70000),
        "protocol": st.sampled_from(["tcp", "udp", "icmp", "sctp"]),
        "event": st.one_of(
            st.text(max_size=70), st.from_regex(r"[a-z][a-z0-9_]{0,70}", fullmatch=True)
        ),
        "zone": st.text(max_size=200),
        "confidence": st.one_of(st.floats(), st.none()),
    },
)


VALID_DOC = {  # one valid payload per sensor kind; the strategy starts from these and mutates
    CHLORINE: {"value": 0.7},
    FIREWALL: {"action": "deny", "src_ip": "203.0.113.5", "dst_port": 22},
    SSHD: {"line": "sshd[1]: Failed password for root from 203.0.113.9 port 4 ssh2"},
}


@st.composite
def hostile_messages(draw):
    """A message over the whole payload grammar: a valid payload for its topic's kind, or one
    with fields from any kind, hostile values, datetime edges, a deep field, an odd encoding."""
    topic = draw(st.sampled_from([*VALID_DOC, "city/water/x/y/z", "city/../x"]))
    near = T0 + timedelta(seconds=draw(st.integers(-86400, 86400)))
    doc = {"time": draw(st.one_of(st.just(near.isoformat()), edge_times, times))}
    doc.update(VALID_DOC.get(topic, {}))
    if draw(st.booleans()):
        doc.update(draw(payload_fields))
    text = json.dumps(doc, allow_nan=True, default=str)
    if draw(st.integers(0, 3)) == 0:  # a deeply nested field somewhere
        depth = draw(st.sampled_from([10, 500, 1000, 3000]))
        text = text[:-1] + f', "deep": {_nested(depth, draw(st.sampled_from(["list", "dict"])))}}}'
    how = draw(
        st.sampled_from(["plain"] * 4 + ["utf16", "bom", "latin1", "invalid_in_string", "overlong"])
    )
    return topic, _with_encoding(text, how)


@SETTINGS
@given(messages=st.lists(hostile_messages(), min_size=1, max_size=20))
def test_the_whole_payload_grammar_never_crashes_the_parser(parser, messages):
    oks, errs = parser.split(messages)
    assert len(oks) + len(errs) == len(messages)
    assert all(e.reason in DEAD_LETTER_REASONS and e.reason != "internal_error" for e in errs)
    now = datetime.now(UTC)
    for r in oks:
        assert datetime(1677, 9, 22, tzinfo=UTC) <= r.time < now + timedelta(days=1)


def test_fuzz_the_payload_grammar_through_the_flow(config):
    """Hypothesis-generated messages over every payload kind, datetime edge, encoding and
    nesting depth, interleaved with valid readings, through the real dataflow: no crash, every
    message accounted for, every valid reading stored."""
    examples: list[tuple[str, bytes]] = []

    @settings(max_examples=400, deadline=None, database=None)
    @given(msg=hostile_messages())
    def collect(msg):
        examples.append(msg)

    collect()
    valid = [
        (
            CHLORINE,
            b'{"time":"%s","value":%r}'
            % ((T0 + timedelta(minutes=i)).isoformat().encode(), 0.5 + i / 1000),
        )
        for i in range(len(examples))
    ]
    stream = [m for pair in zip(examples, valid) for m in pair]
    batches = [stream[i : i + 50] for i in range(0, len(stream), 50)]
    influx, dead = Capture(), Capture()
    flow = build_flow(
        config,
        TestingSource(batches),
        influx_sink=influx,
        alert_sink=Capture(),
        dead_letter_sink=dead,
    )
    run_main(flow)
    records = [r for r in influx.items if type(r).__name__ in ("Reading", "SecurityEvent")]
    assert len(records) > len(valid)  # some generated messages were valid too
    assert len(records) + len(dead.items) == len(stream)
    assert {d.reason for d in dead.items} <= set(DEAD_LETTER_REASONS) - {"internal_error"}
    stored = {
        (r.time, r.value) for r in records if type(r) is Reading and r.value >= 0.5 and r.time >= T0
    }
    assert {(T0 + timedelta(minutes=i), 0.5 + i / 1000) for i in range(len(valid))} <= stored
