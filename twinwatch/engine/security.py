"""Security detection of one shard of assets (plain Python; wired by twinwatch.flows.security).

    shard = SecurityShard(config)
    shard.process(events) -> [AnomalyScore, SecurityFinding per finding, Alert state changes]
    learn(config, lines) -> {asset: learned templates}       ``twinwatch logs --learn``

Per asset (site/asset): a drain3 template miner with per-source baselines over its log lines
(twinwatch.detectors.logtemplates: rare templates, template rates, severity spikes), the attack
rules per source IP, per user and per asset (twinwatch.detectors.security), the video/IoT device
events that alert by themselves (``security.device_events``) and one alert state per (sensor,
rule). A finding is written three ways at the time of the event that caused it:

- an AnomalyScore (``scores={rule: count}``, ``hits=(rule,)``: the ``anomaly_score`` and
  ``anomaly`` measurements, like every other detector hit);
- a SecurityFinding (measurement ``security_finding``): the real count, the window, the key IP,
  the offending sources and users, all fields;
- the alert lifecycle (``for_s`` 0, resolved after ``security.clear_s`` without findings): the
  alert's value is the count, its summary names it with the window and the key IP, and its
  details (Alertmanager annotations, InfluxDB fields) carry count, window, sources and users.

    records ─► SecurityEvents ─┐
    log source ─► logparse ────┴─► by asset shard ─► security (stateful_batch) ─► findings, alerts
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from time import perf_counter

import msgspec

from twinwatch.config import Config
from twinwatch.detectors.logtemplates import LogTemplates
from twinwatch.detectors.security import Finding, SecurityDetector
from twinwatch.engine.alerts import make_alert
from twinwatch.engine.lifecycle import AlertState, adopt, step
from twinwatch.engine.logformats import SEVERITY_NAMES
from twinwatch.metrics import ANOMALIES, DETECT_SECONDS
from twinwatch.schema import Alert, AlertStatus, AnomalyScore, SecurityEvent, SecurityFinding

__all__ = ["SecurityShard", "learn", "save_learned", "load_learned"]

log = logging.getLogger(__name__)
_SEVERITY = {name: i for i, name in enumerate(SEVERITY_NAMES)}


def load_learned(path: str | None) -> dict:
    """The learned templates per asset saved by ``twinwatch logs --learn`` ({} if none)."""
    if not path or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("learned templates in %s not loaded: %s", path, e)
        return {}
    return data.get("assets", {}) if isinstance(data, dict) else {}


def save_learned(path: str, assets: dict) -> None:
    tmp = Path(path).with_suffix(".tmp")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps({"version": 1, "assets": assets}), encoding="utf-8")
    tmp.replace(path)


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

    def __init__(
        self,
        config: Config,
        state: dict | None = None,
        last_told: dict[tuple[str, str], Alert] | None = None,
    ):
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
        self.learned = load_learned(sec.templates.state_path)  # twinwatch logs --learn
        self.assets: dict[str, _Asset] = {}
        for key, (tpl, det, alerts) in (state or {}).items():
            self.assets[key] = _Asset(
                LogTemplates.from_state(self.tpl_params, tpl),
                SecurityDetector.from_state(self.det_params, det),
                {(s, r): AlertState.from_state(a) for s, r, a in alerts},
            )
        # After a restart: agree with what on-call was last told (lifecycle.adopt), per asset.
        self._adopt: dict[str, list[Alert]] = {}
        for a in (last_told or {}).values():
            if a.domain == "security" and a.rule in self.severities:
                self._adopt.setdefault(f"{a.site}/{a.asset}", []).append(a)
        for key, asset in self.assets.items():
            self._take_back(key, asset)

    def _get(self, key: str) -> _Asset:
        a = self.assets.get(key)
        if a is None:
            templates = LogTemplates(**self.tpl_params)
            if key in self.learned:
                templates.load(self.learned[key])
            a = self.assets[key] = _Asset(templates, SecurityDetector(**self.det_params), {})
            self._take_back(key, a)
        return a

    def _take_back(self, key: str, asset: _Asset) -> None:
        for a in self._adopt.pop(key, ()):
            state = asset.alerts.setdefault((a.sensor, a.rule), AlertState())
            adopt(state, a.status, a.starts_at.timestamp(), a.at.timestamp())

    def process(
        self,
        events: list[SecurityEvent],
        errors: list[tuple[SecurityEvent, Exception]] | None = None,
    ) -> list[AnomalyScore | SecurityFinding | Alert]:
        """Findings and alert changes of a batch of events. With ``errors``, a bug on one event
        is appended there as (event, exception) and the others go on; without, it raises."""
        out: list[AnomalyScore | SecurityFinding | Alert] = []
        started = perf_counter()
        for ev in events:
            if errors is None:
                self._event(ev, out)
                continue
            mark = len(out)
            try:
                self._event(ev, out)
            except Exception as e:
                del out[mark:]  # nothing half-made of this event
                errors.append((ev, e))
        if events:
            DETECT_SECONDS.observe((perf_counter() - started) / len(events))
        return out

    def _event(self, ev: SecurityEvent, out: list) -> None:
        a = self._get(f"{ev.site}/{ev.asset}")
        t = ev.time.timestamp()
        found = a.detector.update(t, ev.kind, ev.outcome, ev.user, ev.src_ip, ev.dst_port)
        if ev.message and (ev.site, ev.asset, ev.sensor) not in self.records:
            sev = _SEVERITY.get(ev.severity) if ev.severity else None
            _, _, tpl = a.templates.update(t, f"{ev.sensor}: {ev.message}", sev, source=ev.sensor)
            found += [Finding(rule, None, n, w, detail) for rule, n, w, detail in tpl]
        if ev.kind in self.device_events:
            found.append(Finding(ev.kind, None, 1.0, 0.0, ev.message or ev.kind))
        hit_rules = set()
        for f in found:
            hit_rules.add(f.rule)
            ANOMALIES.labels(ev.domain, f.rule).inc()
            out.append(
                AnomalyScore(
                    ev.time,
                    ev.domain,
                    ev.site,
                    ev.asset,
                    ev.sensor,
                    f.count,
                    {f.rule: f.count},
                    (f.rule,),
                )
            )
            out.append(
                SecurityFinding(
                    ev.time,
                    ev.site,
                    ev.asset,
                    ev.sensor,
                    f.rule,
                    f.count,
                    f.window_s,
                    f.src_ip,
                    f.sources,
                    f.users,
                    f.detail[:1024],
                    ev.domain,
                )
            )
            state = a.alerts.setdefault((ev.sensor, f.rule), AlertState())
            change = step(state, t, True, 0.0, self.clear_s)
            if change is not None:
                out.append(self._alert(ev, f.rule, change, state, t, f))
        for (sensor, rule), state in a.alerts.items():  # quiet rules resolve after clear_s
            if state.status and rule not in hit_rules and sensor == ev.sensor:
                change = step(state, t, False, 0.0, self.clear_s)
                if change is not None:
                    out.append(self._alert(ev, rule, change, state, t, None))

    def _alert(
        self,
        ev: SecurityEvent,
        rule: str,
        status: AlertStatus,
        state: AlertState,
        t: float,
        f: Finding | None,
    ) -> Alert:
        where = f"{ev.site}/{ev.asset}/{ev.sensor}"
        if f is None:
            summary, value, details = f"{rule} on {where}: quiet for {self.clear_s:g} s", 0.0, {}
        else:
            summary, value = f"{rule} on {where}: {f.detail}", f.count
            details = {"count": f"{f.count:g}", "window_s": f"{f.window_s:g}"}
            if f.src_ip:
                details["src_ip"] = f.src_ip
            if f.sources:
                details["sources"] = ", ".join(f.sources)
            if f.users:
                details["users"] = ", ".join(u[:64] for u in f.users)
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
            summary=summary,
            details=details,
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


def learn(config: Config, batches: Iterable[list[SecurityEvent]]) -> dict:
    """Pre-train the template miners of every asset from archived events (no findings):
    {asset: LogTemplates.export()}, the content of ``security.templates.state_path``."""
    params = msgspec.structs.asdict(config.security.templates)  # findings are not kept
    miners: dict[str, LogTemplates] = {}
    for events in batches:
        for ev in events:
            key = f"{ev.site}/{ev.asset}"
            lt = miners.get(key)
            if lt is None:
                lt = miners[key] = LogTemplates(**params)
            sev = _SEVERITY.get(ev.severity) if ev.severity else None
            lt.update(ev.time.timestamp(), f"{ev.sensor}: {ev.message}", sev, source=ev.sensor)
    return {key: lt.export() for key, lt in miners.items()}
