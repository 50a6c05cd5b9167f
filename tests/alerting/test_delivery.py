"""Alert delivery (alerting/delivery.py) on a real Alertmanager 0.25 whose webhook receiver counts
the pages (tests/pager.py): catch-up episodes, outages, escalation, restarts, re-sends, acks.

Only refusals a real Alertmanager will not give on demand (401, a 400 for one alert of a batch)
use an httpx.MockTransport stub; those tests say so.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from httpstub import stub  # tests/httpstub.py
from pager import Pager  # tests/pager.py
from prometheus_client import REGISTRY

from twinwatch.alerting.alertmanager import AlertmanagerClient, ack_silence_comment
from twinwatch.alerting.delivery import Delivery, judge
from twinwatch.alerting.notifiers import AlertmanagerNotifier, hold_of, notifiers_from_config
from twinwatch.alerting.store import DeliveryStore, last_states
from twinwatch.app import services
from twinwatch.config import AlertmanagerService
from twinwatch.schema import Alert, fingerprint

T = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def alert(
    status: str = "firing",
    *,
    rule: str = "limits",
    sensor: str = "chlorine",
    starts_at: datetime = T,
    at: datetime | None = None,
    severity: str = "severe",
) -> Alert:
    labels = {
        "domain": "water",
        "site": "wtp",
        "asset": "clearwell",
        "sensor": sensor,
        "rule": rule,
    }
    at = at or starts_at
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,
        severity=severity,
        domain="water",
        site="wtp",
        asset="clearwell",
        sensor=sensor,
        rule=rule,
        starts_at=starts_at,
        at=at,
        value=0.02,
        unit="mg/L",
        summary=f"{sensor} outside its limits",
        ends_at=at if status == "resolved" else None,
    )


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def deliver_until(d: Delivery, done, timeout: float = 20.0) -> None:
    """Run delivery passes until ``done()`` (a condition, polled with a deadline)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "delivery did not finish in time"
        for r in d.receivers:
            r.next_try = 0.0
        d.run_once()
        time.sleep(0.05)


# --- judging (pure) ---------------------------------------------------------------------------

F = alert()
R = alert("resolved", at=T + timedelta(minutes=12))
LATER = T + timedelta(hours=2)

JUDGE = {
    "first firing is queued": (F, None, [("firing", "severe", T)]),
    "replayed firing is a duplicate": (F, F, []),
    "re-fired with a later start after a restart: re-owned, not paged": (
        alert(starts_at=T + timedelta(minutes=3)),
        F,
        [],
    ),
    "escalation resolves the old label set, fires the new": (
        alert(severity="severe", at=T + timedelta(minutes=1)),
        alert(severity="alert"),
        [("resolved", "alert", T), ("firing", "severe", T)],
    ),
    "resolve of what was paged": (R, F, [("resolved", "severe", T)]),
    "resolve with a later start (engine rolled back) resolves the paged episode": (
        alert("resolved", starts_at=T + timedelta(minutes=5), at=T + timedelta(minutes=20)),
        F,
        [("resolved", "severe", T)],
    ),
    "orphan resolve is not paged": (R, None, []),
    "duplicate resolve is not paged": (R, R, []),
    "replay of the old episode after its resolve": (F, R, []),
    "a new episode after the resolve": (
        alert(starts_at=LATER),
        R,
        [("firing", "severe", LATER)],
    ),
    "pending is never paged": (alert("pending"), None, []),
}


@pytest.mark.parametrize("new, newest, want", JUDGE.values(), ids=JUDGE.keys())
def test_judge(new, newest, want):
    got = judge(new, newest)
    assert [(a.status, a.severity, a.starts_at) for a in got] == want
    for a in got:
        if a.status == "resolved":
            assert a.ends_at is not None and a.ends_at >= a.starts_at


# --- real Alertmanager with a counting pager ------------------------------------------------


@pytest.fixture
def pager():
    p = Pager()
    yield p
    p.close()


@pytest.fixture
def paged_am(service_factory, pager):
    return service_factory(services.Alertmanager, config_text=pager.alertmanager_config())


