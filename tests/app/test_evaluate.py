"""Incident matching for the demo summary and backtests."""

from datetime import UTC, datetime, timedelta

from twinwatch.app.evaluate import AlertRow, match_incidents, unmatched_alerts

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
