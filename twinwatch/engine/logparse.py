"""Raw log lines (syslog, log files) -> SecurityEvent; a line in no known format is a DeadLetter.

    LogParser(config).split(items) -> (events, dead_letters)   items: [(origin, line bytes)]
    parse_line(line, received, tz) -> (host, app, time, message)   (raises BadRecord)
    classify(app, message) -> [(sensor, kind, outcome, user, src_ip, dst_port)]

Formats: syslog RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``), RFC 3164 with or
without ``<PRI>`` (which is also the format of /var/log/auth.log and of loghub's OpenSSH and Linux
samples), Apache error logs (2.2 and 2.4) and Apache access logs (common/combined). Messages of
sshd and its PAM module, of kernel firewall logs (iptables/ufw/nftables ``SRC= DPT=``) and of
Apache get a security kind; other programs' lines are kept as kind ``other`` (they still feed the
template miner). IPs and user names are fields of the event, never tags; user names can be
pseudonymised with a keyed hash (HMAC-SHA256, key from a ``Secret``).

Formats follow loghub's samples (Zhu et al., "Loghub: A Large Collection of System Log Datasets
for AI-driven Log Analytics", ISSRE 2023).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from twinwatch.config import Config
from twinwatch.engine.parse import PAYLOAD_PREVIEW, UniqueTimes
from twinwatch.schema import BadRecord, DeadLetter, Outcome, SecurityEvent

__all__ = ["LogParser", "parse_line", "classify", "pseudonymise"]

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}

_RFC5424 = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?$", re.S
)
_RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\S+) "
    r"(?:([^:\[\s]+)(?:\[\d+\])?(?: [\w.-]{1,32})?: ?)?(.*)$",
    re.S,
)  # TAG[pid] [version]: MSG
_APACHE_ERROR = re.compile(
    r"\[\w{3} (\w{3}) ([ \d]\d) (\d\d):(\d\d):(\d\d)(?:\.\d+)? (\d{4})\] \[([\w:]+)\] (.*)$", re.S
)
_APACHE_ACCESS = re.compile(
    r"(\S+) \S+ (\S+) \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] \"([^\"]*)\" (\d{3}) "
)

# sshd and its PAM module (loghub OpenSSH sample). Order matters: the first match wins.
_SSHD: list[tuple[re.Pattern[str], str, Outcome]] = [
    (
        re.compile(r"Failed (\S+) for invalid user (?P<user>\S*) from (?P<ip>\S+)"),
        "auth_failure",
        "failure",
    ),
    (re.compile(r"Failed (\S+) for (?P<user>\S+) from (?P<ip>\S+)"), "auth_failure", "failure"),
    (re.compile(r"Invalid user (?P<user>\S*) from (?P<ip>\S+)"), "invalid_user", "failure"),
    (re.compile(r"Accepted (\S+) for (?P<user>\S+) from (?P<ip>\S+)"), "auth_success", "success"),
    # PAM repeats sshd's own failure line: recorded, but not counted twice by the detectors
    (
        re.compile(r"authentication failures?;.*rhost=(?P<ip>\S*)(?:\s+user=(?P<user>\S+))?"),
        "pam_failure",
        "failure",
    ),
    (
        re.compile(
            r"(?:Received disconnect|Connection closed|Disconnected) (?:from|by) "
            r"(?:(?:invalid |authenticating )?user (?P<user>\S+) )?(?P<ip>[0-9a-fA-F.:]+?)"
            r"(?::| port|$| \[)"
        ),
        "disconnect",
        "info",
    ),
    (re.compile(r"Did not receive identification string from (?P<ip>\S+)"), "probe", "info"),
    (re.compile(r"reverse mapping checking .* \[(?P<ip>[^\]]+)\] failed"), "bad_rdns", "info"),
]
_REPEATED = re.compile(r"message repeated (\d+) times: \[ ?(.*?) ?\]$")
_FIREWALL = re.compile(r"SRC=(?P<ip>\S+) .*?PROTO=(?P<proto>\S+)(?:.*? DPT=(?P<port>\d+))?")
_FW_ALLOW = re.compile(r"ACCEPT|ALLOW", re.I)
_CLIENT = re.compile(r"\[client ([0-9a-fA-F.:]+?)(?::\d+)?\]")
_SENSOR = re.compile(r"[^a-z0-9_-]")
_MAX_REPEAT = 1000  # "message repeated N times" expands to N events, within reason

Parsed = tuple[str | None, str, datetime, str]  # host, app, time, message


def _year_for(month: int, day: int, received: datetime, tz) -> int:
    """RFC 3164 has no year: the latest one that does not put the line > 1 day in the future."""
    year = received.astimezone(tz).year
    try:
        if datetime(year, month, day, tzinfo=tz) > received + timedelta(days=1):
            year -= 1
    except ValueError:  # Feb 29 in a common year
        year -= 1
    return year


def parse_line(line: str, received: datetime, tz) -> Parsed:
    """(host, app, time in UTC, message) of one log line; BadRecord("bad_log") if unknown."""
    m = _RFC5424.match(line)
    if m:
        ts, host, app, msg = m.group(2), m.group(3), m.group(4), m.group(8) or ""
        try:
            t = received if ts == "-" else datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            raise BadRecord("bad_time", f"RFC 5424 timestamp {ts[:64]!r}") from None
        if t.tzinfo is None:
            raise BadRecord("bad_time", "RFC 5424 timestamp without UTC offset")
        return (
            None if host == "-" else host,
            "" if app == "-" else app,
            t.astimezone(UTC),
            msg.removeprefix("\ufeff"),
        )
    m = _RFC3164.match(line)
    if m and m.group(2) in _MONTHS:
        month, day = _MONTHS[m.group(2)], int(m.group(3))
        t = _local(_year_for(month, day, received, tz), month, day, m, 4, tz)
        return m.group(7), m.group(8) or "", t, m.group(9)
    m = _APACHE_ERROR.match(line)
    if m and m.group(1) in _MONTHS:
        t = _local(int(m.group(6)), _MONTHS[m.group(1)], int(m.group(2)), m, 3, tz)
        return None, "apache", t, f"[{m.group(7)}] {m.group(8)}"
    m = _APACHE_ACCESS.match(line)
    if m:
        t = datetime.strptime(m.group(3), "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
        return None, "apache_access", t, line
    raise BadRecord("bad_log", "not syslog (RFC 3164/5424) nor an Apache log line")


def _local(year, month, day, m, g, tz) -> datetime:
    try:
        t = datetime(
            year, month, day, int(m.group(g)), int(m.group(g + 1)), int(m.group(g + 2)), tzinfo=tz
        )
    except ValueError as e:
        raise BadRecord("bad_time", str(e)) from None
    return t.astimezone(UTC)


Classified = tuple[str, str, Outcome, str | None, str | None, int | None]


def classify(app: str, message: str) -> list[Classified]:
    """[(sensor, kind, outcome, user, src_ip, dst_port)]: usually one, N for sshd's "message
    repeated N times" (N attempts happened, and the brute-force rules count attempts)."""
    base = app.split("(", 1)[0].lower()
    if base == "sshd":
        m = _REPEATED.match(message)
        if m:
            one = classify(app, m.group(2))
            return one * min(int(m.group(1)), _MAX_REPEAT)
        for pattern, kind, outcome in _SSHD:
            m = pattern.search(message)
            if m:
                return [("sshd", kind, outcome, m.groupdict().get("user"), m.group("ip"), None)]
        return [("sshd", "other", "info", None, None, None)]
    if base == "kernel" and "SRC=" in message:
        m = _FIREWALL.search(message)
        if m:
            allow = _FW_ALLOW.search(message[: m.start()])
            port = m.group("port")
            return [
                (
                    "firewall",
                    "fw_allow" if allow else "fw_deny",
                    "allow" if allow else "deny",
                    None,
                    m.group("ip"),
                    int(port) if port else None,
                )
            ]
    if base == "apache":
        m = _CLIENT.search(message)
        level = message[1 : message.find("]")].rsplit(":", 1)[-1]
        kind = "http_error" if level in ("error", "crit", "alert", "emerg") else "other"
        return [("apache", kind, "info", None, m.group(1) if m else None, None)]
    if base == "apache_access" and (m := _APACHE_ACCESS.match(message)):  # else: "other" below
        status = int(m.group(5))
        user = None if m.group(2) == "-" else m.group(2)
        outcome = "failure" if status in (401, 403) else "info"
        return [("apache", f"http_{status // 100}xx", outcome, user, m.group(1), None)]
    sensor = _SENSOR.sub("", base)[:32] or "syslog"
    return [(sensor, "other", "info", None, None, None)]


