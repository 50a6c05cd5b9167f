"""The SQLite delivery store (alerting/store.py), and rule settings from the config acting in the
flow's detect step (escalation and flapping on crafted turbidity series through
twinwatch.engine.shard.Shard)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml

from twinwatch.alerting.store import DeliveryStore, Told, last_states
from twinwatch.config import EXAMPLE_CONFIG, parse_config
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.schema import Alert, Reading, fingerprint

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def alert(status="firing", severity="alert", starts_at=T0) -> Alert:
    labels = {"domain": "water", "site": "s", "asset": "a", "sensor": "p", "rule": "limits"}
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,
        severity=severity,
        domain="water",
        site="s",
        asset="a",
        sensor="p",
        rule="limits",
        starts_at=starts_at,
        at=starts_at,
        value=1.0,
        unit="bar",
        summary="x",
    )


def test_store_survives_reopening(tmp_path):
    path = tmp_path / "state" / "delivery.sqlite"
    s = DeliveryStore(path)
    f, r = alert(), alert("resolved")
    assert s.enqueue([f], ["alertmanager", "webhook"], owner=0, queue_max=10) == {}
    assert s.latest([f.fingerprint]) == {f.fingerprint: (f, 0)}
    ((seq, got),) = s.pending("alertmanager", (0, 1))
    assert got == f and s.depth("webhook") == 1
    s.sent("alertmanager", [(seq, f)], T0)
    assert s.told("alertmanager")[(f.fingerprint, "alert")] == Told(f, T0, T0)
    s.close()
    s = DeliveryStore(path)  # a restarted process
    assert last_states(path) == [f]
    assert s.depth("alertmanager") == 0 and s.depth("webhook") == 1
    s.renewed("alertmanager", [(f.fingerprint, "alert")], T0 + timedelta(minutes=1))
    assert s.told("alertmanager")[(f.fingerprint, "alert")].last_sent == T0 + timedelta(minutes=1)
    s.enqueue([r], ["alertmanager"], owner=0, queue_max=10)
    ((seq, _),) = s.pending("alertmanager", (0, 1))
    s.sent("alertmanager", [(seq, r)], T0 + timedelta(minutes=2))
    assert s.told("alertmanager") == {} and last_states(path) == [r]
    s.close()


def test_store_drops_the_oldest_beyond_queue_max():
    s = DeliveryStore(None)
    alerts = [alert(starts_at=T0 + timedelta(minutes=i)) for i in range(5)]
    assert s.enqueue(alerts[:3], ["am"], owner=0, queue_max=4) == {}
    assert s.enqueue(alerts[3:], ["am"], owner=0, queue_max=4) == {"am": 1}
    assert [a.starts_at for _, a in s.pending("am", (0, 1))] == [a.starts_at for a in alerts[1:]]


def test_last_states_of_a_missing_store_is_empty(tmp_path):
    assert last_states(tmp_path / "nothing.sqlite") == [] and last_states(None) == []


def shard_with(**rule_settings) -> Shard:
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for rule in raw["alert_rules"]:
        if rule["detector"] == "limits":
            rule.update(rule_settings)
    return Shard(Plan(parse_config(raw, environ={})))


def readings(values, step_s=60):
    return [
        Reading(
            T0 + timedelta(seconds=step_s * i),
            "water",
            "sejong-wtp",
            "filter-outlet",
            "turbidity",
            "turbidity",
            "NTU",
            v,
        )
        for i, v in enumerate(values)
    ]


def alerts_of(shard, values):
    return [
        (a.status, a.severity)
        for a in shard.process(readings(values))
        if type(a) is Alert and a.rule == "limits"
    ]


def test_escalation_from_the_config_reaches_the_alerts():
    # limit 0.5 NTU: 0.6 scores 1.2, 1.2 scores 2.4 (see twinwatch.detectors.limits)
    values = [0.1] * 5 + [0.6, 0.6, 1.2, 1.2, 0.6] + [0.1] * 15
    assert alerts_of(shard_with(), values) == [("firing", "alert"), ("resolved", "alert")]
    assert alerts_of(shard_with(escalate={"severe": 2.0}), values) == [
        ("firing", "alert"),
        ("firing", "severe"),
        ("resolved", "severe"),
    ]


def test_flapping_from_the_config_holds_the_alert():
    values = ([0.1] * 3 + [0.9] + [0.1] * 3) * 6 + [0.1] * 40  # a breach every 7 min
    plain = alerts_of(shard_with(clear_s=120), values)
    assert [s for s, _ in plain].count("firing") == 6
    held = alerts_of(shard_with(clear_s=120, flap_window_s=1800, flap_max=3), values)
    assert [s for s, _ in held] == [
        "firing",
        "resolved",
        "firing",
        "resolved",
        "firing",
        "resolved",
    ]


def test_shard_snapshot_keeps_flap_history():
    shard = shard_with(clear_s=120, flap_window_s=1800, flap_max=3)
    shard.process(readings([0.1, 0.9, 0.1, 0.1, 0.1, 0.9]))
    state = shard.to_state()
    (key,) = state
    limits_state = state[key][1]["limits"]  # alert states are keyed by detector name
    assert len(limits_state) == 5 and len(limits_state[4]) == 2  # two firings remembered
    assert Shard(shard.plan, state).to_state() == state