def make(am_url: str, tmp_path, **kw) -> Delivery:
    cfg = AlertmanagerService(
        url=am_url,
        state_path=str(tmp_path / "delivery.sqlite"),
        resolve_hold_s=kw.pop("hold", 2.0),
        **kw,
    )
    return Delivery(
        cfg, notifiers_from_config(cfg), DeliveryStore(cfg.state_path), background=False
    )


def recent(minutes_ago: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)


@pytest.mark.services
def test_catch_up_episode_is_paged_firing_then_resolved(paged_am, pager, tmp_path):
    """An alert that fired and resolved inside one batch (a catch-up after downtime) is paged
    once firing and once resolved, with its real start and end. Without the hold Alertmanager
    would see it resolved before its group's first flush and never page it."""
    start, end = recent(30), recent(18)
    d = make(paged_am.url, tmp_path)
    fired, resolved = alert(starts_at=start), alert("resolved", starts_at=start, at=end)
    assert d.enqueue([fired, resolved]) == 2
    d.run_once()
    assert d.store.depth("alertmanager") == 1  # the resolve waits behind its young firing
    pager.wait_for(lambda: pager.count()[(fired.fingerprint, "firing")] == 1)
    deliver_until(d, lambda: d.store.depth("alertmanager") == 0)
    pager.wait_for(lambda: pager.count()[(fired.fingerprint, "resolved")] == 1)
    d.close()
    pager.settled(paged_am.url)
    assert pager.count() == {(fired.fingerprint, "firing"): 1, (fired.fingerprint, "resolved"): 1}
    (f, r) = pager.alerts()
    assert f["startsAt"].startswith(start.strftime("%Y-%m-%dT%H:%M:%S"))
    assert r["startsAt"] == f["startsAt"]
    assert r["endsAt"].startswith(end.strftime("%Y-%m-%dT%H:%M:%S"))
    assert pager.orphans() == []


@pytest.mark.services
def test_the_hold_is_read_from_the_running_alertmanager(paged_am):
    """Our config says group_wait 30 s / group_interval 300 s (hold 302 s), but the running
    Alertmanager flushes after 0.5 s / 1 s: its routing tree decides (1 s + 2 s margin)."""
    cfg = AlertmanagerService(url=paged_am.url, state_path=None)
    assert cfg.hold_s == 302.0
    notifier = AlertmanagerNotifier(cfg)
    assert notifier.hold_s == 3.0
    assert AlertmanagerNotifier(msgspec.structs.replace(cfg, resolve_hold_s=9.0)).hold_s == 9.0
    down = AlertmanagerNotifier(
        msgspec.structs.replace(cfg, url=f"http://127.0.0.1:{services.free_port()}")
    )
    assert down.hold_s == 302.0  # not reachable yet: ours, asked again later


def test_hold_of_an_alertmanager_config():
    assert hold_of("route: {receiver: x}") == 302.0  # Alertmanager's defaults, 30 s and 5 m
    assert (
        hold_of(
            "route: {receiver: x, group_wait: 500ms, group_interval: 1s, routes: "
            "[{receiver: y, group_interval: 1m30s}, {receiver: z, group_wait: 2m}]}"
        )
        == 122.0
    )


@pytest.mark.services
def test_outage_queue_is_bounded_and_delivered_when_back(paged_am, pager, tmp_path):
    """Alertmanager down: enqueue returns without contacting it; the queue keeps the newest
    queue_max states (drops counted), one failed attempt is counted and backed off; when it is
    back every kept state is delivered, in order."""
    d = make(paged_am.url, tmp_path, queue_max=3)
    paged_am.stop()
    dropped = metric("twinwatch_alert_queue_dropped_total", receiver="alertmanager")
    errors = metric("twinwatch_sink_errors_total", sink="alertmanager")
    alerts = [alert(sensor=f"s{i}", starts_at=recent(5)) for i in range(5)]
    assert d.enqueue(alerts) == 5
    assert metric("twinwatch_alert_queue_depth", receiver="alertmanager") == 3
    assert metric("twinwatch_alert_queue_dropped_total", receiver="alertmanager") - dropped == 2
    assert d.run_once() == 0
    assert metric("twinwatch_sink_errors_total", sink="alertmanager") - errors == 1
    assert d.receivers[0].next_try > time.monotonic()  # backing off, not hammering
    paged_am.start()
    deliver_until(d, lambda: d.store.depth("alertmanager") == 0)
    with AlertmanagerClient(paged_am.url) as c:
        got = {a["labels"]["sensor"] for a in c.get_alerts()}
    assert got == {"s2", "s3", "s4"}  # the oldest two were dropped
    assert metric("twinwatch_alert_queue_depth", receiver="alertmanager") == 0
    d.close()


