"""The one config model of twinwatch: a YAML file plus environment overrides.

    load_config(path) -> Config

Layers, later wins: the YAML file, then environment variables named
``TWINWATCH__<SECTION>__<KEY>`` (double underscore = one level down, values parsed as YAML
scalars), e.g. ``TWINWATCH__SERVICES__INFLUXDB__URL=http://10.0.0.5:8086``.

Secrets never live in the config: a password or token is a ``Secret`` that names an environment
variable or a file (``{env: TWINWATCH_INFLUX_TOKEN}`` or ``{file: /run/secrets/influx}``); it is
read only when a client connects and its repr never shows the value.

The config is validated completely when it is built (types, references between sections,
duplicate ids), so a typo fails at start-up with the path of the bad key, not hours later.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml

from twinwatch.schema import DOMAINS, Domain, Severity

__all__ = [
    "Config",
    "ConfigError",
    "Secret",
    "Limits",
    "Sensor",
    "Asset",
    "Site",
    "DetectorSpec",
    "AlertRule",
    "AlertReceiver",
    "AlertRoute",
    "AlertRouting",
    "MqttService",
    "InfluxService",
    "AlertmanagerService",
    "check_webhook_secret",
    "MIN_WEBHOOK_SECRET_BYTES",
    "MetricsService",
    "Services",
    "FlowSettings",
    "SensorRef",
    "Incident",
    "Simulation",
    "load_config",
    "parse_config",
    "EXAMPLE_CONFIG",
    "SecurityDetection",
    "TemplateMining",
    "SecuritySettings",
    "LogSource",
    "SyslogListener",
    "Retention",
    "is_loopback",
    "AssetGroup",
]

EXAMPLE_CONFIG = Path(__file__).parent / "examples" / "pilot-city.yaml"
ENV_PREFIX = "TWINWATCH__"
# The example city has ~630 bytes of YAML per sensor: 16 MiB holds some 25,000 sensors. A larger
# file is almost certainly the wrong file, and YAML of that size takes minutes and GBs to load.
MAX_CONFIG_BYTES = 16 * 2**20
BUILTIN_RULES = ("stale",)  # alert rules that are not detectors (twinwatch.engine.liveness)

Id = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
_SENSOR_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


class Secret(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A reference to a secret in an environment variable or a file; never the value itself."""

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret names exactly one of `env` or `file`")

    def reveal(self) -> str:
        """Read the secret now. Raises ConfigError if it is not there."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"secret: environment variable {self.env} is not set")
            return value
        assert self.file is not None  # __post_init__: exactly one of env, file
        try:
            return Path(self.file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"secret: cannot read file {self.file}: {e.strerror}") from None

    def __repr__(self) -> str:  # names where the secret is, never what it is
        return f"Secret(env={self.env!r})" if self.env else f"Secret(file={self.file!r})"


class Tls(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


# --- city model -------------------------------------------------------------------------------


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Physical or regulatory limits of a sensor; ``source`` cites where they come from."""

    low: float | None = None
    high: float | None = None
    severity: Severity = "alert"
    source: str = ""

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise ValueError("limits need `low`, `high` or both")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"limits: low {self.low} must be below high {self.high}")


class Sensor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    quantity: Id
    unit: str
    interval_s: PositiveFloat
    limits: Limits | None = None
    detectors: list[str] | None = None  # None: the domain's defaults
    kind: Literal["reading", "log", "firewall", "device_event"] = "reading"
    sim: dict[str, Any] = {}  # simulator parameters (see twinwatch.app.simulator)
    # Silence longer than this fires `stale`. Default: flow.stale_factor x interval_s for
    # readings; event streams (logs, firewall, device events) are bursty, a quiet night is normal
    # for them, so they are not checked unless stale_s is set.
    stale_s: PositiveFloat | None = None

    def stale_after(self, factor: float) -> float | None:
        """Seconds of silence that make this sensor stale (None: not checked)."""
        if self.stale_s is not None:
            return self.stale_s
        return factor * self.interval_s if self.kind == "reading" else None


