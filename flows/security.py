"""The security branch of the flow and the log flow (``twinwatch logs``), wired in Bytewax.

    records ─► SecurityEvents ─┐
    log source ─► logparse ────┴─► by asset shard ─► security (stateful_batch) ─► findings, alerts

The detection itself is ``twinwatch.engine.security.SecurityShard``.
"""

from __future__ import annotations

from collections import defaultdict

import bytewax.operators as op

from twinwatch.config import Config
from twinwatch.engine.alerts import shard_of
from twinwatch.engine.logparse import LogParser
from twinwatch.engine.security import SecurityShard
from twinwatch.schema import Alert

__all__ = ["security_branch", "log_input", "build_log_flow"]


# --- Bytewax wiring -----------------------------------------------------------------------------


class _SecurityLogic(op.StatefulBatchLogic):
    def __init__(self, config: Config, state: dict | None, last_told: dict):
        self.shard = SecurityShard(config, state, last_told)

    def on_batch(self, batches: list[list]) -> tuple[list, bool]:
        events = batches[0] if len(batches) == 1 else [e for b in batches for e in b]
        out = self.shard.process(events)
        return ([out] if out else []), op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict:
        return self.shard.to_state()


def _by_asset(events: list, shards: int) -> list[tuple[str, list]]:
    groups: dict[str, list] = defaultdict(list)
    for e in events:
        groups[shard_of(f"{e.site}/{e.asset}", shards)].append(e)
    return list(groups.items())


def security_branch(config: Config, events, last_told: dict | None = None):
    """Security events (batches) -> batches of findings and alerts. ``last_told``: the alerts'
    newest delivered states, for a restart (twinwatch.flows.sinks.alertmanager)."""
    shards = config.flow.shards
    told = last_told or {}
    keyed = op.flat_map("security_shard", events, lambda evs: _by_asset(evs, shards))
    out = op.stateful_batch("security", keyed, lambda s: _SecurityLogic(config, s, told))
    return op.map("unkey_security", out, lambda kv: kv[1])


def log_input(flow, config: Config, log_source):
    """A log-line source (syslog, tail) -> (batches of SecurityEvents, batches of DeadLetters)."""
    parser = LogParser(config)
    parsed = op.map("logparse", op.input("logs", flow, log_source), parser.split)
    events = op.filter_map("log_events", parsed, lambda p: p[0] or None)
    dead = op.filter_map("log_dead_letters", parsed, lambda p: p[1] or None)
    return events, dead


def build_log_flow(
    config: Config,
    log_source,
    *,
    influx_sink=None,
    alert_sink=None,
    dead_letter_sink=None,
    flow_id: str = "twinwatch-logs",
):
    """A flow of log sources only (``twinwatch logs``): parse, detect, alert, write."""
    from bytewax.dataflow import Dataflow

    services = config.services
    if influx_sink is None:
        from twinwatch.flows.sinks.influx import InfluxSink

        influx_sink = InfluxSink(services.influxdb)
    last_told: dict = {}
    if alert_sink is None:  # the same receivers as `run`, webhook-only sites included
        from twinwatch.engine.plan import Plan
        from twinwatch.flows.sinks import alertmanager as am

        last_told = am.resume_states(services.alertmanager, flow_id)
        release = am.unowned(config, Plan(config), last_told, security=True)
        alert_sink = am.alert_sink(services.alertmanager, flow_id, release)
    if dead_letter_sink is None:
        from twinwatch.flows.sinks.deadletter import DeadLetterFileSink

        dead_letter_sink = DeadLetterFileSink(config.flow.dead_letter_path)
    flow = Dataflow(flow_id)
    events, dead = log_input(flow, config, log_source)
    op.output("dead_letter_file", dead, dead_letter_sink)
    outputs = security_branch(config, events, last_told)
    op.output("influxdb", op.merge("to_influx", events, outputs, dead), influx_sink)
    if alert_sink is not None:
        alerts = op.filter_map(
            "alerts", outputs, lambda batch: [a for a in batch if type(a) is Alert] or None
        )
        op.output("alertmanager", alerts, alert_sink)
    return flow
