"""Direct HMAC-signed webhook (alerting/webhook.py) against a real local HTTP receiver that
verifies the signature, and the sink delivering through it without any Alertmanager."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from twinwatch.alerting.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadSignature,
    WebhookClient,
    WebhookRejected,
    sign,
    verify,
)
from twinwatch.config import AlertmanagerService, ConfigError, Secret
from twinwatch.flows.sinks.alertmanager import AlertmanagerSink
from twinwatch.schema import Alert, fingerprint

SECRET = "s3cret-for-tests"


class VerifyingReceiver:
    """Accepts a POST only if its signature checks out with ``secret`` (else 401)."""

    def __init__(self, secret: str):
        self.bodies: list[dict] = []
        self.rejected = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verify(secret, dict(self.headers), body, time.time())
                except BadSignature:
                    outer.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b"bad signature")
                    return
                outer.bodies.append(json.loads(body))
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


def test_signature_round_trip_and_tampering():
    body = b'{"a":1}'
    headers = {TIMESTAMP_HEADER: "1000", SIGNATURE_HEADER: sign(SECRET, 1000, body)}
    verify(SECRET, headers, body, now=1000)
    with pytest.raises(BadSignature, match="mismatch"):
        verify(SECRET, headers, b'{"a":2}', now=1000)
    with pytest.raises(BadSignature, match="mismatch"):
        verify("other", headers, body, now=1000)
    with pytest.raises(BadSignature, match="more than"):
        verify(SECRET, headers, body, now=1000 + 301)  # a replayed old request


def test_sink_delivers_signed_alertmanager_format_without_alertmanager(receiver, monkeypatch):
    monkeypatch.setenv("TW_HOOK_SECRET", SECRET)
    cfg = AlertmanagerService(
        url=None,
        webhook_url=receiver.url,
        webhook_secret=Secret(env="TW_HOOK_SECRET"),
        runbook_url="https://rb/{rule}",
    )
    part = AlertmanagerSink(cfg, background_resend=False).build("am", 0, 1)
    part.write_batch([alert()])
    part.write_batch([alert("resolved")])
    part.close()
    assert receiver.rejected == 0 and len(receiver.bodies) == 2
    first, second = receiver.bodies
    assert first["version"] == "4" and first["status"] == "firing"
    (a,) = first["alerts"]
    assert a["labels"]["alertname"] == "water_limits" and a["fingerprint"] == alert().fingerprint
    assert a["annotations"]["runbook_url"] == "https://rb/limits" and a["startsAt"]
    assert second["status"] == "resolved" and second["alerts"][0]["status"] == "resolved"
    assert SECRET not in repr(part.webhook)


def test_wrong_secret_is_rejected_and_not_retried(receiver):
    sleeps = []
    client = WebhookClient(receiver.url, "wrong", sleep=sleeps.append)
    with pytest.raises(WebhookRejected, match="HTTP 401: bad signature"):
        client.post([alert()], datetime.now(UTC), 3600, "http://g")
    assert sleeps == [] and receiver.rejected == 1


def test_webhook_without_secret_is_a_config_error():
    with pytest.raises(ConfigError, match="needs alertmanager.webhook_secret"):
        AlertmanagerSink(
            AlertmanagerService(url=None, webhook_url="http://127.0.0.1:1/h"),
            background_resend=False,
        ).build("am", 0, 1)
