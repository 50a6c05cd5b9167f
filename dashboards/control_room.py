"""The City control room: where staff start. Map of sites coloured by the severity firing there
now, firing alerts per domain, the list of what is firing, the latest incidents, and links into
every domain.

    control_room(config) -> Dashboard builder

"Now" is the end of the selected range, and the map, the counts and the list read each alert's
latest ``alert_state`` point before it (``common.alert_state``), so they agree with Alertmanager
whatever the range (tests/dashboards/test_panel_state.py).

The map needs each site's coordinates, which live in the city config, not in InfluxDB: they
are a CSV table (Grafana's built-in TestData datasource, ``csv_content``) generated from the
config, joined on ``site`` with the highest severity rank firing per site.
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
    alert_state,
    firing_table,
    influxql,
    level_mappings,
    level_thresholds,
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
                    "color": {"fixed": "green", "field": "level"},
                    "size": {"fixed": 10, "min": 6, "max": 14},
                    "text": {"field": "name", "mode": "field"},
                    "textConfig": {"offsetY": -14},
                },
            }
        )
    )
    return (
        geomap.Panel()
        .title("City map — sites by the severity firing now")
        .description(
            "Marker colour: the highest severity of the alerts firing at the site at the end "
            "of the selected range, wherever they started (green: none). The domain links "
            "above open the domain dashboards."
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
                f'SELECT max("level") AS "level" FROM {alert_state()} GROUP BY "site"',
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
        .thresholds(level_thresholds())
        .mappings(level_mappings())
        .span(14)
        .height(14)
    )


def control_room(config: Config) -> db.Dashboard:
    d = new_dashboard(
        "control-room",
        "twinwatch · City control room",
        f"{config.city.name}: where alerts are firing now, and the latest incidents.",
        config.city.timezone,
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
        .title("Alerts firing now, per domain")
        .unit("short")
        .description(
            "Alerts firing at the end of the selected range, wherever they started "
            "(alert_state). Click through to the domain dashboard."
        )
        .with_target(
            influxql(
                f'SELECT sum("firing") FROM {alert_state(field="firing")} GROUP BY "domain"',
                alias="$tag_domain",
            )
        )
        .no_value("0")
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
        .title("Severe (심각) alerts firing now")
        .unit("short")
        .description("Alerts at the top of the ladder firing at the end of the selected range.")
        .with_target(
            influxql(
                f'SELECT count("level") FROM {alert_state()} WHERE "level" = 4',
                fmt="table",
            )
        )
        .no_value("0")
        .thresholds(thresholds([(None, "green"), (1, "red")]))
        .span(10)
        .height(8)
    )
    d = d.with_panel(firing_table("", "").span(24))
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
