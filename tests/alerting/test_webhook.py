"""Direct HMAC-signed webhook (alerting/webhook.py) against a real local HTTP receiver that
verifies the signature, and the sink delivering through it without any Alertmanager."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from twinwatch.alerting.webhook import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadSignature,
    ReplayGuard,
    WebhookClient,
    WebhookRejected,
    sign,
    verify,
)
from twinwatch.config import AlertmanagerService, ConfigError, Secret, load_config
from twinwatch.flows.sinks.alertmanager import AlertmanagerSink
from twinwatch.schema import Alert, fingerprint

SECRET = "s3cret-for-tests-0123456789abcdef"  # 32 bytes, the minimum


class VerifyingReceiver:
    """Accepts a POST only if its signature checks out with ``secret`` and it is not a replay
    (else 401); remembers every accepted request."""

    def __init__(self, secret: str):
        self.bodies: list[dict] = []
        self.requests: list[tuple[dict, bytes]] = []
        self.rejected = 0
        self.guard = ReplayGuard()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verify(secret, dict(self.headers), body, time.time(), replays=outer.guard)
                except BadSignature:
                    outer.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b"bad signature")
                    return
                outer.bodies.append(json.loads(body))
                outer.requests.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = VerifyingReceiver(SECRET)
    yield r
    r.server.shutdown()


def alert(status="firing") -> Alert:
    labels = {"domain": "water", "site": "s1", "asset": "a1", "sensor": "p1", "rule": "limits"}
    t = datetime.now(UTC)
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,
        severity="alert",
        domain="water",
        site="s1",
        asset="a1",
        sensor="p1",
        rule="limits",
        starts_at=t,
        at=t,
        value=9.5,
        unit="bar",
        summary="limits on s1/a1/p1",
        ends_at=t if status == "resolved" else None,
    )


NONCE = "0123456789abcdef0123456789abcdef"


def test_signature_round_trip_and_tampering():
    body = b'{"a":1}'
    headers = {
        TIMESTAMP_HEADER: "1000",
        NONCE_HEADER: NONCE,
        SIGNATURE_HEADER: sign(SECRET, 1000, NONCE, body),
    }
    verify(SECRET, headers, body, now=1000)
    with pytest.raises(BadSignature, match="mismatch"):
        verify(SECRET, headers, b'{"a":2}', now=1000)
    with pytest.raises(BadSignature, match="mismatch"):
        verify("other", headers, body, now=1000)
    with pytest.raises(BadSignature, match="mismatch"):  # the nonce is signed too
        verify(SECRET, {**headers, NONCE_HEADER: NONCE[::-1]}, body, now=1000)
    with pytest.raises(BadSignature, match="more than"):
        verify(SECRET, headers, body, now=1000 + 301)  # a replayed old request


def test_replay_within_the_window_is_refused():
    guard = ReplayGuard(tolerance_s=300)
    body = b"{}"
    headers = {
        TIMESTAMP_HEADER: "1000",
        NONCE_HEADER: NONCE,
        SIGNATURE_HEADER: sign(SECRET, 1000, NONCE, body),
    }
    verify(SECRET, headers, body, now=1000, replays=guard)
    with pytest.raises(BadSignature, match="replayed"):
        verify(SECRET, headers, body, now=1010, replays=guard)
    # a bad signature never reaches the guard: it cannot be filled without the secret
    forged = {**headers, NONCE_HEADER: "f" * 32}
    with pytest.raises(BadSignature, match="mismatch"):
        verify(SECRET, forged, body, now=1010, replays=guard)
    assert len(guard) == 1
    # nonces older than the window are forgotten (their timestamps are refused anyway)
    guard.check("e" * 32, 2000, now=2000)
    assert len(guard) == 1


def test_captured_request_replayed_to_a_real_receiver_is_refused(receiver, monkeypatch):
    """A real HTTP receiver: a request captured on the wire and sent again, seconds later,
    within the 5-minute window, is refused (401)."""
    client = WebhookClient(receiver.url, SECRET)
    client.post([alert()], datetime.now(UTC), 3600, "http://g")
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    replay = {k: v for k, v in headers.items() if k.lower().startswith("x-twinwatch")}
    r = httpx.post(receiver.url, content=body, headers=replay)
    assert r.status_code == 401 and receiver.rejected == 1 and len(receiver.bodies) == 1
    client.close()


def test_short_secrets_are_refused(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="at least 32"):
        WebhookClient("http://127.0.0.1:1/h", "x" * 31)
    monkeypatch.setenv("TW_SHORT_SECRET", "too-short")
    with pytest.raises(ConfigError, match="webhook_secret is 9 bytes; use at least 32"):
        load_config(
            environ={
                "TWINWATCH__SERVICES__ALERTMANAGER__WEBHOOK_URL": "http://127.0.0.1:1/h",
                "TWINWATCH__SERVICES__ALERTMANAGER__WEBHOOK_SECRET__ENV": "TW_SHORT_SECRET",
            }
        )


def test_sink_delivers_signed_alertmanager_format_without_alertmanager(
    receiver, monkeypatch, tmp_path
):
    monkeypatch.setenv("TW_HOOK_SECRET", SECRET)
    cfg = AlertmanagerService(
        url=None,
        webhook_url=receiver.url,
        webhook_secret=Secret(env="TW_HOOK_SECRET"),
        runbook_url="https://rb/{rule}",
        state_path=str(tmp_path / "delivery.sqlite"),
    )
    part = AlertmanagerSink(cfg, background=False).build("am", 0, 1)
    part.write_batch([alert()])
    part.write_batch([alert("resolved")])
    part.delivery.run_once()  # one state per alert per request: the firing first
    part.delivery.run_once()  # a direct webhook holds nothing: then the resolve
    part.close()
    assert receiver.rejected == 0 and len(receiver.bodies) == 2
    first, second = receiver.bodies
    assert first["version"] == "4" and first["status"] == "firing"
    (a,) = first["alerts"]
    assert a["labels"]["alertname"] == "water_limits" and a["fingerprint"] == alert().fingerprint
    assert a["annotations"]["runbook_url"] == "https://rb/limits" and a["startsAt"]
    assert second["status"] == "resolved" and second["alerts"][0]["status"] == "resolved"
    assert SECRET not in repr(part.delivery.receivers[0].notifier)
    assert len({h[NONCE_HEADER] for h, _ in receiver.requests}) == 2  # a new nonce each time


def test_wrong_secret_is_rejected_and_not_retried(receiver):
    sleeps = []
    client = WebhookClient(receiver.url, "wrong-" + "x" * 32, sleep=sleeps.append)
    with pytest.raises(WebhookRejected, match="HTTP 401: bad signature"):
        client.post([alert()], datetime.now(UTC), 3600, "http://g")
    assert sleeps == [] and receiver.rejected == 1


def test_webhook_without_secret_is_a_config_error():
    with pytest.raises(ConfigError, match="webhook_url needs webhook_secret"):
        load_config(
            environ={"TWINWATCH__SERVICES__ALERTMANAGER__WEBHOOK_URL": "http://127.0.0.1:1/h"}
        )
