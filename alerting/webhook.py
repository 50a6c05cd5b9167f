"""Direct webhook delivery with an HMAC signature, for sites without an Alertmanager.

    WebhookClient(url, secret, ...)  .post(alerts, now, firing_ttl_s, generator_url, links=None)
    sign(secret, timestamp, nonce, body) -> "sha256=<hex>"
    verify(secret, headers, body, now, tolerance_s=300, replays=None) -> None  (BadSignature)
    ReplayGuard(tolerance_s=300)      the nonces a receiver has accepted within the window

The body is Alertmanager's webhook format (version "4": status, alerts with labels, annotations,
startsAt, endsAt, generatorURL, fingerprint), so one receiver handles both paths. Headers:

    X-Twinwatch-Timestamp   unix seconds of the send
    X-Twinwatch-Nonce       32 random hex digits, new for every request (retries included)
    X-Twinwatch-Signature   sha256=HMAC-SHA256(secret, "<timestamp>.<nonce>.<body>")

A receiver rejects a timestamp more than ``tolerance_s`` (5 min) from its clock, and, with a
``ReplayGuard``, a nonce it has already accepted within that window: a captured request cannot
be played again, neither later nor within the window. Only requests whose signature checks out
reach the guard, so an attacker without the secret cannot fill it. The secret must be at least
32 bytes (checked at config load and here).

Retries, backoff and errors are twinwatch.http's (5xx/429/timeouts retryable, other 4xx not),
as for Alertmanager.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from twinwatch.alerting.alertmanager import to_payload
from twinwatch.config import AlertmanagerService, ConfigError, check_webhook_secret
from twinwatch.http import (
    HttpError,
    Rejected,
    Unavailable,
    checked,
    retry,
)
from twinwatch.schema import Alert

__all__ = [
    "WebhookClient",
    "WebhookError",
    "WebhookUnavailable",
    "WebhookRejected",
    "BadSignature",
    "ReplayGuard",
    "sign",
    "verify",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "NONCE_HEADER",
]

SIGNATURE_HEADER = "X-Twinwatch-Signature"
TIMESTAMP_HEADER = "X-Twinwatch-Timestamp"
NONCE_HEADER = "X-Twinwatch-Nonce"
_NONCE_LEN = 32


class WebhookError(HttpError):
    """Delivering to the webhook failed."""


class WebhookUnavailable(WebhookError, Unavailable):
    """Retryable failure (connection, timeout, 5xx, 429)."""


class WebhookRejected(WebhookError, Rejected):
    """The receiver refused the request (4xx other than 429), e.g. a bad signature."""


class BadSignature(ValueError):
    """A webhook request whose signature or timestamp does not check out."""


def sign(secret: str, timestamp: int, nonce: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{nonce}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class ReplayGuard:
    """The nonces accepted in the last ``tolerance_s`` seconds (thread-safe). Older requests are
    refused by their timestamp, so older nonces can be forgotten: memory stays bounded by the
    legitimate request rate times the window."""

    def __init__(self, tolerance_s: float = 300.0):
        self.tolerance_s = tolerance_s
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> request timestamp
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, nonce: str, timestamp: float, now: float) -> None:
        """Remember ``nonce``; BadSignature if it was already accepted within the window."""
        with self._lock:
            horizon = now - 2 * self.tolerance_s  # a timestamp this old is refused anyway
            while self._seen and next(iter(self._seen.values())) < horizon:
                self._seen.popitem(last=False)
            if nonce in self._seen:
                raise BadSignature("replayed request: this nonce was already accepted")
            self._seen[nonce] = timestamp


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_s: float = 300.0,
    replays: ReplayGuard | None = None,
) -> None:
    """Check a received request (for receivers and tests); raises BadSignature. Pass the
    receiver's one ``ReplayGuard`` to refuse a request that was already accepted."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        ts = int(lower[TIMESTAMP_HEADER.lower()])
        nonce = lower[NONCE_HEADER.lower()]
        got = lower[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        raise BadSignature("missing or malformed signature headers") from None
    if len(nonce) != _NONCE_LEN:
        raise BadSignature("malformed nonce")
    if abs(now - ts) > tolerance_s:
        raise BadSignature(f"timestamp {ts} is more than {tolerance_s:g} s from now")
    if not hmac.compare_digest(got, sign(secret, ts, nonce, body)):
        raise BadSignature("signature mismatch")
    if replays is not None:
        replays.check(nonce, ts, now)


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
        try:
            check_webhook_secret(secret)
        except ValueError as e:
            raise ConfigError(f"alertmanager.{e}") from None
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
        ts, nonce = int(self._clock()), secrets.token_hex(_NONCE_LEN // 2)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            NONCE_HEADER: nonce,
            SIGNATURE_HEADER: sign(self._secret, ts, nonce, body),
        }
        checked(
            f"post to webhook {self.url}",
            lambda: self._client.post(self.url, content=body, headers=headers),
            unavailable=WebhookUnavailable,
            rejected=WebhookRejected,
        )

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
