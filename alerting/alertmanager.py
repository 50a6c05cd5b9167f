"""The Prometheus Alertmanager API v2 client: alerts and silences.

    AlertmanagerClient(url, ...)   .post(alerts, now, firing_ttl_s, generator_url) / .get_alerts()
                                   .post_silence(...) / .get_silences() / .expire_silence(id)
    to_payload(alerts, now, firing_ttl_s, generator_url) -> list[dict]   (pure)
    ack_silence_comment(fingerprint, comment) / is_ack_silence(silence) -> fingerprint | None

Exceptions::

    AlertmanagerError               anything that went wrong talking to Alertmanager
     ├── AlertmanagerUnavailable    retryable (connection error, timeout, 5xx, 429); raised once
     │                              the retries are used up
     └── AlertmanagerRejected       any other non-2xx answer (400: invalid alert, 401/403: auth);
                                    not retried; carries the response text

Like Alertmanager's own notifiers (the classifier is twinwatch.http's): 2xx is success; 5xx,
429, timeouts and connection errors are retried ``max_retries`` times with exponential backoff
and jitter (a Retry-After header replaces the backoff); any other status gives up at once. The
flow's delivery queue (alerting/delivery.py) uses ``max_retries=0`` and retries itself.

Pending alerts are never sent. A firing alert is sent with ``endsAt = now + firing_ttl_s``: if
we stop re-sending it (crash, partition), Alertmanager resolves it by itself after the TTL, so a
firing alert must be re-sent well before then (the delivery queue does). A resolved alert is
sent with its ``ends_at`` (else its ``at``), clamped to ``now`` so Alertmanager does not keep it
active until a future event time. Times are always passed in; nothing here reads the clock
(except to turn an HTTP-date Retry-After into seconds) and nothing here knows Bytewax.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from twinwatch.config import AlertmanagerService, ConfigError, Tls
from twinwatch.http import (
    HttpError,
    Rejected,
    Unavailable,
    checked,
    retry,
    ssl_context,
)
from twinwatch.schema import SEVERITY_KO, Alert

__all__ = [
    "AlertmanagerError",
    "AlertmanagerUnavailable",
    "AlertmanagerRejected",
    "AlertmanagerClient",
    "to_payload",
    "rfc3339",
    "ack_silence_comment",
    "is_ack_silence",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
_ACK = re.compile(r"^\[ack ([0-9a-f]{16})\]")


class AlertmanagerError(HttpError):
    """Talking to Alertmanager failed."""


class AlertmanagerUnavailable(AlertmanagerError, Unavailable):
    """Retryable failure (connection, timeout, 5xx, 429)."""


class AlertmanagerRejected(AlertmanagerError, Rejected):
    """Alertmanager refused the request (4xx other than 429); retrying will not help."""


def rfc3339(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("datetime has no UTC offset")
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_payload(
    alerts: Iterable[Alert],
    now: datetime,
    firing_ttl_s: float,
    generator_url: str,
    links: Callable[[Alert], dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """The ``POST /api/v2/alerts`` body for the firing and resolved alerts (pending skipped).
    ``links(alert)`` adds annotations such as runbook_url and dashboard_url."""
    out = []
    for a in alerts:
        if a.status == "firing":
            ends = max(now + timedelta(seconds=firing_ttl_s), a.starts_at)
        elif a.status == "resolved":
            ends = max(min(a.ends_at or a.at, now), a.starts_at)
        else:
            continue
        ko = SEVERITY_KO.get(a.severity, a.severity)
        out.append(
            {
                "labels": {**a.labels, "alertname": a.labels.get("alertname") or a.rule},
                "annotations": {
                    "summary": a.summary,
                    "description": (
                        f"{a.rule} on {a.site}/{a.asset}/{a.sensor}: value "
                        f"{a.value:g} {a.unit}; severity {a.severity} ({ko}); "
                        f"{a.status}"
                    ),
                    "severity_ko": ko,
                    "fingerprint": a.fingerprint,
                    **explanation_annotations(a),
                    **a.details,  # security: count, window_s, sources, users
                    **(links(a) if links is not None else {}),
                },
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(ends),
                "generatorURL": generator_url,
            }
        )
    return out


def explanation_annotations(a: Alert) -> dict[str, str]:
    """The alert's explanation (issue #12) as Alertmanager annotations (strings): which detector
    fired and what it means, observed against expected and the normal band, who contributed."""
    if not a.detector:
        return {}
    out = {"explanation": a.explanation, "detector": a.detector, "kind": a.kind}
    for key in ("observed", "expected", "expected_low", "expected_high"):
        value = getattr(a, key)
        if value is not None:
            out[key] = f"{value:.6g}"
    if a.contributors:
        out["contributors"] = ", ".join(f"{s} {share:.0%}" for s, share in a.contributors)
    return out


def ack_silence_comment(fingerprint: str, comment: str) -> str:
    """The comment of the silence an ack creates: it names the alert's fingerprint, so the
    delivery can end the silence when that episode resolves."""
    return f"[ack {fingerprint}] {comment}".rstrip()


def is_ack_silence(silence: dict) -> str | None:
    """The fingerprint an ack silence is for, or None for any other silence."""
    m = _ACK.match(silence.get("comment", ""))
    return m[1] if m else None


class AlertmanagerClient:
    """Alertmanager API v2 client (httpx). Secrets live only in the auth header; the repr and
    the errors never contain them."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
        timeout: float = 5.0,
        max_retries: int = 5,
        tls: Tls | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        on_retry: Callable[[int, float, AlertmanagerError], None] | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"alertmanager.url: expected http(s)://host:port, got {url!r}")
        if parts.username or parts.password:
            raise ConfigError(
                "alertmanager.url: put credentials in username/password, not in the URL"
            )
        if tls is not None and tls.enabled and parts.scheme != "https":
            raise ConfigError("alertmanager.tls.enabled is set but alertmanager.url is not https")
        if bearer_token is not None and username is not None:
            raise ConfigError("alertmanager: give either a bearer token or username/password")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.url = url.rstrip("/")
        self.username = username
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._on_retry = on_retry
        self._auth = httpx.BasicAuth(username, password or "") if username is not None else None
        self._headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
        self._own_client = client is None
        if client is None:
            verify: ssl.SSLContext | bool = True
            if parts.scheme == "https" and tls is not None:
                verify = ssl_context(tls)
            client = httpx.Client(timeout=timeout, verify=verify)
        self._client = client

    @classmethod
    def from_config(cls, cfg: AlertmanagerService, **kw: Any) -> AlertmanagerClient:
        if cfg.url is None:
            raise ConfigError("alertmanager.url is not set")
        return cls(
            cfg.url,
            username=cfg.username,
            password=cfg.password.reveal() if cfg.password is not None else None,
            bearer_token=(cfg.bearer_token.reveal() if cfg.bearer_token is not None else None),
            timeout=cfg.timeout_s,
            max_retries=cfg.max_retries,
            tls=cfg.tls,
            **kw,
        )

    def __repr__(self) -> str:
        auth = "bearer" if self._headers else f"user={self.username!r}" if self._auth else "none"
        return f"<AlertmanagerClient {self.url} auth={auth}>"

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> AlertmanagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _once(self, what: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return checked(
            what,
            lambda: self._client.request(
                method, self.url + path, headers=self._headers, auth=self._auth, **kw
            ),
            unavailable=AlertmanagerUnavailable,
            rejected=AlertmanagerRejected,
        )

    def _retry(self, call: Callable[[], T]) -> T:
        return retry(
            call,
            name="alertmanager",
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s,
            sleep=self._sleep,
            on_retry=self._on_retry,
        )

    def post(
        self,
        alerts: Sequence[Alert],
        now: datetime,
        firing_ttl_s: float,
        generator_url: str,
        links: Callable[[Alert], dict[str, str]] | None = None,
    ) -> None:
        """POST the firing and resolved alerts (pending ones are skipped; nothing to send, no
        request). Raises AlertmanagerUnavailable after the retries, AlertmanagerRejected on 4xx."""
        payload = to_payload(alerts, now, firing_ttl_s, generator_url, links)
        if not payload:
            return
        what = f"post {len(payload)} alerts to {self.url}"
        self._retry(lambda: self._once(what, "POST", "/api/v2/alerts", json=payload))

    def get_alerts(
        self,
        active: bool = True,
        *,
        filters: Sequence[str] = (),
        silenced: bool = True,
        inhibited: bool = True,
    ) -> list[dict]:
        """GET /api/v2/alerts; ``filters`` are matchers such as ``'alertname="x"'``."""
        params: list[tuple[str, str]] = [
            ("active", str(active).lower()),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
        ]
        params += [("filter", f) for f in filters]
        r = self._retry(
            lambda: self._once(
                f"get alerts from {self.url}", "GET", "/api/v2/alerts", params=params
            )
        )
        return r.json()

    def post_silence(
        self,
        matchers: Sequence[dict[str, Any]],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """POST /api/v2/silences; returns the silence id."""
        body = {
            "matchers": list(matchers),
            "startsAt": rfc3339(starts_at),
            "endsAt": rfc3339(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        r = self._retry(
            lambda: self._once(
                f"create silence on {self.url}", "POST", "/api/v2/silences", json=body
            )
        )
        return r.json()["silenceID"]

    def get_status(self) -> dict:
        """GET /api/v2/status: version, cluster, and the running config (``config.original``)."""
        r = self._retry(lambda: self._once(f"get status of {self.url}", "GET", "/api/v2/status"))
        return r.json()

    def get_silences(self) -> list[dict]:
        r = self._retry(
            lambda: self._once(f"get silences from {self.url}", "GET", "/api/v2/silences")
        )
        return r.json()

    def expire_silence(self, silence_id: str) -> None:
        self._retry(
            lambda: self._once(
                f"expire silence {silence_id} on {self.url}",
                "DELETE",
                f"/api/v2/silence/{silence_id}",
            )
        )
