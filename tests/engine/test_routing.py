"""Routing a batch to its shards (``twinwatch.engine.alerts``: by_shard, Router; no services)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from twinwatch.config import load_config
from twinwatch.engine.alerts import Router, affinity, by_shard, route_of
from twinwatch.flows.placement import shard_keys
from twinwatch.schema import Reading, SecurityEvent

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_router_groups_each_record_by_its_series_shard_across_batches():
    """A Router remembers each series' shard; every batch is grouped exactly as the definition
    (``keys[route_of(series)]``, groups in order of first appearance, records in batch order),
    also across evictions of its bounded memo and with asset-group routes (affinity)."""
    config = load_config(environ={})
    keys = shard_keys(8, 4)
    routes = affinity(config)
    assert routes, "the example city has asset groups: some series route by their asset"
    idents = [(r.domain, r.site, r.asset, r.sensor.id) for r in config.catalog.values()]
    router = Router(keys, routes, max_series=5)
    rng = random.Random(3)
    for _ in range(50):
        batch: list = []
        for _ in range(rng.randint(0, 40)):
            d, s, a, n = rng.choice(idents)
            if d == "security":
                batch.append(SecurityEvent(T0, s, a, n, "fw_deny", "deny"))
            else:
                batch.append(Reading(T0, d, s, a, n, "q", "u", 1.0))
        expected: dict[str, list] = {}
        for r in batch:
            expected.setdefault(keys[route_of(r.series, routes, len(keys))], []).append(r)
        assert router(batch) == list(expected.items())
        assert by_shard(batch, keys, routes) == list(expected.items())
        assert len(router._shard) <= 5
