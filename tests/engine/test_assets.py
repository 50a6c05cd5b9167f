"""Asset groups in the engine: config validation (roles, arity, parameters) at start, the asset
shard (align, detect, alert with an explanation), snapshots keyed by name, maintenance
annotations, and explanations on per-sensor and stale alerts."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from twinwatch.config import EXAMPLE_CONFIG, ConfigError, parse_config
from twinwatch.engine.alerts import affinity, by_shard, route_of
from twinwatch.engine.assets import AssetShard, member_readings
from twinwatch.engine.liveness import Liveness, latest_times, maintenance_windows
from twinwatch.engine.parse import Parser
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.schema import Alert, Annotation, AnomalyScore, Reading, SecurityEvent, series_key

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 09:00 KST


def raw() -> dict:
    return yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))


def build(mutate=None):
    r = raw()
    if mutate:
        mutate(r)
    config = parse_config(r, environ={})
    return config, Plan(config)


def group(r: dict, gid: str) -> dict:
    return next(g for g in r["asset_groups"] if g["id"] == gid)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda r: group(r, "gauges")["detectors"]["gauge_fault"].update(sensors=["strain-9"]),
            r"asset_groups\[0\] \(gauges\)\.detectors\.gauge_fault\.sensors: no sensor 'strain-9'",
        ),
        (
            lambda r: group(r, "pv").update(asset="inverter-7"),
            r"asset_groups\[5\] \(pv\): no asset sejong-pv/inverter-7",
        ),
        (
            lambda r: group(r, "pv")["detectors"].update(nope={"power": "power"}),
            r"asset_groups\[5\] \(pv\)\.detectors: 'nope' is not defined",
        ),
        (  # wrong arity: consistency needs two sensors
            lambda r: group(r, "gauges")["detectors"]["gauge_fault"].update(sensors=["strain-1"]),
            r"detectors\.gauge_fault\.params \(used by asset_groups\[0\] \(gauges\)\).*2 sensors",
        ),
        (  # a role the detector does not have
            lambda r: group(r, "pv")["detectors"]["pv_ratio"].update(wind="power"),
            r"asset_groups\[5\] \(pv\)\.detectors\.pv_ratio: unknown role\(s\) wind",
        ),
        (  # a required role left empty
            lambda r: group(r, "pv")["detectors"]["pv_ratio"].pop("irradiance"),
            r"role 'irradiance' takes exactly 1",
        ),
        (  # bad parameter
            lambda r: r["detectors"]["pv_ratio"]["params"].update(capacity_kw=-5),
            r"detectors\.pv_ratio\.params \(used by asset_groups\[5\] \(pv\)\): capacity_kw",
        ),
        (
            lambda r: r["detectors"]["pv_ratio"]["params"].update(wattage=5),
            r"detectors\.pv_ratio\.params .*wattage",
        ),
        (  # a per-sensor detector in a group
            lambda r: group(r, "pv")["detectors"].update(robust_z={"power": "power"}),
            r"detectors\.robust_z: 'robust_z' is a per-sensor detector",
        ),
        (  # a group detector on a sensor
            lambda r: r["domain_detectors"]["water"].append("night_flow"),
            r"'night_flow' is an asset-group \(vector\) detector \(night_flow\); use it under",
        ),
        (
            lambda r: group(r, "gauges")["detectors"]["span_response"].update(load="temp"),
            r"span_response: a sensor fills two roles",
        ),
        (
            lambda r: group(r, "gauges").update(id="strain-1"),
            r"\.id: 'strain-1' is also a sensor of sejong-bridge/span-2",
        ),
        (
            lambda r: r["asset_groups"].append(copy.deepcopy(group(r, "pv"))),
            r"duplicate group sejong-pv/inverter-1/pv",
        ),
        (
            lambda r: r["city"].update(holidays=["26-03-01"]),
            r"holidays",
        ),
        (
            lambda r: r["city"].update(timezone="Nowhere/Atlantis"),
            r"unknown time zone",
        ),
    ],
)
def test_invalid_groups_fail_at_start_with_the_key_named(mutate, message):
    with pytest.raises(ConfigError, match=message):
        build(mutate)


def test_the_plan_resolves_members_roles_and_city_parameters():
    config, plan = build(lambda r: r["city"].update(holidays=["2026-03-01"]))
    gp = plan.groups["structures/sejong-bridge/span-2/gauges"]
    assert gp.members == ("strain-1", "strain-2", "temp", "accel-rms")
    assert gp.tick_s == 60 and gp.tolerances == (25.0,) * 4 and gp.lateness_s == 30
    by_name = {d[0]: d for d in gp.detectors}
    assert by_name["span_response"][3] == (0, 1, 3, 2)  # response, response, load, covariate
    assert by_name["gauge_fault"][2]["counts"] == {"sensors": 2, "drivers": 2}
    sched = plan.groups["energy/sejong-building/main-meter/schedule"].detectors[0][2]
    assert sched["timezone"] == "Asia/Seoul" and sched["holidays"] == ["2026-03-01"]
    assert plan.member_of["water/sejong-dma-1/inlet/flow"] == (
        ("water/sejong-dma-1/inlet/night", 0),
        ("water/sejong-dma-1/inlet/dosing", 1),
    )


# --------------------------------------------------------------------------- the asset shard


def readings(config, site, asset, values: dict, start=T0, step=60, n=None):
    """Readings of several sensors of one asset, every ``step`` s, values(i) per sensor."""
    refs = {s: r for (d, si, a, s), r in config.catalog.items() if (si, a) == (site, asset)}
    out = []
    for i in range(n):
        t = start + timedelta(seconds=step * i)
        for sensor, fn in values.items():
            ref = refs[sensor]
            out.append(
                Reading(
                    t, ref.domain, site, asset, sensor, ref.sensor.quantity, ref.sensor.unit, fn(i)
                )
            )
    return out


def pv_day(i: int, loss: float = 0.0) -> tuple[float, float]:
    h = (i / 60 + 6) % 24  # from 06:00 local-ish
    g = max(math.sin(math.pi * (h - 6) / 12), 0) * 900
    return 100 * g / 1000 * 0.93 * (1 - loss), g


def test_a_pv_trip_alerts_with_its_explanation_and_a_score_per_tick():
    config, plan = build()
    shard = AssetShard(plan)
    n = 3 * 1440
    trip = 2 * 1440 + 360  # day 3, at noon
    recs = readings(
        config,
        "sejong-pv",
        "inverter-1",
        {
            "power": lambda i: 0.01 if i >= trip else pv_day(i)[0],
            "irradiance": lambda i: pv_day(i)[1],
        },
        n=n,
    )
    out = []
    for k in range(0, len(recs), 1000):
        out += shard.process(member_readings(recs[k : k + 1000], plan))
    scores = [o for o in out if type(o) is AnomalyScore]
    assert len(scores) >= n - 2 and all(
        s.sensor == "pv" and set(s.scores) == {"pv_ratio"} for s in scores
    )
    alerts = [o for o in out if type(o) is Alert]
    assert [a.status for a in alerts] == ["firing"]
    a = alerts[0]
    assert (a.domain, a.site, a.asset, a.sensor, a.rule) == (
        "energy",
        "sejong-pv",
        "inverter-1",
        "pv",
        "pv_ratio",
    )
    assert 0 <= (a.at - recs[2 * trip].time).total_seconds() < 900
    assert a.detector == "performance_ratio" and a.kind == "underperformance"
    assert a.observed < a.expected_low < a.expected and abs(a.expected - 0.93) < 0.01
    assert a.contributors == (("power", 1.0),)
    assert "performance ratio" in a.explanation and "expected 0.93" in a.explanation
    assert a.summary.startswith("sejong-pv/inverter-1 performance ratio down to")


def test_routing_only_members_and_one_shard_per_asset():
    """Only group members reach the asset step, and the members of an asset's groups (in two
    groups here: night flow and dosing) are routed with their asset: one shard, the one their
    own readings are detected in, so the group sees them in publish order (issue #14)."""
    config, plan = build()
    recs = readings(
        config, "sejong-dma-1", "inlet", {"flow": lambda i: 1.0, "pressure": lambda i: 1.0}, n=2
    )
    members = member_readings(recs, plan)
    assert [r.sensor for r in members] == ["flow", "flow"]  # pressure is in no group
    keys = [f"k{s}" for s in range(16)]
    routes = affinity(config)
    routed = by_shard(members, keys, routes)
    assert [len(rs) for _, rs in routed] == [2]  # once, though the flow is in two groups
    for gp in plan.groups.values():
        shards = {
            route_of(series_key(gp.domain, gp.site, gp.asset, m), routes, 16) for m in gp.members
        }
        assert len(shards) == 1, gp.key
        other = series_key(gp.domain, gp.site, gp.asset, "not-a-member")
        assert route_of(other, routes, 16) == route_of(other, {}, 16)  # by its own key


def test_snapshot_restores_exactly_and_drops_departed_groups(caplog):
    config, plan = build()
    recs = readings(
        config,
        "sejong-pv",
        "inverter-1",
        {"power": lambda i: pv_day(i)[0], "irradiance": lambda i: pv_day(i)[1]},
        n=2 * 1440,
    )
    a = AssetShard(plan)
    a.process(member_readings(recs[: len(recs) // 2], plan))
    state = a.to_state()
    b = AssetShard(plan, state)
    rest = member_readings(recs[len(recs) // 2 :], plan)
    assert a.process(rest) == b.process(rest)
    with caplog.at_level("WARNING"):
        restored = AssetShard(plan, {**state, "gone/x/y/z": ((0.0, ()), {}, {})})
    assert "gone/x/y/z" in caplog.text and "gone/x/y/z" not in restored.groups


def test_a_group_with_changed_roles_restores_fresh_detectors_without_raising(caplog):
    config, plan = build()
    shard = AssetShard(plan)
    recs = readings(
        config,
        "sejong-pv",
        "inverter-1",
        {"power": lambda i: pv_day(i)[0], "irradiance": lambda i: pv_day(i)[1]},
        n=600,
    )
    shard.process(member_readings(recs, plan))
    state = shard.to_state()

    def change(r):
        r["asset_groups"].reverse()
        group(r, "gauges")["detectors"].pop("span_shift")
        r["detectors"]["pv_ratio"] = {"type": "dosing"}  # same name, another type
        group(r, "pv")["detectors"]["pv_ratio"] = {"chlorine": "power"}

    _, plan2 = build(change)
    with caplog.at_level("WARNING"):
        restored = AssetShard(plan2, state)
    g = restored.groups["energy/sejong-pv/inverter-1/pv"]
    assert type(g.detectors[0]).__name__ == "Dosing"
    assert "pv:pv_ratio" in caplog.text
    assert restored.process(member_readings(recs[:5], plan2)) is not None


# --------------------------------------------------------------------------- maintenance


def span_values(i: int, rezero: bool = False) -> dict:
    h = (i * 10 / 3600 + 9) % 24
    temp = 12 + 6 * math.sin(2 * math.pi * (h - 9) / 24)
    traffic = 0.05 + 0.9 * math.exp(-0.5 * ((h - 8) / 1.2) ** 2)
    wobble = math.sin(i * 0.7) * 2  # deterministic jitter: no sensor repeats its value
    jitter = math.sin(i * 1.3) * 0.05
    s2 = 95 + 10 * (temp - 15) + 30 * traffic + wobble * 0.8
    return {
        "strain-1": 120 + 11 * (temp - 15) + 35 * traffic + wobble,
        "strain-2": s2 - 150.0 if rezero else s2,
        "temp": temp + jitter,
        "accel-rms": 4 + 3 * traffic + jitter,
    }


def test_a_replaced_gauge_under_annotation_stays_quiet_without_it_it_alerts():
    config, plan = build()
    work = T0 + timedelta(days=2)
    until = work + timedelta(minutes=40)
    n = int(3 * 86400 / 10)
    sensors = ("strain-1", "strain-2", "temp", "accel-rms")

    def stream(annotated: bool):
        recs: list = []
        for i in range(n):
            t = T0 + timedelta(seconds=10 * i)
            if annotated and t == work:
                recs.append(
                    Annotation(
                        t,
                        "structures",
                        "sejong-bridge",
                        "span-2",
                        "strain-2",
                        "maintenance",
                        until,
                        "replaced",
                    )
                )
            v = span_values(i, rezero=t >= work + timedelta(minutes=30))
            for s in sensors:
                if s == "strain-2" and work <= t < work + timedelta(minutes=30):
                    continue  # offline while replaced
                ref = config.catalog[("structures", "sejong-bridge", "span-2", s)]
                recs.append(
                    Reading(
                        t,
                        "structures",
                        "sejong-bridge",
                        "span-2",
                        s,
                        ref.sensor.quantity,
                        ref.sensor.unit,
                        v[s],
                    )
                )
        return recs

    def alerts(annotated):
        shard, assets, live = Shard(plan), AssetShard(plan), Liveness(config)
        out = []
        recs = stream(annotated)
        for k in range(0, len(recs), 100):  # live-sized batches: liveness sees the silence
            b = recs[k : k + 100]
            out += shard.process(b) + assets.process(member_readings(b, plan))
            out += live.process(latest_times(b), maintenance_windows(b))
        return [o for o in out if type(o) is Alert and o.status == "firing"]

    assert alerts(True) == []
    rules = {(a.sensor, a.rule) for a in alerts(False)}
    assert ("gauges", "gauge_fault") in rules  # the re-zeroed gauge departs from its drivers
    assert ("strain-2", "stale") in rules  # its silence was stale
    assert ("strain-2", "gap") in rules  # and its return late


def test_held_series_are_recorded_not_judged_then_relearned():
    config, plan = build()
    shard = Shard(plan)
    ref = config.catalog[("water", "sejong-wtp", "clearwell", "level")]

    def mk(i, v):
        return Reading(
            T0 + timedelta(minutes=i),
            "water",
            "sejong-wtp",
            "clearwell",
            "level",
            ref.sensor.quantity,
            ref.sensor.unit,
            v,
        )

    shard.process([mk(i, 4.0 + 0.01 * (i % 3)) for i in range(200)])
    note = Annotation(
        T0 + timedelta(minutes=200),
        "water",
        "sejong-wtp",
        "clearwell",
        "level",
        "maintenance",
        T0 + timedelta(minutes=230),
    )
    out = shard.process([note] + [mk(i, 9.0) for i in range(200, 230)])  # out of limits, held
    assert [o for o in out if type(o) is Alert] == []
    assert all(type(o) is AnomalyScore and o.scores == {} for o in out)
    out = shard.process([mk(i, 2.5 + 0.01 * (i % 3)) for i in range(230, 260)])  # new level
    assert not [o for o in out if type(o) is Alert]
    assert all(o.scores for o in out)  # judged again, by fresh detectors
    restored = Shard(plan, shard.to_state())
    assert restored.series[ref_key(ref)].held_until == 0.0


def ref_key(ref):
    return f"{ref.domain}/{ref.site}/{ref.asset}/{ref.sensor.id}"


# --------------------------------------------------------------------------- liveness, explanations


def test_event_streams_are_not_stale_unless_stale_s_is_set():
    config, _ = build()
    live = Liveness(config)
    assert "security/sejong-soc/gw-1/sshd" not in live.intervals  # bursty: quiet nights are normal
    assert live.intervals["security/sejong-soc/gw-1/firewall"] * config.flow.stale_factor == 600
    sshd = SecurityEvent(T0, "sejong-soc", "gw-1", "sshd", "auth_success", "success")
    reading = Reading(T0, "water", "sejong-wtp", "clearwell", "level", "reservoir_level", "m", 4.0)
    assert live.process(latest_times([sshd, reading])) == []
    later = [  # three hours on, a quorum of other sensors moves the stream's clock
        Reading(T0 + timedelta(hours=3), "water", "sejong-wtp", a, s, "q", "u", 1.0)
        for a, s in (
            ("filter-outlet", "ph"),
            ("clearwell", "chlorine"),
            ("clearwell", "conductivity"),
        )
    ]
    out = live.process(latest_times(later))
    stale = {a.sensor for a in out}
    assert "level" in stale and "sshd" not in stale
    a = next(a for a in out if a.sensor == "level")
    assert a.detector == "stale" and a.expected == 300 and a.observed > 10000
    assert "silent for" in a.explanation and a.contributors == (("level", 1.0),)


def test_per_sensor_alerts_explain_expected_against_observed():
    config, plan = build()
    shard = Shard(plan)
    ref = config.catalog[("water", "sejong-wtp", "filter-outlet", "ph")]

    def mk(i, v):
        return Reading(
            T0 + timedelta(minutes=i), "water", "sejong-wtp", "filter-outlet", "ph", "ph", "pH", v
        )

    out = shard.process(
        [mk(i, 7.2 + 0.01 * ((i * 7) % 5 - 2)) for i in range(150)] + [mk(150, 9.1)]
    )
    alerts = {a.rule: a for a in out if type(a) is Alert}
    lim = alerts["limits"]
    assert (lim.expected_low, lim.expected_high, lim.observed) == (5.8, 8.5, 9.1)
    assert (
        lim.kind == "limits"
        and "normal 5.8-8.5" in lim.explanation
        and ref.sensor.limits.source in lim.explanation
    )
    rz = alerts["robust_z"]
    assert abs(rz.expected - 7.2) < 0.02 and rz.expected_high < 9.1 < rz.observed + 1e-9
    assert rz.contributors == (("ph", 1.0),)


def test_annotations_parse_and_bad_ones_are_dead_letters():
    config, _ = build()
    p = Parser(config)
    topic = "city/structures/sejong-bridge/span-2/strain-2/annotation"
    a = p.parse(
        topic, b'{"time":"2026-03-02T00:00:00Z","until":"2026-03-02T01:00:00Z","text":"new gauge"}'
    )
    assert type(a) is Annotation and a.series == "structures/sejong-bridge/span-2/strain-2"
    assert (a.kind, a.text, a.until - a.time) == ("maintenance", "new gauge", timedelta(hours=1))
    oks, dead = p.split(
        [
            (topic, b'{"time":"2026-03-02T01:00:00Z","until":"2026-03-02T00:00:00Z"}'),
            (topic, b'{"time":"2026-03-02T00:00:00Z"}'),
            (
                topic,
                b'{"time":"2026-03-02T00:00:00Z","until":"2026-03-02T01:00:00Z","kind":"party"}',
            ),
            ("city/structures/sejong-bridge/span-2/ghost/annotation", b"{}"),
        ]
    )
    assert oks == [] and [d.reason for d in dead] == [
        "bad_time",
        "bad_schema",
        "bad_schema",
        "bad_topic",
    ]


def test_a_bug_on_one_record_dead_letters_that_record_only(monkeypatch):
    """A group detector raising on one tick makes the reading that completed it an
    internal_error dead letter; the other groups and the following ticks go on."""
    from twinwatch.detectors.performance_ratio import PerformanceRatio

    config, plan = build()
    real = PerformanceRatio.update
    calls = {"n": 0}

    def buggy(self, t, xs):
        calls["n"] += 1
        if calls["n"] == 100:
            raise ZeroDivisionError("injected")
        return real(self, t, xs)

    monkeypatch.setattr(PerformanceRatio, "update", buggy)
    shard = AssetShard(plan)
    recs = readings(
        config,
        "sejong-pv",
        "inverter-1",
        {"power": lambda i: pv_day(i)[0], "irradiance": lambda i: pv_day(i)[1]},
        n=300,
    )
    out = shard.process(member_readings(recs, plan))
    assert [d.reason for d in shard.dead] == ["internal_error"]
    assert "ZeroDivisionError: injected" in shard.dead[0].detail
    scores = [s for s in out if type(s) is AnomalyScore]
    assert len(scores) >= 297  # every other tick was judged


def test_a_change_accepted_by_the_learning_policy_is_annotated_once():
    """The policy's drift rule (learn.drift_s) accepts a persistent change as robust_z's new
    baseline; the engine says so with one ``annotation`` point of kind ``baseline`` (so an alert
    going quiet is explained), written like any annotation."""
    from twinwatch import lineprotocol

    def mutate(r):
        r["detectors"]["robust_z"].setdefault("params", {})["learn"] = {"drift_s": 3600.0}

    config, plan = build(mutate)
    shard = Shard(plan)

    def mk(i, v):
        return Reading(
            T0 + timedelta(minutes=i), "water", "sejong-wtp", "filter-outlet", "ph", "ph", "pH", v
        )

    noise = [0.01 * ((i * 7) % 5 - 2) for i in range(400)]
    before = [mk(i, 7.2 + noise[i]) for i in range(200)]
    after = [mk(i, 7.9 + noise[i]) for i in range(200, 400)]  # a new dosing set point
    out = shard.process(before) + shard.process(after)
    notes = [a for a in out if type(a) is Annotation]
    assert len(notes) == 1
    note = notes[0]
    assert (note.kind, note.sensor) == ("baseline", "ph") and note.text.startswith("robust_z:")
    accepted = note.time - T0
    assert timedelta(minutes=200 + 60) <= accepted <= timedelta(minutes=200 + 75)
    line = lineprotocol.encode(note)[0]
    assert line.startswith("annotation,") and "kind=baseline" in line
    # after the acceptance the new level is normal: robust_z's alert resolves
    rz = [a for a in out if type(a) is Alert and a.rule == "robust_z"]
    assert rz and rz[-1].status == "resolved"
