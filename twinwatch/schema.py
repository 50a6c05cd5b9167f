"""The one record schema of twinwatch.

Every record that crosses a module boundary is one of these msgspec Structs:

    Reading        a sensor value (structures, water, energy)
    SecurityEvent  a parsed log line or security-device event (security)
    AnomalyScore   the detector scores of one reading or event
    Annotation     an operator's note on a sensor: a maintenance window
    Alert          a state change of an alert (pending, firing, resolved)
    AlertAck       an on-call engineer's acknowledgement of an alert (``twinwatch alerts ack``)
    DeadLetter     an input that could not be parsed, with the reason

Why msgspec and not pydantic v2: the flow decodes and validates every MQTT payload on the hot
path. msgspec validates while it decodes (one pass, in C, ~0.3 µs for a reading payload, several
times faster than pydantic) and its errors name the offending field (``... - at `$.value```).
Structs are frozen, slotted and cheap to create and pickle, which keeps Bytewax snapshots small.

Times are timezone-aware UTC datetimes; payloads without a UTC offset are rejected, not guessed.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Annotated, Literal, final

import msgspec

__all__ = [
    "DOMAINS",
    "SEVERITIES",
    "SEVERITY_KO",
    "DEAD_LETTER_REASONS",
    "Domain",
    "Severity",
    "AlertStatus",
    "Outcome",
    "RollupWindow",
    "SensorPayload",
    "LogPayload",
    "FirewallPayload",
    "DeviceEventPayload",
    "AnnotationPayload",
    "Annotation",
    "Reading",
    "SecurityEvent",
    "SecurityFinding",
    "AnomalyScore",
    "Alert",
    "AlertAck",
    "DeadLetter",
    "Rollup",
    "BadRecord",
    "fingerprint",
    "series_key",
    "utc",
]

Domain = Literal["structures", "water", "energy", "security"]
DOMAINS: tuple[str, ...] = ("structures", "water", "energy", "security")

# The Korean public-safety warning ladder (관심/주의/경계/심각), lowest first.
Severity = Literal["attention", "caution", "alert", "severe"]
SEVERITIES: tuple[str, ...] = ("attention", "caution", "alert", "severe")
SEVERITY_KO = {"attention": "관심", "caution": "주의", "alert": "경계", "severe": "심각"}

AlertStatus = Literal["pending", "firing", "resolved"]
Outcome = Literal["success", "failure", "deny", "allow", "info"]  # of a SecurityEvent
RollupWindow = Literal["1m", "1h"]

# Dead-letter reasons form a closed set: they are an InfluxDB tag and a Prometheus label,
# so the set must stay small (the free-text detail goes into a field).
DEAD_LETTER_REASONS: tuple[str, ...] = (
    "too_large",
    "bad_encoding",
    "bad_json",
    "bad_schema",
    "non_finite",
    "bad_time",
    "bad_topic",
    "unknown_sensor",
    "unit_mismatch",
    "bad_log",  # a log line in no known format (syslog RFC 3164/5424, Apache, ...)
    "write_rejected",  # InfluxDB refused this one point (the rest of its batch was written)
    "internal_error",  # processing this one record raised: a bug, logged once per kind
)

UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class BadRecord(ValueError):
    """An input record that cannot become a valid record; goes to the dead-letter queue."""

    def __init__(self, reason: str, detail: str):
        if reason not in DEAD_LETTER_REASONS:
            raise ValueError(f"unknown dead-letter reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def series_key(domain: str, site: str, asset: str, sensor: str) -> str:
    """The one spelling of a series' identity: ``domain/site/asset/sensor``."""
    return f"{domain}/{site}/{asset}/{sensor}"


def utc(t: datetime) -> datetime:
    """Return ``t`` in UTC; raise ValueError for a naive datetime (its zone would be a guess)."""
    if t.tzinfo is None:
        raise ValueError("datetime has no UTC offset")
    return t.astimezone(UTC)


# --- wire payloads (what devices publish; identity comes from the MQTT topic) -----------------


class SensorPayload(msgspec.Struct, frozen=True):
    """JSON payload of a sensor topic: ``{"time": "2026-11-23T01:00:00Z", "value": 1.5}``."""

    time: UtcTime
    value: float
    unit: str | None = None


