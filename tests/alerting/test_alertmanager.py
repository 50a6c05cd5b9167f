"""Alertmanager client and the Bytewax AlertmanagerSink.

Behaviour against the server is tested on the real Prometheus Alertmanager 0.25 (Debian
package, started by the ``alertmanager`` fixture). Only failures it will not produce on demand
(503, 429, read timeouts) use an ``httpx.MockTransport`` stub; those tests say so.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from httpstub import Sleeps, stub  # noqa: E402  (tests/httpstub.py)
from prometheus_client import REGISTRY

from twinwatch.alerting import AlertmanagerClient, AlertmanagerRejected, AlertmanagerUnavailable
from twinwatch.alerting.alertmanager import rfc3339, to_payload
from twinwatch.alerting.store import last_states
from twinwatch.app import services
from twinwatch.config import AlertmanagerService, Secret
from twinwatch.flows.sinks.alertmanager import AlertmanagerSink
from twinwatch.schema import Alert, fingerprint

T0 = datetime(2026, 11, 23, 1, 0, 0, tzinfo=UTC)
GEN = "http://127.0.0.1:3000/d/twinwatch-alerts"


def alert(
    status: str = "firing",
    *,
    rule: str = "robust_z",
    sensor: str = "p1",
    starts_at: datetime = T0,
    at: datetime | None = None,
    severity: str = "alert",
    ends_at: datetime | None = None,
    value: float = 9.5,
) -> Alert:
    labels = {"domain": "water", "site": "s1", "asset": "pump-1", "sensor": sensor, "rule": rule}
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,
        severity=severity,
        domain="water",
        site="s1",
        asset="pump-1",
        sensor=sensor,
        rule=rule,
        starts_at=starts_at,
        at=at or starts_at,
        value=value,
        unit="bar",
        summary=f"{rule} anomaly on s1/pump-1/{sensor}: {value:g} bar",
        ends_at=ends_at,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def unique_rule() -> str:
    return "r" + uuid.uuid4().hex[:10]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def closed_port_url() -> str:
    return f"http://127.0.0.1:{services.free_port()}"


# --- payload ----------------------------------------------------------------------------------


def test_payload_firing_resolved_and_pending():
    now = T0 + timedelta(minutes=10)
    firing = alert(severity="severe")
    resolved = alert("resolved", sensor="p2", at=T0 + timedelta(minutes=5))
    pending = alert("pending", sensor="p3")
    body = to_payload([firing, pending, resolved], now, 3600, GEN)
    assert len(body) == 2
    f, r = body
    assert f["labels"] == firing.labels and f["labels"]["alertname"] == "water_robust_z"
    assert f["annotations"] == {
        "summary": "robust_z anomaly on s1/pump-1/p1: 9.5 bar",
        "description": "robust_z on s1/pump-1/p1: value 9.5 bar; severity severe (심각); firing",
        "severity_ko": "심각",
        "fingerprint": firing.fingerprint,
    }
    assert f["startsAt"] == "2026-11-23T01:00:00.000Z"
    assert f["endsAt"] == "2026-11-23T02:10:00.000Z"  # now + ttl
    assert f["generatorURL"] == GEN
    assert r["endsAt"] == "2026-11-23T01:05:00.000Z"  # the alert's own time
    assert "경계" in r["annotations"]["description"]


def test_payload_clamps_resolved_end_to_now_and_after_start():
    now = T0
    future = alert("resolved", starts_at=T0 - timedelta(minutes=1), at=T0 + timedelta(hours=1))
    (p,) = to_payload([future], now, 60, GEN)
    assert p["endsAt"] == rfc3339(now)  # else Alertmanager keeps it active until then
    early = alert("resolved", starts_at=T0 + timedelta(minutes=1), ends_at=T0 + timedelta(hours=1))
    (p,) = to_payload([early], now, 60, GEN)
    assert p["endsAt"] == p["startsAt"]  # Alertmanager rejects endsAt before startsAt


# --- real Alertmanager ----------------------------------------------------------------------


@pytest.mark.services
def test_post_firing_alerts_are_visible(alertmanager):
    """Real Alertmanager 0.25: posted firing alerts come back from GET /api/v2/alerts with our
    labels and annotations; pending alerts are not sent."""
    rule = unique_rule()
    now = utcnow()
    a1, a2 = alert(rule=rule, starts_at=now - timedelta(minutes=3)), alert(rule=rule, sensor="p2")
    with AlertmanagerClient(alertmanager.url) as am:
        am.post([a1, a2, alert("pending", rule=rule, sensor="p3")], now, 600, GEN)
        got = {a["labels"]["sensor"]: a for a in am.get_alerts(filters=[f'rule="{rule}"'])}
    assert set(got) == {"p1", "p2"}
    g = got["p1"]
    assert g["labels"] == a1.labels
    assert g["annotations"]["fingerprint"] == a1.fingerprint
    assert g["annotations"]["summary"] == a1.summary
    assert "value 9.5 bar" in g["annotations"]["description"]
    assert "severity alert (경계)" in g["annotations"]["description"]
    assert g["status"]["state"] == "active"
    assert g["generatorURL"] == GEN
    assert abs(parse(g["startsAt"]) - a1.starts_at) < timedelta(milliseconds=1)
    assert abs(parse(g["endsAt"]) - (now + timedelta(seconds=600))) < timedelta(milliseconds=1)


@pytest.mark.services
def test_post_resolved_alert_is_no_longer_active(alertmanager):
    """Real Alertmanager 0.25: a resolved alert disappears from the active alerts."""
    rule = unique_rule()
    start = utcnow() - timedelta(minutes=5)
    with AlertmanagerClient(alertmanager.url) as am:
        am.post([alert(rule=rule, starts_at=start)], utcnow(), 600, GEN)
        assert len(am.get_alerts(filters=[f'rule="{rule}"'])) == 1
        am.post([alert("resolved", rule=rule, starts_at=start, at=utcnow())], utcnow(), 600, GEN)
        assert am.get_alerts(active=True, filters=[f'rule="{rule}"']) == []


@pytest.mark.services
def test_invalid_alert_gives_up_with_the_servers_text(alertmanager):
    """Real Alertmanager 0.25 answers 422 for a generatorURL that is not a URI: no retry."""
    sleeps = Sleeps()
    with (
        AlertmanagerClient(alertmanager.url, sleep=sleeps) as am,
        pytest.raises(AlertmanagerRejected) as ei,
    ):
        am.post([alert(rule=unique_rule())], utcnow(), 60, "::not a url")
    assert ei.value.status == 422
    assert "generatorURL in body must be of type uri" in str(ei.value)
    assert sleeps == []


@pytest.mark.services
def test_wrong_path_is_a_400_class_rejection(alertmanager):
    """Real Alertmanager 0.25 behind a wrong path prefix answers 404: give up at once."""
    sleeps = Sleeps()
    with (
        AlertmanagerClient(alertmanager.url + "/prefix", sleep=sleeps) as am,
        pytest.raises(AlertmanagerRejected, match="404"),
    ):
        am.post([alert()], utcnow(), 60, GEN)
    assert sleeps == []


def test_nothing_to_send_makes_no_request():
    """Nothing listens on the port: a post of only pending alerts must not even connect."""
    with AlertmanagerClient(closed_port_url(), max_retries=0) as am:
        am.post([alert("pending")], T0, 60, GEN)
        am.post([], T0, 60, GEN)
        with pytest.raises(AlertmanagerUnavailable, match="ConnectError"):
            am.post([alert()], T0, 60, GEN)


# --- retries (stubbed failures) -------------------------------------------------------------


def test_retry_on_503_429_and_timeout_then_success():
    """Stub (httpx.MockTransport): a real Alertmanager does not answer 503/429 or time out on
    demand."""
    client, seen = stub(
        [
            httpx.Response(503, text="overloaded"),
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.ReadTimeout("slow"),
            httpx.Response(200),
        ]
    )
    sleeps, hooks = Sleeps(), []
    am = AlertmanagerClient(
        "http://am.invalid:9093",
        client=client,
        sleep=sleeps,
        on_retry=lambda n, d, e: hooks.append(n),
        backoff_s=0.5,
    )
    am.post([alert()], T0, 60, GEN)
    assert len(seen) == 4 and hooks == [1, 2, 3]
    assert 0.25 <= sleeps[0] < 0.5 and sleeps[1] == 3.0 and 1.0 <= sleeps[2] < 2.0
    body = json.loads(seen[-1].content)
    assert seen[-1].url.path == "/api/v2/alerts" and seen[-1].method == "POST"
    assert body[0]["labels"]["alertname"] == "water_robust_z"


def test_retries_exhausted_raise_unavailable():
    """Stub (httpx.MockTransport): forces 500 on every attempt."""
    client, seen = stub([httpx.Response(500, text="boom")] * 3)
    sleeps = Sleeps()
    am = AlertmanagerClient("http://am.invalid:9093", client=client, sleep=sleeps, max_retries=2)
    with pytest.raises(AlertmanagerUnavailable, match="HTTP 500: boom"):
        am.post([alert()], T0, 60, GEN)
    assert len(seen) == 3 and len(sleeps) == 2


def test_secrets_not_in_repr(monkeypatch):
    monkeypatch.setenv("TW_TEST_AM_TOKEN", "am-token-never-shown")
    monkeypatch.setenv("TW_TEST_AM_PW", "am-password-never-shown")
    bearer = AlertmanagerClient.from_config(
        AlertmanagerService(bearer_token=Secret(env="TW_TEST_AM_TOKEN"))
    )
    basic = AlertmanagerClient.from_config(
        AlertmanagerService(username="ops", password=Secret(env="TW_TEST_AM_PW"))
    )
    assert "am-token-never-shown" not in repr(bearer) and "bearer" in repr(bearer)
    assert "am-password-never-shown" not in repr(basic) and "ops" in repr(basic)


# --- the Bytewax sink -------------------------------------------------------------------------


def sink_cfg(url: str, tmp_path, **kw) -> AlertmanagerService:
    return AlertmanagerService(url=url, state_path=str(tmp_path / "delivery.sqlite"), **kw)


@pytest.mark.services
def test_sink_sends_firing_and_resolved(alertmanager, tmp_path):
    """Real Alertmanager 0.25 through the sink: firing visible, resolved gone, pending never."""
    rule = unique_rule()
    cfg = sink_cfg(alertmanager.url, tmp_path, resolve_hold_s=0)
    part = AlertmanagerSink(cfg, background=False).build("alertmanager", 0, 1)
    start = utcnow() - timedelta(minutes=1)
    a1, a2 = alert(rule=rule, starts_at=start), alert(rule=rule, sensor="p2", starts_at=start)
    part.write_batch([[a1, alert("pending", rule=rule, sensor="p3")], a2])
    part.delivery.run_once()
    with AlertmanagerClient(alertmanager.url) as am:
        active = am.get_alerts(filters=[f'rule="{rule}"'])
        assert {a["labels"]["sensor"] for a in active} == {"p1", "p2"}
        part.write_batch([[alert("resolved", rule=rule, starts_at=start, at=utcnow())]])
        part.delivery.run_once()
        active = am.get_alerts(filters=[f'rule="{rule}"'])
        assert {a["labels"]["sensor"] for a in active} == {"p2"}
    part.close()


@pytest.mark.services
def test_sink_in_a_bytewax_flow(alertmanager, tmp_path):
    """Real Alertmanager 0.25 behind a real Bytewax run (TestingSource -> op.output): the
    partition's close() at the end of the input delivers what was queued."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSource, run_main

    rule = unique_rule()
    start = utcnow()
    flow = Dataflow("am_sink_test")
    batches = op.input(
        "in",
        flow,
        TestingSource(
            [[alert(rule=rule, starts_at=start)], [alert(rule=rule, sensor="p2", starts_at=start)]]
        ),
    )
    op.output("alertmanager", batches, AlertmanagerSink(sink_cfg(alertmanager.url, tmp_path)))
    run_main(flow)
    with AlertmanagerClient(alertmanager.url) as am:
        got = am.get_alerts(filters=[f'rule="{rule}"'])
    assert {a["labels"]["sensor"] for a in got} == {"p1", "p2"}


def test_sink_never_waits_for_an_unreachable_alertmanager(tmp_path):
    """Nothing listens on the port (a real connect error): write_batch only queues; the
    background delivery thread fails, counts and keeps the alerts for later."""
    cfg = sink_cfg(closed_port_url(), tmp_path)
    errors = metric("twinwatch_sink_errors_total", sink="alertmanager")
    part = AlertmanagerSink(cfg).build("alertmanager", 0, 1)
    part.write_batch([[alert(), alert(sensor="p2")]])
    deadline = time.monotonic() + 10
    while metric("twinwatch_sink_errors_total", sink="alertmanager") == errors:
        assert time.monotonic() < deadline, "the delivery thread never tried"
        time.sleep(0.05)
    assert metric("twinwatch_alert_queue_depth", receiver="alertmanager") == 2
    part.close()
    assert len(last_states(cfg.state_path)) == 2  # still queued on disk for the next start


def test_sink_rejects_non_alert_items(tmp_path):
    part = AlertmanagerSink(sink_cfg(closed_port_url(), tmp_path), background=False).build(
        "alertmanager", 0, 1
    )
    with pytest.raises(TypeError, match="Alert records"):
        part.write_batch([["not an alert"]])
    part.close()
