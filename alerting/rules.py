"""From the config's alert rules to what the lifecycle and the notifications need.

    policy(rule, base_severity) -> (Policy, ladder)   ladder[state.level] is the alert's severity
    links(alert, cfg) -> {"runbook_url": ..., "dashboard_url": ...}   filled-in annotation links

Escalation levels come from ``rule.escalate`` ({severity: score}); only severities above the
base one count (a rule never escalates downwards), ordered by score.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerting.lifecycle import Policy
from twinwatch.config import AlertmanagerService, AlertRule, ConfigError
from twinwatch.schema import SEVERITIES, Alert

__all__ = ["policy", "links", "check_links", "DASHBOARD_MARGIN_S"]

DASHBOARD_MARGIN_S = 3600.0  # the dashboard link shows this much before the start and after the end


def policy(rule: AlertRule, base_severity: str) -> tuple[Policy, tuple[str, ...]]:
    base = SEVERITIES.index(base_severity)
    steps = sorted((score, sev) for sev, score in rule.escalate.items()
                   if SEVERITIES.index(sev) > base)
    for (s1, v1), (s2, v2) in zip(steps, steps[1:]):
        if SEVERITIES.index(v2) <= SEVERITIES.index(v1):
            raise ConfigError(f"alert_rules[{rule.detector}].escalate: {v2} at score {s2} must "
                              f"be above {v1} at score {s1}")
    if rule.reset is not None and steps and rule.reset >= steps[0][0]:
        raise ConfigError(f"alert_rules[{rule.detector}].reset must be below its escalation scores")
    p = Policy(for_s=rule.for_s, clear_s=rule.clear_s, reset=rule.reset,
               flap_window_s=rule.flap_window_s, flap_max=rule.flap_max,
               levels=tuple(s for s, _ in steps))
    return p, (base_severity, *(v for _, v in steps))


def links(alert: Alert, cfg: AlertmanagerService) -> dict[str, str]:
    """Runbook and dashboard URLs for ``alert`` from the configured templates (empty: none)."""
    fields = {"domain": alert.domain, "site": alert.site, "asset": alert.asset,
              "sensor": alert.sensor, "rule": alert.rule, "severity": alert.severity}
    out = {}
    if cfg.runbook_url:
        out["runbook_url"] = cfg.runbook_url.format(**fields)
    if cfg.dashboard_url:
        start = alert.starts_at - timedelta(seconds=DASHBOARD_MARGIN_S)
        end = (alert.ends_at or alert.at) + timedelta(seconds=DASHBOARD_MARGIN_S)
        out["dashboard_url"] = cfg.dashboard_url.format(
            **fields, from_ms=int(start.timestamp() * 1000), to_ms=int(end.timestamp() * 1000))
    return out


def check_links(cfg: AlertmanagerService) -> None:
    """Fail at start-up, not at the first alert, on an unknown placeholder in the templates."""
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    probe = Alert(fingerprint="0", status="firing", severity="alert", domain="water", site="s",
                  asset="a", sensor="x", rule="r", starts_at=t, at=t, value=0.0, unit="",
                  summary="")
    try:
        links(probe, cfg)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"services.alertmanager.runbook_url/dashboard_url: bad placeholder "
                          f"{e}; known: domain site asset sensor rule severity "
                          f"(dashboard also from_ms to_ms)") from None
