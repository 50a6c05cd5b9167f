"""Parse raw messages into records; anything invalid becomes a DeadLetter with its reason.

    Parser(config).parse(topic, payload) -> Reading | SecurityEvent     (raises BadRecord)
    Parser(config).split(messages) -> (records, dead_letters)

Identity (domain, site, asset, sensor) comes from the topic ``<prefix>/<domain>/<site>/<asset>/
<sensor>`` and must name a configured sensor; quantity and unit come from the config, so a device
cannot invent series (bounded tag cardinality) or relabel its unit. ``<sensor topic>/annotation``
carries an operator's maintenance window for that sensor (``Annotation``, issue #12).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from twinwatch.config import Config, SensorRef
from twinwatch.engine.deadletter import PAYLOAD_PREVIEW, dead_letter, internal_error
from twinwatch.schema import (
    Annotation,
    AnnotationPayload,
    BadRecord,
    DeadLetter,
    DeviceEventPayload,
    Domain,
    FirewallPayload,
    LogPayload,
    Outcome,
    Reading,
    SecurityEvent,
    SensorPayload,
)

__all__ = ["Parser", "UniqueTimes", "PAYLOAD_PREVIEW", "ANNOTATION_SUFFIX"]

ANNOTATION_SUFFIX = "/annotation"  # <sensor topic>/annotation: a maintenance window (issue #12)

# InfluxDB stores int64 nanoseconds: times outside this range cannot be written at all.
EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)

_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "reading": msgspec.json.Decoder(SensorPayload),
    "log": msgspec.json.Decoder(LogPayload),
    "firewall": msgspec.json.Decoder(FirewallPayload),
    "device_event": msgspec.json.Decoder(DeviceEventPayload),  # CCTV/IoT security events (#6)
    "annotation": msgspec.json.Decoder(AnnotationPayload),
}


_reading_decoder = _decoders["reading"]
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _bad_payload(e: Exception, payload: bytes) -> BadRecord:
    """The dead-letter reason of a payload the decoder refused."""
    if isinstance(e, msgspec.ValidationError):
        text = str(e)
        reason = "bad_time" if "`$.time`" in text else "bad_schema"
        if "out of range" in text:
            reason = "non_finite"
        return BadRecord(reason, text)
    if isinstance(e, msgspec.DecodeError):
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return BadRecord("bad_encoding", "payload is not UTF-8")
        return BadRecord("bad_json", str(e))
    if isinstance(e, UnicodeDecodeError):  # invalid UTF-8 inside a JSON string
        return BadRecord("bad_encoding", f"invalid UTF-8 in a string: {e.reason}")
    return BadRecord("bad_json", "JSON nested too deeply")  # RecursionError


class UniqueTimes:
    """Distinct occurrences that share a timestamp get distinct ones: the next free millisecond.

    InfluxDB keeps one point per (series, time): a second point overwrites the first. That is right
    for readings (a re-delivered reading is the same fact: idempotent). But security events and
    dead letters are occurrences, and they often share a time (sshd logs have whole seconds; a burst
    of bad messages is received within one millisecond). Each occurrence takes the first
    millisecond at or after its own time that no earlier occurrence of its series took, also when
    it arrives out of order (issue #15: events of one second arriving out of order overwrote each
    other). Done here, before detection, so an event's score, anomaly and alert points carry the
    same time as it.

    The taken milliseconds of a series are kept as merged intervals, so a burst of any size is
    one interval. Memory is bounded: a series keeps at most ``max_intervals`` (when full it
    forgets the older half) and at most ``max_series`` series are tracked.

    ``lane=(i, n)``: only milliseconds congruent to i modulo n are handed out, so the n
    processes of a cluster, each with its own lane, never hand out the same one (issue #14: the
    dead letters of two processes received in one millisecond overwrote each other).
    """

    def __init__(
        self, max_series: int = 100_000, max_intervals: int = 10_000, lane: tuple[int, int] = (0, 1)
    ):
        self.max_series = max_series
        self.max_intervals = max_intervals
        self.offset, self.stride = lane
        self._taken: dict[str, tuple[list[int], list[int]]] = {}  # series -> (starts, ends)

    def __call__(self, series: str, t: datetime) -> datetime:
        ms = round(t.timestamp() * 1000)
        own = -((self.offset - ms) // self.stride)  # the lane's first slot at or after ms
        taken = self._taken.get(series)
        if taken is None:
            if len(self._taken) >= self.max_series:
                self._taken.clear()  # bounded memory; at worst one overwrite after a clear
            taken = self._taken[series] = ([], [])
        starts, ends = taken
        i = bisect.bisect_right(starts, own) - 1  # the interval at or before own, if any
        if i >= 0 and ends[i] >= own:  # inside it or just after it: extend it
            free = ends[i]
            ends[i] += 1
        else:
            free = own
            i += 1
            starts.insert(i, own)
            ends.insert(i, own + 1)
        if i + 1 < len(starts) and starts[i + 1] == ends[i]:  # it now touches the next one
            ends[i] = ends.pop(i + 1)
            starts.pop(i + 1)
        if len(starts) > self.max_intervals:  # forget the older half
            half = len(starts) // 2
            del starts[:half], ends[:half]
        free = free * self.stride + self.offset  # slot -> millisecond
        return t if free == ms else datetime.fromtimestamp(free / 1000, UTC)


class Parser:
    """Validates raw (topic, payload) messages against the schema and the sensor catalogue.

    Event times are bounded on both sides: at most ``flow.max_future_s`` ahead of the wall
    clock, and at most ``flow.max_lateness_s`` behind the stream's clock, the newest event time
    this parser has accepted (taken per batch before judging it, so an old reading at the head
    of a batch is judged against the batch's newest one). The stream's clock rather than the
    wall clock, so a replay of last year's files still works; a live stream's clock is "now".
    """

    def __init__(self, config: Config, lane: tuple[int, int] = (0, 1)):
        """``lane``: (this process' index, the cluster's process count), so that dead letters
        of different processes never share a time (``UniqueTimes``)."""
        self.prefix = config.services.mqtt.topic_prefix + "/"
        self.max_bytes = config.flow.max_payload_bytes
        self.max_future = timedelta(seconds=config.flow.max_future_s)
        lateness = config.flow.max_lateness_s
        self.max_lateness = None if lateness is None else timedelta(seconds=lateness)
        self.clock = EARLIEST  # the newest accepted event time (the stream's clock)
        self.unique = UniqueTimes()  # events: per series, and a series is in one process
        self.unique_dead = UniqueTimes(lane=lane)  # dead letters: per reason, any process
        from twinwatch.engine.logparse import LogParser  # it imports this module

        self.logs = LogParser(config, unique=self.unique)
        self.device_kinds = frozenset(config.security.device_events) | frozenset(
            config.security.device_event_kinds
        )
        self.catalog: dict[str, SensorRef] = {
            f"{self.prefix}{d}/{s}/{a}/{n}": ref for (d, s, a, n), ref in config.catalog.items()
        }
        # reading topics -> a Reading's fields after its time (domain .. unit), ready to use
        self.readings: dict[str, tuple[Domain, str, str, str, str, str]] = {
            topic: (ref.domain, ref.site, ref.asset, sensor.id, sensor.quantity, sensor.unit)
            for topic, ref in self.catalog.items()
            if (sensor := ref.sensor).kind == "reading"
        }

    def parse(
        self, topic: str, payload: bytes, now: datetime | None = None
    ) -> Reading | SecurityEvent | list[SecurityEvent] | Annotation:
        """One message -> record (raises BadRecord); a log line -> its events (N for "message
        repeated N times"); ``<sensor topic>/annotation`` -> an Annotation. ``now``: the wall
        clock, for the future bound. The lateness bound needs the stream's clock: ``split``
        applies it."""
        return self._parse(topic, payload, self._ceiling(now or self._now()))

    def _ceiling(self, now: datetime) -> datetime:
        """The newest time accepted at wall clock ``now``, within InfluxDB's range."""
        try:
            return min(LATEST, now + self.max_future)
        except OverflowError:  # flow.max_future_s reaching past year 9999
            return LATEST

    def _parse(
        self, topic: str, payload: bytes, ceiling: datetime
    ) -> Reading | SecurityEvent | list[SecurityEvent] | Annotation:
        """``parse`` with times bounded by ``ceiling`` (a batch computes it once)."""
        if len(payload) > self.max_bytes:
            raise BadRecord("too_large", f"{len(payload)} bytes > limit {self.max_bytes}")
        identity = self.readings.get(topic)
        if identity is not None:  # nearly every message: a reading, with its identity at hand
            try:
                msg = _reading_decoder.decode(payload)
            except _DECODE_ERRORS as e:
                raise _bad_payload(e, payload) from None
            time = msg.time
            if time.tzinfo is not UTC or not EARLIEST <= time < ceiling:
                time = self._time(msg, ceiling)  # in UTC, or the reason it is refused
            value = msg.value
            if not math.isfinite(value):
                raise BadRecord("non_finite", f"value {value!r} is not finite")
            unit = identity[5]
            if msg.unit is not None and msg.unit != unit:
                raise BadRecord("unit_mismatch", f"unit {msg.unit!r}, configured {unit!r}")
            return Reading(time, *identity, value)
        ref = self.catalog.get(topic)
        if ref is None and topic.endswith(ANNOTATION_SUFFIX):
            ref = self.catalog.get(topic[: -len(ANNOTATION_SUFFIX)])
            if ref is not None:
                return self._annotation(ref, payload)
        if ref is None:
            if not topic.startswith(self.prefix) or topic.count("/") != 4:
                raise BadRecord(
                    "bad_topic", f"expected {self.prefix}<domain>/<site>/<asset>/<sensor>"
                )
            raise BadRecord("unknown_sensor", "no such sensor in the configuration")
        kind = ref.sensor.kind
        try:
            msg = _decoders[kind].decode(payload)
        except _DECODE_ERRORS as e:
            raise _bad_payload(e, payload) from None
        time = self._time(msg, ceiling)
        if kind == "log":  # the one classifier of every transport (twinwatch.engine.classify)
            return self.logs.from_mqtt(ref, time, msg.line)
        if kind == "device_event":  # the kind is a tag: only configured kinds, else `other`
            if msg.event in self.device_kinds:
                return SecurityEvent(
                    time, ref.site, ref.asset, ref.sensor.id, msg.event, "info", message=msg.zone
                )
            zone = f" zone={msg.zone}" if msg.zone else ""
            return SecurityEvent(
                time,
                ref.site,
                ref.asset,
                ref.sensor.id,
                "other",
                "info",
                message=f"event={msg.event}{zone}",
            )
        outcome: Outcome = "allow" if msg.action == "allow" else "deny"
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

    def _time(self, msg: Any, ceiling: datetime) -> datetime:
        """A payload's time in UTC, within InfluxDB's range and before ``ceiling``."""
        try:
            time = msg.time.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise BadRecord("bad_time", f"time {msg.time.isoformat()} is out of range") from None
        if not EARLIEST <= time < ceiling:
            raise BadRecord(
                "bad_time",
                f"time {msg.time.isoformat()} is outside "
                f"{EARLIEST.year}..now+{self.max_future.total_seconds():g}s",
            )
        return time

    def _annotation(self, ref: SensorRef, payload: bytes) -> Annotation:
        try:
            msg = _decoders["annotation"].decode(payload)
        except msgspec.ValidationError as e:
            raise BadRecord("bad_time" if "`$.time`" in str(e) else "bad_schema", str(e)) from None
        except msgspec.DecodeError as e:
            raise BadRecord("bad_json", str(e)) from None
        time, until = msg.time.astimezone(UTC), msg.until.astimezone(UTC)
        if not EARLIEST <= time <= until < LATEST:
            raise BadRecord(
                "bad_time", "an annotation needs time <= until, within InfluxDB's range"
            )
        return Annotation(
            time, ref.domain, ref.site, ref.asset, ref.sensor.id, msg.kind, until, msg.text
        )

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def split(
        self,
        messages: Iterable[tuple[str, bytes]],
        source: str = "mqtt",
        received: datetime | None = None,
    ) -> tuple[list, list[DeadLetter]]:
        """Parse a batch: valid records, and dead letters for the rest. Never raises: bad input
        is a BadRecord, and a bug on one message is that message's ``internal_error``."""
        oks: list = []
        raws: list = []  # the (topic, payload) message of each record
        errs: list[DeadLetter] = []
        received = received or datetime.now(UTC)
        ceiling = self._ceiling(received)
        unique, unique_dead = self.unique, self.unique_dead
        clock = self.clock
        parse = self._parse
        events = False  # security events in the batch (their times are made unique below)
        for message in messages:
            topic, payload = message
            try:
                rec = parse(topic, payload, ceiling)
            except BadRecord as e:
                when = unique_dead(f"{source}/{e.reason}", received)
                errs.append(dead_letter(source, topic, e.reason, e.detail, payload, when))
                continue
            except Exception as e:
                errs.append(internal_error("parse", e, str(topic), bytes(payload), source))
                continue
            if type(rec) is Reading:
                if rec.time > clock:
                    clock = rec.time
                oks.append(rec)
                raws.append(message)
                continue
            events = True
            for one in rec if isinstance(rec, list) else (rec,):
                if one.time > clock:
                    clock = one.time
                oks.append(one)
                raws.append(message)
        self.clock = clock
        if self.max_lateness is not None and oks:
            floor = clock - self.max_lateness
            if any(r.time < floor for r in oks):
                kept = []
                for rec, (topic, payload) in zip(oks, raws):
                    if rec.time < floor:
                        errs.append(
                            dead_letter(
                                source,
                                topic,
                                "bad_time",
                                f"time {rec.time.isoformat()} is more than "
                                f"{self.max_lateness.total_seconds():g}s (flow.max_lateness_s) "
                                f"behind the stream's newest time {clock.isoformat()}",
                                payload,
                                unique_dead(f"{source}/bad_time", received),
                            )
                        )
                    else:
                        kept.append(rec)
                oks = kept
        for i, rec in enumerate(oks if events else ()):
            if type(rec) is SecurityEvent:
                t = unique(rec.series, rec.time)
                if t is not rec.time:
                    oks[i] = msgspec.structs.replace(rec, time=t)
        return oks, errs
