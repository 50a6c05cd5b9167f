"""Score alerts against the simulator's incident labels: detected or missed, and how fast.

    match_incidents(labels, alerts, grace_s) -> list[IncidentResult]

An incident counts as detected by the first firing alert on one of its target sensors whose
time lies in [incident start, incident end + grace]; the detection delay is that alert's time
minus the incident start. Firing alerts that match no incident are reported separately
(``unmatched_alerts``) so false alarms are visible next to recall.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["AlertRow", "IncidentResult", "match_incidents", "unmatched_alerts"]


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

    @property
    def target(self) -> str:
        return f"{self.site}/{self.asset}/{self.sensor}"


@dataclass(frozen=True)
class IncidentResult:
    id: str
    kind: str
    domain: str
    targets: tuple[str, ...]
    start: datetime
    end: datetime
    first_alert: AlertRow | None

    @property
    def detected(self) -> bool:
        return self.first_alert is not None

    @property
    def delay_s(self) -> float | None:
        if self.first_alert is None:
            return None
        return (self.first_alert.at - self.start).total_seconds()


def _window(label: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(label["start"]), datetime.fromisoformat(label["end"])


def match_incidents(
    labels: list[dict], alerts: list[AlertRow], grace_s: float = 1800.0
) -> list[IncidentResult]:
    results = []
    for label in labels:
        start, end = _window(label)
        targets = tuple(label["targets"])
        hits = [
            a
            for a in alerts
            if a.target in targets and start <= a.at and (a.at - end).total_seconds() <= grace_s
        ]
        results.append(
            IncidentResult(
                label["id"],
                label["kind"],
                label["domain"],
                targets,
                start,
                end,
                min(hits, key=lambda a: a.at, default=None),
            )
        )
    return results


def unmatched_alerts(
    labels: list[dict], alerts: list[AlertRow], grace_s: float = 1800.0
) -> list[AlertRow]:
    """Firing alerts that fall in no incident's window on its targets (false alarms)."""
    windows = [(set(lb["targets"]), *_window(lb)) for lb in labels]
    return [
        a
        for a in alerts
        if not any(
            a.target in t and s <= a.at and (a.at - e).total_seconds() <= grace_s
            for t, s, e in windows
        )
    ]
