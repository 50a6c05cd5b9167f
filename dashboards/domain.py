"""One dashboard per domain: Structures, Water quality, Energy (readings) and Security (events).

    domain_dashboard(config, domain, thresholds) -> Dashboard builder

``thresholds`` ({detector name: hit threshold}, from the engine's ``Plan.thresholds()``, passed in
by the ``dashboards`` command: dashboards import the kernel only) turns every anomaly score into
score / threshold, so detectors of different scales share one axis and 1 is a hit.

Generated from the city config, so every sensor panel carries its unit and its physical or
regulatory limits as red dashed threshold lines, with the limit's source in the description.
Template variables (site, asset, sensor) filter the overview panels. Readings panels read the
1-minute rollups (``reading_1m``), the trend panel the hourly ones (``reading_1h``), so wide time
ranges stay fast; the raw ``reading`` measurement is one click away in Explore.
"""

from __future__ import annotations

from collections.abc import Mapping

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models.common import (
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import DashboardLinkType

from twinwatch.config import Config
from twinwatch.dashboards.common import (
    DOMAIN_TITLES,
    INFLUX,
    UIDS,
    alert_state,
    firing_table,
    influxql,
    new_dashboard,
    query_variable,
    severity_mappings,
    tag_regex,
)
from twinwatch.dashboards.common import thresholds as thresholds_config

__all__ = ["domain_dashboard", "alert_annotations"]

SELECT = tag_regex("site", "asset", "sensor")


def alert_annotations(d: db.Dashboard, where: str) -> db.Dashboard:
    """Alert state changes and acknowledgements as annotations. ``alert_ack`` (written by
    ``twinwatch alerts ack``): tags domain, site, asset, sensor, rule, severity; fields
    fingerprint, user, comment, summary. ``where`` filters on the tags both share."""
    alerts = influxql(
        'SELECT "summary" AS "text", "severity" AS "tags", "status" FROM "alert" '
        f"WHERE {where}$timeFilter",
        "Alerts",
        fmt="table",
    )
    acks = influxql(
        'SELECT "user" AS "text", "comment", "summary", "fingerprint" FROM "alert_ack" '
        f"WHERE {where}$timeFilter",
        "Acks",
        fmt="table",
    )
    # The SDK types an annotation's target as its generic AnnotationTarget (tags, limit); Grafana's
    # InfluxDB datasource takes its own query there, which is what InfluxQL serialises.
    return d.annotation(
        db.AnnotationQuery()
        .name("Alerts")
        .datasource(INFLUX)
        .enable(True)
        .icon_color("red")
        .target(alerts)  # type: ignore[arg-type]
    ).annotation(
        db.AnnotationQuery()
        .name("Acknowledgements")
        .datasource(INFLUX)
        .enable(True)
        .icon_color("green")
        .target(acks)  # type: ignore[arg-type]
    )


def _scores_panel(
    domain: str, detectors: list[str], thresholds: Mapping[str, float]
) -> timeseries.Panel:
    fields = ", ".join(f'max("{d}") / {thresholds[d]!r} AS "{d}"' for d in detectors)
    return (
        timeseries.Panel()
        .title("Anomaly scores ÷ threshold (1 = hit)")
        .unit("none")
        .description(
            "Each detector's score divided by its hit threshold ("
            + ", ".join(f"{d} {thresholds[d]:g}" for d in detectors)
            + "), max per interval: 1 (the dashed line) is a hit, whatever the detector's "
            "scale. Hits raise alerts (see Firing now)."
        )
        .with_target(
            influxql(
                f'SELECT {fields} FROM "anomaly_score" WHERE "domain" = \'{domain}\' AND '
                f'{SELECT} AND $timeFilter GROUP BY time($__interval), "sensor" fill(none)',
                alias="$tag_sensor $col",
            )
        )
        .thresholds(thresholds_config([(None, "transparent"), (1.0, "red")]))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
        .axis_soft_min(0)
        .axis_soft_max(1.5)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.RIGHT)
            .calcs(["max"])
        )
        .span(12)
        .height(8)
    )


def _alerts_table(domain: str) -> table.Panel:
    return (
        table.Panel()
        .title("Latest alert state changes")
        .description("Newest first. 관심 attention < 주의 caution < 경계 alert < 심각 severe.")
        .with_target(
            influxql(
                'SELECT "severity", "status", "site", "asset", "sensor", "rule", "value", "unit", '
                f'"summary" FROM "alert" WHERE "domain" = \'{domain}\' AND {SELECT} AND '
                "$timeFilter ORDER BY time DESC LIMIT 50",
                fmt="table",
            )
        )
        .mappings(severity_mappings())
        .span(12)
        .height(8)
    )


def _sensor_panel(site: str, asset: str, sensor) -> timeseries.Panel:
    where = f"\"site\" = '{site}' AND \"asset\" = '{asset}' AND \"sensor\" = '{sensor.id}'"
    desc = f"{sensor.quantity} of {site}/{asset}/{sensor.id}: 1-minute mean, min and max."
    panel = (
        timeseries.Panel()
        .title(f"{asset} · {sensor.id} ({sensor.quantity})")
        .unit(sensor.unit)
        .span(8)
        .height(7)
        .with_target(
            influxql(
                'SELECT mean("mean") AS "mean", min("min") AS "min", max("max") AS "max" '
                f'FROM "reading_1m" WHERE {where} AND $timeFilter '
                "GROUP BY time($__interval) fill(null)",
                alias="$col",
            )
        )
    )
    lim = sensor.limits
    if lim is not None:
        steps: list = [(None, "red" if lim.low is not None else "transparent")]
        if lim.low is not None:
            steps.append((lim.low, "transparent"))
        if lim.high is not None:
            steps.append((lim.high, "red"))
        bounds = " / ".join(
            f"{k} {v:g} {sensor.unit}"
            for k, v in (("low", lim.low), ("high", lim.high))
            if v is not None
        )
        desc += f" Red dashed lines: limits ({bounds}; {lim.source or 'configured'})."
        panel = panel.thresholds(thresholds_config(steps)).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)
        )
    return panel.description(desc)


