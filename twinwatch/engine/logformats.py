"""Log line grammars: one line -> (time, host, program, message, severity, facility).

    fmt = line_format("auto" | "syslog" | ... | r"(?P<time>...) (?P<message>.*)", time_format)
    fmt.parse(line, received, tz) -> Parsed          raises BadRecord("bad_log" | "bad_time")

Built-in formats (``auto`` tries them in this order, first match wins):

    rfc5424       ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``
    syslog        RFC 3164 and its common variants: with or without ``<PRI>``, one- or two-digit
                  days (``Nov 9``, ``Nov  9``, ``Nov 09``), an optional year before or after the
                  time, fractional seconds, or an ISO 8601 timestamp instead (rsyslog's file
                  format); host names and tags may contain ``/``; a line without a host
                  (``sshd[12]: ...``) is recognised by its tag. /var/log/auth.log, loghub's
                  OpenSSH, Linux and Mac samples.
    apache_error  Apache 2.2 and 2.4 error logs (``[Sun Dec 04 04:47:44 2005] [error] ...``)
    access        Apache/nginx access logs, common and combined
    nginx_error   ``2024/01/31 12:00:00 [error] 123#0: *1 ...``
    journal_json  ``journalctl -o json`` (one JSON object per line)
    journal       ``journalctl -o export`` records (``KEY=value`` lines; the tail source frames a
                  record per blank line with ``framing: journal``)
    generic       a leading ISO-like timestamp (``2015-10-18 18:01:47,978``, ``2016/09/28
                  04:30:30``, ``...T...Z``), an optional level word, then the message: log4j,
                  logback, Python logging, Windows CBS/event exports, ...
    fallback      the last resort for a line no grammar above reads: the first timestamp within
                  its first 100 characters (a date with a 4-digit year and a time, e.g.
                  ``2005-06-03-15.42.50.675872``; BSD ``Nov 9 12:01:01``; ``081109 203615``;
                  epoch seconds), the message after it, an upper-case level word as severity.
                  ``twinwatch logs --check`` counts these lines apart: declaring the format
                  gives programs, hosts and exact times (see ``_Fallback``).

A declared format is a regular expression with named groups: ``time`` and ``message`` (required),
``host``, ``program``, ``pid``, ``level`` (a word such as ERROR, W, Information) or ``severity``
(a syslog number), ``facility``. ``time_format`` is a ``strptime`` format (without a year, the
year is inferred as for RFC 3164), ``iso``, ``epoch`` or ``epoch_ms``; by default ISO 8601 and a
few common layouts are tried.

Times without a UTC offset are read in the source's time zone. Every time is checked: an
impossible date (31 Feb, month 13, year 0), or one outside what InfluxDB can store, is a
``bad_time`` dead letter, never an exception in the flow.

Why no grok: the one Python grok library (pygrok, last release 2016) is unmaintained, and grok
patterns compile to named-group regular expressions anyway, which ``re`` runs directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, NamedTuple

from twinwatch.schema import BadRecord

__all__ = [
    "Parsed",
    "LineFormat",
    "line_format",
    "BUILTIN_FORMATS",
    "SEVERITY_NAMES",
    "FACILITY_NAMES",
    "severity_of",
    "split_tag",
]

SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITY_NAMES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
_LEVELS = {
    **{name: i for i, name in enumerate(SEVERITY_NAMES)},
    "emergency": 0, "panic": 0, "fatal": 2, "critical": 2, "severe": 3, "error": 3, "e": 3,
    "f": 2, "c": 2, "warn": 4, "w": 4, "n": 5, "information": 6, "informational": 6, "i": 6,
    "trace": 7, "verbose": 7, "fine": 7, "finer": 7, "finest": 7, "d": 7, "v": 7, "t": 7,
}  # fmt: skip
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# InfluxDB stores int64 nanoseconds: times outside this range cannot be written at all.
EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)


class Parsed(NamedTuple):
    time: datetime  # UTC
    host: str | None
    program: str  # "" if the format has none
    message: str
    severity: int | None = None  # 0 emerg .. 7 debug
    facility: int | None = None  # 0 kern .. 23 local7
    format: str = ""  # the grammar that read the line (``twinwatch logs --check`` counts them)


def severity_of(level: str | None) -> int | None:
    """Syslog severity of a level word (ERROR, W, Information, 3, ...); None if unknown."""
    if not level:
        return None
    if level.isdigit():
        n = int(level)
        return n if n < 8 else None
    return _LEVELS.get(level.lower())


def _pri(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    pri = int(text)
    return (pri & 7, pri >> 3) if pri <= 191 else (None, None)


def _bad_time(detail: str) -> BadRecord:
    return BadRecord("bad_time", detail[:200])


def _aware(t: datetime, tz: tzinfo) -> datetime:
    """``t`` in UTC (read in ``tz`` if it has no offset); bad_time if it cannot be represented."""
    try:
        t = (t if t.tzinfo is not None else t.replace(tzinfo=tz)).astimezone(UTC)
    except (OverflowError, ValueError) as e:  # year 1 with a positive offset, ...
        raise _bad_time(f"{t.isoformat()}: {e}") from None
    if not EARLIEST <= t < LATEST:
        raise _bad_time(f"{t.isoformat()} is outside InfluxDB's range")
    return t


def _year_for(month: int, day: int, received: datetime, tz: tzinfo) -> int:
    """No year in the line: the latest one that does not put it > 1 day after ``received``."""
    year = received.astimezone(tz).year
    try:
        if datetime(year, month, day, tzinfo=tz) > received + timedelta(days=1):
            year -= 1
    except ValueError:  # Feb 29 in a common year: the latest leap year
        year -= 1
        while year > 1 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
            year -= 1
    return year


def _local(year, month, day, hh, mm, ss, us, tz) -> datetime:
    try:
        t = datetime(year, month, day, hh, mm, ss, us, tzinfo=tz)
    except (ValueError, OverflowError) as e:
        raise _bad_time(f"{year:04d}-{month:02d}-{day:02d} {hh}:{mm}:{ss}: {e}") from None
    return _aware(t, tz)


def _frac(text: str | None) -> int:
    return int((text[1:] + "000000")[:6]) if text else 0


def _iso(text: str, tz: tzinfo) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError as e:
        raise _bad_time(f"{text!r}: {e}") from None
    return _aware(t, tz)


# --- built-in grammars -------------------------------------------------------------------------

_RFC5424 = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?$", re.S
)
_ISO_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_SYSLOG_TIME = re.compile(
    r"(?:<(?P<pri>\d{1,3})>)?"
    r"(?:(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2})(?: (?P<y1>\d{4}))? "
    r"(?P<hh>\d\d):(?P<mi>\d\d):(?P<ss>\d\d)(?P<fr>\.\d{1,9})?(?: (?P<y2>\d{4})(?= ))?"
    r"|(?P<iso>" + _ISO_TS + r"))(?: |$)"
)
# TAG[pid] [(detail)]: MSG -- a tag may hold spaces (Mac "BezelServices 255.10[94]: "), dots,
# slashes and a parenthesised part ("sshd(pam_unix)[19939]: ")
_SYSLOG_TAG = re.compile(
    r"(?P<prog>[^\s:\[]{1,96}(?: [^\s:\[]{1,48}){0,2}?)(?:\[(?P<pid>[^\]]{0,32})\])?"
    r"(?: \([^()]{0,160}\))?:(?: |$)"
)
_BARE_TAG = re.compile(r"[^\s:\[]{1,96}(?:\[[^\]]{0,32}\])?:$")
_APACHE_ERROR = re.compile(
    r"\[\w{3} (\w{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(\.\d+)? (\d{4})\] "
    r"\[(?:([\w-]+):)?(\w+)\] (.*)$",
    re.S,
)
_ACCESS = re.compile(
    r"(\S+) \S+ \S+ \[(\d\d)/(\w{3})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-]\d{4})\] \"[^\"]*\" \d{3} "
)
_NGINX_ERROR = re.compile(
    r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d) \[(\w+)\] (\d+)#\d+: (.*)$", re.S
)
_GENERIC = re.compile(
    r"\[?(?P<ts>\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,:]\d{1,9})?"
    r"(?: ?(?:Z|[+-]\d\d:?\d\d)\b)?)\]?[,;|]?\s+"
    r"(?:[-|:]\s*)?(?:\[?(?P<level>[A-Za-z]{4,11}|[A-Z])\]?\b[,:]?\s*)?(?P<msg>.*)$",
    re.S,
)
_TAG_PROGRAM = re.compile(r"[^\[\s(]+(?:\([^)]*\))?")


def split_tag(text: str) -> tuple[str, str]:
    """(program, message) of a message that may start with a syslog tag (``sshd[12]: ...``)."""
    tag = _SYSLOG_TAG.match(text)
    if tag is None:
        return "", text
    return tag.group("prog"), text[tag.end() :]


def _host_tag(rest: str) -> tuple[str, re.Match[str] | None, str]:
    """(host, tag match, text the tag is matched in) of what follows a BSD syslog timestamp."""
    host, sep, after = rest.partition(" ")
    if not sep or _BARE_TAG.match(host):  # no host name: the first word is the tag
        host, after = "", rest
    return host, _SYSLOG_TAG.match(after), after


class LineFormat:
    """One format: ``parse(line, received, tz) -> Parsed``; raises BadRecord if it does not
    match (``bad_log``) or its time is impossible (``bad_time``)."""

    name = "format"

    def match(self, line: str, received: datetime, tz: tzinfo) -> Parsed | None:
        raise NotImplementedError

    def parse(self, line: str, received: datetime, tz: tzinfo) -> Parsed:
        p = self.match(line, received, tz)
        if p is None:
            raise BadRecord("bad_log", f"not a {self.name} line")
        return p


class _Rfc5424(LineFormat):
    name = "rfc5424"

    def match(self, line, received, tz):
        if not line.startswith("<"):
            return None
        m = _RFC5424.match(line)
        if m is None:
            return None
        ts, host, app, msg = m.group(2), m.group(3), m.group(4), m.group(8) or ""
        if ts == "-":
            t = received
        elif ts.endswith(("Z", "z")) or "+" in ts[10:] or "-" in ts[10:]:
            t = _iso(ts[:-1] + "+00:00" if ts[-1] in "Zz" else ts, tz)
        else:
            raise _bad_time(f"RFC 5424 timestamp {ts[:64]!r} without a UTC offset")
        sev, fac = _pri(m.group(1))
        if not msg and m.group(7) != "-":
            msg = m.group(7)
        return Parsed(
            t,
            None if host == "-" else host,
            "" if app == "-" else app,
            msg.removeprefix("\ufeff"),
            sev,
            fac,
            self.name,
        )


_UNSEEN: Any = object()


class _StampTimes(dict):
    """The times of timestamp texts, keyed ``(text, zone, day received)``: a log repeats its
    stamps (the lines of one second share one) and reading one costs microseconds. Look up with
    ``get(key, _UNSEEN)`` (a plain dict lookup on the hot path), store with ``keep``."""

    size = 4096

    def keep(self, key: tuple, t: Any) -> Any:
        """Remember ``t`` for ``key`` (forgetting all when full) and return it."""
        if len(self) >= self.size:
            self.clear()
        self[key] = t
        return t


class _Syslog(LineFormat):
    name = "syslog"

    def __init__(self) -> None:
        self._times = _StampTimes()

    def match(self, line, received, tz):
        m = _SYSLOG_TIME.match(line)
        if m is None:
            return None
        g = m.group
        key = (m.group(0), tz, received.toordinal())
        t = self._times.get(key, _UNSEEN)
        if t is _UNSEEN:
            t = self._times.keep(key, self._time(g, received, tz))
        host, tag, after = _host_tag(line[m.end() :])
        if tag is None:
            program, msg = "", after
        else:
            program, msg = tag.group("prog"), after[tag.end() :]
        sev, fac = _pri(g("pri"))
        return Parsed(t, host or None, program, msg, sev, fac, self.name)

    @staticmethod
    def _time(g, received, tz) -> datetime:
        if g("iso") is not None:
            t = _iso(g("iso"), tz)
        else:
            month = _MONTHS.get(g("mon"))
            if month is None:
                raise _bad_time(f"bad month {g('mon')!r}")
            day = int(g("day"))
            year_text = g("y1") or g("y2")
            year = int(year_text) if year_text else _year_for(month, day, received, tz)
            t = _local(
                year, month, day, int(g("hh")), int(g("mi")), int(g("ss")), _frac(g("fr")), tz
            )
        return t


class _ApacheError(LineFormat):
    name = "apache_error"

    def match(self, line, received, tz):
        if not line.startswith("["):
            return None
        m = _APACHE_ERROR.match(line)
        if m is None:
            return None
        month = _MONTHS.get(m.group(1))
        if month is None:
            raise _bad_time(f"bad month {m.group(1)!r}")
        t = _local(
            int(m.group(7)),
            month,
            int(m.group(2)),
            int(m.group(3)),
            int(m.group(4)),
            int(m.group(5)),
            _frac(m.group(6)),
            tz,
        )
        level = m.group(9)
        return Parsed(
            t, None, "apache", f"[{level}] {m.group(10)}", severity_of(level), None, self.name
        )


class _Access(LineFormat):
    name = "access"

    def match(self, line, received, tz):
        m = _ACCESS.match(line)
        if m is None:
            return None
        month = _MONTHS.get(m.group(3))
        if month is None:
            raise _bad_time(f"bad month {m.group(3)!r}")
        off = m.group(8)
        sign = -1 if off[0] == "-" else 1
        zone = timedelta(hours=int(off[1:3]), minutes=int(off[3:5])) * sign
        try:
            t = datetime(
                int(m.group(4)),
                month,
                int(m.group(2)),
                int(m.group(5)),
                int(m.group(6)),
                int(m.group(7)),
                tzinfo=timezone(zone),
            )
        except ValueError as e:
            raise _bad_time(f"access log time {line[:64]!r}: {e}") from None
        return Parsed(_aware(t, tz), None, "http_access", line, None, None, self.name)


class _NginxError(LineFormat):
    name = "nginx_error"

    def match(self, line, received, tz):
        m = _NGINX_ERROR.match(line)
        if m is None:
            return None
        y, mo, d, hh, mi, ss = (int(m.group(i)) for i in range(1, 7))
        t = _local(y, mo, d, hh, mi, ss, 0, tz)
        level = m.group(7)
        return Parsed(t, None, "nginx", m.group(9), severity_of(level), None, self.name)


def _journal_fields(fields: dict, received, tz, name: str) -> Parsed:
    ts = fields.get("__REALTIME_TIMESTAMP") or fields.get("_SOURCE_REALTIME_TIMESTAMP")
    try:
        us = int(str(ts))
        t = _aware(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us), tz)
    except (TypeError, ValueError, OverflowError):
        raise _bad_time(f"journal timestamp {str(ts)[:40]!r}") from None
    message = fields.get("MESSAGE")
    if not isinstance(message, str):
        message = "" if message is None else str(message)
    prio = fields.get("PRIORITY")
    fac = fields.get("SYSLOG_FACILITY")
    return Parsed(
        t,
        str(fields.get("_HOSTNAME") or "") or None,
        str(fields.get("SYSLOG_IDENTIFIER") or fields.get("_COMM") or ""),
        message,
        severity_of(str(prio)) if prio is not None else None,
        int(fac) if isinstance(fac, str) and fac.isdigit() and int(fac) < 24 else None,
        name,
    )


class _JournalJson(LineFormat):
    name = "journal_json"

    def match(self, line, received, tz):
        if not line.startswith("{") or "__REALTIME_TIMESTAMP" not in line:
            return None
        try:
            fields = json.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(fields, dict):
            return None
        return _journal_fields(fields, received, tz, self.name)


class _JournalExport(LineFormat):
    name = "journal"

    def match(self, line, received, tz):
        if "__REALTIME_TIMESTAMP=" not in line:
            return None
        fields = {}
        for row in line.split("\n"):
            key, sep, value = row.partition("=")
            if sep:
                fields[key] = value
        return _journal_fields(fields, received, tz, self.name)


class _Generic(LineFormat):
    name = "generic"

    def match(self, line, received, tz):
        if not line[:1].isdigit() and not line.startswith("["):
            return None
        m = _GENERIC.match(line)
        if m is None:
            return None
        ts = m.group("ts").replace("/", "-")
        if ts.count(":") == 3:  # 20171223-22:15:29:606 style milliseconds
            head, _, ms = ts.rpartition(":")
            ts = f"{head}.{ms}"
        t = _iso(ts.replace(",", "."), tz)
        level = m.group("level")
        sev = severity_of(level)
        if sev is None and level is not None:  # a word, not a level: part of the message
            return Parsed(t, None, "", line[m.start("level") :], None, None, self.name)
        return Parsed(t, None, "", m.group("msg"), sev, None, self.name)


# --- the fallback: a timestamp near the start of a line in no known layout -------------------

_STAMP = re.compile(
    r"(?=[\dADFJMNOS])(?:"  # every layout starts with a digit or a month: fail fast elsewhere
    # a date with a 4-digit year (separated by - . / or, as ISO 8601 basic, not at all) and a
    # time (H:M:S with one- or two-digit fields, or HH.MM.SS), an optional fraction and offset
    r"(?<![\w.:/-])(?P<Y>\d{4})(?:(?P<ds>[-./])(?P<M>\d\d?)(?P=ds)(?P<D>\d\d?)|(?P<M2>\d\d)"
    r"(?P<D2>\d\d))[T -](?:(?P<h>\d\d?):(?P<m>\d\d?):(?P<s>\d\d?)|(?P<h2>\d\d)\.(?P<m2>\d\d)"
    r"\.(?P<s2>\d\d))(?P<f>[.,:]\d{1,9})?(?P<z>Z|[+-]\d\d:?\d\d)?(?![\w:])"
    # BSD syslog: one- or two-digit day, an optional year before or after the time
    r"|(?<![\w:])(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(?P<bd>\d{1,2})"
    r"(?: (?P<by1>\d{4}))? (?P<bh>\d\d):(?P<bm>\d\d):(?P<bs>\d\d)(?P<bf>\.\d{1,9})?"
    r"(?: (?P<by2>\d{4})(?!\S))?(?![\w:])"
    # compact yymmdd HHMMSS
    r"|(?<![\w.:/-])(?P<cy>\d\d)(?P<cM>\d\d)(?P<cD>\d\d)[ T-](?P<ch>\d\d)(?P<cm>\d\d)(?P<cs>\d\d)"
    r"(?![\w.:/-])"
    # epoch seconds (10 digits: 2001-09-09 .. 2286)
    r"|(?<!\S)(?P<e>\d{10})(?P<ef>\.\d{1,9})?(?!\S))"
)
_FALLBACK_START = 100  # the header's first timestamp starts within this many characters
_FALLBACK_HEAD = 256  # ... and its last one starts within this many
_STAMP_LEN = 64  # longer than any timestamp _STAMP matches: a search window never cuts one
_GAP_WORDS = re.compile(r"(?:\s*\S+){0,3}\s*")  # at most 3 words between a header's timestamps
_LEVEL_WORDS = frozenset(
    ("EMERG", "ALERT", "CRIT", "CRITICAL", "ERR", "ERROR", "WARN", "WARNING", "NOTICE",
     "INFO", "DEBUG", "FATAL", "SEVERE", "TRACE")
)  # fmt: skip
_LEVEL_SCAN = 5  # a level word is looked for before the header and in the message's first words
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEADER_END = re.compile(r"\A[\])>|,;:\s]*(?:-\s+)?")  # "] ", " | ", ", ", " - " after a timestamp


class _Fallback(LineFormat):
    """The last resort of ``auto``: a line in no known layout whose header holds a timestamp.

    The header is the first timestamp that starts within 100 characters, with no ``": "`` before
    it (that would start a message), and any more timestamps that follow it within 3 words
    (``- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 RAS ...``). The
    time is the most specific of them: a date with a 4-digit year and a time, then ``yymmdd
    HHMMSS``, then epoch seconds, then BSD ``Mmm d HH:MM:SS`` without a year (the year inferred
    as for RFC 3164); ties go to the first. The message is what follows the header; after a BSD
    timestamp a ``host prog[pid]:`` is read as syslog does, otherwise host and program stay
    empty. The severity is the first upper-case level word (``ERROR``, ``FATAL`` = crit,
    ``SEVERE`` = err, ``WARN``, ...) before the header or in the message's first 5 words.
    An impossible date in a separated or BSD timestamp is ``bad_time``; bare digits that only
    look like ``yymmdd HHMMSS`` or an epoch (month 13, a time ahead of the clock) are no
    timestamp."""

    name = "fallback"

    def __init__(self) -> None:
        self._times = _StampTimes()

    def match(self, line, received, tz):
        first = last = None
        best: tuple[int, re.Match[str], datetime | None] | None = None
        pos, limit = 0, _FALLBACK_START  # the next timestamp starts at or before ``limit``
        while True:
            m = _STAMP.search(line, pos, limit + _STAMP_LEN)
            if m is None or m.start() > limit:
                break
            gap = line[last.end() if last else 0 : m.start()]
            if ": " in gap or gap.endswith(":"):  # the message has started
                break
            ranked = self._rank(m, received, tz)
            if ranked is None:  # digits, not a time
                if last is None:
                    pos = m.end()
                    continue
                break
            if best is None or ranked[0] > best[0]:
                best = (ranked[0], m, ranked[1])
            first = first or m
            last = m
            pos = m.end()
            words = _GAP_WORDS.match(line, pos)  # always matches (all optional)
            limit = min(words.end() if words else pos, _FALLBACK_HEAD)
        if best is None or first is None or last is None:
            return None
        _, stamp, t = best
        if t is None:
            key = (stamp.group(0), tz, received.toordinal())
            t = self._times.get(key, _UNSEEN)
            if t is _UNSEEN:
                t = self._times.keep(key, self._time(stamp, received, tz))
        rest = _HEADER_END.sub("", line[last.end() :], count=1)
        host = program = ""
        msg = rest
        if last.group("mon") is not None:  # a syslog header may follow
            h, tag, after = _host_tag(rest)
            if tag is not None:
                host, program, msg = h, tag.group("prog"), after[tag.end() :]
        sev = None
        for word in line[: first.start()].split() + msg.split(None, _LEVEL_SCAN)[:_LEVEL_SCAN]:
            word = word.strip("[]()<>{}:,;|")
            if word in _LEVEL_WORDS:
                sev = severity_of(word)
                break
        return Parsed(t, host or None, program, msg, sev, None, self.name)

    def _rank(
        self, m: re.Match[str], received: datetime, tz: tzinfo
    ) -> tuple[int, datetime | None] | None:
        """(specificity, the time if already known) of a timestamp; None for digits that are
        not one."""
        g = m.group
        if g("Y") is not None:
            return 3, None
        if g("mon") is not None:
            return (3 if g("by1") or g("by2") else 0), None
        if g("cy") is not None:  # a real date and time not ahead of the clock, else two numbers
            key = (m.group(0), tz, received.toordinal())
            t = self._times.get(key, _UNSEEN)
            if t is _UNSEEN:
                t = self._times.keep(key, _compact(g, tz))
            return (2, t) if t is not None and t <= received + timedelta(days=1) else None
        t = _EPOCH + timedelta(seconds=int(g("e")), microseconds=_frac(g("ef")))
        return (1, t) if t <= received + timedelta(days=1) else None

    @staticmethod
    def _time(m: re.Match[str], received: datetime, tz: tzinfo) -> datetime:
        g = m.group
        if g("Y") is not None:
            zone = g("z")
            if zone:
                if zone == "Z":
                    tz = UTC
                else:
                    hh, mm = int(zone[1:3]), int(zone[-2:])
                    if hh > 23 or mm > 59:
                        raise _bad_time(f"bad UTC offset {zone!r}")
                    tz = timezone(timedelta(hours=hh, minutes=mm) * (-1 if zone[0] == "-" else 1))
            return _local(
                int(g("Y")), int(g("M") or g("M2")), int(g("D") or g("D2")),
                int(g("h") or g("h2")), int(g("m") or g("m2")), int(g("s") or g("s2")),
                _frac(g("f")), tz,
            )  # fmt: skip
        if g("mon") is not None:
            month, day = _MONTHS[g("mon")], int(g("bd"))
            year_text = g("by1") or g("by2")
            year = int(year_text) if year_text else _year_for(month, day, received, tz)
            return _local(
                year, month, day, int(g("bh")), int(g("bm")), int(g("bs")), _frac(g("bf")), tz
            )
        raise AssertionError("compact and epoch stamps are timed by _rank")


def _compact(g: Callable[[str], Any], tz: tzinfo) -> datetime | None:
    """A ``yymmdd HHMMSS`` stamp's time, None if it is no real date and time."""
    yy = int(g("cy"))  # as strptime's %y: 69-99 -> 19xx, 00-68 -> 20xx
    try:
        return _local(
            yy + (1900 if yy >= 69 else 2000), int(g("cM")), int(g("cD")),
            int(g("ch")), int(g("cm")), int(g("cs")), 0, tz,
        )  # fmt: skip
    except BadRecord:
        return None


