"""Direct webhook delivery with an HMAC signature, for sites without an Alertmanager.

    WebhookClient(url, secret, ...)  .post(alerts, now, firing_ttl_s, generator_url, links=None)
    sign(secret, timestamp, body) -> "sha256=<hex>"
    verify(secret, headers, body, now, tolerance_s=300) -> None   (raises BadSignature)

The body is Alertmanager's webhook format (version "4": status, alerts with labels, annotations,
startsAt, endsAt, generatorURL, fingerprint), so one receiver handles both paths. Headers:

    X-Twinwatch-Timestamp   unix seconds of the send
    X-Twinwatch-Signature   sha256=HMAC-SHA256(secret, "<timestamp>.<body>")

The timestamp is signed with the body, so a receiver can reject replays older than a few
minutes. Retries, backoff and errors are twinwatch.http's (5xx/429/timeouts retried, other 4xx
not), as for Alertmanager.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from twinwatch.alerting.alertmanager import to_payload
from twinwatch.config import AlertmanagerService, ConfigError
from twinwatch.http import HttpError, Rejected, Unavailable, parse_retry_after, retry
from twinwatch.schema import Alert

__all__ = [
    "WebhookClient",
    "WebhookError",
    "WebhookUnavailable",
    "WebhookRejected",
    "BadSignature",
    "sign",
    "verify",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
]

SIGNATURE_HEADER = "X-Twinwatch-Signature"
TIMESTAMP_HEADER = "X-Twinwatch-Timestamp"


class WebhookError(HttpError):
    """Delivering to the webhook failed."""


class WebhookUnavailable(WebhookError, Unavailable):
    """Retryable failure (connection, timeout, 5xx, 429)."""


class WebhookRejected(WebhookError, Rejected):
    """The receiver refused the request (4xx other than 429), e.g. a bad signature."""


class BadSignature(ValueError):
    """A webhook request whose signature or timestamp does not check out."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: float = 300.0
) -> None:
    """Check a received request (for receivers and tests); raises BadSignature."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        ts = int(lower[TIMESTAMP_HEADER.lower()])
        got = lower[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        raise BadSignature("missing or malformed signature headers") from None
    if abs(now - ts) > tolerance_s:
        raise BadSignature(f"timestamp {ts} is more than {tolerance_s:g} s from now")
    if not hmac.compare_digest(got, sign(secret, ts, body)):
        raise BadSignature("signature mismatch")


def body_of(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    status = "firing" if any(a["_status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "status": status,
        "receiver": "twinwatch-direct",
        "alerts": [
            {k: v for k, v in a.items() if k != "_status"} | {"status": a["_status"]}
            for a in alerts
        ],
    }


class WebhookClient:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 5.0,
        max_retries: int = 5,
        client: httpx.Client | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.time,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"alertmanager.webhook_url: expected http(s)://host/path, got {url!r}"
            )
        if not secret:
            raise ConfigError("alertmanager.webhook_secret is empty")
        self.url, self._secret, self.max_retries = url, secret, max_retries
        self._client = client or httpx.Client(timeout=timeout)
        self._own = client is None
        self._sleep, self._clock = sleep, clock
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s

    @classmethod
    def from_config(cls, cfg: AlertmanagerService, **kw: Any) -> WebhookClient:
        if cfg.webhook_url is None or cfg.webhook_secret is None:
            raise ConfigError("alertmanager.webhook_url needs alertmanager.webhook_secret")
        return cls(
            cfg.webhook_url,
            cfg.webhook_secret.reveal(),
            timeout=cfg.timeout_s,
            max_retries=cfg.max_retries,
            **kw,
        )

    def __repr__(self) -> str:
        return f"<WebhookClient {self.url}>"

    def close(self) -> None:
        if self._own:
            self._client.close()

    def _once(self, body: bytes) -> None:
        ts = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, ts, body),
        }
        what = f"post to webhook {self.url}"
        try:
            r = self._client.post(self.url, content=body, headers=headers)
        except httpx.TransportError as e:
            raise WebhookUnavailable(f"{what}: {type(e).__name__}: {e}") from None
        if r.is_success:
            return
        msg = f"{what}: HTTP {r.status_code}: {r.text.strip()[:500]}"
        if r.status_code == 429 or r.status_code >= 500:
            raise WebhookUnavailable(
                msg,
                status=r.status_code,
                retry_after=parse_retry_after(r.headers.get("Retry-After")),
            )
        raise WebhookRejected(msg, status=r.status_code, text=r.text[:500])

    def post(
        self,
        alerts: Sequence[Alert],
        now: datetime,
        firing_ttl_s: float,
        generator_url: str,
        links: Callable[[Alert], dict[str, str]] | None = None,
    ) -> None:
        sendable = [a for a in alerts if a.status != "pending"]
        payload = to_payload(sendable, now, firing_ttl_s, generator_url, links=links)
        if not payload:
            return
        for p, a in zip(payload, sendable):
            p["_status"], p["fingerprint"] = a.status, a.fingerprint
        body = json.dumps(body_of(payload), separators=(",", ":")).encode()
        retry(
            lambda: self._once(body),
            name="webhook",
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s,
            sleep=self._sleep,
        )
