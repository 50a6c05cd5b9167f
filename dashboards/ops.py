"""The Alerts and Pipeline health dashboards.

    alerts_dashboard(config) -> Dashboard builder     what is firing, Alertmanager, history, acks
    pipeline_dashboard(config) -> Dashboard builder   the flow's own metrics (Prometheus)

Alertmanager is not a panel datasource in Grafana: what is firing at the end of the range comes
from ``alert_state`` in InfluxDB (``common.alert_state``, any range), how many alerts Alertmanager
holds and how many are silenced from its own ``alertmanager_alerts`` metric (Prometheus scrapes
it), the full lifecycle from the ``alert`` measurement, and Grafana's alerting UI (linked) shows
the Alertmanager datasource's groups and silences.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models.dashboard import DashboardLinkType

from twinwatch.config import Config
from twinwatch.dashboards.common import (
    ALERTMANAGER,
    SEVERITY_COLORS,
    firing_table,
    influxql,
    new_dashboard,
    promql,
    severity_mappings,
    thresholds,
)
from twinwatch.dashboards.domain import alert_annotations
from twinwatch.schema import DOMAINS

__all__ = ["alerts_dashboard", "pipeline_dashboard"]

_RATE = "[$__rate_interval]"


def _custom(name: str, label: str, values: tuple[str, ...]) -> db.CustomVariable:
    return (
        db.CustomVariable(name)
        .label(label)
        .values(",".join(values))
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def alerts_dashboard(config: Config) -> db.Dashboard:
    where = '"domain" =~ /^$domain$/ AND "severity" =~ /^$severity$/ AND $timeFilter'
    d = (
        new_dashboard(
            "alerts",
            "twinwatch · Alerts",
            "What is firing now, what Alertmanager holds, and the history of every alert.",
            config.city.timezone,
        )
        .with_variable(_custom("domain", "Domain", DOMAINS))
        .with_variable(_custom("severity", "Severity", tuple(SEVERITY_COLORS)))
        .link(
            db.DashboardLink("Alertmanager: groups and silences")
            .type(DashboardLinkType.LINK)
            .url(f"/alerting/groups?alertmanager={ALERTMANAGER.uid}")
            .target_blank(True)
        )
    )
    d = alert_annotations(d, '"domain" =~ /^$domain$/ AND ')
    d = d.with_panel(
        firing_table('"domain" =~ /^$domain$/ AND ', '"severity" =~ /^$severity$/ AND ').span(24)
    )
    d = d.with_panel(
        stat.Panel()
        .title("Active in Alertmanager")
        .unit("short")
        .description(
            "Alerts Alertmanager holds now (active = notifying, suppressed = silenced "
            "or inhibited, e.g. acknowledged with a silence)."
        )
        .with_target(
            promql('sum by (state) (alertmanager_alerts{state=~"active|suppressed"})', "{{state}}")
        )
        .thresholds(thresholds([(None, "green"), (1, "orange")]))
        .span(8)
        .height(6)
    )
    d = d.with_panel(
        timeseries.Panel()
        .title("Alert state changes by severity")
        .unit("short")
        .description("Transitions (pending, firing, resolved) per interval, by severity.")
        .with_target(
            influxql(
                f'SELECT count("fingerprint") FROM "alert" WHERE {where} '
                'GROUP BY time($__interval), "severity" fill(0)',
                alias="$tag_severity",
            )
        )
        .span(16)
        .height(6)
    )
    d = d.with_panel(
        timeseries.Panel()
        .title("Alerts raised by the flow (Prometheus)")
        .unit("short")
        .description("twinwatch_alerts_total: state changes per domain and severity.")
        .with_target(
            promql(
                f"sum by (domain, severity, status) (increase(twinwatch_alerts_total{_RATE}))",
                "{{domain}} {{severity}} {{status}}",
            )
        )
        .span(24)
        .height(7)
    )
    d = d.with_panel(
        table.Panel()
        .title("Alert history")
        .description("Newest first.")
        .with_target(
            influxql(
                'SELECT "severity", "status", "domain", "site", "asset", "sensor", "rule", '
                f'"value", "unit", "summary", "fingerprint" FROM "alert" WHERE {where} '
                "ORDER BY time DESC LIMIT 200",
                fmt="table",
            )
        )
        .mappings(severity_mappings())
        .span(24)
        .height(10)
    )
    return d.with_panel(
        table.Panel()
        .title("Acknowledgements")
        .description("Who acknowledged which alert, and why (alert_ack, `twinwatch alerts ack`).")
        .with_target(
            influxql(
                'SELECT "user", "comment", "severity", "domain", "site", "asset", "sensor", '
                f'"rule", "summary", "fingerprint" FROM "alert_ack" WHERE {where} '
                "ORDER BY time DESC LIMIT 100",
                fmt="table",
            )
        )
        .mappings(severity_mappings())
        .span(24)
        .height(6)
    )


def _ts(title: str, desc: str, unit: str, expr: str, legend: str, w: int = 12) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(desc)
        .unit(unit)
        .with_target(promql(expr, legend))
        .span(w)
        .height(7)
    )


def pipeline_dashboard(config: Config) -> db.Dashboard:
    d = new_dashboard(
        "pipeline",
        "twinwatch · Pipeline health",
        "Is the flow keeping up, and is anything lost? Throughput, lag, dead letters, sink "
        "errors, retries, the spool backlog and drops, latencies.",
        config.city.timezone,
    )
    panels = [
        stat.Panel()
        .title("Sources connected")
        .description("1 while the source is connected and subscribed (twinwatch_source_ready).")
        .with_target(promql("min by (source) (twinwatch_source_ready)", "{{source}}"))
        .unit("bool_yes_no")
        .thresholds(thresholds([(None, "red"), (1, "green")]))
        .span(6)
        .height(5),
        _ts(
            "Records in",
            "Raw records received per second, by source.",
            "reqps",
            f"sum by (source) (rate(twinwatch_records_in_total{_RATE}))",
            "{{source}}",
            9,
        ),
        _ts(
            "Records written",
            "Points written per second, by sink and measurement.",
            "reqps",
            f"sum by (sink, measurement) (rate(twinwatch_records_out_total{_RATE}))",
            "{{sink}} {{measurement}}",
            9,
        ),
        _ts(
            "Lag: queue depth",
            "Records received but not yet taken by the flow. Growing = the flow is not keeping up.",
            "short",
            "max by (source) (twinwatch_queue_depth)",
            "{{source}}",
        ),
        _ts(
            "Dead letters by reason",
            "Rejected inputs per second (see the dead_letter measurement for details).",
            "reqps",
            f"sum by (reason) (rate(twinwatch_dead_letters_total{_RATE}))",
            "{{reason}}",
        ),
        _ts(
            "Sink errors",
            "Failed batch writes (after retries) per second, by sink.",
            "reqps",
            f"sum by (sink) (rate(twinwatch_sink_errors_total{_RATE}))",
            "{{sink}}",
        ),
        _ts(
            "Write retries",
            "Retried write attempts per second, by sink (the service was slow or down; "
            "nothing is lost while retries succeed).",
            "reqps",
            f"sum by (sink) (rate(twinwatch_sink_retries_total{_RATE}))",
            "{{sink}}",
            8,
        ),
        _ts(
            "Spool backlog",
            "Bytes waiting in a sink's on-disk spool while its service is down; they are "
            "backfilled in order when it returns. Growing = the service is still down.",
            "bytes",
            "max by (sink) (twinwatch_spool_bytes)",
            "{{sink}}",
            8,
        ),
        _ts(
            "Points dropped (spool full)",
            "Points dropped because a full spool made room (spool_policy drop_oldest). "
            "Anything above 0 is data lost: raise spool_max_bytes or fix the service.",
            "reqps",
            f"sum by (sink) (rate(twinwatch_spool_dropped_total{_RATE}))",
            "{{sink}}",
            8,
        ),
        _ts(
            "Sink write latency p99",
            "99th percentile of one batch write.",
            "s",
            "histogram_quantile(0.99, sum by (le, sink) "
            f"(rate(twinwatch_sink_write_seconds_bucket{_RATE})))",
            "{{sink}}",
        ),
        _ts(
            "Detector latency p99",
            "99th percentile of all detectors on one reading.",
            "s",
            f"histogram_quantile(0.99, sum by (le) (rate(twinwatch_detect_seconds_bucket{_RATE})))",
            "p99",
        ),
        _ts(
            "Anomalies by detector",
            "Detector hits per second, by domain and detector.",
            "reqps",
            f"sum by (domain, detector) (rate(twinwatch_anomalies_total{_RATE}))",
            "{{domain}} {{detector}}",
        ),
    ]
    for p in panels:
        d = d.with_panel(p)
    return d
