"""Stale sensors: series that stop reporting, judged in event time across the whole stream.

A per-series detector only runs when its series sends data, so it cannot notice silence. This
step sees, per batch, the latest time of every series (a small summary, not the records) and the
stream's watermark (the newest event time seen); a series silent for more than
``flow.stale_factor`` x its interval fires a ``stale`` alert, resolved when it reports again.
``last_told`` (the delivery store's newest ``stale`` alerts by (series, rule)) makes restored
state agree with what on-call was last told (see twinwatch.engine.lifecycle.adopt).
"""

from __future__ import annotations

import logging

from twinwatch.config import Config
from twinwatch.detectors.stale import StaleTracker
from twinwatch.engine.alerts import make_alert
from twinwatch.engine.lifecycle import AlertState
from twinwatch.engine.plan import summary_fields
from twinwatch.schema import Alert, series_key

__all__ = ["Liveness", "latest_times", "RULE"]

log = logging.getLogger(__name__)
RULE = "stale"
_DEFAULT_SUMMARY = "{sensor} on {site}/{asset} silent for {value:.0f} s"


def latest_times(records) -> dict[str, float]:
    """series -> newest event time (epoch s) in a batch of records."""
    out: dict[str, float] = {}
    for r in records:
        t = r.time.timestamp()
        if t > out.get(r.series, 0.0):
            out[r.series] = t
    return out


class Liveness:
    def __init__(
        self,
        config: Config,
        state: tuple | None = None,
        last_told: dict[tuple[str, str], Alert] | None = None,
    ):
        self.config = config
        self.refs = {
            series_key(r.domain, r.site, r.asset, r.sensor.id): r for r in config.catalog.values()
        }
        self.tracker = StaleTracker(config.flow.stale_factor)
        self.stale: dict[str, AlertState] = {}
        self.watermark = 0.0
        if state is not None:
            tracker_state, stale, self.watermark = state
            kept = tuple(e for e in tracker_state if e[0] in self.refs)
            self.tracker = StaleTracker.from_state({"factor": config.flow.stale_factor}, kept)
            self.stale = {k: AlertState.from_state(v) for k, v in stale.items() if k in self.refs}
            if len(kept) < len(tracker_state):
                log.warning(
                    "restore: liveness dropped %d series no longer in the config",
                    len(tracker_state) - len(kept),
                )
        for (key, rule), a in (last_told or {}).items():
            if rule != RULE or key not in self.refs:
                continue
            known = self.stale.get(key)
            if a.status == "firing" and (known is None or known.since < a.starts_at.timestamp()):
                since = a.starts_at.timestamp()
                self.stale[key] = AlertState(since=since, last_hit=since - a.value)
            elif a.status == "resolved" and known and known.since <= a.starts_at.timestamp():
                del self.stale[key]

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
        template = rule.summary if rule else _DEFAULT_SUMMARY
        silent = round(silent, 3)
        return make_alert(
            domain=ref.domain,
            site=ref.site,
            asset=ref.asset,
            sensor=ref.sensor.id,
            rule=RULE,
            status=status,
            severity=rule.severity if rule else "caution",
            since=state.since,
            t=t,
            value=silent,
            unit="s",
            summary=template.format(**summary_fields(RULE, ref, silent) | {"unit": "s"}),
        )

    def to_state(self) -> tuple:
        return (
            self.tracker.to_state(),
            {k: v.to_state() for k, v in self.stale.items()},
            self.watermark,
        )
