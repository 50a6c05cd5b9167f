"""Apply ``services.influxdb.retention`` on start (InfluxDB 1.x, InfluxQL).

    apply_retention(writer, retention) -> list[str]     the InfluxQL statements it ran

* ``retention.database``: ``ALTER RETENTION POLICY`` of the database's *default* policy to that
  duration (altering, not creating a new default, so data already written stays visible to
  unqualified queries). Pick the longest life you need: the rollups (``reading_1m``/``_1h``)
  live this long.
* ``retention.measurements``: ``DELETE FROM "<m>" WHERE time < now() - <d>`` per measurement.
  InfluxDB 1.x keeps retention per policy, not per measurement; deleting on start keeps raw data
  shorter than its rollups without routing every measurement to its own policy (which every
  dashboard query would then have to name).

InfluxDB 2.x/3.x (``api: v2``) have no InfluxQL DDL or DELETE over the v1 API: retention there
is the bucket's (compose sets it at init), so nothing is run and the reason is logged. A server
that refuses a statement is a config error worth stopping for: ``InfluxRejected`` propagates.
"""

from __future__ import annotations

import logging

from twinwatch.config import InfluxService, Retention
from twinwatch.influx import InfluxUnavailable, InfluxV1Writer, make_writer

__all__ = ["apply_retention", "apply_configured", "statements"]

log = logging.getLogger(__name__)


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def statements(retention: Retention, database: str, default_policy: str) -> list[str]:
    """The InfluxQL that applies ``retention`` to ``database`` (pure; for tests and logs)."""
    out = []
    if retention.database:
        out.append(
            f"ALTER RETENTION POLICY {_ident(default_policy)} ON {_ident(database)} "
            f"DURATION {retention.database}"
        )
    for measurement, duration in sorted(retention.measurements.items()):
        if duration != "INF":
            out.append(f"DELETE FROM {_ident(measurement)} WHERE time < now() - {duration}")
    return out


def _default_policy(writer: InfluxV1Writer) -> str:
    series = writer.query(f"SHOW RETENTION POLICIES ON {_ident(writer.database)}", epoch=None)[
        0
    ].get("series", [])
    for s in series:
        cols = s["columns"]
        for row in s.get("values", []):
            rp = dict(zip(cols, row))
            if rp.get("default"):
                return rp["name"]
    return "autogen"


def apply_retention(writer, retention: Retention) -> list[str]:
    """Run the retention statements on a v1 writer's database; return what was run."""
    if not retention.database and not retention.measurements:
        return []
    if not isinstance(writer, InfluxV1Writer):
        log.info(
            "retention: InfluxDB 2.x/3.x keep data per bucket; set the bucket's retention "
            "instead (services.influxdb.retention is applied on 1.x only)"
        )
        return []
    done = statements(retention, writer.database, _default_policy(writer))
    for q in done:
        writer.query(q, epoch=None)
        log.info("retention: %s", q)
    return done


def apply_configured(cfg: InfluxService) -> list[str]:
    """On flow start: apply ``cfg.retention``. An unreachable server is logged, not fatal (the
    sink retries writes; retention is applied at the next start)."""
    if not cfg.retention.database and not cfg.retention.measurements:
        return []
    writer = make_writer(cfg)
    try:
        return apply_retention(writer, cfg.retention)
    except InfluxUnavailable as e:
        log.warning("retention not applied, InfluxDB unavailable: %s", e)
        return []
    finally:
        writer.close()
