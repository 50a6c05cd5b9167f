"""The twinwatch dataflow: raw messages -> parse -> detect -> alert -> sinks.

    build_flow(config, source) -> bytewax Dataflow

    source ──► parse ──► dead letters ─────────────────────────────┬──► JSONL file
                 │                                                 │
                 ├──► records ─────────────────────────────────────┼──► InfluxDB
                 │       └─► shard ─► detect (stateful) ─► scores ─┤
                 │                          └──────────► alerts ───┼──► Alertmanager
                 └──► latest time per series ─► liveness ─► alerts ┘

Every item is a *batch* (a list of records) and series are routed to ``flow.shards`` shard
keys: Bytewax's per-item cost is paid per batch, not per reading (see docs/architecture.md).
The parse step never raises on bad input; dead letters carry the reason.
"""

from __future__ import annotations

from collections import defaultdict

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from twinwatch.config import Config
from twinwatch.engine.alerts import shard_of
from twinwatch.engine.liveness import Liveness, latest_times
from twinwatch.engine.parse import Parser
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.flows.acks import Acked
from twinwatch.schema import Alert, SecurityEvent

__all__ = ["build_flow"]


class _ShardLogic(op.StatefulBatchLogic):
    def __init__(self, plan: Plan, state: dict | None, last_told: dict):
        self.shard = Shard(plan, state, last_told)

    def on_batch(self, batches: list[list]) -> tuple[list, bool]:
        records = batches[0] if len(batches) == 1 else [r for b in batches for r in b]
        return [self.shard.process(records)], op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict:
        return self.shard.to_state()


class _LivenessLogic(op.StatefulBatchLogic):
    def __init__(self, config: Config, state: tuple | None, last_told: dict):
        self.liveness = Liveness(config, state, last_told)

    def on_batch(self, summaries: list[dict[str, float]]) -> tuple[list, bool]:
        # One check per source batch, in order: the watermark advances as finely as the source.
        alerts = [a for latest in summaries for a in self.liveness.process(latest)]
        return ([alerts] if alerts else []), op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> tuple:
        return self.liveness.to_state()


def _by_shard(records: list, shards: int) -> list[tuple[str, list]]:
    groups: dict[str, list] = defaultdict(list)
    for r in records:
        groups[shard_of(r.series, shards)].append(r)
    return list(groups.items())


def _parse(parser: Parser, batch: list) -> tuple[list, list]:
    """Parse a raw batch; its acknowledgement (twinwatch.flows.acks) moves to the records, or to the dead
    letters when no record was valid, so the InfluxDB sink acks it once that batch is durable."""
    oks, errs = parser.split(batch)
    ack = getattr(batch, "ack", None)
    if ack is not None:
        if oks:
            oks = Acked(oks, ack)
        else:
            errs = Acked(errs, ack)
    return oks, errs


def build_flow(
    config: Config,
    source,
    *,
    influx_sink=None,
    alert_sink=None,
    dead_letter_sink=None,
    flow_id: str = "twinwatch",
    log_source=None,
) -> Dataflow:
    """Wire the flow. Sinks default to the configured services; tests may pass their own.
    With the default alert sink, the detect, liveness and security steps take their alert
    lifecycle back from what the delivery store says on-call was last told (a restart)."""
    services = config.services
    parser = Parser(config)
    plan = Plan(config)
    shards = config.flow.shards
    if influx_sink is None:
        from twinwatch.flows.sinks.influx import InfluxSink

        influx_sink = InfluxSink(services.influxdb)
    last_told: dict = {}
    if alert_sink is None:
        from twinwatch.flows.sinks import alertmanager as am

        last_told = am.resume_states(services.alertmanager, flow_id)
        release = am.unowned(config, plan, last_told, config.security.enabled)
        alert_sink = am.alert_sink(services.alertmanager, flow_id, release)
    if dead_letter_sink is None:
        from twinwatch.flows.sinks.deadletter import DeadLetterFileSink

        dead_letter_sink = DeadLetterFileSink(config.flow.dead_letter_path)

    flow = Dataflow(flow_id)
    raw = op.input("source", flow, source)
    parsed = op.map("parse", raw, lambda batch: _parse(parser, batch))
    records = op.filter_map("records", parsed, lambda p: p[0] or None)
    dead = op.filter_map("dead_letters", parsed, lambda p: p[1] or None)
    if log_source is not None:  # syslog / log files (issue #6): lines become security events
        from twinwatch.flows.security import log_input

        log_events, log_dead = log_input(flow, config, log_source)
        dead = op.merge("all_dead_letters", dead, log_dead)
    op.output("dead_letter_file", dead, dead_letter_sink)

    keyed = op.flat_map("shard", records, lambda rs: _by_shard(rs, shards))
    detected = op.stateful_batch("detect", keyed, lambda s: _ShardLogic(plan, s, last_told))
    outputs = op.map("unkey", detected, lambda kv: kv[1])

    latest = op.map("latest", records, lambda rs: ("liveness", latest_times(rs)))
    stale = op.stateful_batch("liveness", latest, lambda s: _LivenessLogic(config, s, last_told))
    stale_alerts = op.map("unkey_liveness", stale, lambda kv: kv[1])

    to_influx = [records, outputs, stale_alerts, dead]
    if (
        config.flow.rollups
    ):  # reading_1m / reading_1h for long-range panels (twinwatch.flows.rollup)
        from datetime import timedelta

        from twinwatch.flows.rollup import rollups

        to_influx.append(rollups("rollup", keyed, timedelta(seconds=config.flow.rollup_lateness_s)))
    security_alerts = []
    if log_source is not None:
        to_influx.append(log_events)
    if config.security.enabled:  # issue #6: attack rules, log templates, device events
        from twinwatch.flows.security import security_branch

        events = op.filter_map(
            "security_events",
            records,
            lambda rs: [r for r in rs if type(r) is SecurityEvent] or None,
        )
        if log_source is not None:
            events = op.merge("all_security_events", events, log_events)
        security_alerts.append(security_branch(config, events, last_told))
        to_influx += security_alerts
    op.output("influxdb", op.merge("to_influx", *to_influx), influx_sink)
    if alert_sink is not None:
        alerts = op.filter_map(
            "alerts",
            op.merge("all_alerts", outputs, stale_alerts, *security_alerts),
            lambda batch: [a for a in batch if type(a) is Alert] or None,
        )
        op.output("alertmanager", alerts, alert_sink)
    return flow
