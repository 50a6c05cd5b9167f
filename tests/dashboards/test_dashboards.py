"""The generated dashboards and provisioning files: up to date, and structurally what Grafana needs.

Grafana cannot be installed here, so these checks read the JSON/YAML as Grafana 11 would; the
queries themselves run against real servers in test_dashboards_queries.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC
from urllib.parse import parse_qs, urlsplit

import yaml
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from paths import ROOT as REPO

from twinwatch.config import load_config
from twinwatch.dashboards import build
from twinwatch.dashboards.common import UIDS
from twinwatch.dashboards.influxql import InfluxQL, InfluxQLQuery, register
from twinwatch.dashboards.verify import _panels, expand_influxql, regex_value
from twinwatch.engine.plan import Plan
from twinwatch.schema import DOMAINS

ROOT = REPO / "dashboards"
CONFIG = load_config(environ={})
THRESHOLDS = Plan(CONFIG).thresholds()
DOCS = build.dashboards(CONFIG, THRESHOLDS)


def test_committed_files_are_what_the_code_generates():
    assert build.check(CONFIG, THRESHOLDS, ROOT) == [], (
        "run `twinwatch dashboards build` and commit"
    )


def test_check_reports_a_hand_edited_file(tmp_path):
    build.write(CONFIG, THRESHOLDS, tmp_path)
    assert build.check(CONFIG, THRESHOLDS, tmp_path) == []
    path = tmp_path / "generated" / "twinwatch-water.json"
    path.write_text(path.read_text().replace("Water quality", "Water"))
    (tmp_path / "generated" / "old.json").write_text("{}")
    assert build.check(CONFIG, THRESHOLDS, tmp_path) == [
        "generated/twinwatch-water.json",
        "generated/old.json (not generated any more)",
    ]


def test_influxql_query_class_round_trips_through_the_sdk():
    register()
    q = (
        InfluxQL('SELECT mean("value") FROM "reading" WHERE $timeFilter')
        .ref_id("B")
        .alias("$tag_sensor")
        .format("table")
        .build()
    )
    doc = json.loads(json.dumps(q, cls=JSONEncoder))
    assert doc == {
        "refId": "B",
        "query": 'SELECT mean("value") FROM "reading" WHERE $timeFilter',
        "rawQuery": True,
        "resultFormat": "table",
        "alias": "$tag_sensor",
    }
    back = cogruntime.dataquery_from_json(doc, "influxdb")
    assert isinstance(back, InfluxQLQuery) and back.to_json() == doc


def test_the_dashboards_exist_with_their_uids():
    assert set(DOCS) == set(UIDS.values())
    assert {DOCS[UIDS[d]]["title"] for d in DOMAINS} == {
        "twinwatch · Structures",
        "twinwatch · Water quality",
        "twinwatch · Energy",
        "twinwatch · Security",
    }
    for d in DOMAINS:
        assert [v["name"] for v in DOCS[UIDS[d]]["templating"]["list"]] == [
            "site",
            "asset",
            "sensor",
        ]


def _datasources() -> dict[str, dict]:
    doc = yaml.safe_load((ROOT / "provisioning/datasources/twinwatch.yaml").read_text())
    assert doc["apiVersion"] == 1
    return {ds["uid"]: ds for ds in doc["datasources"]}


def test_datasource_provisioning_has_what_grafana_needs():
    ds = _datasources()
    influx = ds["twinwatch-influxdb"]
    assert influx["type"] == "influxdb" and influx["access"] == "proxy"
    # InfluxQL (no `version: Flux`), a database (DBRP on 2.x) and the token as a header
    assert influx["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    assert influx["jsonData"]["dbName"] == CONFIG.services.influxdb.database
    assert influx["jsonData"]["httpHeaderName1"] == "Authorization"
    assert influx["secureJsonData"]["httpHeaderValue1"] == "Token $TWINWATCH_INFLUX_TOKEN"
    assert ds["twinwatch-prometheus"]["type"] == "prometheus"
    am = ds["twinwatch-alertmanager"]
    assert am["type"] == "alertmanager" and am["jsonData"]["implementation"] == "prometheus"
    for d in ds.values():  # URLs come from the environment, never a literal host or secret
        assert d.get("url", "$X").startswith("$")


def test_every_query_uses_a_provisioned_datasource():
    uids = set(_datasources()) | {"-- Mixed --"}
    for doc in DOCS.values():
        for p in _panels(doc["panels"]):
            for t in p.get("targets", []):
                assert t["datasource"]["uid"] in uids, (doc["uid"], p["title"])
        for v in doc["templating"].get("list", []):
            if v["type"] == "query":
                assert v["datasource"]["uid"] in uids


def test_panels_explain_themselves():
    for doc in DOCS.values():
        for p in _panels(doc["panels"]):
            if p["type"] == "row":
                continue
            assert p.get("description"), (doc["uid"], p["title"])
            if p["type"] in ("timeseries", "stat"):
                assert p["fieldConfig"]["defaults"].get("unit"), (doc["uid"], p["title"])


def test_sensor_panels_draw_the_configured_limits():
    doc = DOCS["twinwatch-structures"]
    crack = next(
        p for p in _panels(doc["panels"]) if p.get("title") == "span-2 · crack-1 (crack_width)"
    )
    assert crack["fieldConfig"]["defaults"]["unit"] == "mm"
    steps = crack["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in steps] == [(None, "transparent"), (0.4, "red")]
    assert crack["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert "KDS 14 20" in crack["description"]


def _local_links(doc: dict) -> list[str]:
    urls = [link["url"] for link in doc.get("links", []) if link.get("url")]
    for p in _panels(doc["panels"]):
        urls += [
            link["url"] for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", [])
        ]
    out = []
    for url in urls:  # data links name the domain through a field label
        out += (
            [url.replace("${__field.labels.domain}", d) for d in DOMAINS]
            if "${__field.labels.domain}" in url
            else [url]
        )
    return [u for u in out if u.startswith("/d/")]


def test_dashboard_links_resolve_to_provisioned_uids():
    provisioned = {json.loads(p.read_text())["uid"] for p in (ROOT / "generated").glob("*.json")}
    links = [u for doc in DOCS.values() for u in _local_links(doc)]
    assert len(links) >= 10
    for url in links:
        assert urlsplit(url).path.split("/")[2] in provisioned, url


def test_alert_dashboard_urls_resolve_with_their_variables():
    """The alerting issue's (#4) dashboard_url and generator_url land on provisioned dashboards,
    and every var-X they set is a variable of that dashboard."""
    am = CONFIG.services.alertmanager
    assert urlsplit(am.generator_url).path == f"/d/{UIDS['alerts']}"
    for domain in DOMAINS:
        url = am.dashboard_url.format(
            domain=domain,
            site="s",
            asset="a",
            sensor="x",
            rule="limits",
            severity="severe",
            from_ms=1,
            to_ms=2,
        )
        uid = urlsplit(url).path.split("/")[2]
        assert uid in DOCS, url
        names = {v["name"] for v in DOCS[uid]["templating"]["list"]}
        assert {k[4:] for k in parse_qs(urlsplit(url).query) if k.startswith("var-")} <= names


def test_provider_points_at_the_generated_json():
    doc = yaml.safe_load((ROOT / "provisioning/dashboards/twinwatch.yaml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == build.DASHBOARD_DIR


def test_control_room_map_has_every_site():
    geomap = next(p for p in DOCS["twinwatch-control-room"]["panels"] if p["type"] == "geomap")
    csv_target = next(t for t in geomap["targets"] if t["refId"] == "Sites")
    rows = csv_target["csvContent"].strip().splitlines()
    assert rows[0] == "site,name,domain,latitude,longitude"
    assert {r.split(",")[0] for r in rows[1:]} == {s.id for s in CONFIG.sites}
    assert geomap["options"]["layers"][0]["location"] == {
        "mode": "coords",
        "latitude": "latitude",
        "longitude": "longitude",
    }


def test_macro_expansion():
    q = (
        'SELECT mean("mean") FROM "reading_1m" WHERE "site" =~ /^$site$/ AND $timeFilter '
        "GROUP BY time($__interval)"
    )
    from datetime import datetime

    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    out = expand_influxql(
        q, t0, t0.replace(hour=1), "1m", {"site": regex_value(["sejong-bridge", "a.b"])}
    )
    assert out == (
        'SELECT mean("mean") FROM "reading_1m" WHERE "site" =~ '
        r"/^(sejong\-bridge|a\.b)$/ AND time >= 1795392000000ms and "
        "time <= 1795395600000ms GROUP BY time(1m)"
    )
    assert not re.search(r"\$\w", out)
