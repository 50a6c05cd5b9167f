"""The one InfluxDB client: write line protocol and query InfluxQL (v1 API, httpx), or write
through the v2 API (influxdb-client).

    make_writer(cfg: InfluxService) -> InfluxV1Writer | InfluxV2Writer

Exceptions::

    InfluxError                 anything that went wrong talking to InfluxDB
     ├── InfluxUnavailable      retryable: connection error, timeout, HTTP 5xx, HTTP 429
     │                          (``retry_after`` from the Retry-After header, if any)
     └── InfluxRejected         not retryable: any other 4xx (bad line protocol, database not
                                found, authentication), with the server's error text

Writers retry ``InfluxUnavailable`` up to ``max_retries`` times with exponential backoff and
jitter (``twinwatch.http.retry``); a Retry-After header replaces the backoff (capped at
``max_backoff_s``, so one answer cannot stall the flow for an hour). ``sleep`` and ``on_retry``
are injectable.

Secrets: the writers hold revealed credentials only inside the HTTP client's auth; neither
their repr nor any log line or exception message contains them, and URLs with credentials
(``http://user:pass@host``) are refused. The flow's sink (spool, acknowledgements) is
``twinwatch.flows.sinks.influx``; the analysts' reader is ``twinwatch.app.analysis.query``;
``twinwatch alerts ack`` writes through this client too.
"""

from __future__ import annotations

import gzip as gzip_module
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from twinwatch.config import ConfigError, InfluxService, Tls
from twinwatch.http import (
    HttpError,
    Rejected,
    Unavailable,
    checked,
    error_text,
    parse_retry_after,
    retry,
    ssl_context,
    status_error,
)
from twinwatch.lineprotocol import PRECISION

__all__ = [
    "InfluxError",
    "InfluxUnavailable",
    "InfluxRejected",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "Writer",
    "make_writer",
    "make_reader",
    "prepare_database",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
SINK = "influxdb"


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


# One response classifier for every client (twinwatch.http), with this client's error classes.
_status_error = partial(status_error, unavailable=InfluxUnavailable, rejected=InfluxRejected)


class _Retrying:
    """Retry loop shared by both writers."""

    max_retries: int
    backoff_s: float
    max_backoff_s: float
    batch_size: int
    _sleep: Callable[[float], Any]
    _on_retry: RetryHook | None

    def write_chunk(self, lines: Sequence[str]) -> None:
        raise NotImplementedError

    def _retry(self, call: Callable[[], T]) -> T:
        return retry(
            call,
            name=SINK,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s,
            sleep=self._sleep,
            on_retry=self._on_retry,
        )

    def write(self, lines: Sequence[str]) -> int:
        """Write all lines in chunks of ``batch_size``; returns the number written.
        Raises at the first chunk that fails (earlier chunks stay written)."""
        bs = self.batch_size
        for i in range(0, len(lines), bs):
            self.write_chunk(lines[i : i + bs])
        return len(lines)


# --- v1 (httpx) -------------------------------------------------------------------------------


class InfluxV1Writer(_Retrying):
    """InfluxDB 1.x HTTP API (also InfluxDB 2.x/3.x's v1 compatibility API with ``token``).

    ``POST /write?db=&rp=&precision=ms`` and ``GET|POST /query`` (InfluxQL). Auth: username and
    password as a Basic auth header (never ``u``/``p`` in the URL, which httpx logs), or
    ``Authorization: Token ...``.
    """

    api = "v1"

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        batch_size: int = 5000,
        gzip: bool = False,
        tls: Tls | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        on_retry: RetryHook | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ):
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
        auth = (
            "token"
            if "Authorization" in self._headers
            else f"user={self.username!r}"
            if self._auth
            else "none"
        )
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
        return checked(
            what,
            lambda: self._client.request(
                method, self.url + path, headers=headers, auth=self._auth, **kw
            ),
            unavailable=InfluxUnavailable,
            rejected=InfluxRejected,
        )

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
        self._retry(
            lambda: self._request(
                what, "POST", "/write", params=params, content=body, headers=headers
            )
        )

    def query(
        self,
        q: str,
        *,
        database: str | None = None,
        epoch: str | None = "ms",
        method: str | None = None,
    ) -> list[dict]:
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
                raise InfluxRejected(
                    f"{what}: {res['error']}", status=r.status_code, text=res["error"]
                )
        return results

    def create_database(self, name: str | None = None) -> None:
        name = name or self.database
        ident = name.replace("\\", "\\\\").replace('"', '\\"')
        self.query(f'CREATE DATABASE "{ident}"', database="", epoch=None)

    def ping(self) -> bool:
        try:
            return (
                self._client.get(
                    self.url + "/ping", headers=self._headers, auth=self._auth
                ).status_code
                == 204
            )
        except httpx.TransportError:
            return False


# --- v2 (influxdb-client) ---------------------------------------------------------------------


