"""Write records to InfluxDB: v1 HTTP API (httpx) or v2 API (influxdb-client), and a Bytewax sink.

    make_writer(cfg: InfluxService) -> InfluxV1Writer | InfluxV2Writer
    InfluxSink(cfg)                 Bytewax DynamicSink; items are records or lists of records

Exceptions::

    InfluxError                 anything that went wrong talking to InfluxDB
     ├── InfluxUnavailable      retryable: connection error, timeout, HTTP 5xx, HTTP 429
     │                          (``retry_after`` from the Retry-After header, if any)
     └── InfluxRejected         not retryable: any other 4xx (bad line protocol, database not
                                found, authentication), with the server's error text

Writers retry ``InfluxUnavailable`` up to ``max_retries`` times with exponential backoff and
jitter (``backoff_s * 2**attempt``, capped at ``max_backoff_s``, times a random factor in
[0.5, 1)); a Retry-After header replaces the backoff (capped at ``max_backoff_s`` too, so one
answer cannot stall the flow for an hour). ``sleep`` and ``on_retry`` are injectable.

Secrets: the writers hold revealed credentials only inside the HTTP client's auth; neither
their repr nor any log line or exception message contains them, and URLs with credentials
(``http://user:pass@host``) are refused.

Sink failure policy: the flow must not crash on a transient InfluxDB outage, and an InfluxDB
problem must not stop alerting (the Alertmanager sink sits in the same flow). So
``write_batch`` never raises for InfluxDB errors. When a chunk fails after its retries
(``InfluxUnavailable``), it and the rest of the batch are dropped at once (further chunks would
each wait out the same retries); a rejected chunk (``InfluxRejected``) is dropped and the next
chunk is still tried. Both are logged at ERROR (rejections with the server's text, e.g.
"database not found" or "authorization failed", which are config errors worth a page),
counted in ``SINK_ERRORS{sink="influxdb"}`` (one per failed request, as that metric counts
batch writes) and in the partition's ``dropped`` (points; for a 400 "partial write" this is an
upper bound, InfluxDB keeps the lines it could parse). An on-disk spool (#7) will replace the
dropping. Only code errors (a record type the encoder does not know) raise.
"""

from __future__ import annotations

import gzip as gzip_module
import json
import logging
from collections import Counter
from pathlib import Path
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.acks import ack_all
from flows.sinks.lineprotocol import PRECISION, encode_by_measurement
from twinwatch.config import ConfigError, InfluxService, Tls
from twinwatch.http import HttpError, Rejected, Unavailable, parse_retry_after, retry, ssl_context
from flows.sinks.spool import Spool, SpoolFull
from twinwatch.metrics import (
    RECORDS_OUT, SINK_ERRORS, SINK_RETRIES, SINK_WRITE_SECONDS, SPOOL_BYTES, SPOOL_DROPPED,
)

__all__ = [
    "InfluxError", "InfluxUnavailable", "InfluxRejected", "InfluxV1Writer", "InfluxV2Writer",
    "make_writer", "InfluxSink", "ssl_context",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
SINK = "influxdb"
_MAX_ERROR_TEXT = 500


class InfluxError(HttpError):
    """Writing to or querying InfluxDB failed."""


class InfluxUnavailable(InfluxError, Unavailable):
    """Retryable: connection error, timeout, HTTP 5xx or 429."""


class InfluxRejected(InfluxError, Rejected):
    """Not retryable: the server refused the request (4xx other than 429)."""


RetryHook = Callable[[int, float, InfluxError], None]


# --- shared helpers ---------------------------------------------------------------------------

def _check_url(url: str, tls: Tls | None) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"influxdb.url: expected http(s)://host:port, got {parts.scheme}://...")
    if parts.username or parts.password:
        raise ConfigError("influxdb.url: put credentials in username/password/token, not the URL")
    if tls is not None and tls.enabled and parts.scheme != "https":
        raise ConfigError("influxdb.tls.enabled is set but influxdb.url is not https://")
    return url.rstrip("/")


