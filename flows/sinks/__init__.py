"""The flows' sinks, built in one place for every flow factory (``build_flow``, ``build_log_flow``).

    sinks = build_sinks(config)            # or override any of them (tests pass capture sinks)
    sinks.influx                           InfluxDB (twinwatch.flows.sinks.influx), with spool
    sinks.alerts                           Alertmanager and/or webhook; None if neither is set
    sinks.dead_letters                     JSONL file (twinwatch.flows.sinks.deadletter)

What the sinks of this process did (stored, dead-lettered, refused, left in the spool) is
tallied in ``twinwatch.flows.sinks.outcome``, which the CLI turns into its exit status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twinwatch.config import Config

__all__ = ["Sinks", "build_sinks"]


@dataclass(frozen=True)
class Sinks:
    influx: Any
    alerts: Any | None
    dead_letters: Any


def build_sinks(
    config: Config, *, influx_sink=None, alert_sink=None, dead_letter_sink=None
) -> Sinks:
    """The configured sinks; any given one replaces its default."""
    services = config.services
    if influx_sink is None:
        from twinwatch.flows.sinks.influx import InfluxSink

        influx_sink = InfluxSink(services.influxdb, dead_letter_path=config.flow.dead_letter_path)
    am = services.alertmanager
    if alert_sink is None and (am.url or am.webhook_url):
        from twinwatch.flows.sinks.alertmanager import AlertmanagerSink

        alert_sink = AlertmanagerSink(am)
    if dead_letter_sink is None:
        from twinwatch.flows.sinks.deadletter import DeadLetterFileSink

        dead_letter_sink = DeadLetterFileSink(config.flow.dead_letter_path)
    return Sinks(influx_sink, alert_sink, dead_letter_sink)