class LogPayload(msgspec.Struct, frozen=True):
    """JSON payload of a log topic (e.g. sshd auth log): one raw line."""

    time: UtcTime
    line: Annotated[str, msgspec.Meta(max_length=8192)]


class FirewallPayload(msgspec.Struct, frozen=True):
    """JSON payload of a firewall event."""

    time: UtcTime
    action: Literal["allow", "deny", "drop"]
    src_ip: Annotated[str, msgspec.Meta(max_length=64)]
    dst_port: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    protocol: Literal["tcp", "udp", "icmp"] = "tcp"


class DeviceEventPayload(msgspec.Struct, frozen=True):
    """JSON payload of a CCTV video-analytics or IoT security-device event (issue #6), e.g.
    ``{"time": "...", "event": "intrusion", "zone": "gate-2", "confidence": 0.93}``."""

    time: UtcTime
    event: Annotated[
        str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    ]  # intrusion, door_open, ...
    zone: Annotated[str, msgspec.Meta(max_length=128)] = ""
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None


class AnnotationPayload(msgspec.Struct, frozen=True):
    """JSON payload of ``<prefix>/<domain>/<site>/<asset>/<sensor>/annotation`` (issue #12): an
    operator (or the maintenance system) says the sensor is in maintenance from ``time`` until
    ``until``, e.g. ``{"time": "...", "kind": "maintenance", "until": "...", "text": "gauge
    replaced, re-zeroed"}``. Its alerts are held meanwhile and its detectors re-learn after."""

    time: UtcTime
    until: UtcTime
    kind: Literal["maintenance"] = "maintenance"
    text: Annotated[str, msgspec.Meta(max_length=1024)] = ""


# --- records -----------------------------------------------------------------------------------


@final  # the flow tests `type(rec) is Reading` (10x faster than isinstance on a Struct)
class Reading(msgspec.Struct, frozen=True, gc=False):
    """One sensor value. ``quantity`` and ``unit`` come from the config's sensor catalogue."""

    time: UtcTime
    domain: Domain
    site: Name
    asset: Name
    sensor: Name
    quantity: Name
    unit: str
    value: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ValueError(f"value must be finite, got {self.value!r}")

    @property
    def series(self) -> str:
        """The series key: one detector state per series."""
        return series_key(self.domain, self.site, self.asset, self.sensor)


class SecurityEvent(msgspec.Struct, frozen=True, gc=False):
    """A parsed log line or security-device event. IPs and user names are fields, never tags."""

    time: UtcTime
    site: Name
    asset: Name
    sensor: Name  # the log source, e.g. "sshd", "firewall"
    kind: Name  # e.g. auth_failure, invalid_user, auth_success, fw_deny
    outcome: Outcome
    user: str | None = None
    src_ip: str | None = None
    dst_port: int | None = None
    message: str = ""
    domain: Domain = "security"
    severity: str | None = None  # syslog keyword (emerg .. debug) of a log line, if it has one
    facility: str | None = None  # syslog facility keyword (auth, daemon, local0, ...)
    program: str | None = None  # the raw program/tag (the sensor is its bounded mapping)
    host: str | None = None  # the raw host name in the line

    @property
    def series(self) -> str:
        return series_key(self.domain, self.site, self.asset, self.sensor)


@final  # tested with `type(x) is Annotation`, like Reading
class Annotation(msgspec.Struct, frozen=True, gc=False):
    """A maintenance window on one sensor (``AnnotationPayload``), with the sensor's identity.

    While it lasts, the sensor's alerts (per-sensor, stale and those of its asset groups) are
    held; when it ends, the sensor's detectors learn its new normal (a replaced gauge reads
    re-zeroed). Stored as measurement ``annotation`` (Grafana can show it on the panels)."""

    time: UtcTime
    domain: Domain
    site: Name
    asset: Name
    sensor: Name
    kind: Literal["maintenance", "baseline"]  # baseline: a detector accepted a change (drift)
    until: UtcTime
    text: str = ""

    @property
    def series(self) -> str:
        return series_key(self.domain, self.site, self.asset, self.sensor)


