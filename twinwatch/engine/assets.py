"""Asset-group detection for a shard of groups: align, detect, alert, explain. No Bytewax.

    shard = AssetShard(plan)
    outputs = shard.process(readings)    # AnomalyScore per group tick + Alert state changes
    member_readings(records, plan) -> the readings that feed some group

The flow routes each member reading to its asset's shard (``alerts.by_shard``: the groups of an
asset and their member series are routed by the asset, ``alerts.affinity``) and
moves lists of readings, as for per-series detection (``shard``). Per group: an ``Aligner`` turns
the members' readings into ticks, each group detector scores its slice of the tick, the alert
lifecycle runs per (group, detector), and every alert state change carries the detector's
explanation (``explain``). A group tick's score record has ``sensor = group id`` and no value.

Snapshots are keyed by name, never by position (as ``shard``): ``{group key: (aligner state,
{(detector name, type): state}, {detector name: alert state})}``; a changed config restores what
still matches and drops the rest with one log line. The aligner's state is kept only while the
group's members are unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from twinwatch import detectors
from twinwatch.engine.alerts import make_alert
from twinwatch.engine.align import Aligner
from twinwatch.engine.deadletter import internal_error
from twinwatch.engine.explain import baseline_note, group_explanation
from twinwatch.engine.lifecycle import AlertState, adopt, evaluate
from twinwatch.engine.plan import GroupPlan, Plan
from twinwatch.metrics import ANOMALIES, DETECT_SECONDS
from twinwatch.schema import Alert, Annotation, AnomalyScore, DeadLetter, Reading

__all__ = ["AssetShard", "member_readings"]

log = logging.getLogger(__name__)


def member_readings(records: list, plan: Plan) -> list[Reading | Annotation]:
    """The readings (and maintenance annotations) of a batch that some asset group uses; the
    rest never reach the step."""
    member_of = plan.member_of
    return [r for r in records if type(r) in _MEMBER_TYPES and r.series in member_of]


_MEMBER_TYPES = (Reading, Annotation)


class _Group:
    __slots__ = ("plan", "aligner", "detectors", "alerts", "slices", "held")

    def __init__(
        self,
        gp: GroupPlan,
        aligner: Aligner,
        dets: list,
        alerts: list[AlertState],
        held: dict[int, float] | None = None,
    ):
        self.plan = gp
        self.aligner = aligner
        self.detectors = dets
        self.alerts = alerts
        self.slices = [idx for _, _, _, idx in gp.detectors]
        self.held = held or {}  # member in maintenance -> end of the window


class AssetShard:
    """The aligners, group detectors and alert states of the asset groups of one shard."""

    def __init__(
        self,
        plan: Plan,
        state: dict | None = None,
        last_told: dict[tuple[str, str], Alert] | None = None,
    ):
        """``last_told`` ({(group key, rule): Alert}, the delivery store's newest states): the
        restored alert states agree with what on-call was last told (as ``Shard``)."""
        self.plan = plan
        self.groups: dict[str, _Group] = {}
        self._adopt = last_told or {}
        self.dead: list[DeadLetter] = []  # internal_error dead letters, taken by the caller
        dropped: list[str] = []
        for key, (align_state, det_states, alert_states, *held) in (state or {}).items():
            gp = plan.groups.get(key)
            if gp is None:
                dropped.append(key)
                continue
            dets = []
            for name, kind, params, _ in gp.detectors:
                saved = det_states.get((name, kind))
                cls: Any = detectors.VECTORS[kind]
                try:
                    dets.append(cls(**params) if saved is None else cls.from_state(params, saved))
                except (TypeError, ValueError):  # its roles changed: the saved shape is stale
                    dropped.append(f"{key}:{name}")
                    dets.append(cls(**params))
            alerts = [
                AlertState.from_state(alert_states[name]) if name in alert_states else AlertState()
                for name, _, _, _ in gp.detectors
            ]
            gone = set(det_states) - {(n, k) for n, k, _, _ in gp.detectors}
            dropped.extend(f"{key}:{n}" for n, _ in sorted(gone))
            kept = {m: u for m, u in (held[0] if held else {}).items() if m < len(gp.members)}
            self.groups[key] = self._take_back(
                key, _Group(gp, self._aligner(gp, align_state), dets, alerts, kept)
            )
        if dropped:
            log.warning(
                "restore: dropped the saved state of %d asset groups/detectors no longer in "
                "the config: %s",
                len(dropped),
                ", ".join(dropped[:10]) + (", ..." if len(dropped) > 10 else ""),
            )

    @staticmethod
    def _aligner(gp: GroupPlan, state: tuple | None = None) -> Aligner:
        return Aligner(gp.tick_s, gp.tolerances, gp.lateness_s, state)

    def _get(self, key: str) -> _Group:
        g = self.groups.get(key)
        if g is None:
            gp = self.plan.groups[key]
            g = self.groups[key] = self._take_back(
                key, _Group(gp, self._aligner(gp), gp.build(), [AlertState() for _ in gp.detectors])
            )
        return g

    def _take_back(self, key: str, g: _Group) -> _Group:
        """Agree with the newest delivered state of each of the group's alerts (a restart)."""
        if self._adopt:
            for (name, _, _, _), state in zip(g.plan.detectors, g.alerts):
                a = self._adopt.get((key, name))
                if a is not None and name in g.plan.policies:
                    ladder = g.plan.policies[name][1]
                    level = ladder.index(a.severity) if a.severity in ladder else 0
                    adopt(state, a.status, a.starts_at.timestamp(), a.at.timestamp(), level)
        return g

    def process(
        self, readings: Sequence[Reading | Annotation]
    ) -> list[AnomalyScore | Alert | Annotation]:
        out: list[AnomalyScore | Alert | Annotation] = []
        started = perf_counter()
        member_of = self.plan.member_of
        for r in sorted(readings, key=lambda r: r.time):
            try:
                t = r.time.timestamp()
                for key, member in member_of.get(r.series, ()):
                    g = self._get(key)
                    if type(r) is Annotation:  # maintenance: the member is out until it ends
                        g.held[member] = max(g.held.get(member, 0.0), r.until.timestamp())
                        continue
                    for tick, vec in g.aligner.push(t, member, r.value):
                        self._tick(g, tick, vec, out)
            except Exception as e:  # a bug on one record must not stop the flow
                self.dead.append(internal_error("assets", e, r.series, repr(r)))
        if readings:
            DETECT_SECONDS.observe((perf_counter() - started) / len(readings))
        return out

    def _tick(self, g: _Group, t: float, vec: tuple[float, ...], out: list) -> None:
        gp = g.plan
        if g.held:
            vec = self._release(g, t, vec)
        scores = {}
        hits = []
        for (name, kind, _, _), det, idx, alert in zip(
            gp.detectors, g.detectors, g.slices, g.alerts
        ):
            score = det.update(t, [vec[i] for i in idx])
            if det.drift is not None:  # the learning policy accepted a change as normal
                out.append(baseline_note(gp.domain, gp.site, gp.asset, gp.id, name, det.drift))
            scores[name] = score
            if score >= det.threshold:
                hits.append(name)
                ANOMALIES.labels(gp.domain, name).inc()
            pol = gp.policies.get(name)
            if pol is not None:
                change = evaluate(alert, t, score, det.threshold, pol[0])
                if change is not None:
                    out.append(self._alert(gp, name, kind, det, change, alert, t, score))
        out.append(
            AnomalyScore(
                datetime.fromtimestamp(t, UTC),
                gp.domain,
                gp.site,
                gp.asset,
                gp.id,
                math.nan,
                scores,
                tuple(hits),
            )
        )

    @staticmethod
    def _alert(
        gp: GroupPlan, name: str, kind: str, det, status, state, t: float, score: float
    ) -> Alert:
        pol, ladder = gp.policies[name]
        unit, why = group_explanation(gp, name, kind, det, score)
        value = why["observed"] if why["observed"] is not None else math.nan
        fields = {
            "detector": name,
            "domain": gp.domain,
            "site": gp.site,
            "asset": gp.asset,
            "sensor": gp.id,
            "value": value,
            "unit": unit,
        }
        return make_alert(
            domain=gp.domain,
            site=gp.site,
            asset=gp.asset,
            sensor=gp.id,
            rule=name,
            status=status,
            severity=ladder[state.level],
            since=state.since,
            t=t,
            value=value,
            unit=unit,
            summary=gp.rules[name].summary.format(**fields),
            **why,
        )

    @staticmethod
    def _release(g: _Group, t: float, vec: tuple[float, ...]) -> tuple[float, ...]:
        """Members in maintenance read as missing; when a window ends, every detector that
        uses the member re-learns it (a replaced, re-zeroed sensor: its new normal)."""
        for member, until in list(g.held.items()):
            if t >= until:
                del g.held[member]
                for i, (det, idx) in enumerate(zip(g.detectors, g.slices)):
                    if member not in idx:
                        continue
                    if hasattr(det, "rebaseline"):  # a detector with roles re-learns the member
                        det.rebaseline(idx.index(member))
                    else:  # a plain vector detector learns its reference again
                        g.detectors[i] = type(det)(**det.params())
        if not g.held:
            return vec
        return tuple(math.nan if i in g.held else v for i, v in enumerate(vec))

    def to_state(self) -> dict:
        return {
            key: (
                g.aligner.to_state(),
                {
                    (name, kind): d.to_state()
                    for (name, kind, _, _), d in zip(g.plan.detectors, g.detectors)
                },
                {name: a.to_state() for (name, _, _, _), a in zip(g.plan.detectors, g.alerts)},
            )
            + ((dict(g.held),) if g.held else ())
            for key, g in self.groups.items()
        }