def pseudonymise(user: str, key: bytes) -> str:
    """A stable keyed hash of a user name (the same name gives the same pseudonym per key)."""
    return "u-" + hmac.new(key, user.encode(), hashlib.sha256).hexdigest()[:16]


class LogParser:
    """Turns log lines from the syslog and tail sources into SecurityEvents of configured assets.

    The asset is ``security.hosts[host]`` or ``security.default_asset``; the line's own time is
    kept (in the city's time zone when the format has none).
    """

    def __init__(self, config: Config):
        sec = config.security
        self.tz = ZoneInfo(config.city.timezone)
        self.hosts = {h: tuple(a.split("/")) for h, a in sec.hosts.items()}
        self.default = tuple(sec.default_asset.split("/"))
        self.max_bytes = sec.max_line_bytes
        self.key = sec.pseudonymise_key.reveal().encode() if sec.pseudonymise_key else None
        self.unique = UniqueTimes()

    def parse(self, raw: bytes, received: datetime) -> list[SecurityEvent]:
        if len(raw) > self.max_bytes:
            raise BadRecord("too_large", f"{len(raw)} bytes > limit {self.max_bytes}")
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise BadRecord("bad_encoding", "line is not UTF-8") from None
        host, app, t, message = parse_line(line, received, self.tz)
        site, asset = self.hosts.get(host, self.default) if host else self.default
        events = []
        for sensor, kind, outcome, user, ip, port in classify(app, message):
            if user is not None and self.key is not None:
                user = pseudonymise(user, self.key)
            events.append(
                SecurityEvent(
                    self.unique(f"{site}/{asset}/{sensor}", t),
                    site,
                    asset,
                    sensor,
                    kind,
                    outcome,
                    user=user,
                    src_ip=ip,
                    dst_port=port,
                    message=message[:1024],
                )
            )
        return events

    def split(
        self, items: Iterable[tuple[str, bytes]], received: datetime | None = None
    ) -> tuple[list[SecurityEvent], list[DeadLetter]]:
        """Parse a batch: events, and dead letters with their reason (never raises BadRecord)."""
        received = received or datetime.now(UTC)
        oks: list[SecurityEvent] = []
        errs: list[DeadLetter] = []
        for origin, raw in items:
            try:
                oks.extend(self.parse(raw, received))
            except BadRecord as e:
                source = origin.split(":", 1)[0]
                errs.append(
                    DeadLetter(
                        self.unique(f"{source}/{e.reason}", received),
                        source,
                        origin[:256],
                        e.reason,
                        e.detail[:512],
                        raw[:PAYLOAD_PREVIEW].decode("utf-8", "replace"),
                    )
                )
        return oks, errs