def _error_text(body: str | bytes | None) -> str:
    """The server's error message: InfluxDB 1.x ``{"error": ...}``, 2.x ``{"message": ...}``."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    body = (body or "").strip()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        body = str(doc.get("error") or doc.get("message") or body)
    return body[:_MAX_ERROR_TEXT]


def _status_error(what: str, status: int, text: str,
                  retry_after: float | None) -> InfluxError:
    msg = f"{what}: HTTP {status}: {text}" if text else f"{what}: HTTP {status}"
    if status == 429 or status >= 500:
        return InfluxUnavailable(msg, status=status, text=text, retry_after=retry_after)
    return InfluxRejected(msg, status=status, text=text)


class _Retrying:
    """Retry loop shared by both writers."""

    max_retries: int
    backoff_s: float
    max_backoff_s: float
    _sleep: Callable[[float], Any]
    _on_retry: RetryHook | None

    def _retry(self, call: Callable[[], T]) -> T:
        return retry(call, name=SINK, max_retries=self.max_retries, backoff_s=self.backoff_s,
                     max_backoff_s=self.max_backoff_s, sleep=self._sleep,
                     on_retry=self._on_retry)

    def write(self, lines: Sequence[str]) -> int:
        """Write all lines in chunks of ``batch_size``; returns the number written.
        Raises at the first chunk that fails (earlier chunks stay written)."""
        bs = self.batch_size  # type: ignore[attr-defined]
        for i in range(0, len(lines), bs):
            self.write_chunk(lines[i:i + bs])  # type: ignore[attr-defined]
        return len(lines)


# --- v1 (httpx) -------------------------------------------------------------------------------

class InfluxV1Writer(_Retrying):
    """InfluxDB 1.x HTTP API (also InfluxDB 2.x/3.x's v1 compatibility API with ``token``).

    ``POST /write?db=&rp=&precision=ms`` and ``GET|POST /query`` (InfluxQL). Auth: username and
    password as a Basic auth header (never ``u``/``p`` in the URL, which httpx logs), or
    ``Authorization: Token ...``.
    """

    api = "v1"

    def __init__(self, url: str, database: str, *, retention_policy: str | None = None,
                 username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout: float = 10.0, max_retries: int = 5,
                 batch_size: int = 5000, gzip: bool = False, tls: Tls | None = None,
                 client: httpx.Client | None = None, sleep: Callable[[float], Any] = time.sleep,
                 on_retry: RetryHook | None = None, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0):
        if token is not None and username is not None:
            raise ConfigError("influxdb: give either a token or username/password, not both")
        if batch_size < 1 or max_retries < 0:
            raise ValueError("batch_size must be >= 1 and max_retries >= 0")
        self.url = _check_url(url, tls)
        self.database = database
        self.retention_policy = retention_policy
        self.username = username
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.gzip = gzip
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._on_retry = on_retry
        self._auth: httpx.Auth | None = None
        self._headers: dict[str, str] = {}
        if username is not None:
            self._auth = httpx.BasicAuth(username, password or "")
        elif token is not None:
            self._headers["Authorization"] = f"Token {token}"
        self._own_client = client is None
        if client is None:
            verify: ssl.SSLContext | bool = True
            if self.url.startswith("https://") and tls is not None:
                verify = ssl_context(tls)
            client = httpx.Client(timeout=timeout, verify=verify)
        self._client = client

    def __repr__(self) -> str:
        auth = ("token" if "Authorization" in self._headers
                else f"user={self.username!r}" if self._auth else "none")
        return f"<InfluxV1Writer {self.url} db={self.database!r} auth={auth}>"

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> InfluxV1Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, what: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self._headers, **kw.pop("headers", {})}
        try:
            r = self._client.request(method, self.url + path, headers=headers, auth=self._auth,
                                     **kw)
        except httpx.TransportError as e:  # connect/read errors and timeouts
            raise InfluxUnavailable(f"{what}: {type(e).__name__}: {e}") from None
        if r.is_success:
            return r
        raise _status_error(what, r.status_code, _error_text(r.text),
                            parse_retry_after(r.headers.get("Retry-After")))

    def write_chunk(self, lines: Sequence[str]) -> None:
        """One ``/write`` request (with retries). Lines must not contain raw newlines."""
        if not lines:
            return
        params = {"db": self.database, "precision": PRECISION}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        body = ("\n".join(lines) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            body = gzip_module.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        what = f"write {len(lines)} points to {self.url} db={self.database}"
        self._retry(lambda: self._request(what, "POST", "/write", params=params,
                                          content=body, headers=headers))

    def query(self, q: str, *, database: str | None = None, epoch: str | None = "ms",
              method: str | None = None) -> list[dict]:
        """Run InfluxQL; return the ``results`` list. SELECT/SHOW use GET, others POST.
        A statement error raises InfluxRejected."""
        if method is None:
            head = q.lstrip().split(None, 1)[0].upper() if q.strip() else ""
            method = "GET" if head in ("SELECT", "SHOW") else "POST"
        params = {"q": q}
        db = self.database if database is None else database
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        what = f"query {self.url}"
        if method == "GET":
            r = self._retry(lambda: self._request(what, "GET", "/query", params=params))
        else:
            r = self._retry(lambda: self._request(what, "POST", "/query", data=params))
        results = r.json().get("results", [])
        for res in results:
            if "error" in res:
                raise InfluxRejected(f"{what}: {res['error']}", status=r.status_code,
                                     text=res["error"])
        return results

    def create_database(self, name: str | None = None) -> None:
        name = name or self.database
        ident = name.replace("\\", "\\\\").replace('"', '\\"')
        self.query(f'CREATE DATABASE "{ident}"', database="", epoch=None)

    def ping(self) -> bool:
        try:
            return self._client.get(self.url + "/ping", headers=self._headers,
                                    auth=self._auth).status_code == 204
        except httpx.TransportError:
            return False


# --- v2 (influxdb-client) ---------------------------------------------------------------------

class InfluxV2Writer(_Retrying):
    """InfluxDB v2 write API (InfluxDB 2.x/3.x, VictoriaMetrics, InfluxDB 1.8's compat API)
    through influxdb-client, synchronous, precision ms.

    ``username``/``password`` without a token become the 1.8 compat token ``user:password``.
    """

    api = "v2"

    def __init__(self, url: str, bucket: str, *, org: str | None = None,
                 token: str | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0, max_retries: int = 5,
                 batch_size: int = 5000, gzip: bool = False, tls: Tls | None = None,
                 sleep: Callable[[float], Any] = time.sleep, on_retry: RetryHook | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0):
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        if token is not None and username is not None:
            raise ConfigError("influxdb: give either a token or username/password, not both")
        if batch_size < 1 or max_retries < 0:
            raise ValueError("batch_size must be >= 1 and max_retries >= 0")
        self.url = _check_url(url, tls)
        self.bucket = bucket
        self.org = org or "-"
        self.username = username
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._on_retry = on_retry
        self._auth_kind = "token" if token else f"user={username!r}" if username else "none"
        if token is None and username is not None:
            token = f"{username}:{password or ''}"
        kw: dict[str, Any] = {}
        if self.url.startswith("https://") and tls is not None:
            kw["ssl_context"] = ssl_context(tls)
        # retries=False: no urllib3 retries underneath ours.
        self._client = InfluxDBClient(url=self.url, token=token or "", org=self.org,
                                      timeout=int(timeout * 1000), enable_gzip=gzip,
                                      retries=False, **kw)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def __repr__(self) -> str:
        return f"<InfluxV2Writer {self.url} bucket={self.bucket!r} auth={self._auth_kind}>"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> InfluxV2Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_once(self, what: str, lines: Sequence[str]) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._write_api.write(bucket=self.bucket, org=self.org, record=list(lines),
                                  write_precision=WritePrecision.MS)
        except ApiException as e:
            headers = e.headers or {}
            raise _status_error(what, int(e.status or 0), _error_text(e.body),
                                parse_retry_after(headers.get("Retry-After"))) from None
        except (Urllib3Error, OSError) as e:
            raise InfluxUnavailable(f"{what}: {type(e).__name__}: {e}") from None

    def write_chunk(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        what = f"write {len(lines)} points to {self.url} bucket={self.bucket}"
        self._retry(lambda: self._write_once(what, lines))


Writer = InfluxV1Writer | InfluxV2Writer


def make_writer(cfg: InfluxService, **kw: Any) -> Writer:
    """The writer for ``cfg.api``; secrets are revealed here. ``kw`` goes to the writer
    (e.g. ``sleep``, ``on_retry``, ``client`` for v1)."""
    password = cfg.password.reveal() if cfg.password is not None else None
    token = cfg.token.reveal() if cfg.token is not None else None
    common = dict(username=cfg.username, password=password, token=token,
                  timeout=cfg.timeout_s, max_retries=cfg.max_retries,
                  batch_size=cfg.batch_size, tls=cfg.tls)
    if cfg.api == "v1":
        return InfluxV1Writer(cfg.url, cfg.database, retention_policy=cfg.retention_policy,
                              **common, **kw)
    bucket = cfg.bucket or (f"{cfg.database}/{cfg.retention_policy}" if cfg.retention_policy
                            else cfg.database)
    return InfluxV2Writer(cfg.url, bucket, org=cfg.org, **common, **kw)


# --- Bytewax sink -----------------------------------------------------------------------------

class _Writer(Protocol):
    batch_size: int

    def write_chunk(self, lines: Sequence[str]) -> None: ...
    def close(self) -> None: ...


def _flatten(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(item)
        else:
            out.append(item)
    return out


class _InfluxPartition(StatelessSinkPartition[Any]):
    """One worker's writer. A chunk InfluxDB cannot take (unavailable after the writer's retries)
    goes to the on-disk spool; while the spool holds a backlog, new chunks queue behind it so the
    backfill stays in order, and a backfill is tried every ``retry_s`` with a single attempt (the
    spool is the retry). Without a spool such chunks are dropped and counted. Rejected chunks
    (4xx: bad data or credentials) are dropped and counted either way: retrying will not help."""

    def __init__(self, writer: _Writer, spool: Spool | None = None, retry_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Any] =
                 time.sleep):
        self.writer = writer
        self.spool = spool
        self.retry_s = retry_s
        self._clock = clock
        self._sleep = sleep
        self._next_try = 0.0
        self.written = 0  # points
        self.dropped = 0  # points
        if spool is not None and len(spool):
            log.warning("influxdb: %d bytes from an earlier run wait in the spool %s; "
                        "backfilling", spool.bytes, spool.path)

    def write_batch(self, items: list[Any]) -> None:
        self._write(encode_by_measurement(_flatten(items)))
        ack_all(items)  # written, spooled (fsynced) or dropped for good: the source may forget them

    def _write(self, groups: dict[str, list[str]]) -> None:
        self._backfill()
        if not groups:
            return
        bs = self.writer.batch_size
        down = False  # without a spool: once unavailable, drop the rest of this batch at once
        for m, lines in groups.items():
            for i in range(0, len(lines), bs):
                chunk = lines[i:i + bs]
                if self.spool is not None and len(self.spool):
                    self._to_spool(chunk)  # behind the backlog, in order
                    continue
                if down:
                    self.dropped += len(chunk)
                    SINK_ERRORS.labels(SINK).inc()
                    continue
                result = self._attempt(chunk, retry=True)
                if result == "ok":
                    RECORDS_OUT.labels(SINK, m).inc(len(chunk))
                elif result == "unavailable":
                    if self.spool is None:
                        down = True
                        self.dropped += len(chunk)
                        log.error("influxdb unavailable and no spool configured: dropping "
                                  "this batch")
                    else:
                        self._next_try = self._clock() + self.retry_s
                        log.warning("influxdb unavailable: spooling to %s until it is back",
                                    self.spool.path)
                        self._to_spool(chunk)

    def _attempt(self, chunk: list[str], retry: bool) -> str:
        """Write one chunk: "ok", "unavailable" (retryable) or "rejected" (dropped, counted)."""
        saved = self.writer.max_retries
        if not retry:
            self.writer.max_retries = 0
        t0 = time.perf_counter()
        try:
            self.writer.write_chunk(chunk)
        except InfluxUnavailable:
            SINK_ERRORS.labels(SINK).inc()
            return "unavailable"
        except InfluxRejected as e:
            self.dropped += len(chunk)
            SINK_ERRORS.labels(SINK).inc()
            log.error("influxdb rejected a write, dropped up to %d points: %s", len(chunk), e)
            return "rejected"
        finally:
            self.writer.max_retries = saved
            SINK_WRITE_SECONDS.labels(SINK).observe(time.perf_counter() - t0)
        self.written += len(chunk)
        return "ok"

    def _to_spool(self, chunk: list[str]) -> None:
        while True:
            try:
                before = self.spool.dropped
                self.spool.push(chunk)
                if self.spool.dropped > before:
                    SPOOL_DROPPED.labels(SINK).inc(self.spool.dropped - before)
                    self.dropped += self.spool.dropped - before
                break
            except SpoolFull:  # policy "block": hold the flow until InfluxDB takes the backlog
                log.error("influxdb spool full (%d bytes): blocking until InfluxDB is back",
                          self.spool.bytes)
                self._sleep(self.retry_s)
                self._next_try = 0.0
                self._backfill()
        SPOOL_BYTES.labels(SINK).set(self.spool.bytes)

    def _backfill(self, force: bool = False) -> None:
        """Write spooled chunks, oldest first, until the spool is empty or InfluxDB fails."""
        spool = self.spool
        if spool is None or not len(spool) or (not force and self._clock() < self._next_try):
            return
        while (head := spool.oldest()) is not None:
            seq, lines = head
            result = self._attempt(lines, retry=False)
            if result == "unavailable":
                self._next_try = self._clock() + self.retry_s
                break
            spool.pop(seq)
            if result == "ok":
                for m, n in Counter(line.split(",", 1)[0] for line in lines).items():
                    RECORDS_OUT.labels(SINK, m).inc(n)
        SPOOL_BYTES.labels(SINK).set(spool.bytes)
        if not len(spool):
            log.info("influxdb: spool %s drained", spool.path)

    def close(self) -> None:
        self._backfill(force=True)
        if self.spool is not None and len(self.spool):
            log.warning("influxdb: %d bytes stay in the spool %s; backfilled at the next start",
                        self.spool.bytes, self.spool.path)
        self.writer.close()


class InfluxSink(DynamicSink[Any]):
    """Writes records (or lists of records) to InfluxDB; one writer per worker.

    The writer is made in ``build`` (secrets are read when the flow starts, not at import).
    """

    def __init__(self, cfg: InfluxService, *,
                 writer_factory: Callable[..., _Writer] = make_writer):
        self.cfg = cfg
        self._factory = writer_factory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _InfluxPartition:
        def on_retry(attempt: int, delay: float, error: InfluxError) -> None:
            SINK_RETRIES.labels(SINK).inc()

        spool = None
        if self.cfg.spool_dir:
            spool = Spool(Path(self.cfg.spool_dir) / f"w{worker_index}", self.cfg.spool_max_bytes,
                          self.cfg.spool_policy)
        return _InfluxPartition(self._factory(self.cfg, on_retry=on_retry), spool,
                                self.cfg.spool_retry_s)
