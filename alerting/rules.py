"""Runbook and dashboard links of a notification, from the configured URL templates.

links(alert, cfg) -> {"runbook_url": ..., "dashboard_url": ...}   filled-in annotation links
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twinwatch.config import AlertmanagerService, ConfigError
from twinwatch.schema import Alert

__all__ = ["links", "check_links", "DASHBOARD_MARGIN_S"]

DASHBOARD_MARGIN_S = 3600.0  # the dashboard link shows this much before the start and after the end


def links(alert: Alert, cfg: AlertmanagerService) -> dict[str, str]:
    """Runbook and dashboard URLs for ``alert`` from the configured templates (empty: none)."""
    fields = {
        "domain": alert.domain,
        "site": alert.site,
        "asset": alert.asset,
        "sensor": alert.sensor,
        "rule": alert.rule,
        "severity": alert.severity,
    }
    out = {}
    if cfg.runbook_url:
        out["runbook_url"] = cfg.runbook_url.format(**fields)
    if cfg.dashboard_url:
        start = alert.starts_at - timedelta(seconds=DASHBOARD_MARGIN_S)
        end = (alert.ends_at or alert.at) + timedelta(seconds=DASHBOARD_MARGIN_S)
        out["dashboard_url"] = cfg.dashboard_url.format(
            **fields, from_ms=int(start.timestamp() * 1000), to_ms=int(end.timestamp() * 1000)
        )
    return out


def check_links(cfg: AlertmanagerService) -> None:
    """Fail at start-up, not at the first alert, on an unknown placeholder in the templates."""
    t = datetime(2026, 1, 1, tzinfo=UTC)
    probe = Alert(
        fingerprint="0",
        status="firing",
        severity="alert",
        domain="water",
        site="s",
        asset="a",
        sensor="x",
        rule="r",
        starts_at=t,
        at=t,
        value=0.0,
        unit="",
        summary="",
    )
    try:
        links(probe, cfg)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"services.alertmanager.runbook_url/dashboard_url: bad placeholder "
            f"{e}; known: domain site asset sensor rule severity "
            f"(dashboard also from_ms to_ms)"
        ) from None
