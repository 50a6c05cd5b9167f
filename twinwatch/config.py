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
    "Retention",
    "is_loopback",
]

EXAMPLE_CONFIG = Path(__file__).parent / "examples" / "pilot-city.yaml"
ENV_PREFIX = "TWINWATCH__"
# The example city has ~630 bytes of YAML per sensor: 16 MiB holds some 25,000 sensors. A larger
# file is almost certainly the wrong file, and YAML of that size takes minutes and GBs to load.
MAX_CONFIG_BYTES = 16 * 2**20
BUILTIN_RULES = ("stale",)  # alert rules that are not detectors (twinwatch.engine.liveness)

Id = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
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
    client_id: str = "twinwatch-flow"
    # MQTT shared subscription group: several flow processes split the topics between them.
    shared_group: str | None = None
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
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000
    flush_interval_s: PositiveFloat = 1.0
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


class AlertmanagerService(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str | None = "http://127.0.0.1:9093"  # None: alerts only go to InfluxDB
    username: str | None = None
    password: Secret | None = None
    bearer_token: Secret | None = None
    timeout_s: PositiveFloat = 5.0
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 5
    resend_interval_s: PositiveFloat = 60.0  # Alertmanager expects firing alerts to be re-sent
    firing_ttl_s: PositiveFloat = 3600.0  # endsAt of a firing alert, renewed at each re-send
    generator_url: str = "http://127.0.0.1:3000/d/twinwatch-alerts"
    tls: Tls = Tls()
    # Issue #4 (alerting/): persistence, direct webhook, links, generated Alertmanager config.
    state_path: str | None = None  # SQLite of delivered alerts: a restart neither loses nor repeats
    webhook_url: str | None = None  # direct HMAC-signed webhook (sites without Alertmanager)
    webhook_secret: Secret | None = None
    runbook_url: str = ""  # template: {domain} {site} {asset} {sensor} {rule} {severity}
    dashboard_url: str = ""  # template: as runbook_url plus {from_ms} {to_ms}
    routing: AlertRouting = msgspec.field(default_factory=lambda: AlertRouting())


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
    # Messages a source holds before it stops reading from the broker (backpressure: a blocked
    # sink leaves the backlog on the broker, not in the flow's memory).
    max_queued: Annotated[int, msgspec.Meta(ge=1)] = 20_000
    rollups: bool = True  # write reading_1m / reading_1h (twinwatch.flows.rollup)
    rollup_lateness_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0  # event-time wait per window


class City(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    timezone: str = "Asia/Seoul"  # IANA name; the zone of log lines that carry none

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


class Simulation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The built-in city simulator: seed, simulated span, speed-up, and the incidents to inject."""

    seed: int = 42
    duration_h: PositiveFloat = 24.0  # simulated hours; the run ends at "now" by default
    speed: PositiveFloat = 720.0  # simulated seconds per wall-clock second
    missing_rate: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.002
    labels_path: str = "var/incidents.jsonl"
    incidents: list[Incident] = []


class SecurityDetection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-source-IP thresholds of twinwatch.detectors.security.SecurityDetector (issue #6)."""

    brute_force_window_s: PositiveFloat = 300.0
    brute_force_failures: Annotated[int, msgspec.Meta(ge=1)] = 10
    spray_window_s: PositiveFloat = 600.0
    spray_users: Annotated[int, msgspec.Meta(ge=2)] = 5  # distinct valid users failed from one IP
    enum_window_s: PositiveFloat = 600.0
    enum_users: Annotated[int, msgspec.Meta(ge=2)] = 5  # distinct invalid users tried from one IP
    success_window_s: PositiveFloat = 600.0
    success_after_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    scan_window_s: PositiveFloat = 60.0
    scan_ports: Annotated[int, msgspec.Meta(ge=2)] = 15  # distinct denied ports from one IP
    correlate_window_s: PositiveFloat = 120.0  # e.g. intrusion + door_open at one asset
    max_sources: Annotated[int, msgspec.Meta(ge=1)] = 10_000  # IPs tracked per asset


class TemplateMining(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """drain3 template mining and per-template rates (twinwatch.detectors.logtemplates)."""

    sim_th: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.4
    depth: Annotated[int, msgspec.Meta(ge=3)] = 4
    max_children: Annotated[int, msgspec.Meta(ge=2)] = 100
    max_clusters: Annotated[int, msgspec.Meta(ge=1)] = 2000
    warmup_lines: Annotated[int, msgspec.Meta(ge=0)] = 0  # per asset, before new templates alert
    rate_bucket_s: PositiveFloat = 60.0
    rate_factor: PositiveFloat = 10.0  # a bucket above factor x its EWMA mean is a rate anomaly
    rate_min_count: Annotated[int, msgspec.Meta(ge=1)] = 50
    rate_warmup_buckets: Annotated[int, msgspec.Meta(ge=0)] = 10


class SecuritySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Log sources and security detection (issue #6, docs/security.md)."""

    enabled: bool = True  # run the security detectors on security events (MQTT and log sources)
    hosts: dict[str, str] = {}  # syslog host name -> "site/asset"
    default_asset: str = "logs/unmapped"  # "site/asset" of lines from hosts not listed
    pseudonymise_key: Secret | None = None  # HMAC-SHA256 key: user names become "u-<hash>"
    max_line_bytes: Annotated[int, msgspec.Meta(ge=64)] = 8192
    clear_s: Annotated[float, msgspec.Meta(ge=0)] = 600.0  # a quiet spell that resolves an alert
    detection: SecurityDetection = SecurityDetection()
    templates: TemplateMining = TemplateMining()
    severities: dict[str, Severity] = msgspec.field(
        default_factory=lambda: {
            "brute_force": "alert",
            "password_spray": "alert",
            "user_enum": "caution",
            "success_after_failures": "severe",
            "port_scan": "caution",
            "intrusion_door_open": "severe",
            "new_template": "attention",
            "template_rate": "attention",
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
        return self


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
