"""The one Alert constructor, and the one shard function, of the engine.

make_alert(...) -> Alert       every alert state change (per-series rules, stale, security)
shard_of(key, shards) -> str   the shard a series or an asset is routed to
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

from twinwatch.metrics import ALERTS
from twinwatch.schema import Alert, AlertStatus, Domain, Severity, fingerprint

__all__ = ["make_alert", "shard_of"]


def shard_of(key: str, shards: int) -> str:
    """Stable shard of a key (crc32, not hash(): the same in every process and every run)."""
    return str(zlib.crc32(key.encode()) % shards)


def make_alert(
    *,
    domain: Domain,
    site: str,
    asset: str,
    sensor: str,
    rule: str,
    status: AlertStatus,
    severity: Severity,
    since: float,
    t: float,
    value: float,
    unit: str,
    summary: str,
    details: dict[str, str] | None = None,
    **explanation,
) -> Alert:
    """An alert state change at event time ``t`` (epoch s) of the episode that began at ``since``.

    The fingerprint hashes the label set, so it is stable across restarts and processes. Counted
    in the ``twinwatch_alerts_total`` metric. ``explanation``: the Alert's explanation fields
    (``twinwatch.engine.explain``).
    """
    labels = {"domain": domain, "site": site, "asset": asset, "sensor": sensor, "rule": rule}
    at = datetime.fromtimestamp(t, UTC)
    ALERTS.labels(domain, severity, status).inc()
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,
        severity=severity,
        domain=domain,
        site=site,
        asset=asset,
        sensor=sensor,
        rule=rule,
        starts_at=datetime.fromtimestamp(since, UTC),
        at=at,
        value=value,
        unit=unit,
        summary=summary[:512],
        ends_at=at if status == "resolved" else None,
        details=details or {},
        **explanation,
    )
