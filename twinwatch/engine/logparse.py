"""Raw log lines (syslog, log files, MQTT log topics) -> SecurityEvents; a line that cannot be
read is a DeadLetter with its reason, never an exception in the flow.

    parser = LogParser(config)
    parser.split(items, received) -> (events, dead_letters)     items: [(origin, line bytes)]
    parser.from_mqtt(ref, time, line) -> [SecurityEvent]          the MQTT log topics' path
    check_file(config, path) -> CheckReport                       ``twinwatch logs --check``

Each line goes through the same three steps whatever its transport:

1. **Source** (``security.sources``): the first source whose ``files`` glob matches the file
   path, or whose ``peers`` network holds the syslog sender, gives the line's format, time zone,
   asset and default program; otherwise the built-in formats (``auto``) and ``city.timezone``.
2. **Format** (``twinwatch.engine.logformats``): time, host, program, message, severity and
   facility. Impossible or out-of-range times are ``bad_time``; unknown layouts ``bad_log``.
3. **Classification** (``twinwatch.engine.classify``, the one classifier): kind, outcome, user,
   source IP, port.

Identity is bounded whatever a device sends: the asset comes from the source or
``security.hosts`` (else ``security.default_asset``), and the sensor from the line's security
category (sshd, firewall, http, windows) or its program through ``security.programs`` and a
built-in allow-list of common daemons; any other program is the sensor ``other``, with the raw
program and host kept as fields. User names can be pseudonymised with a keyed hash (HMAC-SHA256,
key from a ``Secret``), on every transport.

Formats follow loghub's samples (Zhu et al., "Loghub: A Large Collection of System Log Datasets
for AI-driven Log Analytics", ISSRE 2023; https://github.com/logpai/loghub).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from twinwatch.config import Config, ConfigError, LogSource, SensorRef
from twinwatch.engine.classify import classify
from twinwatch.engine.logformats import (
    FACILITY_NAMES,
    SEVERITY_NAMES,
    LineFormat,
    Parsed,
    line_format,
    split_tag,
)
from twinwatch.engine.parse import PAYLOAD_PREVIEW, UniqueTimes
from twinwatch.schema import BadRecord, DeadLetter, SecurityEvent

__all__ = [
    "LogParser",
    "CheckReport",
    "check_file",
    "iter_records",
    "pseudonymise",
    "KNOWN_PROGRAMS",
]

log = logging.getLogger(__name__)

# Programs that name their own sensor (a bounded, common set); others map through
# security.programs or become "other".
KNOWN_PROGRAMS = frozenset(
    {
        "sshd",
        "sudo",
        "su",
        "login",
        "passwd",
        "useradd",
        "userdel",
        "usermod",
        "groupadd",
        "chpasswd",
        "cron",
        "crond",
        "anacron",
        "atd",
        "systemd",
        "systemd-logind",
        "systemd-udevd",
        "kernel",
        "auditd",
        "polkitd",
        "dbus-daemon",
        "rsyslogd",
        "syslogd",
        "syslog-ng",
        "logrotate",
        "ntpd",
        "chronyd",
        "dhclient",
        "dhcpd",
        "named",
        "unbound",
        "dnsmasq",
        "postfix",
        "sendmail",
        "dovecot",
        "vsftpd",
        "ftpd",
        "proftpd",
        "xinetd",
        "smbd",
        "nmbd",
        "snmpd",
        "mysqld",
        "postgres",
        "haproxy",
        "squid",
        "openvpn",
        "charon",
        "strongswan",
        "fail2ban",
        "ufw",
        "firewalld",
        "nginx",
        "apache",
        "httpd",
        "containerd",
        "dockerd",
        "kubelet",
        "networkmanager",
        "wpa_supplicant",
        "bluetoothd",
        "cupsd",
        "cups",
        "gdm",
        "lightdm",
    }
)  # fmt: skip
_SENSOR_CHARS = re.compile(r"[^a-z0-9_-]")
_MAX_PROGRAMS = 4096  # cached program -> sensor mappings


def pseudonymise(user: str, key: bytes) -> str:
    """A stable keyed hash of a user name (the same name gives the same pseudonym per key)."""
    return "u-" + hmac.new(key, user.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class _Source:
    name: str
    fmt: LineFormat
    tz: tzinfo
    asset: tuple[str, str] | None
    framing: str = "line"
    files: tuple[str, ...] = ()
    peers: tuple = ()


def _asset(where: str) -> tuple[str, str]:
    site, asset = where.split("/")
    return site, asset


def _build_source(src: LogSource, city_tz: tzinfo) -> _Source:
    try:
        fmt = line_format(src.format, src.time_format, src.program)
        tz = ZoneInfo(src.timezone) if src.timezone else city_tz
    except (ValueError, KeyError) as e:
        raise ConfigError(f"security.sources.{src.name}: {e}") from None
    return _Source(
        src.name,
        fmt,
        tz,
        _asset(src.asset) if src.asset else None,
        src.framing,
        tuple(src.files),
        tuple(ipaddress.ip_network(p, strict=False) for p in src.peers),
    )


class LogParser:
    """Turns log lines into SecurityEvents of configured assets (see the module docstring)."""

    def __init__(self, config: Config, unique: UniqueTimes | None = None):
        sec = config.security
        self.tz = ZoneInfo(config.city.timezone)
        self.default_source = _Source("auto", line_format("auto"), self.tz, None)
        self.sources = [_build_source(s, self.tz) for s in sec.sources]
        self.hosts = {h: _asset(a) for h, a in sec.hosts.items()}
        self.default = _asset(sec.default_asset)
        self.programs = dict(sec.programs)
        self.max_bytes = sec.max_line_bytes
        self.max_future = timedelta(seconds=config.flow.max_future_s)
        self.key = sec.pseudonymise_key.reveal().encode() if sec.pseudonymise_key else None
        self.unique = unique or UniqueTimes()
        self._by_origin: dict[str, _Source] = {}
        self._sensors: dict[str, str] = {}
        self._errors_logged = 0

    # --- identity ------------------------------------------------------------------------------

    def source_for(self, origin: str) -> _Source:
        """The configured source of an origin (``file:<path>``, ``syslog:<tcp|udp>:<peer>``)."""
        src = self._by_origin.get(origin)
        if src is not None:
            return src
        src = self.default_source
        kind, _, rest = origin.partition(":")
        for s in self.sources:
            if kind == "file" and any(fnmatch.fnmatch(rest, g) for g in s.files):
                src = s
                break
            if kind == "syslog" and s.peers:
                try:
                    addr = ipaddress.ip_address(rest.partition(":")[2])
                except ValueError:
                    continue
                if any(addr in net for net in s.peers):
                    src = s
                    break
        if len(self._by_origin) >= 10_000:  # syslog peers are many; stay bounded
            self._by_origin.clear()
        self._by_origin[origin] = src
        return src

    def sensor_for(self, program: str) -> str:
        """The bounded sensor id of a program: the config's mapping, the allow-list, or "other"."""
        sensor = self._sensors.get(program)
        if sensor is not None:
            return sensor
        base = program.split("(", 1)[0].split("[", 1)[0]
        sensor = self.programs.get(base)
        if sensor is None:
            for pattern, mapped in self.programs.items():
                if fnmatch.fnmatchcase(base, pattern):
                    sensor = mapped
                    break
        if sensor is None:
            low = base.lower()
            sensor = _SENSOR_CHARS.sub("", low)[:64] if low in KNOWN_PROGRAMS else "other"
        if len(self._sensors) >= _MAX_PROGRAMS:
            self._sensors.clear()
        self._sensors[program] = sensor
        return sensor

    def _user(self, user: str | None) -> str | None:
        if user is None or self.key is None:
            return user
        return pseudonymise(user, self.key)

    # --- lines ---------------------------------------------------------------------------------

    def parse_line(
        self, line: str, received: datetime, origin: str = "", src: _Source | None = None
    ) -> Parsed:
        src = src or self.source_for(origin)
        p = src.fmt.parse(line, received, src.tz)
        if p.time > received + self.max_future:
            raise BadRecord(
                "bad_time",
                f"time {p.time.isoformat()} is more than {self.max_future.total_seconds():g} s "
                "ahead of the clock",
            )
        return p

    def parse(self, raw: bytes, received: datetime, origin: str = "") -> list[SecurityEvent]:
        return self.read(raw, received, origin)[1]

    def read(
        self, raw: bytes, received: datetime, origin: str = ""
    ) -> tuple[Parsed, list[SecurityEvent]]:
        """The parsed line (with the name of the format that read it) and its events."""
        if len(raw) > self.max_bytes:
            raise BadRecord("too_large", f"{len(raw)} bytes > limit {self.max_bytes}")
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise BadRecord("bad_encoding", "line is not UTF-8") from None
        src = self.source_for(origin)
        p = self.parse_line(line, received, origin, src)
        if src.asset is not None:
            site, asset = src.asset
        else:
            site, asset = self.hosts.get(p.host, self.default) if p.host else self.default
        return p, self._events(p, p.time, site, asset, None)

    def _events(
        self, p: Parsed, t: datetime, site: str, asset: str, sensor: str | None, unique=True
    ) -> list[SecurityEvent]:
        events = []
        severity = SEVERITY_NAMES[p.severity] if p.severity is not None else None
        facility = FACILITY_NAMES[p.facility] if p.facility is not None else None
        program = p.program[:64] or None
        host = p.host[:255] if p.host else None
        message = p.message[:1024]
        for c in classify(p.program, p.message, p.severity):
            name = sensor or c.sensor or self.sensor_for(p.program)
            events.append(
                SecurityEvent(
                    self.unique(f"{site}/{asset}/{name}", t) if unique else t,
                    site,
                    asset,
                    name,
                    c.kind,
                    c.outcome,
                    user=self._user(c.user),
                    src_ip=c.src_ip,
                    dst_port=c.dst_port,
                    message=message,
                    severity=severity,
                    facility=facility,
                    program=program,
                    host=host,
                )
            )
        return events

    def from_mqtt(self, ref: SensorRef, t: datetime, line: str) -> list[SecurityEvent]:
        """Events of a line published on an MQTT log topic (``{"time", "line"}``): classified
        exactly as the same line over syslog or a file; identity from the topic, time from the
        payload. A line in no known format is taken as a message of the sensor's program."""
        try:
            p = self.default_source.fmt.parse(line, t, self.tz)
            p = p._replace(time=t)
        except BadRecord:  # a bare "sshd[12]: message" or just the message
            program, message = split_tag(line)
            p = Parsed(t, None, program or ref.sensor.id, message)
        # collision-free times are given once, by Parser.split, for every MQTT record
        return self._events(p, t, ref.site, ref.asset, ref.sensor.id, unique=False)

    def split(
        self, items: Iterable[tuple[str, bytes]], received: datetime | None = None
    ) -> tuple[list[SecurityEvent], list[DeadLetter]]:
        """Parse a batch: events, and dead letters with their reason (never raises for a line)."""
        received = received or datetime.now(UTC)
        oks: list[SecurityEvent] = []
        errs: list[DeadLetter] = []
        for origin, raw in items:
            got = self.read_or_dead(raw, received, origin)
            if isinstance(got, DeadLetter):
                errs.append(got)
            else:
                oks.extend(got[1])
        return oks, errs

    def read_or_dead(
        self, raw: bytes, received: datetime, origin: str
    ) -> tuple[Parsed, list[SecurityEvent]] | DeadLetter:
        """``read`` that never raises: a line it cannot read is a DeadLetter with the reason."""
        try:
            return self.read(raw, received, origin)
        except BadRecord as e:
            return self._dead(origin, raw, received, e.reason, e.detail)
        except Exception as e:  # a parser bug must not stop the flow: dead-letter the line
            if self._errors_logged < 10:
                self._errors_logged += 1
                log.exception("log parser error on a line from %s", origin[:128])
            return self._dead(origin, raw, received, "bad_log", f"parser error {e!r}"[:200])

    def _dead(self, origin, raw, received, reason, detail) -> DeadLetter:
        source = origin.split(":", 1)[0]
        return DeadLetter(
            self.unique(f"{source}/{reason}", received),
            source,
            origin[:256],
            reason,
            detail[:512],
            raw[:PAYLOAD_PREVIEW].decode("utf-8", "replace"),
        )


