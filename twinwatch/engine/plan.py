"""What the config says for each sensor, resolved and checked once: the engine's plan.

    plan = Plan(config)          raises ConfigError for anything the flow would trip on later
    plan[series] -> SeriesPlan   detectors (name, type, params), alert rules, severities, policies
    plan.thresholds() -> {detector name: hit threshold}
    plan.groups[key] -> GroupPlan   an asset group: members, alignment, detectors with their roles
    plan.member_of[series] -> ((group key, member index), ...)   routing of readings to groups

Building the plan is the last step of config validation. The kernel's ``Config`` checks types and
references; the plan builds every detector of every sensor once, formats every alert summary
template with sample values and derives every alert policy, so a bad detector parameter, an
unknown summary field or an impossible escalation fails ``twinwatch config`` and start-up, not the
first reading hours later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twinwatch import detectors
from twinwatch.config import AlertRule, AssetGroup, Config, ConfigError, SensorRef
from twinwatch.engine.lifecycle import Policy
from twinwatch.schema import SEVERITIES, Domain, Severity, series_key

__all__ = ["Plan", "SeriesPlan", "GroupPlan", "policy", "summary_fields", "SUMMARY_FIELDS"]

#: Parameters the plan fills in from the config for the detectors that take them.
_CITY_PARAMS = ("timezone", "holidays")

#: The placeholders an alert summary template may use.
SUMMARY_FIELDS = ("detector", "domain", "site", "asset", "sensor", "value", "unit")


def summary_fields(rule: str, ref: SensorRef, value: float) -> dict:
    return {
        "detector": rule,
        "domain": ref.domain,
        "site": ref.site,
        "asset": ref.asset,
        "sensor": ref.sensor.id,
        "value": value,
        "unit": ref.sensor.unit,
    }


def _check_summary(where: str, template: str) -> None:
    sample = dict.fromkeys(SUMMARY_FIELDS, "x") | {"value": 1.5}
    try:
        template.format(**sample)
        template.format(**sample | {"value": math.inf})
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise ConfigError(
            f"{where}.summary: bad template {template!r} ({type(e).__name__}: {e}); "
            f"known fields: {', '.join(SUMMARY_FIELDS)}"
        ) from None


def policy(rule: AlertRule, base_severity: Severity) -> tuple[Policy, tuple[Severity, ...]]:
    """The lifecycle policy of ``rule`` and its severity ladder (``ladder[state.level]``).

    Escalation levels come from ``rule.escalate`` ({severity: score}); only severities above the
    base one count (a rule never escalates downwards), ordered by score.
    """
    base = SEVERITIES.index(base_severity)
    steps = sorted(
        (score, sev) for sev, score in rule.escalate.items() if SEVERITIES.index(sev) > base
    )
    for (s1, v1), (s2, v2) in zip(steps, steps[1:]):
        if SEVERITIES.index(v2) <= SEVERITIES.index(v1):
            raise ConfigError(
                f"alert_rules[{rule.detector}].escalate: {v2} at score {s2} must "
                f"be above {v1} at score {s1}"
            )
    if rule.reset is not None and steps and rule.reset >= steps[0][0]:
        raise ConfigError(f"alert_rules[{rule.detector}].reset must be below its escalation scores")
    p = Policy(
        for_s=rule.for_s,
        clear_s=rule.clear_s,
        reset=rule.reset,
        flap_window_s=rule.flap_window_s,
        flap_max=rule.flap_max,
        levels=tuple(s for s, _ in steps),
    )
    return p, (base_severity, *(v for _, v in steps))


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    ref: SensorRef
    detectors: tuple[tuple[str, str, dict], ...]  # (name, registry type, params)
    rules: dict[str, AlertRule]  # detector name -> rule
    policies: dict[str, tuple[Policy, tuple[Severity, ...]]]  # name -> (Policy, severity ladder)

    def build(self) -> list:
        return [detectors.build(kind, **params) for _, kind, params in self.detectors]

    def thresholds(self) -> dict[str, float]:
        """{detector name: its hit threshold}: a score divided by it is 1 at a hit."""
        return {name: det.threshold for (name, _, _), det in zip(self.detectors, self.build())}


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """One asset group, resolved: the aligned vector's members and each detector's slice of it.

    ``key`` is ``domain/site/asset/group id`` (a series key: the group's scores and alerts carry
    ``sensor = group id``). ``detectors``: (name, registry type, params with ``counts``, member
    indices in the detector's role order).
    """

    key: str
    domain: Domain
    site: str
    asset: str
    id: str
    members: tuple[str, ...]  # sensor ids, vector order
    units: tuple[str, ...]
    intervals: tuple[float, ...]
    tick_s: float
    tolerances: tuple[float, ...]  # per member: max age of its value at a tick
    lateness_s: float
    detectors: tuple[tuple[str, str, dict, tuple[int, ...]], ...]
    rules: dict[str, AlertRule]
    policies: dict[str, tuple[Policy, tuple[Severity, ...]]]

    def build(self) -> list:
        return [detectors.VECTORS[kind](**params) for _, kind, params, _ in self.detectors]


class Plan:
    """Per-sensor detector and alert settings, resolved from the config once and checked."""

    def __init__(self, config: Config):
        self.config = config
        known = {**detectors.REGISTRY, **detectors.VECTORS}  # per sensor, per asset group
        for name, spec in config.detectors.items():
            if spec.type not in known:
                raise ConfigError(
                    f"detectors.{name}.type: unknown detector type {spec.type!r}; "
                    f"known: {', '.join(sorted(known))}"
                )
        for i, rule in enumerate(config.alert_rules):
            _check_summary(f"alert_rules[{i}] ({rule.detector})", rule.summary)
        self._plans: dict[str, SeriesPlan] = {}
        for ref in config.catalog.values():
            self._plans[series_key(ref.domain, ref.site, ref.asset, ref.sensor.id)] = self._plan(
                ref
            )
        self.groups: dict[str, GroupPlan] = {}
        member_of: dict[str, list[tuple[str, int]]] = {}
        for i, group in enumerate(config.asset_groups):
            gp = self._group(f"asset_groups[{i}] ({group.id})", group)
            self.groups[gp.key] = gp
            for j, sensor in enumerate(gp.members):
                key = series_key(gp.domain, gp.site, gp.asset, sensor)
                member_of.setdefault(key, []).append((gp.key, j))
        self.member_of = {k: tuple(v) for k, v in member_of.items()}
        from twinwatch.engine.logparse import LogParser  # it imports the parse module

        LogParser(config)  # security.sources: every declared format and time zone, at start

    def _city_params(self, cls: type) -> dict:
        import inspect

        accepted = inspect.signature(cls).parameters
        city = self.config.city
        values = {"timezone": city.timezone, "holidays": list(city.holidays)}
        return {k: values[k] for k in _CITY_PARAMS if k in accepted}

    def _group(self, where: str, group: AssetGroup) -> GroupPlan:
        site = next(s for s in self.config.sites if s.id == group.site)
        asset = next(a for a in site.assets if a.id == group.asset)
        sensors = {s.id: s for s in asset.sensors}
        members = tuple(group.members)
        index = {m: j for j, m in enumerate(members)}
        dets, rules, policies = [], {}, {}
        for name in group.detectors:
            spec = self.config.detectors[name]
            cls = detectors.VECTORS.get(spec.type)
            if cls is None:
                raise ConfigError(
                    f"{where}.detectors.{name}: {spec.type!r} is a per-sensor detector; asset "
                    f"groups take the vector detectors: {', '.join(sorted(detectors.VECTORS))}"
                )
            roles, role_defs = group.roles(name), detectors.roles_of(cls)
            known = [r.name for r in role_defs]
            described = ", ".join(f"{r.name} ({r.arity()})" for r in role_defs)
            unknown = set(roles) - set(known)
            if unknown:
                raise ConfigError(
                    f"{where}.detectors.{name}: unknown role(s) {', '.join(sorted(unknown))} "
                    f"for {spec.type}; roles: {described}"
                )
            used = [sid for r in known for sid in roles.get(r, [])]
            if len(set(used)) != len(used):
                raise ConfigError(f"{where}.detectors.{name}: a sensor fills two roles")
            params = {**self._city_params(cls), **spec.params}
            if hasattr(cls, "ROLES"):
                params["counts"] = {r: len(roles.get(r, [])) for r in known}
            else:  # a plain vector detector: n interchangeable sensors
                params["n"] = len(used)
            try:
                cls(**params)
            except (TypeError, ValueError) as e:
                raise ConfigError(
                    f"detectors.{name}.params (used by {where}): {e}; roles: {described}"
                ) from None
            dets.append((name, spec.type, params, tuple(index[sid] for sid in used)))
            rule = self.config.rule_for(site.domain, name)
            if rule is not None:
                rules[name] = rule
                policies[name] = policy(rule, rule.severity)
        intervals = tuple(sensors[m].interval_s for m in members)
        tick = group.tick_s or max(intervals)
        return GroupPlan(
            key=series_key(site.domain, site.id, asset.id, group.id),
            domain=site.domain,
            site=site.id,
            asset=asset.id,
            id=group.id,
            members=members,
            units=tuple(sensors[m].unit for m in members),
            intervals=intervals,
            tick_s=tick,
            tolerances=tuple(group.tolerance_s or 2.5 * i for i in intervals),
            lateness_s=tick / 2 if group.lateness_s is None else group.lateness_s,
            detectors=tuple(dets),
            rules=rules,
            policies=policies,
        )

    def _plan(self, ref: SensorRef) -> SeriesPlan:
        dets, rules, policies = [], {}, {}
        for name in self.config.detectors_for(ref):
            spec = self.config.detectors[name]
            if spec.type in detectors.VECTORS:
                raise ConfigError(
                    f"sites.{ref.site}.{ref.asset}.{ref.sensor.id}.detectors: {name!r} is an "
                    f"asset-group (vector) detector ({spec.type}); use it under `asset_groups`"
                )
            params = dict(spec.params)
            if spec.type == "limits":
                if ref.sensor.limits is None:
                    continue  # nothing to check against
                params.update(low=ref.sensor.limits.low, high=ref.sensor.limits.high)
            elif spec.type == "gap":
                params["interval_s"] = ref.sensor.interval_s
            params = {**self._city_params(detectors.REGISTRY[spec.type]), **params}
            try:
                detectors.build(spec.type, **params)
            except ValueError as e:
                raise ConfigError(
                    f"detectors.{name}.params (used by {ref.site}/{ref.asset}/{ref.sensor.id}): {e}"
                ) from None
            dets.append((name, spec.type, params))
            rule = self.config.rule_for(ref.domain, name)
            if rule is not None:
                rules[name] = rule
                limits = ref.sensor.limits
                base = limits.severity if spec.type == "limits" and limits else rule.severity
                policies[name] = policy(rule, base)
        return SeriesPlan(ref, tuple(dets), rules, policies)

    def thresholds(self) -> dict[str, float]:
        """{detector name: hit threshold} over every sensor (for the dashboards' score panels).
        A named detector has one threshold: only limits' bounds and gap's interval vary per
        sensor, and neither is a threshold."""
        out: dict[str, float] = {}
        for key, sp in self._plans.items():
            for name, thr in sp.thresholds().items():
                if out.setdefault(name, thr) != thr:
                    raise ConfigError(
                        f"detectors.{name}: threshold {thr} on {key} but {out[name]} elsewhere"
                    )
        return out

    def __getitem__(self, series: str) -> SeriesPlan:
        return self._plans[series]

    def __contains__(self, series: str) -> bool:
        return series in self._plans
