"""Detection and alerting for a shard of series: plain Python, testable without Bytewax.

    shard = Shard(plan)
    outputs = shard.process(records)      # AnomalyScore per record + Alert state changes

The flow routes every series to one of ``flow.shards`` shards and moves *lists* of records
between steps; Bytewax's per-item cost (~1-3 µs a step) would otherwise exceed the detectors' own
cost. A shard's state is a dict of series -> (detector states, alert states); ``to_state()`` is
plain tuples, cheap to snapshot every epoch.

``Plan`` holds what the config says for each sensor (which detectors with which parameters, which
alert rule), computed once per sensor, not per record.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from time import perf_counter

import detectors
from alerting.lifecycle import AlertState, Policy, evaluate
from alerting.rules import policy
from twinwatch.config import AlertRule, Config, SensorRef
from twinwatch.metrics import ALERTS, ANOMALIES, DETECT_SECONDS
from twinwatch.schema import Alert, AnomalyScore, Reading, SecurityEvent, fingerprint

__all__ = ["Plan", "SeriesPlan", "Shard", "shard_of", "event_weight", "make_alert"]

# Security events are scored as event streams: weight 1 for a failure/deny, 0 otherwise.
_EVENT_WEIGHT = {"failure": 1.0, "deny": 1.0}


def event_weight(event: SecurityEvent) -> float:
    return _EVENT_WEIGHT.get(event.outcome, 0.0)


def shard_of(series: str, shards: int) -> str:
    """Stable shard key of a series (crc32, not hash(): the same in every process)."""
    return str(zlib.crc32(series.encode()) % shards)


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    ref: SensorRef
    detectors: tuple[tuple[str, str, dict], ...]  # (name, registry type, params)
    rules: dict[str, AlertRule]  # detector name -> rule
    severities: dict[str, str]  # detector name -> severity (limits carry their own)
    policies: dict[str, tuple[Policy, tuple[str, ...]]] = None  # name -> (Policy, severity ladder)

    def build(self) -> list:
        return [detectors.build(kind, **params) for _, kind, params in self.detectors]


class Plan:
    """Per-sensor detector and alert settings, resolved from the config once."""

    def __init__(self, config: Config):
        self.config = config
        self._plans: dict[str, SeriesPlan] = {}
        for (domain, site, asset, sensor), ref in config.catalog.items():
            self._plans[f"{domain}/{site}/{asset}/{sensor}"] = self._plan(ref)

    def _plan(self, ref: SensorRef) -> SeriesPlan:
        dets, rules, severities = [], {}, {}
        for name in self.config.detectors_for(ref):
            spec = self.config.detectors[name]
            params = dict(spec.params)
            if spec.type == "limits":
                if ref.sensor.limits is None:
                    continue  # nothing to check against
                params.update(low=ref.sensor.limits.low, high=ref.sensor.limits.high)
            elif spec.type == "gap":
                params["interval_s"] = ref.sensor.interval_s
            dets.append((name, spec.type, params))
            rule = self.config.rule_for(ref.domain, name)
            if rule is not None:
                rules[name] = rule
                limits = ref.sensor.limits
                severities[name] = (limits.severity if spec.type == "limits" and limits
                                    else rule.severity)
        policies = {name: policy(rule, severities[name]) for name, rule in rules.items()}
        return SeriesPlan(ref, tuple(dets), rules, severities, policies)

    def __getitem__(self, series: str) -> SeriesPlan:
        return self._plans[series]


def make_alert(plan: SeriesPlan, rule_name: str, status: str, state: AlertState, t: float,
               value: float) -> Alert:
    ref = plan.ref
    severity = (plan.policies[rule_name][1][state.level] if plan.policies
                else plan.severities[rule_name])
    labels = {"domain": ref.domain, "site": ref.site, "asset": ref.asset,
              "sensor": ref.sensor.id, "rule": rule_name}
    at = datetime.fromtimestamp(t, timezone.utc)
    summary = plan.rules[rule_name].summary.format(
        detector=rule_name, site=ref.site, asset=ref.asset, sensor=ref.sensor.id, value=value,
        unit=ref.sensor.unit, domain=ref.domain)
    return Alert(
        fingerprint=fingerprint(labels), status=status, severity=severity, domain=ref.domain,
        site=ref.site, asset=ref.asset, sensor=ref.sensor.id, rule=rule_name,
        starts_at=datetime.fromtimestamp(state.since, timezone.utc), at=at, value=value,
        unit=ref.sensor.unit, summary=summary, ends_at=at if status == "resolved" else None)


class _Series:
    __slots__ = ("plan", "detectors", "alerts")

    def __init__(self, plan: SeriesPlan, dets: list, alerts: list[AlertState]):
        self.plan = plan
        self.detectors = dets
        self.alerts = alerts


class Shard:
    """The detectors and alert states of the series routed to one shard."""

    def __init__(self, plan: Plan, state: dict | None = None):
        self.plan = plan
        self.series: dict[str, _Series] = {}
        for key, (det_states, alert_states) in (state or {}).items():
            sp = plan[key]
            dets = [detectors.REGISTRY[kind].from_state(params, s)
                    for (_, kind, params), s in zip(sp.detectors, det_states)]
            self.series[key] = _Series(sp, dets, [AlertState.from_state(a) for a in alert_states])

    def _get(self, key: str) -> _Series:
        s = self.series.get(key)
        if s is None:
            sp = self.plan[key]
            s = self.series[key] = _Series(sp, sp.build(), [AlertState() for _ in sp.detectors])
        return s

    def process(self, records: list[Reading | SecurityEvent]) -> list[AnomalyScore | Alert]:
        out: list[AnomalyScore | Alert] = []
        started = perf_counter()
        for rec in records:
            s = self._get(rec.series)
            plan = s.plan
            t = rec.time.timestamp()
            x = rec.value if type(rec) is Reading else event_weight(rec)
            scores = {}
            hits = []
            for (name, _, _), det, alert in zip(plan.detectors, s.detectors, s.alerts):
                score = det.update(t, x)
                scores[name] = score
                hit = score >= det.threshold
                if hit:
                    hits.append(name)
                    ANOMALIES.labels(plan.ref.domain, name).inc()
                pol = plan.policies.get(name)
                if pol is not None:
                    change = evaluate(alert, t, score, det.threshold, pol[0])
                    if change is not None:
                        a = make_alert(plan, name, change, alert, t, x)
                        ALERTS.labels(a.domain, a.severity, a.status).inc()
                        out.append(a)
            out.append(AnomalyScore(rec.time, rec.domain, rec.site, rec.asset, rec.sensor, x,
                                    scores, tuple(hits)))
        if records:
            DETECT_SECONDS.observe((perf_counter() - started) / len(records))
        return out

    def to_state(self) -> dict:
        return {key: (tuple(d.to_state() for d in s.detectors),
                      tuple(a.to_state() for a in s.alerts))
                for key, s in self.series.items()}
