"""Schema validation and dead-letter routing of raw messages (no services needed)."""

import math
from datetime import UTC, datetime

import msgspec
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


# --- issue #15: inputs that crashed the flow, and bounded event times and tags ---------------


@pytest.mark.parametrize(
    "payload, reason",
    [
        # before: OverflowError (the UTC value is before year 1 / after year 9999)
        (b'{"time":"0001-01-01T00:00:00+01:00","value":1.0}', "bad_time"),
        (b'{"time":"9999-12-31T23:59:59-01:00","value":1.0}', "bad_time"),
        # before: RecursionError (an unknown field nested ~1,000 deep, about 2 KB)
        (
            b'{"time":"2026-11-22T00:00:00Z","value":1,"x":' + b"[" * 1000 + b"]" * 1000 + b"}",
            "bad_json",
        ),
        (
            b'{"time":"2026-11-22T00:00:00Z","value":1,"x":' + b'{"a":' * 1000 + b"1" + b"}" * 1001,
            "bad_json",
        ),
        # before: UnicodeDecodeError (invalid UTF-8 inside a string)
        (b'{"time":"2026-11-22T00:00:00Z","value":1,"unit":"\xff\xfe"}', "bad_encoding"),
        (b'{"time":"2026-11-22T00:00:00Z","value":1,"unit":"mg/L\xc3"}', "bad_encoding"),
        # (invalid UTF-8 in a field the schema ignores is skipped, not decoded: the reading is kept)
    ],
)
def test_inputs_that_crashed_the_flow_are_dead_letters(parser, payload, reason):
    oks, errs = parser.split(
        [(CHLORINE, payload), (CHLORINE, b'{"time":"2026-11-22T00:00:00Z","value":0.7}')]
    )
    assert [e.reason for e in errs] == [reason]
    assert [r.value for r in oks] == [0.7]  # the next valid reading goes on


def _at(t: datetime, value: float = 0.5) -> tuple[str, bytes]:
    return CHLORINE, b'{"time":"%s","value":%r}' % (t.isoformat().encode(), value)


def test_event_time_is_bounded_behind_the_streams_clock_and_ahead_of_the_wall_clock():
    """2,000 readings scattered over the weeks since 1700 cannot reach InfluxDB (each would
    open a shard group); a reading stamped now+2 days is refused; a replay of history that is
    old but coherent passes, because lateness is judged against the stream's own clock."""
    from datetime import timedelta

    parser = Parser(load_config(environ={}))
    now = datetime.now(UTC)
    live = [_at(now - timedelta(seconds=i)) for i in range(10)]
    start = datetime(1700, 1, 1, tzinfo=UTC)
    scattered = [_at(start + timedelta(weeks=7 * i)) for i in range(2000)]
    mixed = live[:5] + scattered[:1000] + live[5:]
    oks, errs = parser.split(mixed)
    assert len(oks) == 10 and len(errs) == 1000
    assert {e.reason for e in errs} == {"bad_time"}
    assert "flow.max_lateness_s" in errs[0].detail or "outside" in errs[0].detail
    oks, errs = parser.split(scattered[1000:])  # later batches too: the clock is remembered
    assert oks == [] and len(errs) == 1000
    _, errs = parser.split([_at(now + timedelta(days=2))])
    assert [e.reason for e in errs] == ["bad_time"]
    # a month-old replay, in order, on a fresh parser: all of it passes
    history = [_at(now - timedelta(days=30) + timedelta(minutes=i)) for i in range(100)]
    oks, errs = Parser(load_config(environ={})).split(history)
    assert len(oks) == 100 and errs == []
    # ... but not with a reading from a year before the replay's time in the same stream
    p = Parser(load_config(environ={}))
    oks, errs = p.split(history[:50] + [_at(now - timedelta(days=400))] + history[50:])
    assert len(oks) == 100 and [e.reason for e in errs] == ["bad_time"]
    unbounded = Parser(load_config(environ={"TWINWATCH__FLOW__MAX_LATENESS_S": "null"}))
    oks, errs = unbounded.split(scattered[:10] + live)
    assert len(oks) == 20 and errs == []


