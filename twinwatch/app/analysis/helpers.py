"""The analysts' common questions, each one function returning a polars DataFrame.

    readings(db, start, end, site=..., asset=...)        raw readings of a series, asset, site...
    events(db, start, end, ...)                          security events
    history(db, start, end)                              readings + events (what a backtest replays)
    rollup(db, start, end, "1h", ...)                    count/mean/min/max per series per bucket
    rollup_frame(readings_df, "1h")                      the same computed in polars
    scores_with_readings(db, start, end, ...)            each reading with its detector scores
    alert_history(db, start, end, ...)                   one row per alert episode, MTTA/MTTR
    firing_at(db, t, ...)                                the alerts firing at t, wherever they began
    mtta_mttr(episodes, by=("domain", "severity"))       mean/median times to ack and resolve
    noisy_sensors(db, start, end, top=10)                most alert episodes and detector hits
    dead_letter_stats(db, start, end)                    dead letters by source and reason

Rollups: the 1-minute/1-hour rollup measurements of issue #5 may not exist on a server, so
``rollup`` asks InfluxDB (``GROUP BY time(every)``, buckets aligned to the epoch as InfluxDB
does, empty buckets left out) and ``rollup_frame`` does the same in polars on raw readings; the
tests check that they agree.

Alert episodes: the ``alert`` measurement has one point per state change (pending, firing,
resolved) sharing ``fingerprint`` and ``starts_at_ms``. An episode that never fired (a pending
condition that did not last) is not an alert and is left out. Acknowledgements come from the
``alert_ack`` measurement (``twinwatch.schema.AlertAck``, written by ``twinwatch alerts ack``:
one point per acknowledgement, fields ``fingerprint`` and ``user``, at the time of the ack);
when it does not exist, ``acked_at``, ``acked_by`` and ``time_to_ack_s`` are null. Time to
acknowledge and time to resolve are measured from the firing time. An episode still firing at
``end`` has a null ``resolved_at``.

What is firing at a time ``t`` comes from ``alert_state`` (one series per alert, written with
every state change; twinwatch/lineprotocol.py): each alert's latest point at or before ``t``,
however long before, so an alert that began before a report's window is counted at its end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from twinwatch.app.analysis.query import (
    DEFAULT_CHUNK,
    TIME,
    DType,
    Influx,
    Progress,
    ms,
    parse_duration,
    quote_ident,
    quote_str,
)

__all__ = [
    "SERIES",
    "readings",
    "events",
    "history",
    "rollup",
    "rollup_frame",
    "scores_with_readings",
    "alert_history",
    "firing_at",
    "mtta_mttr",
    "noisy_sensors",
    "dead_letter_stats",
]

SERIES = ["domain", "site", "asset", "sensor"]
_AGG_DTYPES: dict[str, DType] = {
    "count": pl.Int64,
    "mean": pl.Float64,
    "min": pl.Float64,
    "max": pl.Float64,
}


def _where(domain=None, site=None, asset=None, sensor=None) -> dict[str, str | None]:
    return {"domain": domain, "site": site, "asset": asset, "sensor": sensor}


def readings(
    db: Influx,
    start: datetime,
    end: datetime,
    *,
    domain: str | None = None,
    site: str | None = None,
    asset: str | None = None,
    sensor: str | None = None,
    chunk: timedelta = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """time, asset, domain, quantity, sensor, site, unit (Categorical), value (Float64)."""
    return db.read(
        "reading",
        start,
        end,
        where=_where(domain, site, asset, sensor),
        chunk=chunk,
        progress=progress,
    )


def events(
    db: Influx,
    start: datetime,
    end: datetime,
    *,
    site: str | None = None,
    asset: str | None = None,
    sensor: str | None = None,
    chunk: timedelta = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> pl.DataFrame:
    return db.read(
        "security_event",
        start,
        end,
        where=_where(None, site, asset, sensor),
        chunk=chunk,
        progress=progress,
    )


def history(
    db: Influx,
    start: datetime,
    end: datetime,
    *,
    chunk: timedelta = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """Readings and security events in one frame, in time order (readings have null ``kind``,
    events null ``value``): the input of a backtest, and what ``query history`` saves."""
    parts = [
        f
        for f in (
            readings(db, start, end, chunk=chunk, progress=progress),
            events(db, start, end, chunk=chunk, progress=progress),
        )
        if f.height
    ]
    if not parts:
        return readings(db, start, end, chunk=chunk)
    return pl.concat(parts, how="diagonal_relaxed").sort("time", maintain_order=True)


def rollup(
    db: Influx,
    start: datetime,
    end: datetime,
    every: str = "1h",
    *,
    domain: str | None = None,
    site: str | None = None,
    asset: str | None = None,
    sensor: str | None = None,
    chunk: timedelta = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """Per series and ``every`` bucket: count, mean, min, max of ``reading.value`` (InfluxQL)."""
    step = parse_duration(every)
    chunk = max(step, step * round(chunk / step))  # chunk edges on bucket edges
    df = db.read(
        "reading",
        start,
        end,
        where=_where(domain, site, asset, sensor),
        select="count(value), mean(value), min(value), max(value)",
        group_by=f"time({every}), domain, site, asset, sensor fill(none)",
        dtypes=_AGG_DTYPES,
        chunk=chunk,
        progress=progress,
    )
    if not df.height:
        return pl.DataFrame(
            schema={"time": TIME, **{c: pl.Categorical for c in SERIES}, **_AGG_DTYPES}
        )
    return df.select("time", *SERIES, *_AGG_DTYPES).sort([*SERIES, "time"])


def rollup_frame(df: pl.DataFrame, every: str = "1h") -> pl.DataFrame:
    """``rollup`` computed in polars from raw readings (the same buckets and columns)."""
    parse_duration(every)  # same spellings, same validation
    return (
        df.sort("time")
        .group_by_dynamic("time", every=every, group_by=SERIES)
        .agg(
            pl.col("value").count().cast(pl.Int64).alias("count"),
            pl.col("value").mean().alias("mean"),
            pl.col("value").min().alias("min"),
            pl.col("value").max().alias("max"),
        )
        .select("time", *SERIES, *_AGG_DTYPES)
        .sort([*SERIES, "time"])
    )


def scores_with_readings(
    db: Influx,
    start: datetime,
    end: datetime,
    *,
    domain: str | None = None,
    site: str | None = None,
    asset: str | None = None,
    sensor: str | None = None,
    chunk: timedelta = DEFAULT_CHUNK,
) -> pl.DataFrame:
    """Each reading with its detectors' scores (one column per detector) and ``hits``."""
    w: dict[str, Any] = dict(domain=domain, site=site, asset=asset, sensor=sensor, chunk=chunk)
    left = readings(db, start, end, **w)
    scores = db.read(
        "anomaly_score", start, end, where=_where(domain, site, asset, sensor), chunk=chunk
    )
    if not scores.height:
        return left
    return left.join(scores.drop("value"), on=["time", *SERIES], how="left")