class _Auto(LineFormat):
    name = "auto"

    def __init__(self, formats: tuple[LineFormat, ...]):
        self.formats = formats

    def match(self, line, received, tz):
        for f in self.formats:
            p = f.match(line, received, tz)
            if p is not None:
                return p
        return None

    def parse(self, line, received, tz):
        p = self.match(line, received, tz)
        if p is None:
            raise BadRecord(
                "bad_log",
                "in no known format (syslog RFC 3164/5424, Apache/nginx, journald) and no"
                " timestamp near its start; declare the source's format in security.sources",
            )
        return p


class _Regex(LineFormat):
    """A declared format: a regex with named groups and a time format."""

    name = "declared"

    def __init__(self, pattern: str, time_format: str | None, program: str = ""):
        self.pattern = re.compile(pattern, re.S)
        self.time_format = time_format
        self.program = program
        self.has_year = time_format is None or any(
            d in time_format for d in ("%Y", "%y", "%G", "%s")
        )
        self._cache: dict[tuple[str, int], datetime] = {}

    def _time(self, text: str, received: datetime, tz: tzinfo) -> datetime:
        key = (text, id(tz))
        t = self._cache.get(key)
        if t is not None:
            return t
        fmt = self.time_format
        try:
            if fmt is None or fmt == "iso":
                t = _iso(text.replace(",", ".").replace("/", "-"), tz)
            elif fmt in ("epoch", "epoch_ms"):
                value = float(text) / (1000.0 if fmt == "epoch_ms" else 1.0)
                t = _aware(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=value), tz)
            else:
                if self.has_year:
                    raw = datetime.strptime(text, fmt)
                else:  # parse in a leap year, then take the year as RFC 3164 does
                    raw = datetime.strptime(f"2000 {text}", f"%Y {fmt}")
                    raw = raw.replace(year=_year_for(raw.month, raw.day, received, tz))
                t = _aware(raw, tz)
        except BadRecord:
            raise
        except (ValueError, OverflowError) as e:
            raise _bad_time(f"time {text[:64]!r} does not fit {fmt!r}: {e}") from None
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = t
        return t

    def match(self, line, received, tz):
        m = self.pattern.match(line)
        if m is None:
            return None
        g = m.groupdict()
        t = self._time(g["time"] or "", received, tz)
        sev = severity_of(g.get("severity")) if g.get("severity") else severity_of(g.get("level"))
        fac = g.get("facility")
        return Parsed(
            t,
            g.get("host") or None,
            g.get("program") or self.program,
            g.get("message") or "",
            sev,
            int(fac) if fac and fac.isdigit() and int(fac) < 24 else None,
            self.name,
        )

    def parse(self, line, received, tz):
        p = self.match(line, received, tz)
        if p is None:
            raise BadRecord("bad_log", "does not match the source's declared format")
        return p