def iter_records(lines: Iterable[bytes], framing: str = "line") -> Iterator[bytes]:
    """Records of a byte stream's lines: each non-empty line, or (``journal``) each block of
    lines up to a blank line, joined by newlines (``journalctl -o export``)."""
    if framing != "journal":
        for line in lines:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line
        return
    block: list[bytes] = []
    for line in lines:
        line = line.rstrip(b"\r\n")
        if line:
            block.append(line)
        elif block:
            yield b"\n".join(block)
            block = []
    if block:
        yield b"\n".join(block)


@dataclass
class CheckReport:
    """What ``twinwatch logs --check FILE`` prints: parse rate, reasons, first unparsed lines."""

    path: str
    source: str
    lines: int = 0
    parsed: int = 0
    events: int = 0
    reasons: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)  # lines per format that read them
    first_bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line no, reason, line)

    @property
    def rate(self) -> float:
        return self.parsed / self.lines if self.lines else 0.0

    def text(self) -> str:
        out = [
            f"{self.path}: {self.parsed} of {self.lines} lines parsed ({100 * self.rate:.2f} %), "
            f"source {self.source!r}, {self.events} events"
        ]
        if self.formats:
            out.append("  formats: " + ", ".join(f"{k} {n}" for k, n in self.formats.most_common()))
            if self.formats["fallback"]:
                out.append(
                    f"  {self.formats['fallback']} lines were read by the fallback (a timestamp"
                    " found near the start, no program or host): declaring the source's format in"
                    " security.sources reads them exactly"
                )
        if self.kinds:
            out.append("  kinds: " + ", ".join(f"{k} {n}" for k, n in self.kinds.most_common(8)))
        if self.reasons:
            out.append("  not parsed: " + ", ".join(f"{r} {n}" for r, n in self.reasons.items()))
        for no, reason, line in self.first_bad:
            out.append(f"  line {no}: {reason}: {line[:160]}")
        return "\n".join(out)


def check_file(config: Config, path: str | Path, show: int = 5) -> CheckReport:
    """Parse a file as ``twinwatch logs --tail`` would, writing nothing."""
    parser = LogParser(config)
    origin = f"file:{path}"
    src = parser.source_for(origin)
    report = CheckReport(str(path), src.name)
    received = datetime.now(UTC)
    with open(path, "rb") as fh:
        for no, raw in enumerate(iter_records(fh, src.framing), 1):
            report.lines += 1
            got = parser.read_or_dead(raw, received, origin)
            if isinstance(got, DeadLetter):
                report.reasons[got.reason] += 1
                if len(report.first_bad) < show:
                    report.first_bad.append((no, got.reason, got.payload))
                continue
            parsed, events = got
            report.parsed += 1
            report.formats[parsed.format] += 1
            report.events += len(events)
            report.kinds.update(e.kind for e in events if e.kind != "other")
    return report
