"""Security detection of one shard of assets, and its place in the Bytewax flow.

    shard = SecurityShard(config)
    shard.process(events) -> [AnomalyScore per finding, Alert state changes]

Per asset (site/asset): a drain3 template miner over its log lines (detectors.logtemplates), the
per-source-IP attack rules (detectors.security), the video/IoT device events that alert by
themselves (``security.device_events``) and one alert state per (sensor, rule). A finding is
written as an AnomalyScore (``scores={rule: value}``, ``hits=(rule,)``: the ``anomaly_score`` and
``anomaly`` measurements, like every other detector hit) at the time of the event that caused it;
it also drives the alert lifecycle (``for_s`` 0, resolved after ``security.clear_s`` without
findings), whose summary names the source IP and the detail (IPs stay out of tags).

    records ─► SecurityEvents ─┐
    log source ─► logparse ────┴─► by asset shard ─► security (stateful_batch) ─► findings, alerts
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from datetime import datetime, timezone
from time import perf_counter

import bytewax.operators as op
import msgspec

from alerting.lifecycle import AlertState, step
from detectors.logtemplates import LogTemplates
from detectors.security import SecurityDetector
from flows.logparse import LogParser
from twinwatch.config import Config
from twinwatch.metrics import ALERTS, ANOMALIES, DETECT_SECONDS
from twinwatch.schema import Alert, AnomalyScore, SecurityEvent, fingerprint

__all__ = ["SecurityShard", "security_branch", "log_input", "build_log_flow"]


class _Asset:
    __slots__ = ("templates", "detector", "alerts")

    def __init__(self, templates: LogTemplates, detector: SecurityDetector,
                 alerts: dict[tuple[str, str], AlertState]):
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
        self.records = {(r.site, r.asset, r.sensor.id) for r in config.catalog.values()
                        if r.sensor.kind in ("firewall", "device_event")}
        self.assets: dict[str, _Asset] = {}
        for key, (tpl, det, alerts) in (state or {}).items():
            self.assets[key] = _Asset(
                LogTemplates.from_state(self.tpl_params, tpl),
                SecurityDetector.from_state(self.det_params, det),
                {(s, r): AlertState.from_state(a) for s, r, a in alerts})

    def _get(self, key: str) -> _Asset:
        a = self.assets.get(key)
        if a is None:
            a = self.assets[key] = _Asset(LogTemplates(**self.tpl_params),
                                          SecurityDetector(**self.det_params), {})
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
                out.append(AnomalyScore(ev.time, ev.domain, ev.site, ev.asset, ev.sensor, value,
                                        {rule: value}, (rule,)))
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

    def _alert(self, ev: SecurityEvent, rule: str, status: str, state: AlertState, t: float,
               value: float, ip: str | None, detail: str) -> Alert:
        labels = {"domain": ev.domain, "site": ev.site, "asset": ev.asset, "sensor": ev.sensor,
                  "rule": rule}
        at = datetime.fromtimestamp(t, timezone.utc)
        who = f" from {ip}" if ip else ""
        severity = self.severities.get(rule, "attention")
        ALERTS.labels(ev.domain, severity, status).inc()
        return Alert(
            fingerprint=fingerprint(labels), status=status, severity=severity, domain=ev.domain,
            site=ev.site, asset=ev.asset, sensor=ev.sensor, rule=rule,
            starts_at=datetime.fromtimestamp(state.since, timezone.utc), at=at, value=value,
            unit="event", summary=f"{rule} on {ev.site}/{ev.asset}/{ev.sensor}{who}: {detail}"[:512],
            ends_at=at if status == "resolved" else None)

    def to_state(self) -> dict:
        return {key: (a.templates.to_state(), a.detector.to_state(),
                      tuple((s, r, st.to_state()) for (s, r), st in a.alerts.items()))
                for key, a in self.assets.items()}


# --- Bytewax wiring -----------------------------------------------------------------------------

class _SecurityLogic(op.StatefulBatchLogic):
    def __init__(self, config: Config, state: dict | None):
        self.shard = SecurityShard(config, state)

    def on_batch(self, batches: list[list]) -> tuple[list, bool]:
        events = batches[0] if len(batches) == 1 else [e for b in batches for e in b]
        out = self.shard.process(events)
        return ([out] if out else []), op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict:
        return self.shard.to_state()


def _by_asset(events: list, shards: int) -> list[tuple[str, list]]:
    groups: dict[str, list] = defaultdict(list)
    for e in events:
        groups[str(zlib.crc32(f"{e.site}/{e.asset}".encode()) % shards)].append(e)
    return list(groups.items())


def security_branch(config: Config, events):
    """Security events (batches) -> batches of findings and alerts."""
    shards = config.flow.shards
    keyed = op.flat_map("security_shard", events, lambda evs: _by_asset(evs, shards))
    out = op.stateful_batch("security", keyed, lambda s: _SecurityLogic(config, s))
    return op.map("unkey_security", out, lambda kv: kv[1])


def log_input(flow, config: Config, log_source):
    """A log-line source (syslog, tail) -> (batches of SecurityEvents, batches of DeadLetters)."""
    parser = LogParser(config)
    parsed = op.map("logparse", op.input("logs", flow, log_source), parser.split)
    events = op.filter_map("log_events", parsed, lambda p: p[0] or None)
    dead = op.filter_map("log_dead_letters", parsed, lambda p: p[1] or None)
    return events, dead


def build_log_flow(config: Config, log_source, *, influx_sink=None, alert_sink=None,
                   dead_letter_sink=None, flow_id: str = "twinwatch-logs"):
    """A flow of log sources only (``twinwatch logs``): parse, detect, alert, write."""
    from bytewax.dataflow import Dataflow

    services = config.services
    if influx_sink is None:
        from flows.sinks.influx import InfluxSink
        influx_sink = InfluxSink(services.influxdb)
    if alert_sink is None and services.alertmanager.url:
        from flows.sinks.alertmanager import AlertmanagerSink
        alert_sink = AlertmanagerSink(services.alertmanager)
    if dead_letter_sink is None:
        from flows.sinks.deadletter import DeadLetterFileSink
        dead_letter_sink = DeadLetterFileSink(config.flow.dead_letter_path)
    flow = Dataflow(flow_id)
    events, dead = log_input(flow, config, log_source)
    op.output("dead_letter_file", dead, dead_letter_sink)
    outputs = security_branch(config, events)
    op.output("influxdb", op.merge("to_influx", events, outputs, dead), influx_sink)
    if alert_sink is not None:
        alerts = op.filter_map("alerts", outputs,
                               lambda batch: [a for a in batch if type(a) is Alert] or None)
        op.output("alertmanager", alerts, alert_sink)
    return flow
