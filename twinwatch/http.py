"""What every outbound HTTP client of twinwatch shares: errors, the one response classifier,
retry with backoff, TLS.

    HttpError                 a request failed (status, server text, Retry-After)
     ├── Unavailable          retryable: connection error, timeout, HTTP 5xx or 429
     └── Rejected             not retryable: any other 4xx (bad request, auth, not found)

    status_error(what, status, text, retry_after, unavailable=, rejected=) -> HttpError
    checked(what, send, unavailable=, rejected=) -> httpx.Response   one request, classified
    error_text(body) -> str   the server's own message out of a JSON or text error body

Each client subclasses these (InfluxError/InfluxUnavailable/..., AlertmanagerError/...) and
passes its subclasses to ``status_error``, so callers catch their own client's errors while
``retry`` treats them all alike. This is Alertmanager's own notifier rule: 2xx ok; 5xx, 429 and
timeouts retry; other 4xx give up. Among those, 401/403/404 (``needs_operator``) are
credentials, permissions or a missing database/path: the request is fine, the setup is not, so a
caller that must not lose data keeps it and waits for the operator instead of dropping it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import httpx

from twinwatch.config import Tls

__all__ = [
    "HttpError",
    "Unavailable",
    "Rejected",
    "retry",
    "backoff_delay",
    "parse_retry_after",
    "ssl_context",
    "status_error",
    "checked",
    "error_text",
    "OPERATOR_STATUSES",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
E = TypeVar("E", bound="HttpError")
OPERATOR_STATUSES = frozenset({401, 403, 404})  # credentials, permission, missing database/path
_MAX_ERROR_TEXT = 500


class HttpError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        text: str = "",
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.text = text
        self.retry_after = retry_after

    retryable = False  # would the same request succeed later without anyone changing anything?

    @property
    def needs_operator(self) -> bool:
        """Refused for the setup (401/403/404), not for the request: keep it until fixed."""
        return self.status in OPERATOR_STATUSES


class Unavailable(HttpError):
    """Retryable: connection error, timeout, HTTP 5xx or 429."""

    retryable = True


class Rejected(HttpError):
    """Not retryable: the server refused the request (4xx other than 429)."""


def status_error(
    what: str,
    status: int,
    text: str = "",
    retry_after: float | None = None,
    *,
    unavailable: type[Unavailable] = Unavailable,
    rejected: type[Rejected] = Rejected,
) -> HttpError:
    """The error for a non-2xx answer: ``unavailable`` for 5xx and 429, else ``rejected``."""
    msg = f"{what}: HTTP {status}: {text}" if text else f"{what}: HTTP {status}"
    if status == 429 or status >= 500:
        return unavailable(msg, status=status, text=text, retry_after=retry_after)
    return rejected(msg, status=status, text=text)


def checked(
    what: str,
    send: Callable[[], httpx.Response],
    *,
    unavailable: type[Unavailable] = Unavailable,
    rejected: type[Rejected] = Rejected,
) -> httpx.Response:
    """``send()`` (one httpx request) and its response if 2xx; a connection error or timeout
    raises ``unavailable``, an error status what ``status_error`` says."""
    try:
        r = send()
    except httpx.TransportError as e:
        raise unavailable(f"{what}: {type(e).__name__}: {e}") from None
    if r.is_success:
        return r
    raise status_error(
        what,
        r.status_code,
        error_text(r.text),
        parse_retry_after(r.headers.get("Retry-After")),
        unavailable=unavailable,
        rejected=rejected,
    )


def error_text(body: str | bytes | None) -> str:
    """The server's message from an error body: JSON ``{"error": ...}`` (InfluxDB 1.x),
    ``{"message": ...}`` (InfluxDB 2.x, Alertmanager), a JSON string, or the text itself;
    at most 500 characters."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = (body or "").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and (doc.get("error") or doc.get("message")):
        text = str(doc.get("error") or doc.get("message"))
    elif isinstance(doc, str):
        text = doc
    return text[:_MAX_ERROR_TEXT]


def backoff_delay(attempt: int, error: HttpError, backoff_s: float, max_backoff_s: float) -> float:
    """Retry-After if the server gave one, else exponential backoff with jitter, capped."""
    if error.retry_after is not None:
        return min(error.retry_after, max_backoff_s)
    return min(max_backoff_s, backoff_s * 2**attempt) * (0.5 + random.random() / 2)


def retry(
    call: Callable[[], T],
    *,
    name: str,
    max_retries: int,
    backoff_s: float,
    max_backoff_s: float,
    sleep: Callable[[float], Any],
    on_retry: Callable[[int, float, E], None] | None = None,
) -> T:
    """Run ``call``; on Unavailable, wait and try again up to ``max_retries`` times.
    ``on_retry`` is typed with the client's own error class: a client's ``call`` raises only its
    own subclasses."""
    attempt = 0
    while True:
        try:
            return call()
        except Unavailable as e:
            if attempt >= max_retries:
                raise
            delay = backoff_delay(attempt, e, backoff_s, max_backoff_s)
            attempt += 1
            log.warning("%s: %s; retry %d/%d in %.2fs", name, e, attempt, max_retries, delay)
            if on_retry is not None:
                on_retry(attempt, delay, cast(E, e))
            sleep(delay)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def ssl_context(tls: Tls) -> ssl.SSLContext:
    """An SSL context from the config's Tls block (CA file, verification, client cert)."""
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx
