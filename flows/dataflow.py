"""The twinwatch dataflow: raw messages -> parse -> detect -> alert -> sinks.

    build_flow(config, source) -> bytewax Dataflow

    source ──► parse ──► dead letters ─────────────────────────────┬──► JSONL file
                 │                                                 │
                 ├──► records ─────────────────────────────────────┼──► InfluxDB
                 │       ├─► shard ─► detect (stateful) ─► scores ─┤
                 │       │                  └──────────► alerts ───┼──► Alertmanager
                 │       └─► group members ─► asset shard ─► align, detect (stateful) ─► scores,
                 │                                                            alerts ┤
                 └──► latest time per series ─► liveness ─► alerts ┘

Every item is a *batch* (a list of records) and series are routed to ``flow.shards`` shard
keys: Bytewax's per-item cost is paid per batch, not per reading (see docs/architecture.md).
No input can stop the flow: the parse step turns bad input into dead letters with a reason,
and every stateful step catches per record, so a bug on one record makes that record an
``internal_error`` dead letter and the rest of its batch goes on. A source batch is
acknowledged only once its records and its dead letters are durable (twinwatch.flows.acks).
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from twinwatch.config import Config
from twinwatch.engine.alerts import Router, affinity
from twinwatch.engine.assets import AssetShard, member_readings
from twinwatch.engine.deadletter import internal_error
from twinwatch.engine.liveness import Liveness, latest_times, maintenance_windows
from twinwatch.engine.parse import Parser
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.flows.acks import Acked, DeadBatch, split_ack
from twinwatch.flows.placement import shard_keys
from twinwatch.flows.sinks import build_sinks
from twinwatch.schema import Alert, SecurityEvent

__all__ = ["build_flow"]


class _ShardLogic(op.StatefulBatchLogic):
    def __init__(self, plan: Plan, state: dict | None, last_told: dict):
        self.shard = Shard(plan, state, last_told)

    def on_batch(self, batches: list[list]) -> tuple[list, bool]:
        records = batches[0] if len(batches) == 1 else [r for b in batches for r in b]
        out: list = [self.shard.process(records)]
        if self.shard.dead:  # records a bug made the shard raise on: passed on as dead letters
            out.append(DeadBatch(self.shard.dead))
            self.shard.dead = []
        return out, op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict:
        return self.shard.to_state()


class _AssetLogic(op.StatefulBatchLogic):
    """Asset groups (issue #12): alignment and group detectors, keyed by the group's shard."""

    def __init__(self, plan: Plan, state: dict | None, last_told: dict):
        self.shard = AssetShard(plan, state, last_told)

    def on_batch(self, batches: list[list]) -> tuple[list, bool]:
        readings = batches[0] if len(batches) == 1 else [r for b in batches for r in b]
        out: list = []
        if found := self.shard.process(readings):
            out.append(found)
        if self.shard.dead:  # records a bug made the step raise on: passed on as dead letters
            out.append(DeadBatch(self.shard.dead))
            self.shard.dead = []
        return out, op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict:
        return self.shard.to_state()


class _LivenessLogic(op.StatefulBatchLogic):
    def __init__(self, config: Config, state: tuple | None, last_told: dict, partitions: int):
        self.liveness = Liveness(config, state, last_told, partitions=partitions)

    def on_batch(self, summaries: list[tuple[dict, dict]]) -> tuple[list, bool]:
        # One check per source batch, in order: the watermark advances as finely as the source.
        alerts: list = []
        dead = DeadBatch()
        for latest, held in summaries:
            try:
                alerts += self.liveness.process(latest, held)
            except Exception as e:  # a bug must not stop the flow: log once, dead-letter
                dead.append(internal_error("liveness", e, "liveness", repr(latest)))
        return [b for b in (alerts, dead) if b], op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> tuple:
        return self.liveness.to_state()


def _parse(parser: Parser, batch: list) -> tuple[list, list]:
    """Parse a raw batch into (records, dead letters). Its acknowledgement
    (twinwatch.flows.acks) is split between the two: the source messages are acknowledged once
    the records are in InfluxDB (or its spool) *and* the dead letters are on disk."""
    if type(batch) is DeadBatch:  # made by the source (e.g. a bad replay line)
        return [], batch
    oks, errs = parser.split(batch)
    ack = getattr(batch, "ack", None)
    if ack is not None:
        parts = split_ack(ack, bool(oks) + bool(errs))
        if oks:
            oks = Acked(oks, parts.pop())
        if errs:
            errs = Acked(errs, parts.pop())
    return oks, errs


def _value(kv: tuple) -> list:
    return kv[1]


def _is_dead(batch: list) -> bool:
    return type(batch) is DeadBatch


def build_flow(
    config: Config,
    source,
    *,
    influx_sink=None,
    alert_sink=None,
    dead_letter_sink=None,
    flow_id: str = "twinwatch",
    log_source=None,
    process: tuple[int, int] = (0, 1),
) -> Dataflow:
    """Wire the flow. Sinks default to the configured services; tests may pass their own.
    With the default alert sink, the detect, liveness and security steps take their alert
    lifecycle back from what the delivery store says on-call was last told (a restart).
    ``process``: this process' index and the cluster's process count (dead-letter times)."""
    parser = Parser(config, lane=process)
    plan = Plan(config)
    keys = shard_keys(config.flow.shards, config.flow.partitions)
    # one liveness clock per source partition with series affinity (twinwatch.engine.liveness);
    # the source may come wrapped (twinwatch.flows.graceful.stoppable)
    inner = getattr(source, "inner", source)
    clocks = getattr(inner, "affinity_partitions", 1)
    sinks = build_sinks(
        config,
        flow_id=flow_id,
        plan=plan,
        influx_sink=influx_sink,
        alert_sink=alert_sink,
        dead_letter_sink=dead_letter_sink,
    )
    last_told = sinks.last_told

    flow = Dataflow(flow_id)
    raw = op.input("source", flow, source)
    parsed = op.map("parse", raw, lambda batch: _parse(parser, batch))
    records = op.filter_map("records", parsed, lambda p: p[0] or None)
    dead = op.filter_map("dead_letters", parsed, lambda p: p[1] or None)
    if log_source is not None:  # syslog / log files (issue #6): lines become security events
        from twinwatch.flows.security import log_input

        log_events, log_dead = log_input(flow, config, log_source)
        dead = op.merge("all_dead_letters", dead, log_dead)

    routes = affinity(config)
    keyed = op.flat_map("shard", records, Router(keys, routes))
    detected = op.stateful_batch("detect", keyed, lambda s: _ShardLogic(plan, s, last_told))
    detect_out = op.branch("detect_dead", op.map("unkey", detected, _value), _is_dead)
    outputs = detect_out.falses
    dead = op.merge("with_detect_dead", dead, detect_out.trues)

    latest = op.map(
        "latest", records, lambda rs: ("liveness", (latest_times(rs), maintenance_windows(rs)))
    )
    stale = op.stateful_batch(
        "liveness", latest, lambda s: _LivenessLogic(config, s, last_told, clocks)
    )
    stale_out = op.branch("liveness_dead", op.map("unkey_liveness", stale, _value), _is_dead)
    stale_alerts = stale_out.falses
    dead = op.merge("with_liveness_dead", dead, stale_out.trues)

    to_influx = [records, outputs, stale_alerts]
    group_outputs = []
    if plan.groups:  # asset groups: their members' readings, aligned and judged together
        members = op.filter_map(
            "group_members", records, lambda rs: member_readings(rs, plan) or None
        )
        # a group's members enter through its asset's partition (affinity): no exchange
        by_group = op.flat_map("group_shard", members, Router(keys, routes))
        assets = op.stateful_batch(
            "detect_assets", by_group, lambda s: _AssetLogic(plan, s, last_told)
        )
        assets_out = op.branch("assets_dead", op.map("unkey_assets", assets, _value), _is_dead)
        group_outputs.append(assets_out.falses)
        dead = op.merge("with_assets_dead", dead, assets_out.trues)
        to_influx += group_outputs
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
        found, security_dead = security_branch(config, events, last_told)
        security_alerts.append(found)
        to_influx += security_alerts
        dead = op.merge("with_security_dead", dead, security_dead)
    op.output("dead_letter_file", dead, sinks.dead_letters)
    op.output("influxdb", op.merge("to_influx", *to_influx, dead), sinks.influx)
    if sinks.alerts is not None:
        alerts = op.filter_map(
            "alerts",
            op.merge("all_alerts", outputs, stale_alerts, *group_outputs, *security_alerts),
            lambda batch: [a for a in batch if type(a) is Alert] or None,
        )
        op.output("alertmanager", alerts, sinks.alerts)
    return flow
