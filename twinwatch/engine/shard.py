"""Detection and alerting for a shard of series: plain Python, testable without Bytewax.

    shard = Shard(plan)
    outputs = shard.process(records)      # AnomalyScore per record + Alert state changes

The flow routes every series to one of ``flow.shards`` shards and moves *lists* of records
between steps; Bytewax's per-item cost (~1-3 µs a step) would otherwise exceed the detectors' own
cost.

A maintenance annotation (``Annotation``, issue #12) holds a series: until its end its readings
are recorded but not judged (no scores, no alerts), and then its detectors start afresh, so a
replaced, re-zeroed sensor's new level is its new normal rather than an alarm.

A shard's snapshot (``to_state()``) is plain data keyed by name, never by position:
``{series: ({(detector name, type): detector state}, {detector name: alert state}[, held
until])}``. A restore under a changed config matches state by those keys: reordered detectors
keep their state, a
detector whose type changed starts fresh, and state whose detector or sensor has left the config
is dropped with one log line.

``last_told`` ({(series, rule): Alert}, the delivery store's newest state of each alert) makes
the restored alert states agree with what on-call was last told, as each series is restored or
first seen (``twinwatch.engine.lifecycle.adopt``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from time import perf_counter

from twinwatch import detectors
from twinwatch.engine.alerts import make_alert
from twinwatch.engine.deadletter import internal_error
from twinwatch.engine.explain import baseline_note, series_explanation
from twinwatch.engine.lifecycle import AlertState, adopt, evaluate
from twinwatch.engine.plan import Plan, SeriesPlan, summary_fields
from twinwatch.metrics import ANOMALIES, DETECT_SECONDS
from twinwatch.schema import (
    Alert,
    AlertStatus,
    Annotation,
    AnomalyScore,
    DeadLetter,
    Reading,
    SecurityEvent,
)

__all__ = ["Shard", "event_weight"]

log = logging.getLogger(__name__)

# Security events are scored as event streams: weight 1 for a failure/deny, 0 otherwise.
_EVENT_WEIGHT = {"failure": 1.0, "deny": 1.0}


def event_weight(event: SecurityEvent) -> float:
    return _EVENT_WEIGHT.get(event.outcome, 0.0)


class _Series:
    __slots__ = ("plan", "detectors", "alerts", "held_until", "steps")

    def __init__(self, plan: SeriesPlan, dets: list, alerts: list[AlertState], held: float = 0.0):
        self.plan = plan
        self.alerts = alerts
        self.held_until = held  # end of a maintenance window (epoch s), 0.0 if none
        self.use(dets)

    def use(self, dets: list) -> None:
        """Take ``dets`` as the series' detectors, with what ``Shard.process`` needs of each
        prepared once rather than looked up per reading (thresholds are settings: constant)."""
        self.detectors = dets
        plan = self.plan
        self.steps = tuple(
            (
                name,
                det.update,
                det,
                det.threshold,
                alert,
                pol[0] if (pol := plan.policies.get(name)) is not None else None,
                hasattr(det, "drift"),  # a learner: it may accept a change as normal
                ANOMALIES.labels(plan.ref.domain, name),
            )
            for (name, _, _), det, alert in zip(plan.detectors, dets, self.alerts)
        )


def _alert(
    plan: SeriesPlan,
    rule: str,
    status: AlertStatus,
    state: AlertState,
    t: float,
    value: float,
    det,
) -> Alert:
    ref = plan.ref
    pol, ladder = plan.policies[rule]
    kind = next(k for n, k, _ in plan.detectors if n == rule)
    return make_alert(
        domain=ref.domain,
        site=ref.site,
        asset=ref.asset,
        sensor=ref.sensor.id,
        rule=rule,
        status=status,
        severity=ladder[state.level],
        since=state.since,
        t=t,
        value=value,
        unit=ref.sensor.unit,
        summary=plan.rules[rule].summary.format(**summary_fields(rule, ref, value)),
        **series_explanation(ref, rule, kind, det, value),
    )


class Shard:
    """The detectors and alert states of the series routed to one shard."""

    def __init__(
        self,
        plan: Plan,
        state: dict | None = None,
        last_told: dict[tuple[str, str], Alert] | None = None,
    ):
        self.plan = plan
        self.series: dict[str, _Series] = {}
        self._adopt = last_told or {}
        self.dead: list[DeadLetter] = []  # internal_error dead letters, taken by the caller
        self.restored = state is not None  # resume() at the first batch after a restore
        dropped: list[str] = []
        for key, (det_states, alert_states, *held) in (state or {}).items():
            if key not in plan:
                dropped.append(key)
                continue
            sp = plan[key]
            dets = []
            for name, kind, params in sp.detectors:
                saved = det_states.get((name, kind))
                dets.append(
                    detectors.build(kind, **params)
                    if saved is None
                    else detectors.REGISTRY[kind].from_state(params, saved)
                )
            alerts = [
                AlertState.from_state(alert_states[name]) if name in alert_states else AlertState()
                for name, _, _ in sp.detectors
            ]
            gone = set(det_states) - {(n, k) for n, k, _ in sp.detectors}
            dropped.extend(f"{key}:{n}" for n, _ in sorted(gone))
            self.series[key] = self._take_back(
                key, _Series(sp, dets, alerts, held[0] if held else 0.0)
            )
        if dropped:
            log.warning(
                "restore: dropped the saved state of %d series/detectors no longer in "
                "the config: %s",
                len(dropped),
                ", ".join(dropped[:10]) + (", ..." if len(dropped) > 10 else ""),
            )

    def _get(self, key: str) -> _Series:
        s = self.series.get(key)
        if s is None:
            sp = self.plan[key]
            s = self.series[key] = self._take_back(
                key, _Series(sp, sp.build(), [AlertState() for _ in sp.detectors])
            )
        return s

    def _take_back(self, key: str, s: _Series) -> _Series:
        """Agree with the newest delivered state of each of the series' alerts (a restart)."""
        if self._adopt:
            for (name, _, _), state in zip(s.plan.detectors, s.alerts):
                a = self._adopt.get((key, name))
                if a is not None and name in s.plan.policies:
                    ladder = s.plan.policies[name][1]
                    level = ladder.index(a.severity) if a.severity in ladder else 0
                    adopt(state, a.status, a.starts_at.timestamp(), a.at.timestamp(), level)
        return s

    def process(
        self, records: Sequence[Reading | SecurityEvent | Annotation]
    ) -> list[AnomalyScore | Alert | Annotation]:
        """Scores and alert changes of ``records``. A record whose processing raises (a bug)
        becomes an ``internal_error`` dead letter in ``self.dead`` (the caller takes them); the
        rest of the batch goes on."""
        out: list[AnomalyScore | Alert | Annotation] = []
        if not records:
            return out
        if self.restored:
            self.restored = False
            self.resume(min(r.time for r in records).timestamp())
        started = perf_counter()
        for rec in records:
            try:
                s = self._get(rec.series)
                plan = s.plan
                if type(rec) is Annotation:  # maintenance: hold the series until it ends
                    s.held_until = max(s.held_until, rec.until.timestamp())
                    continue
                t = rec.time.timestamp()
                x = rec.value if type(rec) is Reading else event_weight(rec)
                if s.held_until:
                    if t < s.held_until:  # recorded, not judged
                        out.append(
                            AnomalyScore(
                                rec.time, rec.domain, rec.site, rec.asset, rec.sensor, x, {}
                            )
                        )
                        continue
                    s.use(plan.build())  # its new normal, afresh
                    s.held_until = 0.0
                scores = {}
                hits = []
                for name, update, det, threshold, alert, pol, learner, counter in s.steps:
                    score = update(t, x)
                    if learner and det.drift is not None:  # a change accepted as normal
                        ref = plan.ref
                        out.append(
                            baseline_note(
                                ref.domain, ref.site, ref.asset, ref.sensor.id, name, det.drift
                            )
                        )
                    scores[name] = score
                    hit = score >= threshold
                    if hit:
                        hits.append(name)
                        counter.inc()
                    # an inactive alert below threshold stays as it is: skip the call
                    if (hit or alert.status) and pol is not None:
                        change = evaluate(alert, t, score, threshold, pol)
                        if change is not None:  # an event stream's value is its count
                            value = x if type(rec) is Reading else score
                            out.append(_alert(plan, name, change, alert, t, value, det))
                out.append(
                    AnomalyScore(
                        rec.time,
                        rec.domain,
                        rec.site,
                        rec.asset,
                        rec.sensor,
                        x,
                        scores,
                        tuple(hits),
                    )
                )
            except Exception as e:
                self.dead.append(internal_error("detect", e, rec.series, repr(rec)))
        DETECT_SECONDS.observe((perf_counter() - started) / len(records))
        return out

    def resume(self, t: float) -> None:
        """The flow was down until about event time ``t`` (the oldest time of the first batch
        after a restore). Readings between the snapshot and the crash were processed,
        acknowledged and forgotten with the process, so each gap detector takes the series as
        having reported normally until then (last time ``t - interval``): the flow's own
        downtime is not a device gap. A device that stays silent after ``t`` still scores."""
        for s in self.series.values():
            for i, (_, kind, params) in enumerate(s.plan.detectors):
                if kind == "gap":
                    state = s.detectors[i].to_state()
                    assumed = t - params["interval_s"]
                    if state and state[0] < assumed:
                        dets = list(s.detectors)
                        dets[i] = type(dets[i]).from_state(params, (assumed,))
                        s.use(dets)

    def to_state(self) -> dict:
        return {
            key: (
                {
                    (name, kind): d.to_state()
                    for (name, kind, _), d in zip(s.plan.detectors, s.detectors)
                },
                {name: a.to_state() for (name, _, _), a in zip(s.plan.detectors, s.alerts)},
            )
            + ((s.held_until,) if s.held_until else ())
            for key, s in self.series.items()
        }