def alert_history(
    db: Influx,
    start: datetime,
    end: datetime,
    *,
    domain: str | None = None,
    site: str | None = None,
    asset: str | None = None,
    sensor: str | None = None,
    chunk: timedelta = DEFAULT_CHUNK,
) -> pl.DataFrame:
    """One row per fired alert episode: labels, fired/resolved/acked times and durations (s)."""
    raw = db.read("alert", start, end, where=_where(domain, site, asset, sensor), chunk=chunk)
    if not raw.height:
        return _episodes_schema()
    labels = [*SERIES, "rule", "severity"]
    at = lambda status: pl.col("time").filter(pl.col("status") == status).min()  # noqa: E731
    first_firing = pl.col("status") == "firing"
    eps = (
        raw.group_by(["fingerprint", "starts_at_ms"])
        .agg(
            *[pl.col(c).first() for c in labels],
            pl.col("starts_at_ms").first().cast(pl.Int64).cast(TIME).alias("started_at"),
            at("pending").alias("pending_at"),
            at("firing").alias("fired_at"),
            at("resolved").alias("resolved_at"),
            pl.col("value").filter(first_firing).first().alias("value"),
            pl.col("unit").filter(first_firing).first().alias("unit"),
            pl.col("summary").filter(first_firing).first().alias("summary"),
        )
        .filter(pl.col("fired_at").is_not_null())
    )
    eps = _with_acks(db, eps, start, end, chunk)
    seconds = lambda a, b: (pl.col(a) - pl.col(b)).dt.total_milliseconds() / 1000  # noqa: E731
    return (
        eps.with_columns(
            seconds("acked_at", "fired_at").alias("time_to_ack_s"),
            seconds("resolved_at", "fired_at").alias("time_to_resolve_s"),
        )
        .select(_episodes_schema().columns)
        .sort("fired_at", "fingerprint")
    )


