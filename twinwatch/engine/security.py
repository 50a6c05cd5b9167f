"""Security detection of one shard of assets (plain Python; wired by twinwatch.flows.security).

    shard = SecurityShard(config)
    shard.process(events) -> [AnomalyScore per finding, Alert state changes]

Per asset (site/asset): a drain3 template miner over its log lines
(twinwatch.detectors.logtemplates), the per-source-IP attack rules (twinwatch.detectors.security),
the video/IoT device events that alert by themselves (``security.device_events``) and one alert
state per (sensor, rule). A finding is written as an AnomalyScore (``scores={rule: value}``,
``hits=(rule,)``: the ``anomaly_score`` and ``anomaly`` measurements, like every other detector hit)
at the time of the event that caused it; it also drives the alert lifecycle (``for_s`` 0, resolved
after ``security.clear_s`` without findings), whose summary names the source IP and the detail (IPs
stay out of tags).

    records ─► SecurityEvents ─┐
    log source ─► logparse ────┴─► by asset shard ─► security (stateful_batch) ─► findings, alerts
"""

from __future__ import annotations

from time import perf_counter

import msgspec

from twinwatch.config import Config
from twinwatch.detectors.logtemplates import LogTemplates
from twinwatch.detectors.security import SecurityDetector
from twinwatch.engine.alerts import make_alert
from twinwatch.engine.lifecycle import AlertState, step
from twinwatch.metrics import ANOMALIES, DETECT_SECONDS
from twinwatch.schema import Alert, AlertStatus, AnomalyScore, SecurityEvent

__all__ = ["SecurityShard"]


class _Asset:
    __slots__ = ("templates", "detector", "alerts")

    def __init__(
        self,
        templates: LogTemplates,
        detector: SecurityDetector,
        alerts: dict[tuple[str, str], AlertState],
    ):
        self.templates = templates
        self.detector = detector
        self.alerts = alerts


class SecurityShard:
    """The security detectors and alert states of the assets routed to one shard."""

    def __init__(self, config: Config, state: dict | None = None):
        sec = config.security
        self.det_params = msgspec.structs.asdict(sec.detection)
        self.tpl_params = msgspec.structs.asdict(sec.templates)
        self.severities = {**sec.severities, **sec.device_events}
        self.device_events = sec.device_events
        self.clear_s = sec.clear_s
        # firewall and device sensors send structured records, not log lines: no template mining
        self.records = {
            (r.site, r.asset, r.sensor.id)
            for r in config.catalog.values()
            if r.sensor.kind in ("firewall", "device_event")
        }
        self.assets: dict[str, _Asset] = {}
        for key, (tpl, det, alerts) in (state or {}).items():
            self.assets[key] = _Asset(
                LogTemplates.from_state(self.tpl_params, tpl),
                SecurityDetector.from_state(self.det_params, det),
                {(s, r): AlertState.from_state(a) for s, r, a in alerts},
            )

    def _get(self, key: str) -> _Asset:
        a = self.assets.get(key)
        if a is None:
            a = self.assets[key] = _Asset(
                LogTemplates(**self.tpl_params), SecurityDetector(**self.det_params), {}
            )
        return a

    def process(self, events: list[SecurityEvent]) -> list[AnomalyScore | Alert]:
        out: list[AnomalyScore | Alert] = []
        started = perf_counter()
        for ev in events:
            a = self._get(f"{ev.site}/{ev.asset}")
            t = ev.time.timestamp()
            found = a.detector.update(t, ev.kind, ev.outcome, ev.user, ev.src_ip, ev.dst_port)
            if ev.message and (ev.site, ev.asset, ev.sensor) not in self.records:
                _, _, tpl = a.templates.update(t, f"{ev.sensor}: {ev.message}")
                found += [(rule, None, value, template) for rule, value, template in tpl]
            if ev.kind in self.device_events:
                found.append((ev.kind, None, 1.0, ev.message or ev.kind))
            hit_rules = set()
            for rule, ip, value, detail in found:
                hit_rules.add(rule)
                ANOMALIES.labels(ev.domain, rule).inc()
                out.append(
                    AnomalyScore(
                        ev.time,
                        ev.domain,
                        ev.site,
                        ev.asset,
                        ev.sensor,
                        value,
                        {rule: value},
                        (rule,),
                    )
                )
                state = a.alerts.setdefault((ev.sensor, rule), AlertState())
                change = step(state, t, True, 0.0, self.clear_s)
                if change is not None:
                    out.append(self._alert(ev, rule, change, state, t, value, ip, detail))
            for (sensor, rule), state in a.alerts.items():  # quiet rules resolve after clear_s
                if rule not in hit_rules and sensor == ev.sensor:
                    change = step(state, t, False, 0.0, self.clear_s)
                    if change is not None:
                        out.append(self._alert(ev, rule, change, state, t, 0.0, None, "quiet"))
        if events:
            DETECT_SECONDS.observe((perf_counter() - started) / len(events))
        return out

    def _alert(
        self,
        ev: SecurityEvent,
        rule: str,
        status: AlertStatus,
        state: AlertState,
        t: float,
        value: float,
        ip: str | None,
        detail: str,
    ) -> Alert:
        who = f" from {ip}" if ip else ""
        return make_alert(
            domain=ev.domain,
            site=ev.site,
            asset=ev.asset,
            sensor=ev.sensor,
            rule=rule,
            status=status,
            severity=self.severities.get(rule, "attention"),
            since=state.since,
            t=t,
            value=value,
            unit="event",
            summary=f"{rule} on {ev.site}/{ev.asset}/{ev.sensor}{who}: {detail}",
        )

    def to_state(self) -> dict:
        return {
            key: (
                a.templates.to_state(),
                a.detector.to_state(),
                tuple((s, r, st.to_state()) for (s, r), st in a.alerts.items()),
            )
            for key, a in self.assets.items()
        }
