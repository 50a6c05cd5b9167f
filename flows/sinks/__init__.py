"""The flows' sinks, built in one place for every flow factory (``build_flow``, ``build_log_flow``).

    sinks = build_sinks(config)            # or override any of them (tests pass capture sinks)
    sinks.influx                           InfluxDB (twinwatch.flows.sinks.influx), with spool
    sinks.alerts                           Alertmanager and/or webhook; None if neither is set
    sinks.last_told                        the alerts' newest delivered states (for a restart)
    sinks.dead_letters                     JSONL file (twinwatch.flows.sinks.deadletter)

What the sinks of this process did (stored, dead-lettered, refused, left in the spool) is
tallied in ``twinwatch.flows.sinks.outcome``, which the CLI turns into its exit status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twinwatch.config import Config

__all__ = ["Sinks", "build_sinks"]


@dataclass(frozen=True)
class Sinks:
    influx: Any
    alerts: Any | None
    dead_letters: Any
    # (series, rule) -> the newest state the delivery store holds: the engine's alert lifecycle
    # takes it back after a restart (twinwatch.flows.sinks.alertmanager.resume_states)
    last_told: dict = field(default_factory=dict)


def build_sinks(
    config: Config,
    *,
    flow_id: str = "twinwatch",
    plan: Any = None,
    security: bool | None = None,
    influx_sink=None,
    alert_sink=None,
    dead_letter_sink=None,
) -> Sinks:
    """The configured sinks; any given one replaces its default. The default alert sink keeps
    flow ``flow_id``'s delivery store, resolves at start the firing alerts no step of the flow
    can own any more (``plan``: the engine's, built if not given; ``security``: whether the
    flow runs the security detection, default ``security.enabled``), and hands back the
    stored states as ``last_told``."""
    services = config.services
    if influx_sink is None:
        from twinwatch.flows.sinks.influx import InfluxSink

        influx_sink = InfluxSink(
            services.influxdb, dead_letter_path=config.flow.dead_letter_path, pipeline=True
        )
    last_told: dict = {}
    if alert_sink is None:
        from twinwatch.flows.sinks import alertmanager as am

        last_told = am.resume_states(services.alertmanager, flow_id)
        release: list = []
        if last_told:
            from twinwatch.engine.plan import Plan

            sec = config.security.enabled if security is None else security
            release = am.unowned(config, plan or Plan(config), last_told, sec)
        alert_sink = am.alert_sink(services.alertmanager, flow_id, release)
    if dead_letter_sink is None:
        from twinwatch.flows.sinks.deadletter import DeadLetterFileSink

        dead_letter_sink = DeadLetterFileSink(config.flow.dead_letter_path)
    return Sinks(influx_sink, alert_sink, dead_letter_sink, last_told)