@pytest.mark.services
def test_escalation_resolves_the_old_label_set(paged_am, pager, tmp_path):
    d = make(paged_am.url, tmp_path)
    start = recent(10)
    d.enqueue([alert(severity="alert", starts_at=start)])
    deliver_until(d, lambda: d.store.depth("alertmanager") == 0)
    d.enqueue([alert(severity="severe", starts_at=start, at=recent(9))])
    deliver_until(d, lambda: d.store.depth("alertmanager") == 0)
    with AlertmanagerClient(paged_am.url) as c:
        active = c.get_alerts()
    assert [(a["labels"]["severity"], a["startsAt"][:19]) for a in active] == [
        ("severe", start.strftime("%Y-%m-%dT%H:%M:%S"))
    ]
    d.close()


@pytest.mark.services
def test_restart_neither_repeats_nor_forgets(paged_am, pager, tmp_path):
    """A restarted process (new Delivery, same store): the replayed firing is not paged again,
    nor a re-fire with a later start (the engine re-owning the episode); the resolve goes out
    with the start that was paged."""
    start = recent(20)
    d = make(paged_am.url, tmp_path)
    d.enqueue([alert(starts_at=start)])
    deliver_until(d, lambda: d.store.depth("alertmanager") == 0)
    pager.wait_for(lambda: len(pager.alerts()) == 1)
    d.close()

    d = make(paged_am.url, tmp_path)
    assert [a.status for a in last_states(tmp_path / "delivery.sqlite")] == ["firing"]
    assert d.enqueue([alert(starts_at=start)]) == 0
    assert d.enqueue([alert(starts_at=recent(5))]) == 0
    assert d.enqueue([alert("resolved", starts_at=recent(5), at=recent(1))]) == 1
    deliver_until(d, lambda: d.store.depth("alertmanager") == 0)
    pager.wait_for(lambda: len(pager.alerts()) == 2)
    d.close()
    pager.settled(paged_am.url)
    f, r = pager.alerts()
    assert (f["status"], r["status"]) == ("firing", "resolved")
    assert r["startsAt"] == f["startsAt"]


@pytest.mark.services
def test_firing_alerts_are_resent_with_a_fresh_end(paged_am, tmp_path):
    now = [datetime.now(UTC)]
    cfg = AlertmanagerService(
        url=paged_am.url, state_path=None, resend_interval_s=60, firing_ttl_s=300
    )
    d = Delivery(
        cfg, notifiers_from_config(cfg), DeliveryStore(None), clock=lambda: now[0], background=False
    )
    d.enqueue([alert(starts_at=recent(3))])
    d.run_once()
    with AlertmanagerClient(paged_am.url) as c:
        (first,) = c.get_alerts()
        now[0] += timedelta(seconds=59)
        d.run_once()
        assert c.get_alerts()[0]["endsAt"] == first["endsAt"]  # not due yet
        now[0] += timedelta(seconds=1)
        d.run_once()
        (second,) = c.get_alerts()
    end = lambda a: datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00"))  # noqa: E731
    assert end(second) - end(first) == timedelta(seconds=60)
    assert second["startsAt"] == first["startsAt"]
    d.close()


