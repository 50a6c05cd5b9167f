"""Shared pieces of the twinwatch dashboards: datasource refs, dashboard UIDs, panel helpers.

UIDs are a public contract (alert links, ``alertmanager.generator_url``, docs): see
``dashboards/README.md``. Colours follow the severity ladder 관심/주의/경계/심각.

``alert_state(where)`` is the one subquery every "firing now" panel reads: each alert's latest
``alert_state`` point at the END of the dashboard's range (``${__to}``), however long ago it was
written, so the answer is right over 5 minutes and over 30 days (docs/dashboards.md).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, table
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
    "level_mappings",
    "level_thresholds",
    "alert_state",
    "STATE_FIELDS",
    "firing_table",
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


STATE_FIELDS = ("severity", "status", "fingerprint", "value", "unit", "summary", "starts_at_ms")


def alert_state(where: str = "", field: str = "level", *, details: bool = False) -> str:
    """InfluxQL subquery: one row per alert with a state at the end of the dashboard's range,
    its latest ``field`` (``level``: the severity rank while firing, else 0; ``firing``: 1/0)
    and, with ``details``, severity, status, fingerprint, value, unit, summary, starts_at_ms;
    tags domain, site, asset, sensor, rule. ``where`` (ending in ``AND``) filters on those tags.

    No lower time bound: an alert that started before the range is still firing in it. Each
    alert is one series and ``last()`` reads each series' newest points, so the cost grows with
    the number of alerts and of shards, not with the range (measured in docs/dashboards.md).
    The details cost more, so only the lists ask for them."""
    extra = "".join(f', "{f}"' for f in STATE_FIELDS) if details else ""
    return (
        f'(SELECT last("{field}") AS "{field}"{extra} FROM "alert_state" '
        f"WHERE {where}time <= ${{__to}}ms "
        'GROUP BY "domain", "site", "asset", "sensor", "rule")'
    )


def new_dashboard(key: str, title: str, description: str, timezone: str) -> db.Dashboard:
    """A dashboard with the twinwatch defaults and a dropdown of every other twinwatch board.
    ``timezone``: the city's (``city.timezone``), so times read as the city lives them."""
    return (
        db.Dashboard(title)
        .uid(UIDS[key])
        .description(description)
        .tags(["twinwatch"])
        .timezone(timezone)
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


def level_thresholds() -> db.ThresholdsConfig:
    """Colours of the severity rank ``level`` (0: nothing firing, green)."""
    return thresholds(
        [(None, "green")] + [(SEVERITY_LEVEL[s], c) for s, c in SEVERITY_COLORS.items()]
    )


def level_mappings() -> list:
    """Value mappings that show a severity rank (``alert_state.level``) as its name."""
    from grafana_foundation_sdk.models.dashboard import ValueMap, ValueMappingResult

    options = {"0": ValueMappingResult(text="none firing", color="green", index=0)}
    for sev, color in SEVERITY_COLORS.items():
        level = SEVERITY_LEVEL[sev]
        options[str(level)] = ValueMappingResult(
            text=f"{SEVERITY_KO[sev]} {sev}", color=color, index=level
        )
    return [ValueMap(options=options)]


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


def firing_table(state_where: str, where: str) -> table.Panel:
    """What is firing at the end of the range, most severe first. ``state_where`` filters the
    alerts by tag, ``where`` by severity (both end in ``AND``)."""
    subquery = alert_state(state_where, details=True)
    return (
        table.Panel()
        .title("Firing now")
        .description(
            "Every alert firing at the end of the selected range, wherever it started; "
            "time is its latest state change (fired or escalated). From alert_state."
        )
        .with_target(
            influxql(
                'SELECT "level", "severity", "domain", "site", "asset", "sensor", "rule", '
                f'"value", "unit", "summary", "fingerprint" FROM {subquery} '
                f'WHERE {where}"level" > 0',
                fmt="table",
            )
        )
        .sort_by([cb.TableSortByFieldState().display_name("level").desc(True)])
        .mappings(severity_mappings())
        .height(8)
    )
