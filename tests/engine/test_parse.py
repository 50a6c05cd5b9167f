"""Schema validation and dead-letter routing of raw messages (no services needed)."""

import math
from datetime import UTC, datetime

import pytest

from twinwatch.config import load_config
from twinwatch.engine.parse import Parser
from twinwatch.schema import DEAD_LETTER_REASONS, BadRecord, Reading, SecurityEvent

CHLORINE = "city/water/sejong-wtp/clearwell/chlorine"


@pytest.fixture(scope="module")
def parser():
    return Parser(load_config(environ={}))


def test_valid_reading_takes_identity_from_topic_and_unit_from_config(parser):
    r = parser.parse(CHLORINE, b'{"time":"2026-11-22T09:00:00+09:00","value":0.85}')
    assert isinstance(r, Reading)
    assert (r.domain, r.site, r.asset, r.sensor) == ("water", "sejong-wtp", "clearwell", "chlorine")
    assert (r.quantity, r.unit, r.value) == ("free_chlorine", "mg/L", 0.85)
    assert r.time == datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    assert r.time.tzinfo == UTC
    assert r.series == "water/sejong-wtp/clearwell/chlorine"


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":', "bad_json"),
        (CHLORINE, b"not json at all", "bad_json"),
        (CHLORINE, b"\xff\xfe\x00garbage", "bad_encoding"),
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z"}', "bad_schema"),  # missing value
        (CHLORINE, b'{"value":1.0}', "bad_schema"),  # missing time
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":"0.8"}', "bad_schema"),  # wrong type
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":true}', "bad_schema"),
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":{"nested":[1,2]}}', "bad_schema"),
        (CHLORINE, b"[1, 2, 3]", "bad_schema"),
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":NaN}', "bad_json"),  # not JSON
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":1e999}', "non_finite"),
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":-1e999}', "non_finite"),
        (CHLORINE, b'{"time":"yesterday","value":1.0}', "bad_time"),
        (CHLORINE, b'{"time":"2026-11-22T00:00:00","value":1.0}', "bad_time"),  # no UTC offset
        (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":1.0,"unit":"ppm"}', "unit_mismatch"),
        (CHLORINE, b'{"time":"9999-12-31T23:59:59Z","value":1.0}', "bad_time"),  # beyond InfluxDB
        (CHLORINE, b'{"time":"1600-01-01T00:00:00Z","value":1.0}', "bad_time"),
        (CHLORINE, b'{"time":"2100-01-01T00:00:00Z","value":1.0}', "bad_time"),  # > now + 1 day
        (
            "city/water/sejong-wtp/clearwell/ghost",
            b'{"time":"2026-11-22T00:00:00Z","value":1}',
            "unknown_sensor",
        ),
        (
            'city/water/x",y=1 z/a b/c\\d',
            b'{"time":"2026-11-22T00:00:00Z","value":1}',
            "unknown_sensor",
        ),  # line-protocol special characters never reach a tag
        ("other/prefix/a/b/c", b'{"time":"2026-11-22T00:00:00Z","value":1}', "bad_topic"),
        ("city/water/too/short", b'{"time":"2026-11-22T00:00:00Z","value":1}', "bad_topic"),
        (
            CHLORINE,
            b'{"time":"2026-11-22T00:00:00Z","value":1.0,"pad":"' + b"x" * 70000 + b'"}',
            "too_large",
        ),
    ],
)
def test_bad_input_is_rejected_with_its_reason(parser, topic, payload, reason):
    with pytest.raises(BadRecord) as e:
        parser.parse(topic, payload)
    assert e.value.reason == reason
    assert e.value.reason in DEAD_LETTER_REASONS


def test_split_routes_every_bad_message_to_dead_letters_and_keeps_the_good(parser):
    good = [
        (CHLORINE, b'{"time":"2026-11-22T00:00:%02dZ","value":0.%d}' % (i, i + 1)) for i in range(5)
    ]
    bad = [
        (CHLORINE, b'{"oops'),
        ("nope/x", b"{}"),
        (CHLORINE, b"\xff" * 10),
        (CHLORINE, b"x" * 100_000),
    ]
    msgs = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3], bad[3], good[4]]
    oks, errs = parser.split(msgs)
    assert [r.value for r in oks] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert [e.reason for e in errs] == ["bad_json", "bad_topic", "bad_encoding", "too_large"]
    assert all(e.detail and e.source == "mqtt" for e in errs)
    assert len(errs[3].payload) <= 512  # huge payloads are truncated in the queue


def test_reading_schema_rejects_non_finite_values():
    with pytest.raises(ValueError):
        Reading(datetime.now(UTC), "water", "s", "a", "x", "q", "u", math.nan)


def test_sshd_and_firewall_events(parser):
    line = (
        "Dec 10 09:32:20 gw-1 sshd[24680]: Failed password for invalid user admin "
        "from 5.36.59.76 port 42393 ssh2"
    )
    (ev,) = parser.parse(  # a log line gives a list (N for "message repeated N times")
        "city/security/sejong-soc/gw-1/sshd",
        b'{"time":"2026-11-22T00:00:00Z","line":"%s"}' % line.encode(),
    )
    assert isinstance(ev, SecurityEvent)
    # the one classifier (#11): a failed password for an invalid user is a failed login, as
    # over syslog; the "Invalid user" line before it is what the enumeration rule counts
    assert (ev.kind, ev.outcome, ev.user, ev.src_ip) == (
        "auth_failure",
        "failure",
        "admin",
        "5.36.59.76",
    )
    fw = parser.parse(
        "city/security/sejong-soc/gw-1/firewall",
        b'{"time":"2026-11-22T00:00:00Z","action":"deny","src_ip":"10.0.0.9","dst_port":23}',
    )
    assert (fw.kind, fw.outcome, fw.src_ip, fw.dst_port) == ("fw_deny", "deny", "10.0.0.9", 23)
    with pytest.raises(BadRecord) as e:
        parser.parse(
            "city/security/sejong-soc/gw-1/firewall",
            b'{"time":"2026-11-22T00:00:00Z","action":"deny","src_ip":"x","dst_port":70000}',
        )
    assert e.value.reason == "bad_schema"


def test_events_of_one_series_get_unique_times_before_detection(parser):
    """sshd logs have whole seconds: a burst must not overwrite itself in InfluxDB, and the
    event's score/alert points must carry the same (adjusted) time as the event."""
    topic = "city/security/sejong-soc/gw-1/sshd"
    line = (
        b'{"time":"2026-11-20T00:00:%sZ","line":"sshd[1]: Failed password for root from 1.2.3.4"}'
    )
    msgs = [(topic, line % b"00")] * 3 + [(topic, line % b"00.001"), (topic, line % b"01")]
    oks, _ = parser.split(msgs)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    ms = [round((e.time - t0).total_seconds() * 1000) for e in oks]
    assert ms == [0, 1, 2, 3, 1000]  # inside the burst: next free ms; after it: its own time
    bad = [(CHLORINE, b"{")] * 3
    _, dead = parser.split(bad, received=t0)
    assert len({d.time for d in dead}) == 3
    readings = [(CHLORINE, b'{"time":"2026-11-20T00:00:00Z","value":1}')] * 2
    oks, _ = parser.split(readings)
    assert oks[0].time == oks[1].time  # readings are facts: a repeat keeps its time (idempotent)
