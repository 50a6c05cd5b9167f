"""The fallback log format (issue #13): a line in no known layout is read by the timestamp near
its start, tried only after every built-in format and never for a source with a declared one.

Layouts from public log collections (loghub's BGL, Thunderbird and HDFS lines as shipped), the
ISO/BSD/epoch variants, the preference between several timestamps in one header, severity words,
what stays a dead letter, and that every built-in and declared format still reads its lines.
Property-based (hypothesis): lines built in each fallback layout parse to the time, severity and
message they were built from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from paths import SHARED_DATA

from twinwatch.app.cli import main
from twinwatch.config import load_config
from twinwatch.engine.logformats import line_format
from twinwatch.engine.logparse import LogParser, check_file
from twinwatch.schema import BadRecord

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
AUTO = line_format("auto")
LOGHUB = SHARED_DATA / "loghub"
EXAMPLE = "twinwatch/examples/loghub-sources.yaml"
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

BGL = (
    "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11"
    " RAS KERNEL FATAL data TLB error interrupt"
)
THUNDERBIRD = (
    "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session"
    " closed for user root"
)
HDFS = (
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block"
    " blk_38865049064139660 terminating"
)


def _parse(line, tz=UTC, received=NOW):
    return AUTO.parse(line, received, tz)


def _need(path):
    if not path.is_file():
        if __import__("os").environ.get("CI") == "true":
            pytest.fail(f"{path} missing")
        pytest.skip(f"{path} missing")
    return path


# --- the layouts of the issue --------------------------------------------------------------


def test_supercomputer_ras_line_takes_the_full_timestamp_over_the_epoch():
    p = _parse(BGL)
    assert p.format == "fallback"
    assert p.time == datetime(2005, 6, 3, 15, 42, 50, 675872, tzinfo=UTC)
    assert p.message == "R02-M1-N0-C:J12-U11 RAS KERNEL FATAL data TLB error interrupt"
    assert (p.host, p.program, p.severity) == (None, "", 2)  # FATAL = crit


def test_syslog_export_with_a_prefix_takes_the_epoch_and_the_syslog_host_and_tag():
    p = _parse(THUNDERBIRD)
    # the epoch is absolute; "Nov 9 12:01:01" has no year (it would be read as 2026's)
    assert (
        p.time
        == datetime.fromtimestamp(1131566461, UTC)
        == datetime(2005, 11, 9, 20, 1, 1, tzinfo=UTC)
    )
    assert (p.host, p.program, p.message) == (
        "dn228/dn228",
        "crond(pam_unix)",
        "session closed for user root",
    )
    assert p.severity is None


def test_compact_yymmdd_hhmmss_with_its_level():
    p = _parse(HDFS)
    assert p.time == datetime(2008, 11, 9, 20, 36, 15, tzinfo=UTC)
    assert p.message.startswith("148 INFO dfs.DataNode$PacketResponder: PacketResponder 1")
    assert p.severity == 6


@pytest.mark.parametrize(
    "line, expected, message",
    [
        (
            "app1 2015-10-18 18:01:47,978 WARN x",
            datetime(2015, 10, 18, 18, 1, 47, 978000),
            "WARN x",
        ),
        ("node7 | 2005/06/03 15:42:50 | x", datetime(2005, 6, 3, 15, 42, 50), "x"),
        ("[2005.06.03T15:42:50.5] x", datetime(2005, 6, 3, 15, 42, 50, 500000), "x"),
        (
            "20171223-22:16:0:119|Step_LSC|30002312|x",
            datetime(2017, 12, 23, 22, 16, 0, 119000),
            "Step_LSC|30002312|x",
        ),
        ("a 20171223T221601 x", None, None),  # basic time without separators: not a layout
        ("- 2005-06-03-15.42.50 - x", datetime(2005, 6, 3, 15, 42, 50), "x"),
    ],
)
def test_iso_like_variants(line, expected, message):
    if expected is None:
        with pytest.raises(BadRecord) as e:
            _parse(line)
        assert e.value.reason == "bad_log"
        return
    p = _parse(line)
    assert (p.format, p.time, p.message) == ("fallback", expected.replace(tzinfo=UTC), message)


def test_an_offset_in_the_text_wins_over_the_source_time_zone_and_the_zone_applies_otherwise():
    seoul = ZoneInfo("Asia/Seoul")
    assert _parse("w 2005-06-03 15:42:50 x", seoul).time == datetime(
        2005, 6, 3, 6, 42, 50, tzinfo=UTC
    )
    assert _parse("w 2005-06-03T15:42:50Z x", seoul).time == datetime(
        2005, 6, 3, 15, 42, 50, tzinfo=UTC
    )
    assert _parse("w 2005-06-03T15:42:50-0130 x", seoul).time == datetime(
        2005, 6, 3, 17, 12, 50, tzinfo=UTC
    )
    assert _parse("w 1117838570 x", seoul).time == datetime(
        2005, 6, 3, 22, 42, 50, tzinfo=UTC
    )  # epoch: UTC
    assert _parse("w 081109 203615 x", seoul).time == datetime(2008, 11, 9, 11, 36, 15, tzinfo=UTC)
    assert _parse("w Nov 9 2005 12:01:01 x", seoul).time == datetime(
        2005, 11, 9, 3, 1, 1, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ("w Nov  9 12:01:01 x", datetime(2026, 11, 9, 12, 1, 1)),
        ("w Nov 09 12:01:01.25 x", datetime(2026, 11, 9, 12, 1, 1, 250000)),
        ("w Dec 24 08:00:00 x", datetime(2025, 12, 24, 8)),  # no year: not > 1 day ahead (RFC 3164)
        ("w Feb 29 08:00:00 x", datetime(2024, 2, 29, 8)),  # the latest leap year
        ("w Fri Jun 03 15:42:50 2005 x", datetime(2005, 6, 3, 15, 42, 50)),  # ctime, year after
        ("w Jun 3 2005 15:42:50 x", datetime(2005, 6, 3, 15, 42, 50)),
    ],
)
def test_bsd_variants_and_the_inferred_year(line, expected):
    p = _parse(line)
    assert (p.format, p.time, p.message) == ("fallback", expected.replace(tzinfo=UTC), "x")


def test_epoch_seconds_with_and_without_a_fraction():
    assert _parse("id=7 1131566461 x").time == datetime(2005, 11, 9, 20, 1, 1, tzinfo=UTC)
    assert _parse("1131566461.25 x").time == datetime(2005, 11, 9, 20, 1, 1, 250000, tzinfo=UTC)


# --- preference ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected, message",
    [
        # (each behind a word: a line that starts with a timestamp may be a built-in's)
        # a full date and time over an epoch, whichever comes first
        ("w 1131566461 2005-06-03 15:42:50 x", datetime(2005, 6, 3, 15, 42, 50), "x"),
        ("w 2005-06-03 15:42:50 1131566461 x", datetime(2005, 6, 3, 15, 42, 50), "x"),
        # yymmdd HHMMSS over an epoch; an epoch over a BSD time without a year
        ("w 1131566461 081109 203615 x", datetime(2008, 11, 9, 20, 36, 15), "x"),
        ("w Jun 3 10:00:00 h 1131566461 x", datetime(2005, 11, 9, 20, 1, 1), "x"),
        # a BSD time with a year is a full timestamp: the first of equals wins
        ("w Jun 3 2004 10:00:00 2005-06-03 15:42:50 x", datetime(2004, 6, 3, 10), "x"),
        # more than 3 words after the header: a later time is part of the message
        (
            "w 081109 203615 a b c d 2005-06-03 15:42:50 x",
            datetime(2008, 11, 9, 20, 36, 15),
            "a b c d 2005-06-03 15:42:50 x",
        ),
    ],
)
def test_the_most_specific_timestamp_of_the_header_and_the_message_after_it(
    line, expected, message
):
    p = _parse(line)
    assert (p.time, p.message) == (expected.replace(tzinfo=UTC), message)


# --- severity ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, severity",
    [
        ("w 1131566461 EMERG x", 0),
        ("w 1131566461 ALERT x", 1),
        ("w 1131566461 CRIT x", 2),
        ("w 1131566461 a CRITICAL x", 2),
        ("w 1131566461 FATAL x", 2),
        ("w 1131566461 [ERROR] x", 3),
        ("w 1131566461 ERR: x", 3),
        ("w 1131566461 SEVERE x", 3),
        ("w 1131566461 <WARN> x", 4),
        ("w 1131566461 WARNING x", 4),
        ("w 1131566461 NOTICE x", 5),
        ("w 1131566461 a b INFO x", 6),
        ("w 1131566461 DEBUG x", 7),
        ("w 1131566461 TRACE x", 7),
        ("ERROR 1131566461 x", 3),  # before the timestamp
        ("w 1131566461 error x", None),  # prose, not a level word
        ("w 1131566461 ERRORS x", None),  # not a whole token
        ("w 1131566461 a b c d e ERROR x", None),  # beyond the message's first 5 words
        ("w 1131566461 WARN then ERROR", 4),  # the first one
    ],
)
def test_severity_is_the_first_upper_case_level_word(line, severity):
    assert _parse(line).severity == severity


# --- what stays a dead letter --------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "garbage that is no log line",
        "sshd[12]: session opened at 2024-01-01 12:00:00 for x",  # after ": " = in the message
        "x" * 101 + " 2024-01-01 12:00:00 late",  # starts beyond 100 characters
        "123456 999999 two numbers",  # no real date and time
        "w 9999999999 in 2286",  # an epoch far ahead of the clock is a number
        "w 12345678901 eleven digits",
        "w 2005-06-03 a date alone",
        "17/06/09 20:10:40 INFO two-digit year: yy/mm/dd or dd/mm/yy?",
        "03-17 16:13:38.811 yearless numeric date",
    ],
)
def test_a_line_without_a_recognisable_timestamp_is_bad_log(line):
    with pytest.raises(BadRecord) as e:
        _parse(line)
    assert e.value.reason == "bad_log"


@pytest.mark.parametrize(
    "line",
    [
        "w 2005-13-03 10:00:00 month 13",
        "w 2005-02-30 10:00:00 no such day",
        "w 2005-06-03 24:00:00 hour 24",
        "w Feb 30 10:00:00 no such day",
        "w 0001-01-01T00:00:00+01:00 year one with an offset",
        "w 2005-06-03T10:00:00+2400 offset",
    ],
)
def test_an_impossible_timestamp_is_bad_time(line):
    with pytest.raises(BadRecord) as e:
        _parse(line)
    assert e.value.reason == "bad_time"


def test_through_the_log_parser_dead_letters_and_events():
    config = load_config(environ={"TWINWATCH__CITY__TIMEZONE": "UTC"})
    events, dead = LogParser(config).split(
        [("file:x", BGL.encode()), ("file:x", b"no time here"), ("file:x", THUNDERBIRD.encode())],
        NOW,
    )
    assert [d.reason for d in dead] == ["bad_log"]
    assert [(e.severity, e.host, e.program) for e in events] == [
        ("crit", None, None),
        (None, "dn228/dn228", "crond(pam_unix)"),
    ]


# --- built-in and declared formats still win -------------------------------------------------


@pytest.mark.parametrize(
    "line, fmt",
    [
        ("<34>1 2026-11-30T10:00:00Z h app - - - 1131566461 x", "rfc5424"),
        ("Nov  9 10:00:00 gw sshd[1]: 1131566461 2005-06-03 15:42:50 x", "syslog"),
        ("[Sun Dec 04 04:47:44 2005] [error] 1131566461 x", "apache_error"),
        ('1.2.3.4 - - [03/Jun/2005:10:00:00 +0000] "GET / HTTP/1.1" 200 1', "access"),
        ("2024/01/31 12:00:00 [error] 123#0: *1 x", "nginx_error"),
        ('{"__REALTIME_TIMESTAMP": "1700000000000000", "MESSAGE": "x"}', "journal_json"),
        ("2015-10-18 18:01:47,978 INFO [main] 1131566461 x", "generic"),
    ],
)
def test_every_built_in_format_reads_its_lines_before_the_fallback(line, fmt):
    assert _parse(line).format == fmt


def test_a_declared_format_is_never_replaced_by_the_fallback(tmp_path):
    config = load_config(
        EXAMPLE, environ={"TWINWATCH__CITY__TIMEZONE": "UTC"}
    )  # hdfs: a declared regex
    parser = LogParser(config)
    _, dead = parser.split(
        [("file:/logs/HDFS_x.log", b"2005-06-03 15:42:50 not the declared layout")], NOW
    )
    assert [(d.reason, d.detail) for d in dead] == [
        ("bad_log", "does not match the source's declared format")
    ]
    p, _ = parser.read(HDFS.encode(), NOW, "file:/logs/HDFS_x.log")
    assert (p.format, p.program) == ("declared", "dfs.DataNode$PacketResponder")


def test_loghub_samples_keep_100_percent_with_their_declared_formats(capsys):
    logs = sorted(str(_need(p)) for p in LOGHUB.glob("*/*_2k.log"))
    assert len(logs) == 14
    assert main(["logs", "-c", EXAMPLE, "--check", *logs]) == 0
    out = capsys.readouterr().out
    assert out.count("2000 of 2000 lines parsed (100.00 %)") == 14
    assert "fallback" not in out


@pytest.mark.parametrize("sample", ["HDFS", "HPC", "HealthApp", "OpenStack"])
def test_undeclared_loghub_samples_read_by_the_fallback_as_their_declared_format_reads_them(sample):
    """Without a declaration, the fallback gives every line the time and severity the declared
    format gives it (the samples were visible while the fallback was designed)."""
    log = _need(LOGHUB / sample / f"{sample}_2k.log")
    declared = LogParser(load_config(EXAMPLE, environ={}))
    auto = LogParser(load_config(environ={"TWINWATCH__CITY__TIMEZONE": "UTC"}))
    received = datetime.now(UTC)
    report = check_file(load_config(environ={"TWINWATCH__CITY__TIMEZONE": "UTC"}), log)
    assert (report.parsed, dict(report.formats)) == (2000, {"fallback": 2000})
    for raw in log.read_bytes().splitlines():
        d, _ = declared.read(raw, received, f"file:{log}")
        a, _ = auto.read(raw, received, "file:other")
        assert (a.format, a.time, a.severity) == ("fallback", d.time, d.severity)
        assert a.message.endswith(d.message)


def test_check_counts_the_lines_each_format_read_and_advises_a_declaration(tmp_path, capsys):
    mixed = tmp_path / "mixed.log"
    mixed.write_text(f"{BGL}\n{THUNDERBIRD}\nNov 9 10:00:00 gw cron[1]: x\nno time\n")
    assert main(["logs", "--check", str(mixed)]) == 0
    out = capsys.readouterr().out
    assert "3 of 4 lines parsed (75.00 %)" in out
    assert "formats: fallback 2, syslog 1" in out
    assert "2 lines were read by the fallback" in out and "security.sources" in out
    assert "line 4: bad_log: no time" in out


# --- property-based --------------------------------------------------------------------------

word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8)
message = st.lists(word, min_size=1, max_size=6).map(" ".join).filter(lambda m: m[0] != "-")
level = st.sampled_from([None, "ERROR", "WARN", "INFO", "FATAL", "DEBUG"])
SEVERITY = {None: None, "ERROR": 3, "WARN": 4, "INFO": 6, "FATAL": 2, "DEBUG": 7}


def _stamp(layout, t, sep, between, fraction):
    if layout == "iso":
        us = f",{t.microsecond // 1000:03d}" if fraction else ""
        return f"{t:%Y}{sep}{t:%m}{sep}{t:%d}{between}{t:%H:%M:%S}{us}", t.replace(
            microsecond=(t.microsecond // 1000) * 1000 if fraction else 0
        )
    if layout == "bsd":
        return f"{MONTHS[t.month - 1]} {t.day} {t:%Y %H:%M:%S}", t.replace(microsecond=0)
    if layout == "compact":
        return f"{t:%y%m%d %H%M%S}", t.replace(microsecond=0)
    return str(int(t.replace(tzinfo=UTC).timestamp())), t.replace(microsecond=0)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["iso", "bsd", "compact", "epoch"]),
    st.datetimes(min_value=datetime(2001, 9, 10), max_value=datetime(2026, 11, 29)),
    st.sampled_from(["-", ".", "/", ""]),
    st.sampled_from(["T", " ", "-"]),
    st.booleans(),
    st.lists(word, min_size=1, max_size=3),  # a line that starts with a time is a built-in's
    level,
    message,
    st.integers(-12 * 60, 14 * 60),
)
def test_lines_in_each_fallback_layout_parse_to_their_fields(
    layout, t, sep, between, fraction, prefix, lvl, msg, offset_min
):
    tz = timezone(timedelta(minutes=offset_min))
    stamp, exact = _stamp(layout, t, sep, between, fraction)
    body = f"{lvl} {msg}" if lvl else msg
    line = " ".join([*prefix, stamp, body])
    p = AUTO.parse(line, NOW, tz)
    assert p.format == "fallback"
    expected = exact.replace(tzinfo=UTC if layout == "epoch" else tz)
    assert (p.time, p.message, p.severity) == (expected, body, SEVERITY[lvl])


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 9999),
    st.integers(0, 15),
    st.integers(0, 40),
    st.integers(0, 30),
    st.sampled_from(
        [
            "w {y:04d}-{m:02d}-{d:02d} {H:02d}:00:00 x",
            "w {y:04d}{m:02d}{d:02d}-{H}:0:0:1 x",
            "- 1117838570 w {y:04d}.{m:02d}.{d:02d}-{H:02d}.42.50.675872 x",
            "w {mon} {d} {H:02d}:10:00 h app: x",
            "w {y2:02d}{m:02d}{d:02d} {H:02d}0000 x",
        ]
    ),
)
@example(27, 1, 1, 0, "w {y2:02d}{m:02d}{d:02d} {H:02d}0000 x")  # 2027: ahead
@example(2030, 1, 1, 0, "w {y:04d}-{m:02d}-{d:02d} {H:02d}:00:00 x")  # as written
def test_any_date_in_a_fallback_layout_parses_or_is_a_dead_letter(y, m, d, hh, template):
    mon = MONTHS[m - 1] if 1 <= m <= 12 else "Foo"
    line = template.format(y=y, y2=y % 100, m=m, d=d, H=hh, mon=mon)
    try:
        p = AUTO.parse(line, NOW, UTC)
    except BadRecord as e:
        assert e.reason in ("bad_time", "bad_log")
        return
    assert datetime(1677, 9, 22, tzinfo=UTC) <= p.time <= datetime(2262, 4, 12, tzinfo=UTC)
    if "{y:04d}" not in template:  # a guessed year or bare digits: never ahead of the clock
        assert p.time <= NOW + timedelta(days=1)


stampish = st.text(alphabet="0123456789-:./,+ TZ|[]JanNovFeb", max_size=120)


@settings(max_examples=500, deadline=None)
@given(stampish, st.sampled_from([UTC, ZoneInfo("Asia/Seoul"), timezone(timedelta(hours=-14))]))
def test_timestamp_like_noise_parses_or_is_a_dead_letter(text, tz):
    """Digits, separators and month names in any order: a time in InfluxDB's range or a
    bad_log/bad_time BadRecord, never another exception."""
    try:
        p = AUTO.parse("w " + text, NOW, tz)
    except BadRecord as e:
        assert e.reason in ("bad_time", "bad_log")
        return
    assert datetime(1677, 9, 22, tzinfo=UTC) <= p.time < datetime(2262, 4, 11, tzinfo=UTC)
