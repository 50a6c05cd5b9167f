"""Stale sensors: series that stop reporting, judged in event time across the whole stream.

A per-series detector only runs when its series sends data, so it cannot notice silence. This
step sees, per batch, the latest time of every series (a small summary, not the records) and the
stream's watermark; a series silent for more than ``flow.stale_factor`` x its interval (or its
own ``stale_s``) fires a ``stale`` alert, resolved when it reports again. Event streams (logs,
firewall, device events) are bursty, so only those with an explicit ``stale_s`` are checked.

The watermark is robust: it is the ``flow.liveness_quorum``-th newest of the series' latest
times (at most half of the series seen, so one silent series of two is still noticed). One
device whose clock runs a day ahead therefore cannot make every other series look stale; it
takes a quorum of series to move the stream's clock.

Across processes each source partition (``flow.partitions``; a series' partition is its series
key's shard, as the MQTT source routes it) also has its own clock, the same quorum-th newest
time over its own series. A series is judged against ``min(its partition's clock, the
stream's)``: partitions run in different processes and need not keep pace, and a process that
lags, restarts or takes over a partition holds back only its own partition, so a slower
partition's series are never judged by a faster one's clock. A partition that delivered nothing
for ``flow.partition_idle_s`` of wall time (all its series silent) follows the stream's clock,
so its silent series are still reported. Sources without series affinity (replay files, MQTT
with ``services.mqtt.shared_group``) have one clock.

After a restore from a snapshot the flow's own downtime is not silence: readings between the
snapshot and the crash were processed and forgotten with the process. So when a partition is
first judged after a restore (its first batch, or when it falls idle), its series' last times
move up to its clock (a fresh grace period); a series that stays silent is reported
``stale_factor`` intervals later.

``last_told`` (the delivery store's newest ``stale`` alerts by (series, rule)) makes restored
state agree with what on-call was last told (see twinwatch.engine.lifecycle.adopt): a stale
alert paged after the snapshot is resolved when its series reports again, not left firing.

A maintenance annotation (issue #12) suspends the check for its sensor until its end: a sensor
being replaced is silent on purpose. If it is still silent a stale period after the window, it
is stale.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from itertools import chain

from twinwatch.config import Config
from twinwatch.detectors.stale import StaleTracker
from twinwatch.engine.alerts import affinity, make_alert, route_of
from twinwatch.engine.explain import stale_explanation
from twinwatch.engine.lifecycle import AlertState
from twinwatch.engine.plan import summary_fields
from twinwatch.schema import Alert, AlertStatus, Annotation, series_key

__all__ = ["Liveness", "latest_times", "maintenance_windows", "RULE"]

log = logging.getLogger(__name__)
RULE = "stale"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_series_keys: dict[tuple[str, str, str, str], str] = {}  # bounded memo
_MAX_KEYS = 100_000
_DEFAULT_SUMMARY = "{sensor} on {site}/{asset} silent for {value:.0f} s"


def latest_times(records) -> dict[str, float]:
    """series -> newest event time (epoch s) in a batch of records (a time at or before the
    epoch does not count)."""
    # Per record only a tuple of its identity fields and a datetime comparison; the series key
    # and the epoch seconds are computed once per series (the newest datetime has the newest
    # timestamp). The keys come in the order of each series' first record, as record by record
    # unless a series' first record is at or before the epoch: then record by record.
    newest: dict[tuple[str, str, str, str], datetime] = {}
    try:
        for r in records:
            if type(r) is Annotation:  # a note about the sensor, not a sign of life
                continue
            ident = (r.domain, r.site, r.asset, r.sensor)
            t = r.time
            seen = newest.get(ident)
            if seen is None:
                if t <= _EPOCH:
                    return _latest_times(records)
                newest[ident] = t
            elif t > seen:
                newest[ident] = t
    except TypeError:  # a naive datetime (not from the parser) next to aware ones
        return _latest_times(records)
    out: dict[str, float] = {}
    keys = _series_keys
    if len(keys) > _MAX_KEYS:
        keys.clear()
    for ident, t in newest.items():
        key = keys.get(ident)
        if key is None:
            key = keys[ident] = series_key(*ident)
        ts = t.timestamp()
        if ts > out.get(key, 0.0):  # two spellings of one key ("a/b", "c" and "a", "b/c")
            out[key] = ts
    return out


def _latest_times(records) -> dict[str, float]:
    """``latest_times`` record by record (what the fast path's order must equal)."""
    out: dict[str, float] = {}
    for r in records:
        if type(r) is Annotation:
            continue
        t = r.time.timestamp()
        if t > out.get(r.series, 0.0):
            out[r.series] = t
    return out


def maintenance_windows(records) -> dict[str, float]:
    """series -> end (epoch s) of the maintenance windows announced in a batch."""
    out: dict[str, float] = {}
    for r in records:
        if type(r) is Annotation:
            out[r.series] = max(out.get(r.series, 0.0), r.until.timestamp())
    return out


class Liveness:
    def __init__(
        self,
        config: Config,
        state: tuple | None = None,
        last_told: dict[tuple[str, str], Alert] | None = None,
        clock=time.monotonic,
        partitions: int = 1,
    ):
        """``partitions``: the source's partitions with series affinity (the MQTT source's
        ``flow.partitions``); 1 for sources without it (replay files, shared subscriptions)."""
        self.config = config
        self.refs = {
            series_key(r.domain, r.site, r.asset, r.sensor.id): r for r in config.catalog.values()
        }
        self.quorum = config.flow.liveness_quorum
        self.idle_s = config.flow.partition_idle_s
        self.clock = clock  # wall clock (monotonic), only for a partition's idleness
        parts = partitions
        routes = affinity(config)
        self.part_of = {key: route_of(key, routes, parts) for key in self.refs}
        factor = config.flow.stale_factor
        self.intervals: dict[str, float] = {}  # checked series: stale after factor x this
        for key, r in self.refs.items():
            after = r.sensor.stale_after(factor)
            if after is not None:  # readings, or a stream with stale_s (bursty events: not)
                self.intervals[key] = after / factor
        # series -> (its partition, its interval or None if not checked): one lookup a series
        self._judged = {key: (self.part_of[key], self.intervals.get(key)) for key in self.refs}
        self.trackers = [StaleTracker(factor) for _ in range(parts)]
        self.latest: dict[str, float] = {}  # series -> newest time seen
        self.part_latest: list[dict[str, float]] = [{} for _ in range(parts)]
        # the quorum newest (time, series) of each partition (the stream's are among them)
        self.part_top: list[list[tuple[float, str]]] = [[] for _ in range(parts)]
        self.watermark = 0.0  # the stream's clock
        self.watermarks = [0.0] * parts  # each partition's clock
        self.delivered = [self.clock()] * parts  # when each partition last delivered a batch
        self.stale: dict[str, AlertState] = {}
        self.resume: set[int] = set()  # partitions not judged since a restore
        self.held: dict[str, float] = {}  # series in maintenance -> its end
        if state is not None:
            tracker_state, stale, watermarks, *held = state
            self.held = {k: v for k, v in (held[0] if held else {}).items() if k in self.refs}
            kept = [e for e in tracker_state if e[0] in self.intervals]
            if isinstance(watermarks, float | int):  # a snapshot from before partition clocks
                watermarks = (watermarks,)
            if len(watermarks) != parts:  # flow.partitions changed: every clock from the newest
                watermarks = [max(watermarks, default=0.0)] * parts
            self.watermarks = [float(w) for w in watermarks]
            self.watermark = max(self.watermarks)
            for p in range(parts):
                mine = tuple(e for e in kept if self.part_of[e[0]] == p)
                self.trackers[p] = StaleTracker.from_state({"factor": factor}, mine)
                self.part_latest[p] = {key: t for key, t, _, _ in mine}
                self.latest.update(self.part_latest[p])
                self.part_top[p] = self._newest([], self.part_latest[p])
            self.stale = {
                k: AlertState.from_state(v) for k, v in stale.items() if k in self.intervals
            }
            if len(kept) < len(tracker_state):
                log.warning(
                    "restore: liveness dropped %d series no longer in the config",
                    len(tracker_state) - len(kept),
                )
            self.resume = set(range(parts))
        for (key, rule), a in (last_told or {}).items():
            if rule != RULE or key not in self.intervals:
                continue
            known = self.stale.get(key)
            if a.status == "firing" and (known is None or known.since < a.starts_at.timestamp()):
                since = a.starts_at.timestamp()
                self.stale[key] = AlertState(since=since, last_hit=since - a.value)
            elif a.status == "resolved" and known and known.since <= a.starts_at.timestamp():
                del self.stale[key]

    def _newest(
        self, top: list[tuple[float, str]], changed: dict[str, float]
    ) -> list[tuple[float, str]]:
        """The ``quorum`` newest (time, series) after ``changed``, from the ones before
        (``top``). A series' time only grows, so no other series can enter: a batch costs
        what it holds, not the number of series (nlargest over every series' time, per
        batch, cost 2 ms a batch at 10,000 series)."""
        kept = [e for e in top if e[1] not in changed]
        # a sort in C beats heapq.nlargest's Python loop when most times are new
        return sorted(chain(kept, zip(changed.values(), changed.keys())), reverse=True)[
            : self.quorum
        ]

    def _quorum_time(self, top: list[tuple[float, str]], seen: int) -> float | None:
        """The quorum-th newest time of ``seen`` series (at most half of them, at least the
        newest), from their ``quorum`` newest."""
        k = min(self.quorum, max(1, (seen + 1) // 2))
        return top[k - 1][0] if seen >= k else None

    def process(
        self, latest: dict[str, float], maintenance: dict[str, float] | None = None
    ) -> list[Alert]:
        out = []
        for key, until in (maintenance or {}).items():
            if key in self.refs:
                self.held[key] = max(self.held.get(key, 0.0), until)
                self.trackers[self.part_of[key]].forget(key)
        touched: set[int] = set()
        changed: dict[int, dict[str, float]] = {}  # partition -> series whose time moved on
        judged, newest, part_latest = self._judged, self.latest, self.part_latest
        trackers, held, stale = self.trackers, self.held, self.stale
        for key, t in latest.items():
            entry = judged.get(key)
            if entry is None:  # not a configured sensor: not ours to judge
                continue
            p, interval = entry
            touched.add(p)
            if t > newest.get(key, -math.inf):
                newest[key] = part_latest[p][key] = t
                moved = changed.get(p)
                if moved is None:
                    changed[p] = {key: t}
                else:
                    moved[key] = t
            if interval is None or key in held:
                continue
            trackers[p].seen(key, t, interval)
            if stale and (state := stale.pop(key, None)) is not None:
                out.append(self._alert(key, "resolved", state, t, max(0.0, t - state.last_hit)))
        if not touched:
            return out
        now = self.clock()
        for p in touched:
            self.delivered[p] = now
            if p in changed:
                self.part_top[p] = self._newest(self.part_top[p], changed[p])
            q = self._quorum_time(self.part_top[p], len(part_latest[p]))
            if q is not None and q > self.watermarks[p]:
                self.watermarks[p] = q
        # the stream's newest are among its partitions' newest
        q = self._quorum_time(sorted(chain.from_iterable(self.part_top), reverse=True), len(newest))
        if q is not None and q > self.watermark:  # never backwards
            self.watermark = q
        for p, tracker in enumerate(self.trackers):
            idle = now - self.delivered[p] > self.idle_s
            if p not in touched and not idle:
                continue  # its clock has not moved
            clock = self.watermark if idle else min(self.watermarks[p], self.watermark)
            if p in self.resume:
                self.resume.discard(p)
                self._resume(tracker, clock)
            for key, until in list(self.held.items()):
                if self.part_of[key] == p and until <= clock:  # over: silent is stale again
                    del self.held[key]
                    last = max(until, self.latest.get(key, 0.0))
                    tracker.seen(key, last, self.intervals[key])
            for key, silent in tracker.check(clock):
                state = AlertState(since=clock, last_hit=clock - silent)
                self.stale[key] = state
                out.append(self._alert(key, "firing", state, clock, silent))
        return out

    @staticmethod
    def _resume(tracker: StaleTracker, clock: float) -> None:
        """A partition first judged after a restore: its series get a fresh grace period from
        its clock (the flow's downtime is not the devices' silence)."""
        for key, t, interval_s, reported in tracker.to_state():
            if not reported and t < clock:
                tracker.seen(key, clock, interval_s)

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
            **stale_explanation(ref, silent, self.config.flow.stale_factor * self.intervals[key]),
        )

    def to_state(self) -> tuple:
        return (
            tuple(e for tracker in self.trackers for e in tracker.to_state()),
            {k: v.to_state() for k, v in self.stale.items()},
            tuple(self.watermarks),
        ) + ((dict(self.held),) if self.held else ())