_STATE_FIELDS = ("severity", "status", "fingerprint", "value", "unit", "summary", "starts_at_ms")


def firing_at(
    db: Influx,
    t: datetime,
    *,
    domain: str | None = None,
    site: str | None = None,
    asset: str | None = None,
    sensor: str | None = None,
) -> pl.DataFrame:
    """The alerts firing at ``t``, most severe first: ``since`` (their latest state change:
    fired or escalated), ``started_at`` (the episode's start), labels, severity, value, unit,
    summary. One cheap query: ``last()`` of each alert's ``alert_state`` series before ``t``."""
    schema = pl.Schema(
        {
            "since": TIME,
            "started_at": TIME,
            **{c: pl.Categorical() for c in SERIES},
            "rule": pl.Categorical(),
            "severity": pl.String(),
            "fingerprint": pl.String(),
            "value": pl.Float64(),
            "unit": pl.String(),
            "summary": pl.String(),
        }
    )
    if "alert_state" not in db.measurements():
        return pl.DataFrame(schema=schema)
    tags = "".join(
        f"{quote_ident(k)} = {quote_str(v)} AND "
        for k, v in _where(domain, site, asset, sensor).items()
        if v is not None
    )
    fields = ", ".join(quote_ident(f) for f in _STATE_FIELDS)
    inner = (
        f'SELECT last("level") AS "level", {fields} FROM "alert_state" '
        f'WHERE {tags}time <= {ms(t)}ms GROUP BY "domain", "site", "asset", "sensor", "rule"'
    )
    df = db.select(
        f'SELECT * FROM ({inner}) WHERE "level" > 0',
        measurement="alert_state",
        dtypes={"level": pl.Int64(), "starts_at_ms": pl.Int64()},
    )
    if not df.height:
        return pl.DataFrame(schema=schema)
    return (
        df.sort(["level", "time"], descending=[True, False])
        .with_columns(
            pl.col("time").alias("since"),
            pl.col("starts_at_ms").cast(TIME).alias("started_at"),
            pl.col("severity").cast(pl.String),
        )
        .select(list(schema))
        .cast(schema)
    )


def _episodes_schema() -> pl.DataFrame:
    cat = pl.Categorical
    return pl.DataFrame(
        schema={
            "fingerprint": pl.String,
            **{c: cat for c in SERIES},
            "rule": cat,
            "severity": cat,
            "started_at": TIME,
            "pending_at": TIME,
            "fired_at": TIME,
            "acked_at": TIME,
            "acked_by": pl.String,
            "resolved_at": TIME,
            "time_to_ack_s": pl.Float64,
            "time_to_resolve_s": pl.Float64,
            "value": pl.Float64,
            "unit": pl.String,
            "summary": pl.String,
        }
    )


