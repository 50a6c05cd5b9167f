"""Incident matching for the demo summary and backtests."""

from datetime import UTC, datetime, timedelta

from twinwatch.app.evaluate import AlertRow, legit_alarms, match_incidents, unmatched_alerts

T0 = datetime(2026, 11, 22, tzinfo=UTC)
LABELS = [
    {
        "id": "inc-01",
        "kind": "pipe_burst",
        "domain": "water",
        "targets": ["dma/inlet/pressure"],
        "start": T0.isoformat(),
        "end": (T0 + timedelta(hours=1)).isoformat(),
    },
    {
        "id": "inc-02",
        "kind": "stuck_sensor",
        "domain": "water",
        "targets": ["dma/inlet/flow"],
        "start": T0.isoformat(),
        "end": (T0 + timedelta(hours=1)).isoformat(),
    },
]


def alert(minutes, sensor, rule="limits"):
    return AlertRow(T0 + timedelta(minutes=minutes), "water", "dma", "inlet", sensor, rule, "alert")


def test_first_alert_on_a_target_in_the_window_gives_the_delay():
    alerts = [
        alert(-5, "pressure"),
        alert(12, "pressure", "robust_z"),
        alert(7, "pressure"),
        alert(200, "pressure"),
    ]
    res = match_incidents(LABELS, alerts, grace_s=1800)
    assert res[0].detected and res[0].delay_s == 7 * 60 and res[0].first_alert.rule == "limits"
    assert not res[1].detected and res[1].delay_s is None
    assert unmatched_alerts(LABELS, alerts, grace_s=1800) == [alerts[0], alerts[3]]


# --- issue #12: detector kinds, asset groups, legitimate changes -------------------------------

GROUPS = {("dma", "inlet", "night"): frozenset({"flow"})}
LEAK = {
    "id": "inc-03",
    "kind": "night_leak",
    "domain": "water",
    "targets": ["dma/inlet/flow"],
    "start": T0.isoformat(),
    "end": (T0 + timedelta(hours=30)).isoformat(),
    "expect": ["leak"],
}
RAIN = {
    "id": "inc-04",
    "kind": "rain_turbidity",
    "domain": "water",
    "targets": ["dma/inlet/turbidity"],
    "start": T0.isoformat(),
    "end": (T0 + timedelta(hours=8)).isoformat(),
    "expect": [],
    "legit": True,
}


def kind_alert(minutes, sensor, rule, kind):
    return AlertRow(
        T0 + timedelta(minutes=minutes),
        "water",
        "dma",
        "inlet",
        sensor,
        rule,
        "caution",
        kind,
        rule,
    )


def test_a_group_alert_matches_its_members_and_the_right_kind_is_checked():
    leak_first = [
        kind_alert(900, "night", "night_flow", "leak"),
        kind_alert(950, "flow", "robust_z", "robust_z"),
    ]
    (r,) = match_incidents([LEAK], leak_first, groups=GROUPS)
    assert r.detected and r.right_kind and r.first_alert.sensor == "night"
    assert r.delay_s == 900 * 60
    (r,) = match_incidents([LEAK], leak_first, groups=None)  # without the groups: not on a target
    assert r.first_alert.rule == "robust_z" and not r.right_kind  # detected, but by chance
    by_chance = [kind_alert(10, "flow", "robust_z", "robust_z"), *leak_first]
    (r,) = match_incidents([LEAK], by_chance, groups=GROUPS)
    assert r.detected and not r.right_kind


def test_alerts_in_a_legitimate_change_are_false_alarms():
    alerts = [
        kind_alert(60, "turbidity", "robust_z", "robust_z"),
        kind_alert(900, "night", "night_flow", "leak"),
    ]
    false = unmatched_alerts([LEAK, RAIN], alerts, groups=GROUPS)
    assert false == [alerts[0]]
    assert legit_alarms(RAIN, alerts, groups=GROUPS) == [alerts[0]]
    (rain,) = [r for r in match_incidents([LEAK, RAIN], alerts, groups=GROUPS) if r.legit]
    assert rain.detected  # i.e. it alerted: what the demo and benchmark report as a false alarm


def test_replay_runs_the_flows_logic_over_a_scenario():
    """The pv_underperformance scenario (seed 1), on its own site: found by the performance
    ratio, first, within the day; nothing else fires."""
    import msgspec

    from twinwatch.app import simulator
    from twinwatch.app.evaluate import group_members, replay
    from twinwatch.config import load_config

    config = simulator.scenario_config(load_config(environ={}), "pv_underperformance", 1, days=5)
    config = msgspec.structs.replace(
        config,
        sites=[s for s in config.sites if s.id == "sejong-pv"],
        asset_groups=[g for g in config.asset_groups if g.site == "sejong-pv"],
    )
    start = datetime(2026, 3, 1, 15, tzinfo=UTC)
    labels = simulator.incident_labels(config, start)
    alerts = replay(config, simulator.generate(config, start))
    groups = group_members(config)
    (r,) = match_incidents(labels, alerts, groups=groups)
    assert r.detected and r.right_kind and r.first_alert.rule == "pv_ratio"
    assert r.delay_s < 24 * 3600
    assert unmatched_alerts(labels, alerts, groups=groups) == []
