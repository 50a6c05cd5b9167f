"""Stale sensors: series that stop reporting, judged in event time across the whole stream.

A per-series detector only runs when its series sends data, so it cannot notice silence. This
step sees, per batch, the latest time of every series (a small summary, not the records) and the
stream's watermark; a series silent for more than ``flow.stale_factor`` x its interval fires a
``stale`` alert, resolved when it reports again.

The watermark is robust: it is the ``flow.liveness_quorum``-th newest of the series' latest
times (at most half of the series seen, so one silent series of two is still noticed). One
device whose clock runs a day ahead therefore cannot make every other series look stale; it
takes a quorum of series to move the stream's clock.

After a restore from a snapshot the flow's own downtime is not silence: readings between the
snapshot and the crash were processed and forgotten with the process. So at the first batch
after a restore every series' last time moves up to the new watermark (a fresh grace period);
a series that stays silent is reported ``stale_factor`` intervals later.
"""

from __future__ import annotations

import heapq
import logging
import math

from twinwatch.config import Config
from twinwatch.detectors.stale import StaleTracker
from twinwatch.engine.alerts import make_alert
from twinwatch.engine.lifecycle import AlertState
from twinwatch.engine.plan import summary_fields
from twinwatch.schema import Alert, AlertStatus, series_key

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
    def __init__(self, config: Config, state: tuple | None = None):
        self.config = config
        self.refs = {
            series_key(r.domain, r.site, r.asset, r.sensor.id): r for r in config.catalog.values()
        }
        self.quorum = config.flow.liveness_quorum
        self.tracker = StaleTracker(config.flow.stale_factor)
        self.stale: dict[str, AlertState] = {}
        self.latest: dict[str, float] = {}  # series -> newest event time seen
        self.watermark = 0.0
        self.restored = state is not None
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
            self.latest = {key: t for key, t, _, _ in kept}

    def _advance(self) -> None:
        """The watermark moves to the quorum-th newest series time, never backwards."""
        k = min(self.quorum, max(1, (len(self.latest) + 1) // 2))
        if len(self.latest) >= k:
            t = heapq.nlargest(k, self.latest.values())[-1]
            if t > self.watermark:
                self.watermark = t

    def process(self, latest: dict[str, float]) -> list[Alert]:
        out = []
        for key, t in latest.items():
            ref = self.refs.get(key)
            if ref is None:  # not a configured sensor: not ours to judge
                continue
            self.tracker.seen(key, t, ref.sensor.interval_s)
            if t > self.latest.get(key, -math.inf):
                self.latest[key] = t
            state = self.stale.pop(key, None)
            if state is not None:
                out.append(self._alert(key, "resolved", state, t, max(0.0, t - state.last_hit)))
        self._advance()
        if self.restored and latest:
            self.restored = False
            self._resume()
        for key, silent in self.tracker.check(self.watermark):
            state = AlertState(since=self.watermark, last_hit=self.watermark - silent)
            self.stale[key] = state
            out.append(self._alert(key, "firing", state, self.watermark, silent))
        return out

    def _resume(self) -> None:
        """First batch after a restore: every series gets a fresh grace period from the
        watermark (the flow's downtime is not the devices' silence)."""
        for key, t, interval_s, reported in self.tracker.to_state():
            if not reported and t < self.watermark:
                self.tracker.seen(key, self.watermark, interval_s)

    def _alert(
        self, key: str, status: AlertStatus, state: AlertState, t: float, silent: float
    ) -> Alert:
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
