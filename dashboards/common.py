"""Shared pieces of the twinwatch dashboards: datasource refs, dashboard UIDs, panel helpers.

UIDs are a public contract (alert links, ``alertmanager.generator_url``, docs): see
``dashboards/README.md``. Colours follow the severity ladder 관심/주의/경계/심각.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)

from twinwatch.dashboards.influxql import Format, InfluxQL
from twinwatch.schema import SEVERITY_KO

__all__ = [
    "INFLUX",
    "PROMETHEUS",
    "ALERTMANAGER",
    "TESTDATA",
    "MIXED",
    "UIDS",
    "DOMAIN_TITLES",
    "SEVERITY_COLORS",
    "SEVERITY_LEVEL",
    "influxql",
    "promql",
    "new_dashboard",
    "query_variable",
    "thresholds",
    "severity_mappings",
    "tag_regex",
]

INFLUX = DataSourceRef(type_val="influxdb", uid="twinwatch-influxdb")
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="twinwatch-prometheus")
ALERTMANAGER = DataSourceRef(type_val="alertmanager", uid="twinwatch-alertmanager")
TESTDATA = DataSourceRef(type_val="grafana-testdata-datasource", uid="twinwatch-sites")
MIXED = DataSourceRef(type_val="datasource", uid="-- Mixed --")

UIDS = {
    "control-room": "twinwatch-control-room",
    "structures": "twinwatch-structures",
    "water": "twinwatch-water",
    "energy": "twinwatch-energy",
    "security": "twinwatch-security",
    "alerts": "twinwatch-alerts",
    "pipeline": "twinwatch-pipeline",
}
DOMAIN_TITLES = {
    "structures": "Structures",
    "water": "Water quality",
    "energy": "Energy",
    "security": "Security",
}
SEVERITY_COLORS = {"attention": "blue", "caution": "yellow", "alert": "orange", "severe": "red"}
SEVERITY_LEVEL = {"attention": 1, "caution": 2, "alert": 3, "severe": 4}


def influxql(
    query: str, ref: str = "A", *, alias: str | None = None, fmt: Format = "time_series"
) -> InfluxQL:
    q = InfluxQL(query).ref_id(ref).format(fmt).datasource(INFLUX)
    return q.alias(alias) if alias else q


def promql(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .datasource(PROMETHEUS)
        .range()
    )


def tag_regex(*names: str) -> str:
    """``"site" =~ /^$site$/ AND ...``: multi-value template variables in InfluxQL."""
    return " AND ".join(f'"{n}" =~ /^${n}$/' for n in names)


def new_dashboard(key: str, title: str, description: str) -> db.Dashboard:
    """A dashboard with the twinwatch defaults and a dropdown of every other twinwatch board."""
    return (
        db.Dashboard(title)
        .uid(UIDS[key])
        .description(description)
        .tags(["twinwatch"])
        .timezone("browser")
        .refresh("30s")
        .editable()
        .time("now-6h", "now")
        .link(
            db.DashboardLink("twinwatch")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(["twinwatch"])
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(False)
        )
    )


def query_variable(name: str, label: str, query: str, *, multi: bool = True) -> db.QueryVariable:
    """A variable filled by an InfluxQL ``SHOW TAG VALUES`` query, refreshed with the time range."""
    var = (
        db.QueryVariable(name)
        .label(label)
        .datasource(INFLUX)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    return var.multi(True).include_all(True).all_value(".*") if multi else var


def thresholds(steps: list[tuple[float | None, str]]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def severity_mappings() -> list:
    """Value mappings that show the Korean severity name with its colour."""
    from grafana_foundation_sdk.models.dashboard import ValueMap, ValueMappingResult

    return [
        ValueMap(
            options={
                sev: ValueMappingResult(
                    text=f"{SEVERITY_KO[sev]} {sev}", color=color, index=SEVERITY_LEVEL[sev]
                )
                for sev, color in SEVERITY_COLORS.items()
            }
        )
    ]
