"""Log line grammars under hostile input (issues #13, #15): every line either parses or becomes a
dead letter with a reason; nothing raises, through the parser and through the log flow.

Property-based (hypothesis) over each grammar: valid lines built from the grammar parse to the
fields they were built from; the same lines with any date (31 Feb, month 13, year 0001, RFC 5424
year 1 with an offset, times beyond InfluxDB's range) and arbitrary bytes are dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from bytewax.testing import TestingSource, run_main
from capture import Capture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinwatch.config import load_config
from twinwatch.engine.logformats import line_format
from twinwatch.engine.logparse import LogParser
from twinwatch.flows.security import build_log_flow
from twinwatch.schema import DEAD_LETTER_REASONS, DeadLetter, SecurityEvent

CONFIG = load_config(environ={"TWINWATCH__CITY__TIMEZONE": "UTC"})
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
CRASHERS = [  # issue #15: each crashed `twinwatch logs` (and crash-looped with --recovery-dir)
    b"<13>1 0001-01-01T00:00:00+01:00 host app - - - year one with an offset",
    b'1.2.3.4 - - [31/Feb/2005:10:00:00 +0000] "GET / HTTP/1.1" 200 1',
    b'1.2.3.4 - - [01/Foo/2005:10:00:00 +0000] "GET / HTTP/1.1" 200 1',
    b"[Sun Dec 04 04:47:44 0001] [error] year one",
    b"<13>1 9999-12-31T23:59:59-14:00 host app - - - beyond InfluxDB",
    b"Feb 30 10:00:00 host app: no such day",
]

name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./", min_size=1, max_size=20).filter(
    lambda n: n != "-"
)  # "-" is RFC 5424's NILVALUE
message = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=80
).map(str.strip)
any_line = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode))


def _parse_all(lines):
    parser = LogParser(CONFIG)
    events, dead = parser.split([("file:x", line) for line in lines], NOW)
    return events, dead


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 11, 29)),
    st.booleans(),
    name.filter(lambda h: not h.endswith(":")),
    name,
    st.integers(0, 99999),
    message,
    st.integers(0, 191),
)
def test_rfc3164_lines_parse_to_their_fields(t, two_digit, host, program, pid, msg, pri):
    day = f"{t.day:02d}" if two_digit else str(t.day)
    line = f"<{pri}>{MONTHS[t.month - 1]} {day} {t:%Y %H:%M:%S} {host} {program}[{pid}]: {msg}"
    p = line_format("syslog").parse(line, NOW, UTC)
    assert (p.host, p.program, p.message) == (host, program, msg)
    assert p.time == t.replace(microsecond=0, tzinfo=UTC)
    assert (p.severity, p.facility) == (pri & 7, pri >> 3)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(-14 * 60, 14 * 60),
    name,
    name,
    message,
)
def test_rfc5424_lines_parse_to_their_fields(t, offset_min, host, app, msg):
    tz = timezone(timedelta(minutes=offset_min))
    line = f"<34>1 {t.replace(tzinfo=tz).isoformat()} {host} {app} - - - {msg}"
    p = line_format("rfc5424").parse(line, NOW, UTC)
    assert (p.host, p.program, p.message, p.severity) == (host, app, msg, 2)
    assert p.time == t.replace(tzinfo=tz)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 9999),
    st.integers(0, 15),
    st.integers(0, 40),
    st.integers(0, 30),
    st.sampled_from(
        [
            "<13>{mon} {d} {H}:10:00 h app: x",
            "<13>1 {y:04d}-{m:02d}-{d:02d}T{H:02d}:00:00+09:00 h app - - - x",
            '1.2.3.4 - - [{d:02d}/{mon}/{y:04d}:{H:02d}:00:00 +0000] "GET / HTTP/1.1" 200 1',
            "[Sun {mon} {d:02d} {H:02d}:47:44 {y:04d}] [error] x",
            "{y:04d}/{m:02d}/{d:02d} {H:02d}:00:00 [error] 1#0: *1 x, client: 1.2.3.4",
            "{y:04d}-{m:02d}-{d:02d} {H:02d}:00:00,123 ERROR x",
            # the fallback: a timestamp behind a prefix
            "- 1117838570 {y:04d}.{m:02d}.{d:02d} n1 {y:04d}-{m:02d}-{d:02d}-{H:02d}.42.50.6 x",
            "- 1131566461 n1 {mon} {d} {H:02d}:01:01 n1/n1 crond[1]: x",
            "w {y2:02d}{m:02d}{d:02d} {H:02d}3615 148 INFO x",
        ]
    ),
)
def test_any_date_in_any_grammar_parses_or_is_bad_time(y, m, d, hh, template):
    mon = MONTHS[m - 1] if 1 <= m <= 12 else "Foo"
    line = template.format(y=y, y2=y % 100, m=m, d=d, H=hh, mon=mon).encode()
    events, dead = _parse_all([line])
    assert len(events) + len(dead) >= 1
    for dl in dead:
        assert dl.reason in ("bad_time", "bad_log")
    for e in events:
        assert datetime(1677, 9, 22, tzinfo=UTC) <= e.time <= NOW + timedelta(days=1)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_line, max_size=20))
def test_arbitrary_bytes_never_raise(lines):
    events, dead = _parse_all(lines)
    assert all(d.reason in DEAD_LETTER_REASONS for d in dead)
    assert len(dead) <= len(lines)


@pytest.mark.parametrize("line", CRASHERS)
def test_each_line_that_crashed_the_flow_is_a_bad_time_dead_letter(line):
    events, dead = _parse_all([line])
    assert events == [] and [d.reason for d in dead] == ["bad_time"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(any_line, min_size=1, max_size=30), min_size=1, max_size=5))
def test_hostile_batches_through_the_log_flow(batches):
    """The whole flow (parse, security shard, sinks) keeps running: every line ends as events or
    a dead letter, and a valid line after the hostile ones is still stored."""
    good = b"<38>Nov  9 10:00:00 gw sshd[1]: Failed password for root from 192.0.2.9 port 1 ssh2"
    source = [[("file:x", line) for line in b] for b in batches]
    source[0] = [("file:x", line) for line in CRASHERS] + source[0]
    source.append([("file:x", good)])
    influx, dead = Capture(), Capture()
    run_main(
        build_log_flow(
            CONFIG,
            TestingSource(source),
            influx_sink=influx,
            alert_sink=Capture(),
            dead_letter_sink=dead,
        )
    )
    assert {d.reason for d in dead.items[: len(CRASHERS)]} == {"bad_time"}
    last = [e for e in influx.items if type(e) is SecurityEvent][-1]
    assert (last.kind, last.src_ip) == ("auth_failure", "192.0.2.9")
    assert all(type(d) is DeadLetter for d in dead.items)