@pytest.mark.services
def test_workers_deliver_their_own_and_worker_0_the_vanished(paged_am, tmp_path):
    """One store for every worker: each delivers the states it queued; after a restart with
    fewer workers, worker 0 also takes those of workers that no longer exist."""
    cfg = AlertmanagerService(url=paged_am.url, state_path=str(tmp_path / "d.sqlite"))
    mk = lambda owner: Delivery(  # noqa: E731
        cfg,
        notifiers_from_config(cfg),
        DeliveryStore(cfg.state_path),
        owner=owner,
        background=False,
    )
    w0, w1 = mk((0, 2)), mk((1, 2))
    w0.enqueue([alert(sensor="a", starts_at=recent(2))])
    w1.enqueue([alert(sensor="b", starts_at=recent(2))])
    assert w0.run_once() == 1 and w0.store.depth("alertmanager") == 1  # b is w1's
    w0.close(), w1.close()
    solo = mk((0, 1))
    assert solo.run_once() == 1 and solo.store.depth("alertmanager") == 0
    solo.close()


@pytest.mark.services
def test_an_acks_silence_ends_with_its_episode(paged_am, tmp_path):
    """`alerts ack` silences the acknowledged alert; the delivery ends that silence when the
    episode's resolve is delivered, so the next episode pages again."""
    d = make(paged_am.url, tmp_path, hold=0.0)
    a = alert(starts_at=recent(4))
    d.enqueue([a])
    deliver_until(d, lambda: d.store.depth("alertmanager") == 0)
    with AlertmanagerClient(paged_am.url) as c:
        matchers = [{"name": k, "value": v, "isRegex": False} for k, v in a.labels.items()]
        now = datetime.now(UTC)
        sid = c.post_silence(
            matchers, now, now + timedelta(hours=4), "kim", ack_silence_comment(a.fingerprint, "")
        )
        other = c.post_silence(matchers, now, now + timedelta(hours=4), "lee", "maintenance window")
        d.enqueue([alert("resolved", starts_at=a.starts_at, at=recent(1))])
        deliver_until(d, lambda: d.store.depth("alertmanager") == 0)
        states = {s["id"]: s["status"]["state"] for s in c.get_silences()}
    assert states[sid] == "expired"
    assert states[other] == "active"  # only the ack's own silence
    d.close()


# --- refusals (stubbed: a real Alertmanager will not give them on demand) ----------------------


def stub_delivery(responses, tmp_path):
    client, seen = stub(responses)
    cfg = AlertmanagerService(url="http://am.invalid:9093", state_path=None, max_backoff_s=30)
    notifier = AlertmanagerNotifier(cfg, AlertmanagerClient(cfg.url, client=client, max_retries=0))
    return Delivery(cfg, [notifier], DeliveryStore(None), background=False), seen


def test_a_refused_alert_is_dropped_and_the_rest_delivered(tmp_path):
    """Stub: Alertmanager answers 400 to the batch and to the bad alert alone; the good alert
    is delivered on its own, the bad one dropped and counted."""
    d, seen = stub_delivery(
        [
            httpx.Response(400, json={"message": "bad alert"}),
            httpx.Response(400, json={"message": "bad alert"}),
            httpx.Response(200),
        ],
        tmp_path,
    )
    rejected = metric(
        "twinwatch_alert_deliveries_total", receiver="alertmanager", outcome="rejected"
    )
    d.enqueue([alert(sensor="bad"), alert(sensor="good")])
    assert d.run_once() == 1
    assert [len(json.loads(r.content)) for r in seen] == [2, 1, 1]
    assert d.store.depth("alertmanager") == 0
    assert (
        metric("twinwatch_alert_deliveries_total", receiver="alertmanager", outcome="rejected")
        - rejected
        == 1
    )
    d.close()


def test_auth_refusal_keeps_the_queue_and_waits(caplog, tmp_path):
    """Stub: 401 is a setup problem, not a bad alert: nothing is dropped, one loud line, the
    next try at the backoff cap."""
    d, seen = stub_delivery([httpx.Response(401, text="unauthorized")], tmp_path)
    d.enqueue([alert()])
    assert d.run_once() == 0
    assert d.store.depth("alertmanager") == 1
    assert d.receivers[0].next_try - time.monotonic() > 25
    assert "refused" in caplog.text and "credentials" in caplog.text
    d.close()
