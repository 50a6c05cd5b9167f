"""InfluxQL -> polars: typed frames from InfluxDB, read in time chunks with progress.

    db = Influx(config.services.influxdb)
    df = db.read("reading", start, end, where={"domain": "water"}, progress=print)
    df = db.select('SELECT mean(value) FROM reading WHERE ... GROUP BY time(1h), site')

Queries go over the v1 API (``/query``, InfluxQL), which InfluxDB 1.x, 2.x (DBRP mapping, token
auth) and 3.x all serve, so one reader covers every configured ``api``.

Dtypes come from the server, not from guessing at JSON: ``SHOW TAG KEYS`` and ``SHOW FIELD KEYS``
give each measurement's tags (-> ``Categorical``) and field types (float/integer/string/boolean
-> ``Float64``/``Int64``/``String``/``Boolean``); ``time`` is ``Datetime("ms", "UTC")``. InfluxDB
1.x writes a float field ``2.0`` as JSON ``2``, so inference would turn float columns into ints.

Long ranges are read in chunks whose edges are multiples of ``chunk`` since the epoch (so a
``GROUP BY time(every)`` bucket is never split when ``chunk`` is a multiple of ``every``); each
chunk is one request, and ``progress(done, total)`` is called after each.

Errors (all ``AnalysisError``, a ``ConfigError``: the CLI prints one line, no traceback)::

    AnalysisError
     ├── Unreachable      no answer from the server (connection refused, timeout, 5xx)
     ├── BadCredentials   HTTP 401/403: missing or wrong username/password/token
     ├── BadTimeRange     naive datetimes, end <= start, unparsable times (a bad duration
     │                    alone is twinwatch.durations.BadDuration, also a ConfigError)
     └── EmptyResult      nothing to work on (a backtest over no history); helpers return empty
                          frames and the CLI says "no ..." and exits 0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import polars as pl

from twinwatch.config import ConfigError, InfluxService
from twinwatch.durations import BadDuration, parse_duration
from twinwatch.influx import InfluxError, InfluxRejected, InfluxUnavailable, InfluxV1Writer

__all__ = [
    "AnalysisError",
    "Unreachable",
    "BadCredentials",
    "BadTimeRange",
    "EmptyResult",
    "Influx",
    "Progress",
    "TIME",
    "parse_time",
    "parse_duration",
    "check_range",
    "ms",
    "quote_ident",
    "quote_str",
    "where_clause",
]

# a polars dtype, as a class (pl.Int64) or an instance (pl.Datetime("ms", "UTC"))
DType = pl.DataType | type[pl.DataType]
TIME = pl.Datetime("ms", "UTC")
FIELD_DTYPES = {
    "float": pl.Float64,
    "integer": pl.Int64,
    "string": pl.String,
    "boolean": pl.Boolean,
}
DEFAULT_CHUNK = timedelta(hours=6)
Progress = Callable[[int, int], None]


class AnalysisError(ConfigError):
    """A query cannot be answered; the message says why and what to change."""


class Unreachable(AnalysisError):
    pass


class BadCredentials(AnalysisError):
    pass


class BadTimeRange(AnalysisError):
    pass


class EmptyResult(AnalysisError):
    pass


# --- times, durations, InfluxQL quoting --------------------------------------------------------


def parse_time(text: str, now: datetime) -> datetime:
    """ISO 8601 with a UTC offset (``2026-11-20T00:00:00Z``), ``now``, or ``now``/``-`` minus a
    duration (``-6h``, ``now-6h``). A time without an offset is refused, not guessed."""
    t = text.strip()
    if t == "now":
        return now
    rel = re.match(r"^(?:now)?-(\w+)$", t)
    if rel:
        try:
            return now - parse_duration(rel[1])  # twinwatch.durations: the one grammar
        except BadDuration as e:
            raise BadTimeRange(f"bad time {text!r}: {e}") from None
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadTimeRange(
            f"bad time {text!r}: expected ISO 8601 with an offset "
            "(2026-11-20T00:00:00Z), now, or -6h"
        ) from None
    if dt.tzinfo is None:
        raise BadTimeRange(f"time {text!r} has no UTC offset; add Z or +09:00")
    return dt.astimezone(UTC)


def check_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    for name, t in (("start", start), ("end", end)):
        if t.tzinfo is None:
            raise BadTimeRange(f"{name} {t.isoformat()} has no UTC offset")
    if end <= start:
        raise BadTimeRange(
            f"empty time range: end {end.isoformat()} is not after start {start.isoformat()}"
        )
    return start.astimezone(UTC), end.astimezone(UTC)


def ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def where_clause(start: datetime, end: datetime, where: dict[str, str | None] | None = None) -> str:
    """``time >= ..ms AND time < ..ms AND "tag" = '...'`` (None values are left out)."""
    parts = [f"time >= {ms(start)}ms", f"time < {ms(end)}ms"]
    parts += [
        f"{quote_ident(k)} = {quote_str(v)}" for k, v in (where or {}).items() if v is not None
    ]
    return " AND ".join(parts)


def _chunks(start: datetime, end: datetime, chunk: timedelta) -> list[tuple[datetime, datetime]]:
    step = chunk.total_seconds()
    edges = [start]
    k = int(start.timestamp() // step) + 1
    while (t := datetime.fromtimestamp(k * step, UTC)) < end:
        edges.append(t)
        k += 1
    edges.append(end)
    return list(zip(edges, edges[1:]))


# --- the reader ------------------------------------------------------------------------------


class Influx:
    """Reads InfluxDB into polars. Credentials are revealed here (from env/files), never logged."""

    def __init__(self, cfg: InfluxService, *, max_retries: int = 1, **kw):
        password = cfg.password.reveal() if cfg.password is not None else None
        token = cfg.token.reveal() if cfg.token is not None else None
        # An analyst waits at the terminal: fail fast rather than the flow's long backoff.
        self._w = InfluxV1Writer(
            cfg.url,
            cfg.database,
            retention_policy=cfg.retention_policy,
            username=cfg.username,
            password=password,
            token=token,
            timeout=cfg.timeout_s,
            max_retries=max_retries,
            tls=cfg.tls,
            backoff_s=0.2,
            max_backoff_s=1.0,
            **kw,
        )
        self.url, self.database = self._w.url, cfg.database
        self._schemas: dict[str, tuple[list[str], dict[str, str]]] = {}

    def close(self) -> None:
        self._w.close()

    def __enter__(self) -> Influx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, q: str) -> list[dict]:
        """The ``results`` of one InfluxQL request, with errors turned into AnalysisErrors."""
        try:
            return self._w.query(q)
        except InfluxUnavailable as e:
            where = f"InfluxDB at {self.url}"
            if e.status is None:
                raise Unreachable(
                    f"cannot reach {where} ({e.text or str(e).split(': ', 1)[-1]});"
                    " is it running? check services.influxdb.url"
                ) from None
            raise Unreachable(f"{where} is unavailable: HTTP {e.status} {e.text}") from None
        except InfluxRejected as e:
            if e.status in (401, 403):
                raise BadCredentials(
                    f"InfluxDB at {self.url} refused the credentials (HTTP {e.status}: {e.text});"
                    " check services.influxdb.username/password/token"
                ) from None
            raise AnalysisError(
                f"InfluxDB rejected the query: {e.text or e}\n  query: {q}"
            ) from None
        except InfluxError as e:  # pragma: no cover - the two above are all there is
            raise AnalysisError(str(e)) from None

    def measurements(self) -> set[str]:
        return {
            row[0]
            for res in self.raw("SHOW MEASUREMENTS")
            for s in res.get("series", [])
            for row in s["values"]
        }

    def schema(self, measurement: str) -> tuple[list[str], dict[str, str]]:
        """(tag keys, {field: influx type}) of a measurement, as the server knows them."""
        if measurement not in self._schemas:
            m = quote_ident(measurement)
            tags = [
                row[0]
                for res in self.raw(f"SHOW TAG KEYS FROM {m}")
                for s in res.get("series", [])
                for row in s["values"]
            ]
            fields: dict[str, str] = {}
            for res in self.raw(f"SHOW FIELD KEYS FROM {m}"):
                for s in res.get("series", []):
                    for key, kind in s["values"]:
                        fields.setdefault(key, kind)
            self._schemas[measurement] = (sorted(tags), fields)
        return self._schemas[measurement]

    def select(
        self,
        q: str,
        *,
        measurement: str | None = None,
        dtypes: dict[str, DType] | None = None,
    ) -> pl.DataFrame:
        """One InfluxQL SELECT -> DataFrame. Tags (of ``measurement`` or from GROUP BY) become
        Categorical; fields take the server's types; ``dtypes`` sets the rest (aggregates)."""
        tags, fields = self.schema(measurement) if measurement else ([], {})
        return to_frame(self.raw(q), tags, fields, dtypes)

    def read(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        *,
        where: dict[str, str | None] | None = None,
        select: str = "*",
        group_by: str | None = None,
        dtypes: dict[str, DType] | None = None,
        chunk: timedelta = DEFAULT_CHUNK,
        progress: Progress | None = None,
    ) -> pl.DataFrame:
        """``SELECT {select} FROM measurement`` over [start, end), one request per chunk."""
        start, end = check_range(start, end)
        tags, fields = self.schema(measurement)
        parts = []
        spans = _chunks(start, end, chunk)
        for i, (a, b) in enumerate(spans, 1):
            q = f"SELECT {select} FROM {quote_ident(measurement)} WHERE {where_clause(a, b, where)}"
            if group_by:
                q += f" GROUP BY {group_by}"
            frame = to_frame(self.raw(q), tags, fields, dtypes)
            if frame.height:
                parts.append(frame)
            if progress is not None:
                progress(i, len(spans))
        if not parts:
            return empty_frame(tags, fields, dtypes, raw=select == "*")
        return pl.concat(parts, how="diagonal_relaxed").sort("time", maintain_order=True)