@pytest.fixture(scope="module")
def cctv_config():
    import yaml

    from twinwatch.config import EXAMPLE_CONFIG, parse_config

    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    site = next(s for s in raw["sites"] if s["id"] == "sejong-soc")
    site["assets"].append(
        {
            "id": "gate-2",
            "kind": "gate",
            "name": "Gate 2",
            "sensors": [
                {
                    "id": "cctv",
                    "quantity": "video_event",
                    "unit": "event",
                    "interval_s": 86400,
                    "kind": "device_event",
                    "detectors": [],
                }
            ],
        }
    )
    return parse_config(raw, environ={})


def test_device_event_kinds_are_a_bounded_tag(cctv_config):
    """20,000 distinct event words from one camera become at most the configured kinds plus
    `other`; the word itself is kept in the message field, not lost."""
    parser = Parser(cctv_config)
    topic = "city/security/sejong-soc/gate-2/cctv"
    msgs = [
        (topic, b'{"time":"2026-11-23T01:00:00Z","event":"kind_%d","zone":"z"}' % i)
        for i in range(20_000)
    ]
    msgs += [
        (topic, b'{"time":"2026-11-23T01:00:01Z","event":"%s"}' % k)
        for k in (b"intrusion", b"door_open")
    ]
    oks, errs = parser.split(msgs)
    assert errs == [] and len(oks) == 20_002
    assert {e.kind for e in oks} == {"other", "intrusion", "door_open"}
    assert oks[7].message == "event=kind_7 zone=z"
    allowed = set(cctv_config.security.device_events) | set(cctv_config.security.device_event_kinds)
    assert len({e.kind for e in oks}) <= len(allowed) + 1


def test_events_of_one_second_arriving_out_of_order_all_get_their_own_time():
    """Before: 200 events of two seconds, interleaved, kept 2 distinct times (2 of 200 stored)."""
    from twinwatch.engine.parse import UniqueTimes

    unique = UniqueTimes()
    t4 = datetime(2026, 11, 20, 0, 0, 4, tzinfo=UTC)
    t5 = datetime(2026, 11, 20, 0, 0, 5, tzinfo=UTC)
    times = [unique("security/s/a/sshd", t5 if i % 2 else t4) for i in range(200)]
    assert len(set(times)) == 200
    assert all(t4 <= t < t4 + (t5 - t4) * 1.2 for t in times[::2])  # near their own second
    assert all(t5 <= t < t5 + (t5 - t4) * 0.2 for t in times[1::2])
    # a long burst is one interval of taken milliseconds: cheap and bounded
    burst = [unique("security/s/a/x", t4) for _ in range(20_000)]
    assert len(set(burst)) == 20_000
    starts, ends = unique._taken["security/s/a/x"]
    assert len(starts) == 1 and ends[0] - starts[0] == 20_000


def test_dead_letters_of_two_processes_never_share_a_time():
    """Issue #14: two processes of a cluster each received a burst of bad messages in the same
    millisecond; with one lane each, their dead letters (series: reason) overwrote each other
    in InfluxDB. Each process now hands out only its lane's milliseconds."""
    config = load_config(environ={})
    received = datetime(2026, 11, 20, 0, 0, 0, 123000, tzinfo=UTC)
    bad = [("city/water/sejong-wtp/clearwell/chlorine", b"{not json")] * 50
    times = []
    for lane in ((0, 2), (1, 2)):
        _, dead = Parser(config, lane=lane).split(bad, received=received)
        assert len({d.time for d in dead}) == 50  # unique within the process
        times.append({d.time for d in dead})
    assert not times[0] & times[1]  # and across the two
    one = Parser(config).split(bad, received=received)[1]  # one process: as before
    assert sorted(d.time for d in one)[0] == received
    assert max(d.time for d in one) - received == (received.replace(microsecond=172000) - received)


def test_a_future_bound_beyond_year_9999_bounds_by_influxdbs_range():
    """flow.max_future_s is unbounded in the config: a bound past year 9999 is InfluxDB's
    range (before: every message was an internal_error dead letter)."""
    config = load_config(environ={})
    flow = msgspec.structs.replace(config.flow, max_future_s=1e12)
    p = Parser(msgspec.structs.replace(config, flow=flow))
    oks, errs = p.split(
        [_at(datetime(2200, 1, 1, tzinfo=UTC)), _at(datetime(2263, 1, 1, tzinfo=UTC))]
    )
    assert [r.time.year for r in oks] == [2200]
    assert [e.reason for e in errs] == ["bad_time"]
