"""The one notifier interface of alert delivery, and its two receivers.

    Notifier                         .name, .hold_s, .notify(alerts, now), .close()
    AlertmanagerNotifier(cfg)        POST /api/v2/alerts (and ends the acks' silences on resolve)
    WebhookNotifier(cfg)             the HMAC-signed direct webhook (alerting/webhook.py)
    notifiers_from_config(cfg) -> [Notifier]

As Alertmanager's own notifiers: ``notify`` either returns (the receiver accepted every alert)
or raises a ``twinwatch.http.HttpError`` whose ``retryable`` says whether the same request may
succeed later (5xx, 429, timeouts, connection errors) and ``needs_operator`` whether it was
refused for the setup (401/403/404: credentials, permissions, wrong path). Notifiers do not retry
themselves (``max_retries=0``): the delivery queue (alerting/delivery.py) owns retries and
backoff, so one receiver's outage never holds up another, nor the flow.

``hold_s``: how long a resolve must wait after its firing was accepted. Alertmanager notifies
an alert only when its group is flushed (``group_wait`` for a new group, ``group_interval``
for one that already notified); an alert resolved before that flush is never paged. A direct
webhook pages at once, so it holds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from twinwatch.alerting.alertmanager import AlertmanagerClient, AlertmanagerError, is_ack_silence
from twinwatch.alerting.rules import links
from twinwatch.alerting.webhook import WebhookClient
from twinwatch.config import AlertmanagerService
from twinwatch.schema import Alert

__all__ = ["Notifier", "AlertmanagerNotifier", "WebhookNotifier", "notifiers_from_config"]

log = logging.getLogger(__name__)


class Notifier(Protocol):
    name: str  # "alertmanager" | "webhook": a metric label and the delivery store's key
    hold_s: float

    def notify(self, alerts: Sequence[Alert], now: datetime) -> None: ...

    def close(self) -> None: ...


class AlertmanagerNotifier:
    name = "alertmanager"

    def __init__(self, cfg: AlertmanagerService, client: AlertmanagerClient | None = None):
        self.cfg = cfg
        self.hold_s = cfg.hold_s
        self.client = client or AlertmanagerClient.from_config(
            msgspec.structs.replace(cfg, max_retries=0)
        )

    def __repr__(self) -> str:
        return f"<AlertmanagerNotifier {self.client!r} hold={self.hold_s:g}s>"

    def notify(self, alerts: Sequence[Alert], now: datetime) -> None:
        self.client.post(
            alerts,
            now,
            self.cfg.firing_ttl_s,
            self.cfg.generator_url,
            lambda a: links(a, self.cfg),
        )
        resolved = {a.fingerprint for a in alerts if a.status == "resolved"}
        if resolved:
            self._end_acks(resolved)

    def _end_acks(self, fingerprints: set[str]) -> None:
        """An ack silences its alert until the episode resolves (docs/alerting.md): expire the
        silences of these fingerprints, so their next episode pages. Best effort: the resolve
        itself is already delivered, so a failure here is logged, not retried."""
        try:
            for s in self.client.get_silences():
                fp = is_ack_silence(s)
                if fp in fingerprints and s["status"]["state"] != "expired":
                    self.client.expire_silence(s["id"])
        except AlertmanagerError as e:
            log.warning("alertmanager: could not end the acks' silences of a resolve: %s", e)

    def close(self) -> None:
        self.client.close()


class WebhookNotifier:
    name = "webhook"
    hold_s = 0.0

    def __init__(self, cfg: AlertmanagerService, client: WebhookClient | None = None):
        self.cfg = cfg
        self.client = client or WebhookClient.from_config(
            msgspec.structs.replace(cfg, max_retries=0)
        )

    def __repr__(self) -> str:
        return f"<WebhookNotifier {self.client!r}>"

    def notify(self, alerts: Sequence[Alert], now: datetime) -> None:
        self.client.post(
            alerts,
            now,
            self.cfg.firing_ttl_s,
            self.cfg.generator_url,
            lambda a: links(a, self.cfg),
        )

    def close(self) -> None:
        self.client.close()


def notifiers_from_config(cfg: AlertmanagerService) -> list[Notifier]:
    """Alertmanager if ``url`` is set, the signed webhook if ``webhook_url`` is; secrets are
    read here (a missing one is a ConfigError)."""
    out: list[Notifier] = []
    if cfg.url:
        out.append(AlertmanagerNotifier(cfg))
    if cfg.webhook_url:
        out.append(WebhookNotifier(cfg))
    return out
