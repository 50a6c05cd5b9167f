"""Parse raw messages into records; anything invalid becomes a DeadLetter with its reason.

    Parser(config).parse(topic, payload) -> Reading | SecurityEvent     (raises BadRecord)
    Parser(config).split(messages) -> (records, dead_letters)

Identity (domain, site, asset, sensor) comes from the topic ``<prefix>/<domain>/<site>/<asset>/
<sensor>`` and must name a configured sensor; quantity and unit come from the config, so a device
cannot invent series (bounded tag cardinality) or relabel its unit.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from twinwatch.config import Config, SensorRef
from twinwatch.schema import (
    BadRecord,
    DeadLetter,
    DeviceEventPayload,
    FirewallPayload,
    LogPayload,
    Reading,
    SecurityEvent,
    SensorPayload,
)

__all__ = ["Parser", "UniqueTimes"]

PAYLOAD_PREVIEW = 512  # bytes of a rejected payload kept in the dead-letter queue
# InfluxDB stores int64 nanoseconds: times outside this range cannot be written at all.
EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)

_decoders = {
    "reading": msgspec.json.Decoder(SensorPayload),
    "log": msgspec.json.Decoder(LogPayload),
    "firewall": msgspec.json.Decoder(FirewallPayload),
    "device_event": msgspec.json.Decoder(DeviceEventPayload),  # CCTV/IoT security events (#6)
}


class UniqueTimes:
    """Distinct occurrences that share a timestamp get distinct ones, 1 ms apart.

    InfluxDB keeps one point per (series, time): a second point overwrites the first. That is right
    for readings (a re-delivered reading is the same fact: idempotent). But security events and
    dead letters are occurrences, and they often share a time (sshd logs have whole seconds; a burst
    of bad messages is received within one millisecond). Per series, the milliseconds already
    handed out are kept as sorted, disjoint spans; an occurrence whose millisecond is taken gets
    the first free one after it, in order or not (events of two seconds interleaved, or late
    ones, never overwrite each other). Done here, before detection, so an event's score, anomaly
    and alert points carry the same time as it. Bounded: ``max_spans`` spans per series (the
    oldest forgotten first) and ``max_series`` series.
    """

    def __init__(self, max_series: int = 100_000, max_spans: int = 256):
        self.max_series = max_series
        self.max_spans = max_spans
        self._spans: dict[str, list[list[int]]] = {}  # series -> sorted [first ms, last ms]

    def __call__(self, series: str, t: datetime) -> datetime:
        ms = round(t.timestamp() * 1000)
        spans = self._spans.get(series)
        if spans is None:
            if len(self._spans) >= self.max_series:
                self._spans.clear()  # bounded memory; at worst one overwrite after a clear
            self._spans[series] = [[ms, ms]]
            return t
        last = spans[-1]
        if ms > last[1] + 1:  # the usual case: after everything handed out
            spans.append([ms, ms])
            if len(spans) > self.max_spans:
                del spans[0]
            return t
        if ms == last[1] + 1:
            last[1] = ms
            return t
        i = bisect.bisect_right(spans, [ms, math.inf]) - 1  # the last span starting <= ms
        if i >= 0 and spans[i][1] >= ms:  # taken: the first free millisecond after the span
            span = spans[i]
            new = span[1] + 1
            while i + 1 < len(spans) and spans[i + 1][0] <= new:  # that one is taken too
                new = max(new, spans[i + 1][1] + 1)
                del spans[i + 1]
            span[1] = new
            if i + 1 < len(spans) and spans[i + 1][0] == new + 1:  # keep spans non-adjacent
                span[1] = spans.pop(i + 1)[1]
            return datetime.fromtimestamp(new / 1000, UTC)
        if i >= 0 and spans[i][1] == ms - 1:
            spans[i][1] = ms
            if i + 1 < len(spans) and spans[i + 1][0] == ms + 1:
                spans[i][1] = spans.pop(i + 1)[1]
        elif i + 1 < len(spans) and spans[i + 1][0] == ms + 1:
            spans[i + 1][0] = ms
        else:
            spans.insert(i + 1, [ms, ms])
            if len(spans) > self.max_spans:
                del spans[0]
        return t


class Parser:
    """Validates raw (topic, payload) messages against the schema and the sensor catalogue."""

    def __init__(self, config: Config):
        self.prefix = config.services.mqtt.topic_prefix + "/"
        self.max_bytes = config.flow.max_payload_bytes
        self.max_future = timedelta(seconds=config.flow.max_future_s)
        self.unique = UniqueTimes()
        from twinwatch.engine.logparse import LogParser  # it imports this module

        self.logs = LogParser(config, unique=self.unique)
        self.catalog: dict[str, SensorRef] = {
            f"{self.prefix}{d}/{s}/{a}/{n}": ref for (d, s, a, n), ref in config.catalog.items()
        }

    def parse(self, topic: str, payload: bytes) -> Reading | SecurityEvent | list[SecurityEvent]:
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
        if kind == "log":  # the one classifier of every transport (twinwatch.engine.classify)
            return self.logs.from_mqtt(ref, time, msg.line)
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
            if type(rec) is list:  # a log line (N events for "message repeated N times")
                oks.extend(rec)
                continue
            if type(rec) is SecurityEvent:
                t = unique(rec.series, rec.time)
                if t is not rec.time:
                    rec = msgspec.structs.replace(rec, time=t)
            oks.append(rec)
        return oks, errs
