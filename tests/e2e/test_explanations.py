"""Explanations on alerts (issue #12) end to end on real services: an alert raised by the engine
(a PV inverter trip judged by its performance ratio, and a limits breach) carries which detector
fired, observed against expected and the band, and the contributing sensors; written through
the project's InfluxDB writer they come back as fields (never tags) from real InfluxDB 1.6.7,
and posted through the Alertmanager client they come back as annotations from a real
Alertmanager. Maintenance annotations are stored too."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from twinwatch import lineprotocol as lp
from twinwatch.alerting.alertmanager import AlertmanagerClient
from twinwatch.config import load_config
from twinwatch.engine.assets import AssetShard, member_readings
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.influx import InfluxV1Writer
from twinwatch.schema import Alert, Annotation, Reading

T0 = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)  # 00:00 KST
GEN = "http://127.0.0.1:3000/d/twinwatch-alerts"


def pv_trip_alert() -> Alert:
    plan = Plan(load_config(environ={}))
    shard = AssetShard(plan)
    recs = []
    for i in range(3 * 1440):
        t = T0 + timedelta(minutes=i)
        h = (i / 60) % 24
        g = max(math.sin(math.pi * (h - 6) / 12), 0.0) * 850 + 0.3 + 0.01 * (i % 7)
        p = 100 * g / 1000 * 0.95 * (0.0 if i >= 2 * 1440 + 720 else 1.0) + 0.01 * (i % 5)
        common = ("energy", "sejong-pv", "inverter-1")
        recs.append(Reading(t, *common, "irradiance", "irradiance", "W/m2", g))
        recs.append(Reading(t, *common, "power", "active_power", "kW", p))
    out = []
    for k in range(0, len(recs), 500):
        out += shard.process(member_readings(recs[k : k + 500], plan))
    (alert,) = [a for a in out if type(a) is Alert]
    return alert


def limits_alert() -> Alert:
    config = load_config(environ={})
    shard = Shard(Plan(config))
    recs = [
        Reading(T0 + timedelta(minutes=i), "water", "sejong-wtp", "filter-outlet", "turbidity",
                "turbidity", "NTU", 0.08 if i < 30 else 0.9)
        for i in range(31)
    ]  # fmt: skip
    return next(a for a in shard.process(recs) if type(a) is Alert and a.rule == "limits")


@pytest.mark.services
def test_explanations_are_fields_in_influxdb(influxdb, influx_db):
    pv, lim = pv_trip_alert(), limits_alert()
    note = Annotation(T0, "structures", "sejong-bridge", "span-2", "strain-2", "maintenance",
                      T0 + timedelta(minutes=40), 'gauge "G2" replaced, re-zeroed')  # fmt: skip
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        w.write(lp.encode_many([pv, lim, note]))
        rows = w.query("SELECT * FROM alert ORDER BY time")[0]["series"][0]
        tags = w.query("SHOW TAG KEYS FROM alert")[0]["series"][0]["values"]
        notes = w.query("SELECT * FROM annotation")[0]["series"][0]
    got = [dict(zip(rows["columns"], v)) for v in rows["values"]]
    by_rule = {g["rule"]: g for g in got}
    p = by_rule["pv_ratio"]
    assert (p["detector"], p["kind"], p["sensor"]) == (
        "performance_ratio",
        "underperformance",
        "pv",
    )
    assert p["observed"] == pv.observed and p["expected"] == pv.expected
    assert p["expected_low"] == pv.expected_low and p["expected_high"] is None
    assert p["contributors"] == "power=1" and p["explanation"] == pv.explanation
    q = by_rule["limits"]
    assert (q["expected_low"], q["expected_high"], q["observed"]) == (None, 0.5, 0.9)
    assert "normal <= 0.5" in q["explanation"]
    explanation_fields = {"detector", "kind", "observed", "expected", "contributors", "explanation"}
    assert not explanation_fields & {t[0] for t in tags}  # fields, never tags
    n = dict(zip(notes["columns"], notes["values"][0]))
    assert n["text"] == 'gauge "G2" replaced, re-zeroed' and n["kind"] == "maintenance"
    assert n["until_ms"] == int((T0 + timedelta(minutes=40)).timestamp() * 1000)


@pytest.mark.services
def test_explanations_are_alertmanager_annotations(alertmanager):
    pv = pv_trip_alert()
    now = datetime.now(UTC)
    rule = f"pv_ratio_{uuid.uuid4().hex[:8]}"
    a = Alert(**{**{f: getattr(pv, f) for f in pv.__struct_fields__}, "rule": rule,
                 "starts_at": now - timedelta(minutes=2), "at": now})  # fmt: skip
    with AlertmanagerClient(alertmanager.url) as am:
        am.post([a], now, 600, GEN)
        (got,) = am.get_alerts(filters=[f'rule="{rule}"'])
    ann = got["annotations"]
    assert ann["explanation"] == pv.explanation
    assert (ann["detector"], ann["kind"]) == ("performance_ratio", "underperformance")
    assert float(ann["observed"]) == pytest.approx(pv.observed, rel=1e-5)
    assert float(ann["expected"]) == pytest.approx(pv.expected, rel=1e-5)
    assert ann["contributors"] == "power 100%"
