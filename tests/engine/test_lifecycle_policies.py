"""Hysteresis, flapping and escalation on crafted score series (alerting/lifecycle.evaluate),
rule -> policy, annotation links. Pure: times are passed in, tables are explicit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twinwatch.alerting.rules import check_links, links
from twinwatch.config import AlertmanagerService, AlertRule, ConfigError
from twinwatch.engine.lifecycle import FIRING, INACTIVE, AlertState, Policy, evaluate
from twinwatch.engine.plan import policy
from twinwatch.schema import Alert

THRESHOLD = 1.0


def run(scores, **kw):
    p = Policy(**kw)
    s = AlertState()
    return [evaluate(s, t, x, THRESHOLD, p) for t, x in scores], s


# A score hovering around the threshold: 1.1, 0.9, 1.1, 0.9 ... every 100 s.
HOVER = [(i * 100.0, 1.1 if i % 2 == 0 else 0.9) for i in range(20)]


def test_without_hysteresis_a_hovering_score_fires_and_resolves_repeatedly():
    changes, _ = run(HOVER, clear_s=0)
    assert changes.count("firing") == 10 and changes.count("resolved") == 10


def test_reset_threshold_keeps_a_hovering_alert_firing_until_the_score_really_drops():
    series = HOVER + [(2000.0, 0.5)]
    changes, s = run(series, clear_s=0, reset=0.8)
    assert changes[0] == "firing"
    assert changes[1:-1] == [None] * 19  # 0.9 >= reset: still hit
    assert changes[-1] == "resolved" and s.status == INACTIVE


def test_reset_applies_only_to_an_active_alert():
    changes, _ = run([(0, 0.9), (100, 0.95)], reset=0.8)
    assert changes == [None, None]  # below the threshold, never fired: reset is no trigger


def flappy(n_cycles: int, period: float = 200.0):
    out = []
    for i in range(n_cycles):
        out += [(i * period, 2.0), (i * period + 100, 0.0)]
    return out


def test_flapping_alert_is_held_instead_of_notifying_every_change():
    series = flappy(10)  # fires, quiet 100 s, fires again ... clear_s=50
    plain, _ = run(series, clear_s=50)
    assert plain.count("firing") == 10 and plain.count("resolved") == 10
    held, s = run(series, clear_s=50, flap_window_s=1000, flap_max=3)
    # Three firings inside the window make it flapping; after that it stays firing.
    assert held.count("firing") == 3 and held.count("resolved") == 2
    assert s.status == FIRING
    # ... until it has been quiet for the whole window.
    last_hit = series[-2][0]
    assert (
        evaluate(
            s, last_hit + 900, 0.0, THRESHOLD, Policy(clear_s=50, flap_window_s=1000, flap_max=3)
        )
        is None
    )
    assert (
        evaluate(
            s, last_hit + 1001, 0.0, THRESHOLD, Policy(clear_s=50, flap_window_s=1000, flap_max=3)
        )
        == "resolved"
    )


def test_firings_far_apart_are_not_flapping():
    series = flappy(6, period=2000.0)
    changes, _ = run(series, clear_s=50, flap_window_s=1000, flap_max=3)
    assert changes.count("firing") == 6 and changes.count("resolved") == 6


def test_escalation_fires_again_with_a_higher_level_and_never_de_escalates():
    p_kw = dict(clear_s=100, levels=(2.0, 3.0))
    changes, s = run(
        [(0, 1.2), (10, 1.5), (20, 2.5), (30, 2.1), (40, 3.5), (50, 1.1), (200, 0.0)], **p_kw
    )
    assert changes == ["firing", None, "firing", None, "firing", None, "resolved"]
    assert s.level == 2  # the resolve names the level that fired
    again, _ = run([(0, 1.2)], **p_kw)
    assert again == ["firing"]


def test_state_round_trip_keeps_three_floats_unless_needed():
    s = AlertState(FIRING, 1.0, 2.0)
    assert s.to_state() == (FIRING, 1.0, 2.0)
    s.level, s.fired = 1, (1.0, 5.0)
    assert AlertState.from_state(s.to_state()) == s


def test_policy_from_rule_orders_levels_and_ignores_lower_severities():
    rule = AlertRule(
        detector="robust_z",
        severity="caution",
        reset=0.8,
        escalate={"severe": 4.0, "alert": 2.0, "attention": 1.5},
    )
    p, ladder = policy(rule, "caution")
    assert p.levels == (2.0, 4.0) and ladder == ("caution", "alert", "severe") and p.reset == 0.8


def test_policy_rejects_a_ladder_that_goes_down():
    with pytest.raises(ConfigError, match="must be above"):
        policy(
            AlertRule(detector="x", severity="attention", escalate={"severe": 2.0, "alert": 3.0}),
            "attention",
        )


def test_links_fill_in_asset_variables_and_time_range():
    t = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    a = Alert(
        fingerprint="f",
        status="firing",
        severity="alert",
        domain="water",
        site="s1",
        asset="pump-1",
        sensor="p1",
        rule="limits",
        starts_at=t,
        at=t,
        value=9.5,
        unit="bar",
        summary="x",
    )
    cfg = AlertmanagerService(
        runbook_url="https://rb/{domain}/{rule}",
        dashboard_url="http://g/d?var-asset={asset}&from={from_ms}&to={to_ms}",
    )
    got = links(a, cfg)
    ms = int(t.timestamp() * 1000)
    assert got == {
        "runbook_url": "https://rb/water/limits",
        "dashboard_url": f"http://g/d?var-asset=pump-1&from={ms - 3_600_000}&to={ms + 3_600_000}",
    }
    assert links(a, AlertmanagerService()) == {}


def test_a_bad_link_placeholder_fails_at_start_up():
    with pytest.raises(ConfigError, match="bad placeholder 'asset_id'"):
        check_links(AlertmanagerService(runbook_url="https://rb/{asset_id}"))