def _series_frame(
    s: dict, tags: set[str], fields: dict[str, str], dtypes: dict[str, DType]
) -> pl.DataFrame:
    cols, rows = s["columns"], s.get("values") or []
    data = dict(zip(cols, (list(c) for c in zip(*rows)))) if rows else {c: [] for c in cols}
    series_tags = s.get("tags") or {}
    columns = []
    for name, values in data.items():
        if name == "time":
            columns.append(pl.Series(name, values, pl.Int64).cast(TIME))
        elif name in tags:
            columns.append(pl.Series(name, values, pl.String))
        elif name in dtypes:
            columns.append(pl.Series(name, values, dtypes[name], strict=False))
        elif name in fields:
            columns.append(pl.Series(name, values, FIELD_DTYPES[fields[name]], strict=False))
        else:
            columns.append(pl.Series(name, values, strict=False))
    for k, v in series_tags.items():
        columns.append(pl.Series(k, [v or None] * len(rows), pl.String))
    return pl.DataFrame(columns)


def to_frame(
    results: list[dict],
    tags: Iterable[str],
    fields: dict[str, str],
    dtypes: dict[str, DType] | None = None,
) -> pl.DataFrame:
    """InfluxQL JSON results -> one DataFrame (series with different columns are aligned)."""
    tagset, dtypes = set(tags), dtypes or {}
    parts, group_tags = [], set()
    for res in results:
        for s in res.get("series", []):
            group_tags |= set(s.get("tags") or {})
            parts.append(_series_frame(s, tagset, fields, dtypes))
    if not parts:
        return pl.DataFrame()
    df = pl.concat(parts, how="diagonal_relaxed")
    cats = [c for c in df.columns if c in tagset or c in group_tags]
    df = df.with_columns(pl.col(cats).cast(pl.Categorical))
    front = ["time"] if "time" in df.columns else []
    tag_cols = sorted(cats)
    return df.select(front + tag_cols + [c for c in df.columns if c not in front + tag_cols])


def empty_frame(
    tags: Iterable[str],
    fields: dict[str, str],
    dtypes: dict[str, DType] | None = None,
    *,
    raw: bool = True,
) -> pl.DataFrame:
    """The frame a query with no rows would have had (raw: all tags and fields)."""
    schema: dict[str, DType] = {"time": TIME}
    if raw:
        schema |= {t: pl.Categorical for t in sorted(tags)}
        schema |= {f: FIELD_DTYPES[k] for f, k in fields.items()}
    schema |= dtypes or {}
    return pl.DataFrame(schema=schema)
