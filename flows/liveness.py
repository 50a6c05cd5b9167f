"""Stale sensors: series that stop reporting, judged in event time across the whole stream.

A per-series detector only runs when its series sends data, so it cannot notice silence. This
step sees, per batch, the latest time of every series (a small summary, not the records) and the
stream's watermark (the newest event time seen); a series silent for more than
``flow.stale_factor`` x its interval fires a ``stale`` alert, resolved when it reports again.
"""

from __future__ import annotations

from datetime import datetime, timezone

from alerting.lifecycle import AlertState
from detectors.stale import StaleTracker
from twinwatch.config import Config
from twinwatch.metrics import ALERTS
from twinwatch.schema import Alert, fingerprint

__all__ = ["Liveness", "latest_times", "RULE"]

RULE = "stale"


def latest_times(records) -> dict[str, float]:
    """series -> newest event time (epoch s) in a batch of records."""
    out: dict[str, float] = {}
    for r in records:
        t = r.time.timestamp()
        if t > out.get(r.series, 0.0):
            out[r.series] = t
    return out


class Liveness:
    def __init__(self, config: Config, state: tuple | None = None):
        self.config = config
        self.refs = {f"{d}/{s}/{a}/{n}": ref for (d, s, a, n), ref in config.catalog.items()}
        self.tracker = StaleTracker(config.flow.stale_factor)
        self.stale: dict[str, AlertState] = {}
        self.watermark = 0.0
        if state is not None:
            tracker_state, stale, self.watermark = state
            self.tracker = StaleTracker.from_state({"factor": config.flow.stale_factor},
                                                   tracker_state)
            self.stale = {k: AlertState.from_state(v) for k, v in stale.items()}

    def process(self, latest: dict[str, float]) -> list[Alert]:
        out = []
        for key, t in latest.items():
            self.tracker.seen(key, t, self.refs[key].sensor.interval_s)
            if t > self.watermark:
                self.watermark = t
            state = self.stale.pop(key, None)
            if state is not None:
                out.append(self._alert(key, "resolved", state, t, t - state.last_hit))
        for key, silent in self.tracker.check(self.watermark):
            state = AlertState(since=self.watermark, last_hit=self.watermark - silent)
            self.stale[key] = state
            out.append(self._alert(key, "firing", state, self.watermark, silent))
        return out

    def _alert(self, key: str, status: str, state: AlertState, t: float, silent: float) -> Alert:
        ref = self.refs[key]
        rule = self.config.rule_for(ref.domain, RULE)
        labels = {"domain": ref.domain, "site": ref.site, "asset": ref.asset,
                  "sensor": ref.sensor.id, "rule": RULE}
        at = datetime.fromtimestamp(t, timezone.utc)
        severity = rule.severity if rule else "caution"
        ALERTS.labels(ref.domain, severity, status).inc()
        return Alert(
            fingerprint=fingerprint(labels), status=status, severity=severity,
            domain=ref.domain, site=ref.site, asset=ref.asset, sensor=ref.sensor.id, rule=RULE,
            starts_at=datetime.fromtimestamp(state.since, timezone.utc), at=at,
            value=round(silent, 3), unit="s",
            summary=f"{ref.sensor.id} on {ref.site}/{ref.asset} silent for {silent:.0f} s",
            ends_at=at if status == "resolved" else None)

    def to_state(self) -> tuple:
        return (self.tracker.to_state(), {k: v.to_state() for k, v in self.stale.items()},
                self.watermark)
