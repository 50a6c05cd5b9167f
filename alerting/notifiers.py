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
for one that already notified); an alert resolved before that flush is never paged. So the
hold is the longest ``group_wait``/``group_interval`` of the routing tree Alertmanager actually
runs (read from its ``/api/v2/status`` once it answers), plus 2 s; until then, the one our
config would generate (``routing``); ``resolve_hold_s`` overrides both. A direct webhook pages
at once, so it holds nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec
import yaml

from twinwatch.alerting.alertmanager import AlertmanagerClient, AlertmanagerError, is_ack_silence
from twinwatch.alerting.rules import links
from twinwatch.alerting.webhook import WebhookClient
from twinwatch.config import AlertmanagerService
from twinwatch.schema import Alert

__all__ = [
    "Notifier",
    "AlertmanagerNotifier",
    "WebhookNotifier",
    "notifiers_from_config",
    "hold_of",
]

log = logging.getLogger(__name__)
HOLD_MARGIN_S = 2.0
_PROM_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_PROM_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(text: str) -> float:
    """A Prometheus/Alertmanager duration (``30s``, ``5m``, ``1h30m``, ``500ms``)."""
    parts = _PROM_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * _PROM_UNITS[u] for n, u in parts)


def hold_of(alertmanager_yml: str) -> float:
    """The resolve hold for an Alertmanager running this config: the longest group_wait or
    group_interval anywhere in its routing tree (children inherit; Alertmanager's defaults are
    30 s and 5 m), plus a margin."""
    longest = 0.0

    def walk(route: dict[str, Any], wait: float, interval: float) -> None:
        nonlocal longest
        wait = _seconds(route["group_wait"]) if "group_wait" in route else wait
        interval = _seconds(route["group_interval"]) if "group_interval" in route else interval
        longest = max(longest, wait, interval)
        for child in route.get("routes") or ():
            walk(child, wait, interval)

    walk((yaml.safe_load(alertmanager_yml) or {}).get("route") or {}, 30.0, 300.0)
    return longest + HOLD_MARGIN_S


class Notifier(Protocol):
    name: str  # "alertmanager" | "webhook": a metric label and the delivery store's key

    @property
    def hold_s(self) -> float: ...

    def notify(self, alerts: Sequence[Alert], now: datetime) -> None: ...

    def close(self) -> None: ...


class AlertmanagerNotifier:
    name = "alertmanager"

    def __init__(self, cfg: AlertmanagerService, client: AlertmanagerClient | None = None):
        self.cfg = cfg
        self.client = client or AlertmanagerClient.from_config(
            msgspec.structs.replace(cfg, max_retries=0)
        )
        self._running_hold: float | None = None  # from the running Alertmanager's config
        self._next_look = 0.0  # monotonic: when to ask its /api/v2/status again

    def __repr__(self) -> str:
        return f"<AlertmanagerNotifier {self.client!r}>"

    @property
    def hold_s(self) -> float:
        if self.cfg.resolve_hold_s is not None:
            return self.cfg.resolve_hold_s
        if self._running_hold is None and time.monotonic() >= self._next_look:
            try:
                self._running_hold = hold_of(self.client.get_status()["config"]["original"])
                log.info(
                    "alertmanager: resolves wait %.1f s behind their firing (its routing tree)",
                    self._running_hold,
                )
            except (AlertmanagerError, KeyError, TypeError, ValueError, yaml.YAMLError) as e:
                self._next_look = time.monotonic() + 60
                log.debug("alertmanager: its config is unknown yet (%s); hold from ours", e)
        return self.cfg.hold_s if self._running_hold is None else self._running_hold

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
