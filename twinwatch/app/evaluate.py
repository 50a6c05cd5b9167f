"""Score alerts against the simulator's incident labels: detected or missed, by the right kind of
detector or by chance, how fast, and what fired where nothing was wrong.

    match_incidents(labels, alerts, grace_s, groups) -> list[IncidentResult]
    unmatched_alerts(labels, alerts, grace_s, groups) -> false alarms
    group_members(config) -> {(site, asset, group id): sensor ids}
    replay(config, messages) -> firing alerts    the flow's own engine over simulated messages

An incident counts as detected by the first firing alert on one of its targets whose time lies
in [incident start, incident end + grace]; the detection delay is that alert's time minus the
incident start. An asset group's alert (``sensor`` = the group's id) is on a target when the
group uses a target sensor (``groups``). A label's ``expect`` lists the detector kinds meant to
catch it (issue #12: a leak by ``leak``, a debonded gauge by ``sensor_fault``): ``right_kind``
says whether the first alert was one of them, i.e. detected by design and not by chance.

Labels marked ``legit`` are legitimate changes (rain-driven turbidity under its limit, a
holiday, a sensor replaced under a maintenance annotation): nothing is to be detected there, and
an alert in their window is a false alarm (``unmatched_alerts`` returns it; ``legit_alarms``
lists those of one label).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from twinwatch.engine.parse import Parser

__all__ = [
    "replay",
    "TrustingParser",
    "AlertRow",
    "IncidentResult",
    "match_incidents",
    "unmatched_alerts",
    "legit_alarms",
    "group_members",
]

Groups = dict[tuple[str, str, str], frozenset[str]]


@dataclass(frozen=True)
class AlertRow:
    """A firing alert as stored (InfluxDB ``alert`` measurement)."""

    at: datetime
    domain: str
    site: str
    asset: str
    sensor: str
    rule: str
    severity: str
    kind: str = ""  # what the detector's hit means (issue #12), "" for older rows
    detector: str = ""

    @property
    def target(self) -> str:
        return f"{self.site}/{self.asset}/{self.sensor}"

    def targets(self, groups: Groups | None = None) -> set[str]:
        """The sensor paths this alert is about: its own, or its group's members."""
        members = (groups or {}).get((self.site, self.asset, self.sensor))
        if members is None:
            return {self.target}
        return {f"{self.site}/{self.asset}/{m}" for m in members}


@dataclass(frozen=True)
class IncidentResult:
    id: str
    kind: str
    domain: str
    targets: tuple[str, ...]
    start: datetime
    end: datetime
    first_alert: AlertRow | None
    expect: tuple[str, ...] = ()
    legit: bool = False

    @property
    def detected(self) -> bool:
        return self.first_alert is not None

    @property
    def delay_s(self) -> float | None:
        if self.first_alert is None:
            return None
        return (self.first_alert.at - self.start).total_seconds()

    @property
    def right_kind(self) -> bool:
        """Detected, and first by a detector meant for it (any detector if none is named)."""
        a = self.first_alert
        return a is not None and (not self.expect or a.kind in self.expect)


def group_members(config) -> Groups:
    """{(site, asset, group id): member sensor ids} of the config's asset groups."""
    return {(g.site, g.asset, g.id): frozenset(g.members) for g in config.asset_groups}


def _window(label: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(label["start"]), datetime.fromisoformat(label["end"])


def _in(label: dict, a: AlertRow, grace_s: float, groups: Groups | None) -> bool:
    start, end = _window(label)
    return (
        start <= a.at
        and (a.at - end).total_seconds() <= grace_s
        and not a.targets(groups).isdisjoint(label["targets"])
    )


def match_incidents(
    labels: list[dict],
    alerts: list[AlertRow],
    grace_s: float = 1800.0,
    groups: Groups | None = None,
) -> list[IncidentResult]:
    results = []
    for label in labels:
        start, end = _window(label)
        hits = [a for a in alerts if _in(label, a, grace_s, groups)]
        results.append(
            IncidentResult(
                label["id"],
                label["kind"],
                label["domain"],
                tuple(label["targets"]),
                start,
                end,
                min(hits, key=lambda a: a.at, default=None),
                tuple(label.get("expect", ())),
                bool(label.get("legit", False)),
            )
        )
    return results


def unmatched_alerts(
    labels: list[dict],
    alerts: list[AlertRow],
    grace_s: float = 1800.0,
    groups: Groups | None = None,
) -> list[AlertRow]:
    """Firing alerts that fall in no incident's window on its targets (false alarms), including
    every alert inside a legitimate change's window."""
    real = [lb for lb in labels if not lb.get("legit")]
    return [a for a in alerts if not any(_in(lb, a, grace_s, groups) for lb in real)]


def legit_alarms(
    label: dict, alerts: list[AlertRow], grace_s: float = 1800.0, groups: Groups | None = None
) -> list[AlertRow]:
    """The alerts on a legitimate change's targets in its window (each is a false alarm)."""
    return [a for a in alerts if _in(label, a, grace_s, groups)]


class TrustingParser(Parser):
    """The flow's parser for replayed history: times far from today's are expected."""

    def parse(self, topic: str, payload: bytes, now: datetime | None = None):
        return super().parse(topic, payload, datetime(2262, 1, 1, tzinfo=UTC))


def replay(config, messages, batch_size: int = 1000) -> list[AlertRow]:
    """Run ``messages`` ((topic, payload) pairs or simulator Messages, in time order) through
    the flow's own logic, batch by batch as the flow does: parse, per-series detection
    (``Shard``), asset groups (``AssetShard``), stale sensors (``Liveness``) and, when enabled,
    the security rules; return the firing alerts. No Bytewax, no services: for benchmarks and
    tests of whole scenarios. Times are trusted (no "too far in the future" check)."""
    from twinwatch.engine.assets import AssetShard, member_readings
    from twinwatch.engine.liveness import Liveness, latest_times, maintenance_windows
    from twinwatch.engine.plan import Plan
    from twinwatch.engine.shard import Shard
    from twinwatch.schema import Alert, SecurityEvent

    plan = Plan(config)
    parser = TrustingParser(config)
    shard, assets, live = Shard(plan), AssetShard(plan), Liveness(config)
    security = None
    if config.security.enabled:
        from twinwatch.engine.security import SecurityShard

        security = SecurityShard(config)
    alerts: list = []

    def run(batch: list) -> None:
        recs, _ = parser.split(batch)
        out: list = shard.process(recs) + assets.process(member_readings(recs, plan))
        out += live.process(latest_times(recs), maintenance_windows(recs))
        if security is not None:
            out += security.process([r for r in recs if type(r) is SecurityEvent])
        alerts.extend(a for a in out if type(a) is Alert and a.status == "firing")

    batch: list = []
    for m in messages:
        batch.append((m[0], m[1]))
        if len(batch) >= batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    return [
        AlertRow(a.at, a.domain, a.site, a.asset, a.sensor, a.rule, a.severity, a.kind, a.detector)
        for a in alerts
    ]