BUILTIN_FORMATS: dict[str, LineFormat] = {
    f.name: f
    for f in (
        _Rfc5424(),
        _Syslog(),
        _ApacheError(),
        _Access(),
        _NginxError(),
        _JournalJson(),
        _JournalExport(),
        _Generic(),
        _Fallback(),  # last: only a line no other grammar reads
    )
}
_AUTO = _Auto(tuple(BUILTIN_FORMATS.values()))


def line_format(
    spec: str = "auto", time_format: str | None = None, program: str = ""
) -> LineFormat:
    """The format named ``spec`` (``auto`` or a built-in name) or, when ``spec`` contains a named
    group, a declared regex format. ValueError for an unknown name or a bad regex."""
    if spec == "auto":
        return _AUTO
    if spec in BUILTIN_FORMATS:
        return BUILTIN_FORMATS[spec]
    if "(?P<" not in spec:
        raise ValueError(
            f"unknown log format {spec!r}: use auto, {', '.join(BUILTIN_FORMATS)}, or a regular "
            "expression with named groups (?P<time>...) and (?P<message>...)"
        )
    try:
        fmt = _Regex(spec, time_format, program)
    except re.error as e:
        raise ValueError(f"log format {spec!r} is not a valid regular expression: {e}") from None
    missing = {"time", "message"} - set(fmt.pattern.groupindex)
    if missing:
        raise ValueError(f"log format {spec!r} needs the named groups {sorted(missing)}")
    return fmt
