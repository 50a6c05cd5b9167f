"""The City control room: where staff start. Map of sites coloured by alert severity, firing
alerts per domain, the latest incidents, and links into every domain.

    control_room(config) -> Dashboard builder

The map needs each site's coordinates, which live in the city config, not in InfluxDB: they
are a CSV table (Grafana's built-in TestData datasource, ``csv_content``) generated from the
config, joined on ``site`` with the InfluxQL result of the most recent firing alert per site.
"""

from __future__ import annotations

import csv
import io

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, stat, table, testdata
from grafana_foundation_sdk.models.common import FrameGeometrySourceMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataTransformerConfig,
)

from twinwatch.config import Config
from twinwatch.dashboards.common import (
    DOMAIN_TITLES,
    MIXED,
    TESTDATA,
    UIDS,
    influxql,
    new_dashboard,
    severity_mappings,
    thresholds,
)
from twinwatch.dashboards.domain import alert_annotations
from twinwatch.schema import DOMAINS

__all__ = ["control_room", "sites_csv"]


def sites_csv(config: Config) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["site", "name", "domain", "latitude", "longitude"])
    for s in config.sites:
        w.writerow([s.id, s.name, s.domain, s.lat, s.lon])
    return out.getvalue()


def _map(config: Config) -> geomap.Panel:
    lat = sum(s.lat for s in config.sites) / len(config.sites)
    lon = sum(s.lon for s in config.sites) / len(config.sites)
    markers = (
        cb.MapLayerOptions()
        .type("markers")
        .name("Sites")
        .tooltip(True)
        .location(
            cb.FrameGeometrySource()
            .mode(FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"fixed": "green", "field": "severity"},
                    "size": {"fixed": 10, "min": 6, "max": 14},
                    "text": {"field": "name", "mode": "field"},
                    "textConfig": {"offsetY": -14},
                },
            }
        )
    )
    return (
        geomap.Panel()
        .title("City map — sites by current alert severity")
        .description(
            "Marker colour: the severity of the most recent firing alert at the site "
            "in the selected range (green: none). The domain links above open the "
            "domain dashboards."
        )
        .datasource(MIXED)
        .with_target(
            testdata.Dataquery()
            .ref_id("Sites")
            .scenario_id("csv_content")
            .csv_content(sites_csv(config))
            .datasource(TESTDATA)
        )
        .with_target(
            influxql(
                'SELECT last("value") AS "value", "severity", "domain" AS "alert_domain" '
                'FROM "alert" WHERE "status" = \'firing\' AND $timeFilter GROUP BY "site"',
                "Severity",
                fmt="table",
            )
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="joinByField", options={"byField": "site", "mode": "outer"}
            )
        )
        # the SDK types lat/lon as int (Grafana's schema says int64); the panel takes degrees
        .view(geomap.MapViewConfig().id("coords").lat(lat).lon(lon).zoom(7))  # type: ignore[arg-type]
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers([markers])
        .mappings(severity_mappings())
        .span(14)
        .height(14)
    )


def control_room(config: Config) -> db.Dashboard:
    d = new_dashboard(
        "control-room",
        "twinwatch · City control room",
        f"{config.city.name}: where alerts are firing now, and the latest incidents.",
    )
    for domain in DOMAINS:
        d = d.link(
            db.DashboardLink(DOMAIN_TITLES[domain])
            .type(DashboardLinkType.LINK)
            .url(f"/d/{UIDS[domain]}")
            .keep_time(True)
        )
    d = d.link(
        db.DashboardLink("Alerts")
        .type(DashboardLinkType.LINK)
        .url(f"/d/{UIDS['alerts']}")
        .keep_time(True)
    )
    d = alert_annotations(d, "")
    d = d.with_panel(_map(config))
    d = d.with_panel(
        stat.Panel()
        .title("Alerts fired per domain (selected range)")
        .unit("short")
        .description("Transitions to firing, per domain. Click through to the domain dashboard.")
        .with_target(
            influxql(
                'SELECT count("fingerprint") FROM "alert" WHERE "status" = \'firing\' AND '
                '$timeFilter GROUP BY "domain"',
                alias="$tag_domain",
            )
        )
        .thresholds(thresholds([(None, "green"), (1, "orange"), (5, "red")]))
        .data_links(
            [
                db.DashboardLink("Open the ${__field.labels.domain} dashboard").url(
                    "/d/twinwatch-${__field.labels.domain}?${__url_time_range}"
                )
            ]
        )
        .span(10)
        .height(6)
    )
    d = d.with_panel(
        stat.Panel()
        .title("Severe (심각) alerts fired")
        .unit("short")
        .description("Transitions to firing at the top of the ladder, across the city.")
        .with_target(
            influxql(
                'SELECT count("fingerprint") FROM "alert" WHERE "status" = \'firing\' AND '
                "\"severity\" = 'severe' AND $timeFilter",
                fmt="table",
            )
        )
        .thresholds(thresholds([(None, "green"), (1, "red")]))
        .span(10)
        .height(8)
    )
    d = d.with_panel(
        table.Panel()
        .title("Latest incidents (alert state changes)")
        .description("Newest first; the summary names the sensor, value and rule.")
        .with_target(
            influxql(
                'SELECT "severity", "status", "domain", "site", "asset", "sensor", "summary" '
                'FROM "alert" WHERE $timeFilter ORDER BY time DESC LIMIT 30',
                fmt="table",
            )
        )
        .mappings(severity_mappings())
        .span(24)
        .height(10)
    )
    return d