@final
class SecurityFinding(msgspec.Struct, frozen=True, gc=False):
    """One finding of a security rule (an attack episode, a rare template, a spike), with the
    real counts, the window, and who: ``src_ip`` is the key of a per-IP rule; ``sources`` and
    ``users`` the offending addresses and (pseudonymised) user names. All fields, never tags."""

    time: UtcTime
    site: str
    asset: str
    sensor: str
    rule: str
    count: float  # what the rule counted (failures, users, ports, lines...)
    window_s: float
    src_ip: str | None = None
    sources: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    detail: str = ""
    domain: Domain = "security"


@final  # tested with `type(x) is AnomalyScore`, like Reading
class AnomalyScore(msgspec.Struct, frozen=True, gc=False):
    """Detector scores of one reading (or security event): ``scores[detector] = score``.

    ``hits`` names the detectors whose score reached their threshold.
    """

    time: UtcTime
    domain: Domain
    site: str
    asset: str
    sensor: str
    value: float
    scores: dict[str, float]
    hits: tuple[str, ...] = ()


class Alert(msgspec.Struct, frozen=True):
    """A state change of one alert, identified by its stable ``fingerprint``.

    The explanation (issue #12), so an alert can be judged on its own: ``detector`` (the
    registry type that fired) and ``kind`` (what a hit means: ``sensor_fault``, ``leak``, ...),
    ``observed`` against ``expected`` and the normal band ``expected_low``..``expected_high``
    (any may be None), ``contributors`` (sensor, share of the anomaly) largest first, and a
    one-line ``explanation``. Stored as InfluxDB fields, never tags.
    """

    fingerprint: str
    status: AlertStatus
    severity: Severity
    domain: Domain
    site: str
    asset: str
    sensor: str
    rule: str  # the detector or rule that raised it
    starts_at: UtcTime
    at: UtcTime  # time of this state change (event time)
    value: float
    unit: str
    summary: str
    ends_at: UtcTime | None = None
    details: dict[str, str] = {}  # extra annotations (security: count, window, sources, users)
    detector: str = ""
    kind: str = ""
    observed: float | None = None
    expected: float | None = None
    expected_low: float | None = None
    expected_high: float | None = None
    contributors: tuple[tuple[str, float], ...] = ()
    explanation: str = ""

    @property
    def labels(self) -> dict[str, str]:
        return {
            "alertname": f"{self.domain}_{self.rule}",
            "domain": self.domain,
            "site": self.site,
            "asset": self.asset,
            "sensor": self.sensor,
            "rule": self.rule,
            "severity": self.severity,
        }


class AlertAck(msgspec.Struct, frozen=True):
    """Who acknowledged which alert, when and why: measurement ``alert_ack`` (tags domain, site,
    asset, sensor, rule, severity; fields fingerprint, user, comment, summary). The one schema of
    an ack: ``twinwatch alerts ack`` writes it, the dashboards and the analysts' MTTA read it."""

    time: UtcTime  # when it was acknowledged (wall clock)
    fingerprint: str
    domain: str
    site: str
    asset: str
    sensor: str
    rule: str
    severity: str
    user: str
    comment: str = ""
    summary: str = ""


class DeadLetter(msgspec.Struct, frozen=True):
    """An input that was rejected, with why. ``payload`` is truncated to keep the queue bounded."""

    time: UtcTime  # when it was received (wall clock)
    source: str  # e.g. "mqtt", "file"
    topic: str  # MQTT topic or file name
    reason: str  # one of DEAD_LETTER_REASONS
    detail: str
    payload: str


class Rollup(msgspec.Struct, frozen=True, gc=False):
    """mean/min/max/count of one series' readings over ``[time, time + window)`` (flows.rollup).
    Written as measurement ``reading_<window>`` with the tags of ``reading``."""

    time: UtcTime  # window start
    window: RollupWindow
    domain: Domain
    site: str
    asset: str
    sensor: str
    quantity: str
    unit: str
    mean: float
    min: float
    max: float
    count: int

    @property
    def series(self) -> str:
        return series_key(self.domain, self.site, self.asset, self.sensor)

    @property
    def measurement(self) -> str:
        return f"reading_{self.window}"


def fingerprint(labels: dict[str, str]) -> str:
    """Stable 16-hex-digit identity of a label set (order-independent, like Alertmanager's)."""
    text = "\x00".join(f"{k}\x01{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