def _with_acks(
    db: Influx, eps: pl.DataFrame, start: datetime, end: datetime, chunk: timedelta
) -> pl.DataFrame:
    none = (pl.lit(None, TIME).alias("acked_at"), pl.lit(None, pl.String).alias("acked_by"))
    if "alert_ack" not in db.measurements():
        return eps.with_columns(*none)
    acks = db.read("alert_ack", start, end, chunk=chunk)
    if "fingerprint" not in acks.columns or not acks.height:
        return eps.with_columns(*none)
    user = pl.col("user").cast(pl.String) if "user" in acks.columns else pl.lit(None, pl.String)
    acks = acks.select(
        pl.col("fingerprint").cast(pl.String), pl.col("time").alias("ack"), user.alias("by")
    )
    first = (
        eps.select("fingerprint", "starts_at_ms", "fired_at", "resolved_at")
        .join(acks, on="fingerprint")
        .filter(
            pl.col("ack") >= pl.col("fired_at"),
            pl.col("resolved_at").is_null() | (pl.col("ack") <= pl.col("resolved_at")),
        )
        .sort("ack")
        .group_by("fingerprint", "starts_at_ms")
        .agg(pl.col("ack").first().alias("acked_at"), pl.col("by").first().alias("acked_by"))
    )
    return eps.join(first, on=["fingerprint", "starts_at_ms"], how="left")


def mtta_mttr(episodes: pl.DataFrame, by: tuple[str, ...] = ("domain", "severity")) -> pl.DataFrame:
    """Mean time to acknowledge / resolve (minutes) per group, with counts of each."""
    minutes = lambda c: pl.col(c) / 60  # noqa: E731
    return (
        episodes.group_by(list(by))
        .agg(
            pl.len().alias("alerts"),
            pl.col("time_to_ack_s").count().alias("acked"),
            minutes("time_to_ack_s").mean().alias("mtta_min"),
            pl.col("time_to_resolve_s").count().alias("resolved"),
            minutes("time_to_resolve_s").mean().alias("mttr_min"),
            minutes("time_to_resolve_s").median().alias("median_ttr_min"),
        )
        .sort(list(by))
    )


def noisy_sensors(
    db: Influx,
    start: datetime,
    end: datetime,
    *,
    top: int = 10,
    episodes: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Sensors with the most alert episodes, then the most detector hits (``anomaly`` points)."""
    if episodes is None:
        episodes = alert_history(db, start, end)
    alerts = episodes.group_by(SERIES).agg(pl.len().cast(pl.Int64).alias("alerts"))
    hits = db.read(
        "anomaly",
        start,
        end,
        select="count(score)",
        group_by="domain, site, asset, sensor",
        chunk=end - start + timedelta(1),
        dtypes={"count": pl.Int64},
    )
    if hits.height:
        hits = hits.group_by(SERIES).agg(pl.col("count").sum().alias("detector_hits"))
        out = alerts.join(hits, on=SERIES, how="full", coalesce=True)
    else:
        out = alerts.with_columns(pl.lit(0, pl.Int64).alias("detector_hits"))
    return (
        out.with_columns(pl.col("alerts", "detector_hits").fill_null(0))
        .sort(["alerts", "detector_hits", *SERIES], descending=[True, True] + [False] * 4)
        .head(top)
    )


def dead_letter_stats(
    db: Influx, start: datetime, end: datetime, *, chunk: timedelta = DEFAULT_CHUNK
) -> pl.DataFrame:
    """Dead letters per source and reason: count, first and last time, most frequent topic."""
    df = db.read("dead_letter", start, end, chunk=chunk)
    if not df.height:
        return pl.DataFrame(
            schema={
                "source": pl.Categorical,
                "reason": pl.Categorical,
                "count": pl.Int64,
                "first": TIME,
                "last": TIME,
                "top_topic": pl.String,
            }
        )
    return (
        df.group_by("source", "reason")
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("time").min().alias("first"),
            pl.col("time").max().alias("last"),
            pl.col("topic").mode().sort().first().alias("top_topic"),
        )
        .sort("count", "source", "reason", descending=[True, False, False])
    )