class Asset(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    kind: str
    name: str
    sensors: list[Sensor]


class Site(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    name: str
    domain: Domain
    lat: float
    lon: float
    assets: list[Asset]


class AssetGroup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Sensors of one asset judged together (issue #12, docs/detectors.md "Asset groups").

    ``detectors``: detector name (defined under ``detectors``, an asset-group type) -> its roles,
    each filled by one sensor id or a list of them, e.g. ``{sensors: [strain-1, strain-2],
    drivers: [temp]}``. The flow aligns the members on ticks every ``tick_s`` (default: the
    longest member interval), taking each member's latest reading within ``tolerance_s``
    before the tick (default: 2.5 of its intervals) or ``lateness_s`` after it (default: half a
    tick, for clock jitter); alerts carry ``sensor = id``.
    """

    id: Id
    site: Id
    asset: Id
    detectors: dict[str, dict[str, Id | list[Id]]]
    tick_s: PositiveFloat | None = None
    tolerance_s: PositiveFloat | None = None
    lateness_s: Annotated[float, msgspec.Meta(ge=0)] | None = None

    def roles(self, detector: str) -> dict[str, list[str]]:
        """The role -> sensor ids of one of the group's detectors (single ids as lists)."""
        return {
            role: [ids] if isinstance(ids, str) else list(ids)
            for role, ids in self.detectors[detector].items()
        }

    @property
    def members(self) -> list[str]:
        """Every sensor the group's detectors use, in first-use order (the aligned vector)."""
        out: list[str] = []
        for name in self.detectors:
            for ids in self.roles(name).values():
                out += [i for i in ids if i not in out]
        return out


class DetectorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A named detector instance: a ``detectors.REGISTRY`` type with its parameters."""

    type: str
    params: dict[str, Any] = {}


class AlertRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Turns hits of one detector into alerts. The first matching rule wins.

    ``for_s``: the detector must keep hitting this long (event time) before the alert fires
    (pending until then, as Prometheus' ``for``). ``clear_s``: a firing alert resolves after this
    long without hits, so one quiet sample does not resolve it.
    """

    detector: str
    severity: Severity
    domain: Domain | None = None
    for_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    clear_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    summary: str = "{detector} anomaly on {site}/{asset}/{sensor}: {value:g} {unit}"
    # Issue #4 (twinwatch/engine/lifecycle.py): hysteresis, flapping, escalation, re-notify period.
    reset: Annotated[float, msgspec.Meta(ge=0)] | None = (
        None  # an active alert stays hit while score >= reset
    )
    flap_window_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # 0: no flapping detection
    flap_max: Annotated[int, msgspec.Meta(ge=2)] = 3  # firings within flap_window_s = flapping
    escalate: dict[Severity, PositiveFloat] = {}  # severity -> score from which it applies
    renotify_s: PositiveFloat | None = None  # Alertmanager repeat_interval for this rule


# --- services ---------------------------------------------------------------------------------


class MqttService(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 1883
    topic_prefix: Id = "city"
    qos: Literal[0, 1] = 1
    # Each source partition keeps one persistent session, client id "<client_id>-<i>of<n>"
    # (partition i of flow.partitions = n): the same whichever process runs the partition.
    client_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,48}$")] = "twinwatch-flow"
    # Unknown topics: partition 0 also subscribes to "<topic_prefix>/#" and drops the known
    # topics of the other partitions, so a reading from an unconfigured device is a dead letter
    # (costs one extra delivery of every message to partition 0; docs/scale-out.md).
    catch_all: bool = True
    # Instead of series affinity, an MQTT shared subscription "$share/<group>/<prefix>/#": the
    # broker spreads messages over the partitions, so one series may cross processes (no order
    # between partitions) and liveness uses one watermark. See docs/scale-out.md.
    shared_group: Id | None = None
    keepalive_s: int = 30
    username: str | None = None
    password: Secret | None = None
    tls: Tls = Tls()


class InfluxService(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: Id = "twinwatch"  # v1 database (also the DBRP name on InfluxDB 2.x/3.x)
    retention_policy: str | None = None
    org: str | None = None  # v2 only
    bucket: str | None = None  # v2 only
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    # Lines per /write request. The writer thread waits for 500 records (or batch_size if
    # smaller), at most flush_interval_s after the oldest arrived, before it writes: fewer
    # requests at low rates (twinwatch.flows.sinks.influx). Alerts have their own sink.
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000
    flush_interval_s: PositiveFloat = 1.0
    # Records the flow hands to the sink's writer thread before its worker waits (the writes
    # run beside the detection, twinwatch.flows.sinks.pipeline); 0 writes on the worker thread.
    write_queue: Annotated[int, msgspec.Meta(ge=0)] = 50_000
    # Compress writes (gzip level 1). Measured (benchmarks/write_gzip.py): on loopback it costs
    # more CPU than it saves (0.6-0.7x the rate); over a 100 Mbit/s link it gives 1.5-1.8x.
    gzip: bool = False
    timeout_s: PositiveFloat = 10.0
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 5
    # While InfluxDB is unreachable, chunks go to a bounded on-disk spool and are backfilled in
    # order when it returns (None: drop them, counted). Full spool: drop_oldest, or block the flow.
    spool_dir: str | None = "var/spool/influxdb"
    spool_max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 256 * 2**20
    spool_policy: Literal["drop_oldest", "block"] = "drop_oldest"
    spool_retry_s: PositiveFloat = 2.0  # how often a backfill is tried while InfluxDB is down
    # `run`, `logs` and `services up` create the database (v1) or check the bucket (v2) at start.
    create_database: bool = True
    tls: Tls = Tls()
    retention: Retention = msgspec.field(default_factory=lambda: Retention())


# An InfluxQL duration (at least one hour, as InfluxDB 1.x requires for a retention policy).
RetentionDuration = Annotated[str, msgspec.Meta(pattern=r"^(INF|\d+[hdw])$")]


class Retention(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How long data is kept, applied on start by ``twinwatch.app.retention`` (InfluxDB 1.x).

    ``database``: duration of the database's default retention policy (the longest-lived data,
    i.e. the rollups), e.g. ``400d``. ``measurements``: a shorter duration per measurement, e.g.
    ``{reading: 30d, anomaly_score: 14d}``; older points are deleted on start. On InfluxDB 2.x/3.x
    retention is the bucket's / database's (set when it is created, see docs/deploy.md).
    """

    database: RetentionDuration | None = None
    measurements: dict[str, RetentionDuration] = {}


MIN_WEBHOOK_SECRET_BYTES = 32  # an HMAC key shorter than this can be guessed offline


class AlertmanagerService(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Alert delivery (twinwatch.alerting.delivery): Alertmanager and/or a signed webhook."""

    url: str | None = "http://127.0.0.1:9093"  # None: alerts only go to InfluxDB
    username: str | None = None
    password: Secret | None = None
    bearer_token: Secret | None = None
    timeout_s: PositiveFloat = 5.0
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 5  # per request of the CLI (`alerts ...`)
    resend_interval_s: PositiveFloat = 60.0  # Alertmanager expects firing alerts to be re-sent
    firing_ttl_s: PositiveFloat = 3600.0  # endsAt of a firing alert, renewed at each re-send
    generator_url: str = "http://127.0.0.1:3000/d/twinwatch-alerts"
    tls: Tls = Tls()
    # The delivery queue and what each receiver was told (SQLite): a restart or an outage
    # neither loses nor repeats a page. None: in memory only (tests, throwaway runs).
    state_path: str | None = "var/alert-delivery.sqlite"
    queue_max: Annotated[int, msgspec.Meta(ge=1)] = 10_000  # per receiver; beyond: oldest dropped
    max_backoff_s: PositiveFloat = 30.0  # retry delay cap while a receiver is down
    # A resolve is held until its firing was accepted this long ago, so that Alertmanager has
    # notified the firing first (an alert that resolves before its group is flushed is never
    # notified). None: the running Alertmanager's routing tree, else ours (hold_s).
    resolve_hold_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    webhook_url: str | None = None  # direct HMAC-signed webhook (sites without Alertmanager)
    webhook_secret: Secret | None = None  # at least 32 bytes
    runbook_url: str = ""  # template: {domain} {site} {asset} {sensor} {rule} {severity}
    dashboard_url: str = ""  # template: as runbook_url plus {from_ms} {to_ms}
    routing: AlertRouting = msgspec.field(default_factory=lambda: AlertRouting())

    def __post_init__(self) -> None:
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("webhook_url needs webhook_secret")
        if self.webhook_secret is not None:
            try:
                secret = self.webhook_secret.reveal()
            except ConfigError:
                return  # unreadable here (e.g. checked on another host): checked at connect
            check_webhook_secret(secret)

    @property
    def hold_s(self) -> float:
        """How long a resolve waits behind its firing at Alertmanager (see resolve_hold_s)."""
        if self.resolve_hold_s is not None:
            return self.resolve_hold_s
        return max(self.routing.group_wait_s, self.routing.group_interval_s) + 2.0


def check_webhook_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_WEBHOOK_SECRET_BYTES:
        raise ValueError(
            f"webhook_secret is {len(secret.encode())} bytes; use at least "
            f"{MIN_WEBHOOK_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
        )


class AlertReceiver(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An Alertmanager receiver. Alertmanager reads its own file, so secrets are ``{file: ...}``."""

    name: Id
    type: Literal["webhook", "email", "slack"]
    url: str | None = None  # webhook
    url_secret: Secret | None = None  # slack-compatible incoming-webhook URL
    to: str | None = None  # email
    smtp_smarthost: str = "127.0.0.1:25"
    smtp_from: str = "twinwatch@localhost"
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    smtp_require_tls: bool = True
    channel: str | None = None  # slack
    send_resolved: bool = True


class AlertRoute(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Alerts of ``domain`` (any if None) with one of ``severities`` (any if empty) go here."""

    receiver: Id
    domain: Domain | None = None
    severities: list[Severity] = []
    continue_: bool = msgspec.field(default=False, name="continue")


class AlertRouting(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What ``twinwatch alerts config`` turns into alertmanager.yml (alerting/amconfig.py)."""

    receiver: Id = "default"  # the root route's receiver
    receivers: list[AlertReceiver] = []  # empty: one webhook receiver named "default", no URL
    routes: list[AlertRoute] = []
    group_by: list[str] = msgspec.field(default_factory=lambda: ["alertname", "site", "asset"])
    group_wait_s: PositiveFloat = 30.0
    group_interval_s: PositiveFloat = 300.0
    repeat_interval_s: PositiveFloat = 14400.0
    power_outage_rule: Id = "power_outage"  # its alerts inhibit the same site's energy alerts


class MetricsService(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 9108  # 0 disables the /metrics endpoint


class Services(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mqtt: MqttService = MqttService()
    influxdb: InfluxService = InfluxService()
    alertmanager: AlertmanagerService = AlertmanagerService()
    metrics: MetricsService = MetricsService()


class FlowSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Source partitions (MQTT: one persistent session each, a fixed share of the series): at most
    # this many worker processes share the intake. Fixed for a deployment (docs/scale-out.md).
    partitions: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4
    # Detector shards; a multiple of `partitions`, so every shard holds series of one partition.
    shards: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 1000
    max_payload_bytes: Annotated[int, msgspec.Meta(ge=64)] = 65536
    dead_letter_path: str = "var/dead-letters.jsonl"
    stale_factor: PositiveFloat = 5.0  # a series silent for factor x interval is stale
    # Accepted event times (wider ones are dead letters, reason bad_time): at most max_future_s
    # ahead of the wall clock, and at most max_lateness_s behind the newest time this stream has
    # accepted (the stream's own clock, so replays of history work). Together they bound how
    # many InfluxDB shard groups a stream can touch. None: no lateness bound.
    max_future_s: PositiveFloat = 86400.0
    max_lateness_s: PositiveFloat | None = 7 * 86400.0
    # Liveness judges silence against the quorum-th newest series time, so one device with a
    # clock far ahead cannot make every other series look stale (twinwatch.engine.liveness).
    liveness_quorum: Annotated[int, msgspec.Meta(ge=1)] = 3
    # A source partition that delivered nothing for this long (wall clock: all its series are
    # silent) is judged by the stream's clock instead of its own (twinwatch.engine.liveness).
    partition_idle_s: PositiveFloat = 60.0
    # Messages a source holds before it stops reading from the broker (backpressure: a blocked
    # sink leaves the backlog on the broker, not in the flow's memory).
    max_queued: Annotated[int, msgspec.Meta(ge=1)] = 20_000
    rollups: bool = True  # write reading_1m / reading_1h (twinwatch.flows.rollup)
    rollup_lateness_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0  # event-time wait per window


class City(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    timezone: str = "Asia/Seoul"  # IANA name; the zone of log lines that carry none
    # Public holidays (local dates, YYYY-MM-DD): schedule baselines treat them as Sundays.
    holidays: list[Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]] = []

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"city.timezone: unknown time zone {self.timezone!r} (an IANA name such as "
                "Asia/Seoul or UTC)"
            ) from None


class Incident(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An incident the simulator injects (and labels), at ``at_h`` hours into the run."""

    kind: str  # see twinwatch.app.simulator.INCIDENT_KINDS
    targets: list[str]  # "site/asset/sensor" paths the incident changes
    at_h: Annotated[float, msgspec.Meta(ge=0)]
    duration_h: PositiveFloat = 1.0
    params: dict[str, Any] = {}
    # the detector kinds meant to catch it (e.g. leak, sensor_fault), for scoring; [] = any
    expect: list[str] = []


class Simulation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The built-in city simulator: seed, simulated span, speed-up, and the incidents to inject."""

    seed: int = 42
    duration_h: PositiveFloat = 24.0  # simulated hours; the run ends at "now" by default
    speed: PositiveFloat = 720.0  # simulated seconds per wall-clock second
    missing_rate: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.002
    labels_path: str = "var/incidents.jsonl"
    incidents: list[Incident] = []


class SecurityDetection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Thresholds of twinwatch.detectors.security.SecurityDetector (issues #6, #13): per source
    IP, per user and per asset, each over a sliding window (docs/security.md)."""

    brute_force_window_s: PositiveFloat = 300.0
    brute_force_failures: Annotated[int, msgspec.Meta(ge=1)] = 10
    spray_window_s: PositiveFloat = 600.0
    spray_users: Annotated[int, msgspec.Meta(ge=2)] = 5  # distinct users failed from one IP
    # low-and-slow spraying: distinct users failed (and not logged in) from one IP over hours
    slow_spray_window_s: PositiveFloat = 86400.0
    slow_spray_users: Annotated[int, msgspec.Meta(ge=2)] = 8
    # distributed spraying: the same users failed from many IPs
    distributed_window_s: PositiveFloat = 3600.0
    distributed_sources: Annotated[int, msgspec.Meta(ge=2)] = 8  # IPs with failures
    distributed_users: Annotated[int, msgspec.Meta(ge=1)] = 3  # users each failed from >= 2 IPs
    # credential stuffing: many distinct users, about one attempt each, from one IP
    stuffing_window_s: PositiveFloat = 3600.0
    stuffing_users: Annotated[int, msgspec.Meta(ge=2)] = 20
    stuffing_max_attempts: PositiveFloat = 1.5  # attempts per user (a spray retries each user)
    enum_window_s: PositiveFloat = 600.0
    enum_users: Annotated[int, msgspec.Meta(ge=2)] = 5  # distinct invalid users tried from one IP
    success_window_s: PositiveFloat = 600.0
    success_after_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    # a login whose user failed from >= N distinct *other* IPs within the window (takeover)
    cross_source_window_s: PositiveFloat = 3600.0
    cross_source_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    scan_window_s: PositiveFloat = 60.0
    scan_ports: Annotated[int, msgspec.Meta(ge=2)] = 15  # distinct denied ports from one IP
    slow_scan_window_s: PositiveFloat = 86400.0
    slow_scan_ports: Annotated[int, msgspec.Meta(ge=2)] = 25
    correlate_window_s: PositiveFloat = 120.0  # e.g. intrusion + door_open at one asset
    max_sources: Annotated[int, msgspec.Meta(ge=1)] = 10_000  # IPs tracked per asset
    max_users: Annotated[int, msgspec.Meta(ge=1)] = 10_000  # user names tracked per asset


class TemplateMining(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """drain3 template mining and its scoring (twinwatch.detectors.logtemplates): rare
    templates, per-template rates and severity spikes, each against the source's own baseline."""

    # 0.7: best mean grouping accuracy on loghub's 14 samples, and the leave-one-out choice in
    # 12 of 14 folds (benchmarks/logs_grouping.py)
    sim_th: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.7
    depth: Annotated[int, msgspec.Meta(ge=3)] = 4
    max_children: Annotated[int, msgspec.Meta(ge=2)] = 100
    max_clusters: Annotated[int, msgspec.Meta(ge=1)] = 2000
    # silent learning per source (both must pass): no finding before
    warmup_lines: Annotated[int, msgspec.Meta(ge=0)] = 200
    warmup_s: Annotated[float, msgspec.Meta(ge=0)] = 3600.0
    half_life_s: PositiveFloat = 7 * 86400.0  # memory of template counts and baselines
    rare_count: Annotated[float, msgspec.Meta(ge=0)] = 0.05  # decayed count below = rare again
    window_s: PositiveFloat = 600.0  # window of the novelty, severity and rate tests
    alpha: Annotated[float, msgspec.Meta(gt=0, lt=0.5)] = 1e-4  # tail probability of a finding
    error_weight: Annotated[float, msgspec.Meta(ge=1)] = 4.0  # a rare template at err or worse
    warning_weight: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    rate_min_count: Annotated[int, msgspec.Meta(ge=1)] = 20  # lines of one template in window
    severity_min_count: Annotated[int, msgspec.Meta(ge=1)] = 5  # err..emerg lines in window
    state_path: str | None = None  # learned templates (``twinwatch logs --learn``), JSON


class LogSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How to read one log source (docs/security.md): which lines it covers (file globs, syslog
    sender addresses/networks), their format and time zone, and where they belong."""

    name: Id
    files: list[str] = []  # globs on the file path (twinwatch logs --tail)
    peers: list[str] = []  # syslog senders: addresses or networks ("10.1.0.0/16")
    format: str = "auto"  # auto, a built-in name, or a regex with (?P<time>) and (?P<message>)
    time_format: str | None = None  # strptime format of (?P<time>), "iso", "epoch", "epoch_ms"
    timezone: str | None = None  # of times without an offset (default: city.timezone)
    asset: str | None = None  # "site/asset" of its lines (default: security.hosts, default_asset)
    program: str = ""  # program name when the format has none (e.g. "hdfs")
    framing: Literal["line", "journal"] = "line"  # journal: one record per blank-line block

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo

        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ValueError, KeyError, OSError):
                raise ValueError(
                    f"sources.{self.name}: unknown time zone {self.timezone!r}"
                ) from None
        if "(?P<" in self.format:
            try:
                groups = re.compile(self.format).groupindex
            except re.error as e:
                raise ValueError(
                    f"sources.{self.name}.format: bad regular expression: {e}"
                ) from None
            if not {"time", "message"} <= set(groups):
                raise ValueError(
                    f"sources.{self.name}.format needs (?P<time>...) and (?P<message>...)"
                )
        for peer in self.peers:
            try:
                ipaddress.ip_network(peer, strict=False)
            except ValueError:
                raise ValueError(f"sources.{self.name}.peers: {peer!r} is not an address") from None
        if self.asset is not None and (
            self.asset.count("/") != 1 or not all(self.asset.split("/"))
        ):
            raise ValueError(f'sources.{self.name}.asset: {self.asset!r} is not "site/asset"')


class SyslogListener(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Limits of the syslog receiver (``twinwatch logs --syslog``), each counted on /metrics."""

    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 512  # more are refused
    idle_timeout_s: PositiveFloat = 600.0  # a TCP connection silent this long is closed
    rate_lines_per_s: PositiveFloat = 20_000.0  # per sender; TCP is slowed, UDP dropped beyond
    rate_burst: Annotated[int, msgspec.Meta(ge=1)] = 50_000
    queue_lines: Annotated[int, msgspec.Meta(ge=100)] = 100_000  # waiting for the flow; TCP pauses


class SecuritySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Log sources and security detection (issues #6, #13, docs/security.md)."""

    enabled: bool = True  # run the security detectors on security events (MQTT and log sources)
    hosts: dict[str, str] = {}  # syslog host name -> "site/asset"
    default_asset: str = "logs/unmapped"  # "site/asset" of lines from hosts not listed
    sources: list[LogSource] = []  # per-source formats and time zones; first match wins
    # program (glob) -> sensor id; programs not listed and not in the built-in allow-list
    # (sshd, sudo, cron, kernel, ...) are the sensor "other" with the name kept as a field
    programs: dict[str, str] = {}
    pseudonymise_key: Secret | None = None  # HMAC-SHA256 key: user names become "u-<hash>"
    max_line_bytes: Annotated[int, msgspec.Meta(ge=64)] = 8192
    clear_s: Annotated[float, msgspec.Meta(ge=0)] = 600.0  # a quiet spell that resolves an alert
    listener: SyslogListener = SyslogListener()
    detection: SecurityDetection = SecurityDetection()
    templates: TemplateMining = TemplateMining()
    severities: dict[str, Severity] = msgspec.field(
        default_factory=lambda: {
            "brute_force": "alert",
            "password_spray": "alert",
            "distributed_spray": "alert",
            "credential_stuffing": "alert",
            "user_enum": "caution",
            "success_after_failures": "severe",
            "cross_source_success": "severe",
            "port_scan": "caution",
            "intrusion_door_open": "severe",
            "new_template": "attention",
            "template_rate": "attention",
            "severity_spike": "caution",
        }
    )
    device_events: dict[str, Severity] = msgspec.field(
        default_factory=lambda: {
            "intrusion": "alert",
            "loitering": "attention",
            "abandonment": "caution",
            "fall": "alert",
            "fight": "alert",
            "arson": "severe",
            "abnormal_sound": "caution",
            "door_forced": "alert",
            "tamper": "caution",
        }
    )  # device events that alert by themselves; others (door_open) only correlate
    # Further device event kinds kept as they are (a tag). Any kind neither here nor in
    # device_events is stored as kind `other` with the device's word in the message field,
    # so a device cannot create series at will.
    device_event_kinds: list[Id] = msgspec.field(
        default_factory=lambda: ["door_open", "door_closed", "motion", "line_crossing"]
    )

    def __post_init__(self) -> None:
        for where in (self.default_asset, *self.hosts.values()):
            if where.count("/") != 1 or not all(where.split("/")):
                raise ValueError(f'security: {where!r} is not "site/asset"')
        for program, sensor in self.programs.items():
            if not _SENSOR_ID.match(sensor):
                raise ValueError(f"security.programs.{program}: {sensor!r} is not a sensor id")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("security.sources: duplicate source name")


class SensorRef(msgspec.Struct, frozen=True):
    """A sensor with its place in the city: what the parser and the detectors look up."""

    domain: Domain
    site: str
    asset: str
    sensor: Sensor


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    city: City
    sites: list[Site]
    detectors: dict[str, DetectorSpec]
    domain_detectors: dict[Domain, list[str]]
    alert_rules: list[AlertRule]
    services: Services = Services()
    flow: FlowSettings = FlowSettings()
    simulation: Simulation = Simulation()
    security: SecuritySettings = SecuritySettings()
    asset_groups: list[AssetGroup] = []

    @cached_property
    def catalog(self) -> dict[tuple[str, str, str, str], SensorRef]:
        """(domain, site, asset, sensor) -> SensorRef, for every configured sensor."""
        return {
            (site.domain, site.id, asset.id, s.id): SensorRef(site.domain, site.id, asset.id, s)
            for site in self.sites
            for asset in site.assets
            for s in asset.sensors
        }

    def detectors_for(self, ref: SensorRef) -> list[str]:
        names = ref.sensor.detectors
        return list(self.domain_detectors.get(ref.domain, [])) if names is None else names

    def rule_for(self, domain: str, detector: str) -> AlertRule | None:
        for rule in self.alert_rules:
            if rule.detector == detector and rule.domain in (None, domain):
                return rule
        return None

    def validate(self) -> Config:
        """Cross-section checks msgspec's types cannot express. Detector types and parameters,
        summary templates and alert policies are checked by ``twinwatch.engine.plan.Plan``."""
        if self.flow.shards % self.flow.partitions:
            raise ConfigError(
                f"flow.shards ({self.flow.shards}) must be a multiple of flow.partitions "
                f"({self.flow.partitions}), so that every shard holds the series of one partition"
            )
        seen: set[tuple[str, ...]] = set()
        for site in self.sites:
            for asset in site.assets:
                for s in asset.sensors:
                    key = (site.id, asset.id, s.id)
                    if key in seen:
                        raise ConfigError(f"sites: duplicate sensor {'/'.join(key)}")
                    seen.add(key)
                    for name in self.detectors_for(SensorRef(site.domain, site.id, asset.id, s)):
                        if name not in self.detectors:
                            raise ConfigError(
                                f"sites.{site.id}.{asset.id}.{s.id}.detectors: {name!r} is not "
                                f"defined under `detectors`"
                            )
        for domain, names in self.domain_detectors.items():
            for name in names:
                if name not in self.detectors:
                    raise ConfigError(f"domain_detectors.{domain}: {name!r} is not defined")
        for i, rule in enumerate(self.alert_rules):
            if rule.detector not in self.detectors and rule.detector not in BUILTIN_RULES:
                raise ConfigError(f"alert_rules[{i}].detector: {rule.detector!r} is not defined")
        paths = {
            f"{site.id}/{a.id}/{s.id}"
            for site in self.sites
            for a in site.assets
            for s in a.sensors
        }
        for i, inc in enumerate(self.simulation.incidents):
            for target in inc.targets:
                if target not in paths:
                    raise ConfigError(f"simulation.incidents[{i}].targets: no sensor {target!r}")
        if len({s.id for s in self.sites}) != len(self.sites):
            raise ConfigError("sites: duplicate site id")
        self._validate_groups()
        return self

    def _validate_groups(self) -> None:
        """References of the asset groups; roles, arity and parameters are the plan's job."""
        assets = {(site.id, a.id): a for site in self.sites for a in site.assets}
        seen: set[tuple[str, str, str]] = set()
        for i, g in enumerate(self.asset_groups):
            where = f"asset_groups[{i}] ({g.id})"
            asset = assets.get((g.site, g.asset))
            if asset is None:
                raise ConfigError(f"{where}: no asset {g.site}/{g.asset}")
            sensors = {s.id: s for s in asset.sensors}
            if g.id in sensors:
                raise ConfigError(f"{where}.id: {g.id!r} is also a sensor of {g.site}/{g.asset}")
            if (g.site, g.asset, g.id) in seen:
                raise ConfigError(f"{where}.id: duplicate group {g.site}/{g.asset}/{g.id}")
            seen.add((g.site, g.asset, g.id))
            if not g.detectors:
                raise ConfigError(f"{where}.detectors: a group needs at least one detector")
            for name in g.detectors:
                if name not in self.detectors:
                    raise ConfigError(
                        f"{where}.detectors: {name!r} is not defined under `detectors`"
                    )
                for role, ids in g.roles(name).items():
                    for sid in ids:
                        if sid not in sensors:
                            raise ConfigError(
                                f"{where}.detectors.{name}.{role}: no sensor {sid!r} on "
                                f"{g.site}/{g.asset}"
                            )
                        if sensors[sid].kind != "reading":
                            raise ConfigError(
                                f"{where}.detectors.{name}.{role}: {sid!r} is a "
                                f"{sensors[sid].kind} source, not a reading sensor"
                            )
                    if len(set(ids)) != len(ids):
                        raise ConfigError(f"{where}.detectors.{name}.{role}: a sensor twice")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _apply_env(raw: dict, environ: dict[str, str]) -> dict:
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is not a section")
        node[path[-1]] = yaml.safe_load(text) if text else text
    return raw


def parse_config(raw: dict, environ: dict[str, str] | None = None) -> Config:
    """Build and validate a Config from parsed YAML (plus ``TWINWATCH__...`` overrides)."""
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping")
    raw = _apply_env(raw, dict(os.environ) if environ is None else environ)
    try:
        return msgspec.convert(raw, Config, strict=False).validate()
    except msgspec.ValidationError as e:
        raise ConfigError(f"config: {e}") from None


def load_config(
    path: str | os.PathLike | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Load the YAML at ``path`` (default: $TWINWATCH_CONFIG, else the shipped example)."""
    env = dict(os.environ) if environ is None else environ
    path = Path(path or env.get("TWINWATCH_CONFIG") or EXAMPLE_CONFIG)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config: {path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB; is it the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config: {path} is not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config: {path} is not valid YAML: {_first_line(e)}") from None
    except RecursionError:
        raise ConfigError(f"config: {path} is nested too deeply") from None
    return parse_config(raw, env)


def _first_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]


assert set(DOMAINS) == set(get_args(Domain))  # the two spellings of the domain set agree
