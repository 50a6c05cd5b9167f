"""Parse raw messages into records; anything invalid becomes a DeadLetter with its reason.

    Parser(config).parse(topic, payload) -> Reading | SecurityEvent     (raises BadRecord)
    Parser(config).split(messages) -> (records, dead_letters)

Identity (domain, site, asset, sensor) comes from the topic ``<prefix>/<domain>/<site>/<asset>/
<sensor>`` and must name a configured sensor; quantity and unit come from the config, so a device
cannot invent series (bounded tag cardinality) or relabel its unit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from twinwatch.config import Config, SensorRef
from twinwatch.schema import (
    BadRecord,
    DeadLetter,
    DeviceEventPayload,
    FirewallPayload,
    LogPayload,
    Outcome,
    Reading,
    SecurityEvent,
    SensorPayload,
)

__all__ = ["Parser", "UniqueTimes", "parse_sshd"]

PAYLOAD_PREVIEW = 512  # bytes of a rejected payload kept in the dead-letter queue
# InfluxDB stores int64 nanoseconds: times outside this range cannot be written at all.
EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)

_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "reading": msgspec.json.Decoder(SensorPayload),
    "log": msgspec.json.Decoder(LogPayload),
    "firewall": msgspec.json.Decoder(FirewallPayload),
    "device_event": msgspec.json.Decoder(DeviceEventPayload),  # CCTV/IoT security events (#6)
}

# sshd auth-log lines (formats as in loghub's OpenSSH sample; Zhu et al., ISSRE 2023).
_SSHD: list[tuple[re.Pattern[str], str, Outcome]] = [
    (
        re.compile(r"Failed password for invalid user (?P<user>\S*) from (?P<ip>\S+)"),
        "invalid_user",
        "failure",
    ),
    (re.compile(r"Invalid user (?P<user>\S*) from (?P<ip>\S+)"), "invalid_user", "failure"),
    (re.compile(r"Failed password for (?P<user>\S+) from (?P<ip>\S+)"), "auth_failure", "failure"),
    (
        re.compile(r"authentication failure;.*rhost=(?P<ip>\S+)(?:\s+user=(?P<user>\S+))?"),
        "auth_failure",
        "failure",
    ),
    (re.compile(r"Accepted \S+ for (?P<user>\S+) from (?P<ip>\S+)"), "auth_success", "success"),
]


def parse_sshd(line: str) -> tuple[str, Outcome, str | None, str | None]:
    """(kind, outcome, user, src_ip) of an sshd log line; unknown lines are ("other", "info")."""
    for pattern, kind, outcome in _SSHD:
        m = pattern.search(line)
        if m:
            return kind, outcome, m.groupdict().get("user"), m.group("ip")
    return "other", "info", None, None


class UniqueTimes:
    """Distinct occurrences that share a timestamp get distinct ones, 1 ms apart.

    InfluxDB keeps one point per (series, time): a second point overwrites the first. That is right
    for readings (a re-delivered reading is the same fact: idempotent). But security events and
    dead letters are occurrences, and they often share a time (sshd logs have whole seconds; a burst
    of bad messages is received within one millisecond). Within a burst of one series (from its
    first time to the last time handed out), each next occurrence moves to 1 ms after the last one;
    an occurrence after the burst, or older than it (out of order), keeps its own time. Done here,
    before detection, so an event's score, anomaly and alert points carry the same time as it.
    """

    def __init__(self, max_series: int = 100_000):
        self.max_series = max_series
        self._bursts: dict[str, tuple[int, int]] = {}  # series -> (first ms, last ms handed out)

    def __call__(self, series: str, t: datetime) -> datetime:
        ms = round(t.timestamp() * 1000)
        burst = self._bursts.get(series)
        if burst is not None and burst[0] <= ms <= burst[1]:
            self._bursts[series] = (burst[0], burst[1] + 1)
            return datetime.fromtimestamp((burst[1] + 1) / 1000, UTC)
        if burst is None and len(self._bursts) >= self.max_series:
            self._bursts.clear()  # bounded memory; at worst one overwrite after a clear
        self._bursts[series] = (ms, ms)
        return t


class Parser:
    """Validates raw (topic, payload) messages against the schema and the sensor catalogue."""

    def __init__(self, config: Config):
        self.prefix = config.services.mqtt.topic_prefix + "/"
        self.max_bytes = config.flow.max_payload_bytes
        self.max_future = timedelta(seconds=config.flow.max_future_s)
        self.unique = UniqueTimes()
        self.catalog: dict[str, SensorRef] = {
            f"{self.prefix}{d}/{s}/{a}/{n}": ref for (d, s, a, n), ref in config.catalog.items()
        }

    def parse(self, topic: str, payload: bytes) -> Reading | SecurityEvent:
        if len(payload) > self.max_bytes:
            raise BadRecord("too_large", f"{len(payload)} bytes > limit {self.max_bytes}")
        ref = self.catalog.get(topic)
        if ref is None:
            if not topic.startswith(self.prefix) or topic.count("/") != 4:
                raise BadRecord(
                    "bad_topic", f"expected {self.prefix}<domain>/<site>/<asset>/<sensor>"
                )
            raise BadRecord("unknown_sensor", "no such sensor in the configuration")
        kind = ref.sensor.kind
        try:
            msg = _decoders[kind].decode(payload)
        except msgspec.ValidationError as e:
            text = str(e)
            reason = "bad_time" if "`$.time`" in text else "bad_schema"
            if "out of range" in text:
                reason = "non_finite"
            raise BadRecord(reason, text) from None
        except msgspec.DecodeError as e:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRecord("bad_encoding", "payload is not UTF-8") from None
            raise BadRecord("bad_json", str(e)) from None
        time = msg.time.astimezone(UTC)
        if not EARLIEST <= time < min(LATEST, self._now() + self.max_future):
            raise BadRecord(
                "bad_time",
                f"time {msg.time.isoformat()} is outside "
                f"{EARLIEST.year}..now+{self.max_future.total_seconds():g}s",
            )
        if kind == "reading":
            if not math.isfinite(msg.value):
                raise BadRecord("non_finite", f"value {msg.value!r} is not finite")
            unit = ref.sensor.unit
            if msg.unit is not None and msg.unit != unit:
                raise BadRecord("unit_mismatch", f"unit {msg.unit!r}, configured {unit!r}")
            return Reading(
                time,
                ref.domain,
                ref.site,
                ref.asset,
                ref.sensor.id,
                ref.sensor.quantity,
                unit,
                msg.value,
            )
        if kind == "log":
            ev_kind, outcome, user, ip = parse_sshd(msg.line)
            return SecurityEvent(
                time,
                ref.site,
                ref.asset,
                ref.sensor.id,
                ev_kind,
                outcome,
                user=user,
                src_ip=ip,
                message=msg.line[:1024],
            )
        if kind == "device_event":  # the event name is a bounded tag: a pattern-checked id
            return SecurityEvent(
                time, ref.site, ref.asset, ref.sensor.id, msg.event, "info", message=msg.zone
            )
        outcome = "allow" if msg.action == "allow" else "deny"
        return SecurityEvent(
            time,
            ref.site,
            ref.asset,
            ref.sensor.id,
            f"fw_{msg.action}",
            outcome,
            src_ip=msg.src_ip,
            dst_port=msg.dst_port,
            message=f"{msg.protocol}/{msg.dst_port}",
        )

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def split(
        self,
        messages: Iterable[tuple[str, bytes]],
        source: str = "mqtt",
        received: datetime | None = None,
    ) -> tuple[list, list[DeadLetter]]:
        """Parse a batch: valid records, and dead letters for the rest (never raises BadRecord)."""
        oks: list = []
        errs: list[DeadLetter] = []
        received = received or datetime.now(UTC)
        unique = self.unique
        for topic, payload in messages:
            try:
                rec = self.parse(topic, payload)
            except BadRecord as e:
                errs.append(
                    DeadLetter(
                        unique(f"{source}/{e.reason}", received),
                        source,
                        topic[:256],
                        e.reason,
                        e.detail[:512],
                        payload[:PAYLOAD_PREVIEW].decode("utf-8", "replace"),
                    )
                )
                continue
            if type(rec) is SecurityEvent:
                t = unique(rec.series, rec.time)
                if t is not rec.time:
                    rec = msgspec.structs.replace(rec, time=t)
            oks.append(rec)
        return oks, errs
