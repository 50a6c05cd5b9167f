"""The one Alert constructor, and the one shard function, of the engine.

make_alert(...) -> Alert       every alert state change (per-series rules, stale, security)
shard_of(key, shards) -> str   the shard a series or an asset is routed to
affinity(config) -> {series: routing key}   group members are routed by their asset
by_shard(records, keys, routes)            a batch grouped by shard key
Router(keys, routes)(records)              the same, with the shard of each series remembered
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import UTC, datetime

from twinwatch.config import Config
from twinwatch.metrics import ALERTS
from twinwatch.schema import Alert, AlertStatus, Domain, Severity, fingerprint, series_key

__all__ = ["affinity", "by_shard", "make_alert", "route_of", "shard_of", "Router"]


def shard_of(key: str, shards: int) -> str:
    """Stable shard of a key (crc32, not hash(): the same in every process and every run)."""
    return str(zlib.crc32(key.encode()) % shards)


def affinity(config: Config) -> dict[str, str]:
    """series key -> the key it is routed by, for the series an asset group uses: their asset
    (``domain/site/asset``); every other series is routed by its own key (``route_of``).

    So every member of an asset's groups enters through one source partition and lands in the
    shard of its groups: the group step sees its members in the order they were published
    whatever the number of processes (issue #14's same answer), and needs no exchange.
    """
    domain_of = {s.id: s.domain for s in config.sites}
    out: dict[str, str] = {}
    for g in config.asset_groups:
        asset = f"{domain_of[g.site]}/{g.site}/{g.asset}"
        for sensor in g.members:
            out[series_key(domain_of[g.site], g.site, g.asset, sensor)] = asset
    return out


def route_of(key: str, routes: dict[str, str], shards: int) -> int:
    """The shard (or source partition) of a series key under ``affinity``'s routes."""
    return zlib.crc32(routes.get(key, key).encode()) % shards


def by_shard(records: Iterable, keys: list[str], routes: dict[str, str]) -> list[tuple[str, list]]:
    """Group a batch by shard: ``keys[s]`` is shard s's key (the flow places it on the worker
    reading the shard's source partition: twinwatch.flows.placement); ``routes``: ``affinity``.
    A step that routes batch after batch keeps a ``Router`` instead."""
    return Router(keys, routes)(records)


class Router:
    """``by_shard`` for a stream of batches: the shard key of each series is computed once.

    Remembered by the record's identity fields (domain, site, asset, sensor), which its series
    key is spelled from: a tuple of the same field strings costs half of building the key (the
    ``series`` property) and a crc32 less. Bounded: cleared when ``max_series`` are known.
    """

    def __init__(self, keys: list[str], routes: dict[str, str], max_series: int = 100_000):
        self.keys = keys
        self.routes = routes
        self.max_series = max_series
        self._shard: dict[tuple[str, str, str, str], str] = {}

    def __call__(self, records: Iterable) -> list[tuple[str, list]]:
        groups: dict[str, list] = {}
        memo = self._shard
        for r in records:
            ident = (r.domain, r.site, r.asset, r.sensor)
            key = memo.get(ident)
            if key is None:
                if len(memo) >= self.max_series:
                    memo.clear()
                key = memo[ident] = self.keys[route_of(r.series, self.routes, len(self.keys))]
            group = groups.get(key)
            if group is None:
                groups[key] = [r]
            else:
                group.append(r)
        return list(groups.items())


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
