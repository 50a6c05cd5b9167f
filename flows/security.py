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
from twinwatch.engine.deadletter import internal_error
from twinwatch.engine.logparse import LogParser
from twinwatch.engine.security import SecurityShard
from twinwatch.flows.acks import DeadBatch
from twinwatch.flows.sinks import build_sinks
from twinwatch.schema import Alert

__all__ = ["security_branch", "log_input", "build_log_flow"]


# --- Bytewax wiring -----------------------------------------------------------------------------


class _SecurityLogic(op.StatefulBatchLogic):
    def __init__(self, config: Config, state: dict | None, last_told: dict):
        self.shard = SecurityShard(config, state, last_told)

    def on_batch(self, batches: list[list]) -> tuple[list, bool]:
        events = batches[0] if len(batches) == 1 else [e for b in batches for e in b]
        errors: list = []  # a bug on one event must not stop the others
        out = self.shard.process(events, errors)
        dead = DeadBatch(internal_error("security", e, ev.series, repr(ev)) for ev, e in errors)
        return [b for b in (out, dead) if b], op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict:
        return self.shard.to_state()


def _by_asset(events: list, shards: int) -> list[tuple[str, list]]:
    groups: dict[str, list] = defaultdict(list)
    for e in events:
        groups[shard_of(f"{e.site}/{e.asset}", shards)].append(e)
    return list(groups.items())


def security_branch(config: Config, events, last_told: dict | None = None):
    """Security events (batches) -> (batches of findings and alerts, batches of dead letters).
    ``last_told``: the alerts' newest delivered states, for a restart (flows.sinks)."""
    shards = config.flow.shards
    told = last_told or {}
    keyed = op.flat_map("security_shard", events, lambda evs: _by_asset(evs, shards))
    out = op.stateful_batch("security", keyed, lambda s: _SecurityLogic(config, s, told))
    split = op.branch("security_dead", op.map("unkey_security", out, lambda kv: kv[1]), _is_dead)
    return split.falses, split.trues


def _is_dead(batch: list) -> bool:
    return type(batch) is DeadBatch


def _split(parser: LogParser, batch: list) -> tuple[list, list]:
    """The parser never raises on bad lines; if a bug makes it raise on one, that line is
    found by parsing the batch line by line, and dead-lettered (``internal_error``)."""
    try:
        return parser.split(batch)
    except Exception:
        events: list = []
        dead: list = []
        for item in batch:
            try:
                ok, bad = parser.split([item])
            except Exception as e:
                origin, line = item if isinstance(item, tuple) and len(item) == 2 else ("?", item)
                dead.append(internal_error("logparse", e, str(origin), line, source="log"))
            else:
                events += ok
                dead += bad
        return events, dead


def log_input(flow, config: Config, log_source):
    """A log-line source (syslog, tail) -> (batches of SecurityEvents, batches of DeadLetters)."""
    parser = LogParser(config)
    parsed = op.map("logparse", op.input("logs", flow, log_source), lambda b: _split(parser, b))
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

    sinks = build_sinks(
        config,
        flow_id=flow_id,
        security=True,
        influx_sink=influx_sink,
        alert_sink=alert_sink,
        dead_letter_sink=dead_letter_sink,
    )
    flow = Dataflow(flow_id)
    events, dead = log_input(flow, config, log_source)
    outputs, security_dead = security_branch(config, events, sinks.last_told)
    dead = op.merge("all_dead_letters", dead, security_dead)
    op.output("dead_letter_file", dead, sinks.dead_letters)
    op.output("influxdb", op.merge("to_influx", events, outputs, dead), sinks.influx)
    if sinks.alerts is not None:
        alerts = op.filter_map(
            "alerts", outputs, lambda batch: [a for a in batch if type(a) is Alert] or None
        )
        op.output("alertmanager", alerts, sinks.alerts)
    return flow