class InfluxV2Writer(_Retrying):
    """InfluxDB v2 write API (InfluxDB 2.x/3.x, VictoriaMetrics, InfluxDB 1.8's compat API)
    through influxdb-client, synchronous, precision ms.

    ``username``/``password`` without a token become the 1.8 compat token ``user:password``.
    """

    api = "v2"

    def __init__(
        self,
        url: str,
        bucket: str,
        *,
        org: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        batch_size: int = 5000,
        gzip: bool = False,
        tls: Tls | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        on_retry: RetryHook | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ):
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
        self._client = InfluxDBClient(
            url=self.url,
            token=token or "",
            org=self.org,
            timeout=int(timeout * 1000),
            enable_gzip=gzip,
            retries=False,
            **kw,
        )
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
            self._write_api.write(
                bucket=self.bucket,
                org=self.org,
                record=list(lines),
                # the client annotates WritePrecision but its members are plain str ("ms")
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        except ApiException as e:
            headers: Mapping[str, str] = e.headers or {}
            raise _status_error(
                what,
                int(e.status or 0),
                error_text(e.body),
                parse_retry_after(headers.get("Retry-After")),
            ) from None
        except (Urllib3Error, OSError) as e:
            raise InfluxUnavailable(f"{what}: {type(e).__name__}: {e}") from None

    def bucket_exists(self) -> bool | None:
        """Whether the bucket exists; None if the server has no bucket API (404 on it)."""
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        name = self.bucket.split("/", 1)[0] if "/" in self.bucket else self.bucket
        what = f"check bucket {self.bucket} at {self.url}"
        try:
            found = self._client.buckets_api().find_bucket_by_name(name)
        except ApiException as e:
            text = error_text(e.body)
            if e.status == 404 or (e.status == 400 and "unsupported path" in text):
                return None  # not InfluxDB 2.x/3.x (e.g. VictoriaMetrics): no bucket API
            raise _status_error(what, int(e.status or 0), text, None) from None
        except (Urllib3Error, OSError) as e:
            raise InfluxUnavailable(f"{what}: {type(e).__name__}: {e}") from None
        return found is not None

    def write_chunk(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        what = f"write {len(lines)} points to {self.url} bucket={self.bucket}"
        self._retry(lambda: self._write_once(what, lines))


Writer = InfluxV1Writer | InfluxV2Writer


def prepare_database(cfg: InfluxService) -> bool:
    """At start (``run``, ``logs``, ``services up``): create the v1 database (a no-op if it
    exists) or check that the v2 bucket exists. Logs one line saying what it found; never
    raises for the server's answers (the sink spools until InfluxDB takes the points, and the
    run's exit status tells). True if the database is known to be there."""
    where = f"InfluxDB {cfg.url}"
    try:
        with make_writer(cfg, max_retries=0) as w:
            if isinstance(w, InfluxV1Writer):
                w.create_database()
                log.info("%s: database %r ready", where, cfg.database)
                return True
            found = w.bucket_exists()
    except InfluxUnavailable as e:
        log.error("%s is unreachable at start (%s): points are spooled until it is back", where, e)
        return False
    except InfluxRejected as e:
        what = f"create database {cfg.database!r}" if cfg.api == "v1" else "check the bucket"
        hint = {
            401: "check services.influxdb.username/password (or token)",
            403: "the user may not create databases: create it as an admin, or set "
            "services.influxdb.create_database: false",
        }.get(e.status or 0, "check services.influxdb")
        log.error("%s: cannot %s (HTTP %s: %s); %s", where, what, e.status, e.text[:200], hint)
        return False
    if found is None:
        log.info("%s has no bucket API (not InfluxDB 2.x/3.x): writing without a check", where)
        return True
    if not found:
        log.error(
            "%s: bucket %r does not exist in org %r: create it (services.influxdb.bucket/org); "
            "points are spooled until it exists",
            where,
            w.bucket,
            w.org,
        )
    return found


def make_writer(cfg: InfluxService, **kw: Any) -> Writer:
    """The writer for ``cfg.api``; secrets are revealed here. ``kw`` goes to the writer and
    overrides the config's values (e.g. ``sleep``, ``on_retry``, ``max_retries``, ``client``)."""
    password = cfg.password.reveal() if cfg.password is not None else None
    token = cfg.token.reveal() if cfg.token is not None else None
    common: dict[str, Any] = dict(
        username=cfg.username,
        password=password,
        token=token,
        timeout=cfg.timeout_s,
        max_retries=cfg.max_retries,
        batch_size=cfg.batch_size,
        gzip=cfg.gzip,
        tls=cfg.tls,
    )
    common.update(kw)
    if cfg.api == "v1":
        return InfluxV1Writer(
            cfg.url, cfg.database, retention_policy=cfg.retention_policy, **common
        )
    bucket = cfg.bucket or (
        f"{cfg.database}/{cfg.retention_policy}" if cfg.retention_policy else cfg.database
    )
    return InfluxV2Writer(cfg.url, bucket, org=cfg.org, **common)


def make_reader(cfg: InfluxService, **kw: Any) -> InfluxV1Writer:
    """An InfluxQL client for ``cfg`` whatever its ``api``: the v1 ``/query`` endpoint, which
    InfluxDB 1.x, 2.x (DBRP mapping, token) and 3.x all serve."""
    return InfluxV1Writer(
        cfg.url,
        cfg.database,
        retention_policy=cfg.retention_policy,
        username=cfg.username,
        password=cfg.password.reveal() if cfg.password is not None else None,
        token=cfg.token.reveal() if cfg.token is not None else None,
        timeout=cfg.timeout_s,
        tls=cfg.tls,
        **{"max_retries": cfg.max_retries, **kw},
    )