def _readings_panels(config: Config, domain: str, d: db.Dashboard) -> db.Dashboard:
    d = d.with_panel(
        timeseries.Panel()
        .title("Trend of the selected sensors (hourly rollups, last 30 days)")
        .description("Hourly means from reading_1h: fast over months. Units differ per sensor.")
        .time_from("30d")
        .unit("none")
        .span(24)
        .height(8)
        .with_target(
            influxql(
                f'SELECT mean("mean") FROM "reading_1h" WHERE "domain" = \'{domain}\' AND {SELECT} '
                'AND $timeFilter GROUP BY time($__interval), "site", "asset", "sensor" '
                "fill(none)",
                alias="$tag_site/$tag_asset/$tag_sensor",
            )
        )
    )
    for site in config.sites:
        if site.domain != domain:
            continue
        for asset in site.assets:
            d = d.with_row(db.Row(f"{site.name} — {asset.name}"))
            for sensor in asset.sensors:
                if sensor.kind == "reading":
                    d = d.with_panel(_sensor_panel(site.id, asset.id, sensor))
    return d


def _security_panels(d: db.Dashboard) -> db.Dashboard:
    where = f"\"domain\" = 'security' AND {SELECT} AND $timeFilter"
    return d.with_panel(
        timeseries.Panel()
        .title("Security events by kind and outcome")
        .unit("short")
        .description("Parsed log lines and firewall events per interval.")
        .with_target(
            influxql(
                f'SELECT count("message") FROM "security_event" WHERE {where} '
                'GROUP BY time($__interval), "kind", "outcome" fill(0)',
                alias="$tag_kind ($tag_outcome)",
            )
        )
        .span(12)
        .height(8)
    ).with_panel(
        table.Panel()
        .title("Latest denied or failed events")
        .description("Source IPs and users are fields, shown here, never used as tags.")
        .with_target(
            influxql(
                'SELECT "kind", "outcome", "site", "asset", "sensor", "user", "src_ip", '
                f'"dst_port", "message" FROM "security_event" WHERE {where} '
                'AND "outcome" =~ /^(failure|deny)$/ ORDER BY time DESC LIMIT 100',
                fmt="table",
            )
        )
        .span(12)
        .height(8)
    )


def domain_dashboard(config: Config, domain: str, thresholds: Mapping[str, float]) -> db.Dashboard:
    title = DOMAIN_TITLES[domain]
    measurement = "security_event" if domain == "security" else "reading"
    d = new_dashboard(
        domain,
        f"twinwatch · {title}",
        f"{title}: readings with their limits, anomaly scores and alerts.",
        config.city.timezone,
    )
    where = f'WITH KEY = "{{key}}" WHERE "domain" = \'{domain}\''
    d = (
        d.with_variable(
            query_variable(
                "site", "Site", f'SHOW TAG VALUES FROM "{measurement}" ' + where.format(key="site")
            )
        )
        .with_variable(
            query_variable(
                "asset",
                "Asset",
                f'SHOW TAG VALUES FROM "{measurement}" '
                + where.format(key="asset")
                + ' AND "site" =~ /^$site$/',
            )
        )
        .with_variable(
            query_variable(
                "sensor",
                "Sensor",
                f'SHOW TAG VALUES FROM "{measurement}" '
                + where.format(key="sensor")
                + ' AND "site" =~ /^$site$/ AND "asset" =~ /^$asset$/',
            )
        )
    )
    d = alert_annotations(d, f"\"domain\" = '{domain}' AND ")
    d = d.link(
        db.DashboardLink("Alerts")
        .type(DashboardLinkType.LINK)
        .url(f"/d/{UIDS['alerts']}?var-domain={domain}")
        .keep_time(True)
    )
    detectors = sorted(
        {
            name
            for ref in config.catalog.values()
            if ref.domain == domain
            for name in config.detectors_for(ref)
        }
    )
    tags = f"\"domain\" = '{domain}' AND {SELECT} AND "
    d = d.with_panel(
        stat.Panel()
        .title("Firing now")
        .unit("short")
        .description(
            "Alerts of the selected sensors firing at the end of the selected range, "
            "wherever they started (alert_state)."
        )
        .with_target(
            influxql(f'SELECT sum("firing") FROM {alert_state(tags, "firing")}', fmt="table")
        )
        .no_value("0")
        .thresholds(thresholds_config([(None, "green"), (1, "orange")]))
        .span(4)
        .height(4)
    )
    d = d.with_panel(
        stat.Panel()
        .title("Alerts fired (selected range)")
        .unit("short")
        .description("Alert transitions to firing for the selected sensors.")
        .with_target(
            influxql(
                f'SELECT count("fingerprint") FROM "alert" WHERE "domain" = \'{domain}\' AND '
                f"\"status\" = 'firing' AND {SELECT} AND $timeFilter",
                fmt="table",
            )
        )
        .no_value("0")
        .thresholds(thresholds_config([(None, "green"), (1, "orange")]))
        .span(4)
        .height(4)
    )
    d = d.with_panel(firing_table(tags, "").span(16))
    d = d.with_panel(_alerts_table(domain).span(24 if not detectors else 12))
    if detectors:
        d = d.with_panel(_scores_panel(domain, detectors, thresholds).span(12))
    if domain == "security":
        return _security_panels(d)
    return _readings_panels(config, domain, d)
