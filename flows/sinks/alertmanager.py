"""Bytewax sink that delivers Alert records to Prometheus Alertmanager.

    AlertmanagerSink(cfg: AlertmanagerService)   items: Alert records or lists of them

Each partition (one per worker) owns an ``AlertmanagerClient`` and a ``FiringSet``:

* ``write_batch`` posts the batch's firing and resolved alerts (pending ones are not sent; of
  several states of one fingerprint in a batch only the last is sent), remembers the firing
  ones and re-sends those due (``resend_interval_s``) with a fresh ``endsAt = now +
  firing_ttl_s``.
* Bytewax calls ``write_batch`` only when alerts arrive, so a background thread also re-sends
  due alerts every ``resend_interval_s / 4``: without it a firing alert would resolve itself in
  Alertmanager after ``firing_ttl_s`` of quiet input. Both paths share one lock.
* Issue #4: with ``state_path`` an ``AlertStore`` (SQLite, one file per worker) records what was
  delivered. After a restart the firing alerts keep being re-sent, a replayed state already
  delivered is dropped (no duplicate notification), and a fingerprint that escalates resolves
  the label set it fired with. Posts that failed after their retries are kept (in the store
  too) and retried by the background thread. ``webhook_url`` adds (or, without ``url``,
  replaces) Alertmanager with a direct HMAC-signed webhook (alerting/webhook.py).

``now`` is the wall clock here (Alertmanager compares endsAt with its own clock), not event
time. Errors after retries are logged and counted (``SINK_ERRORS{sink="alertmanager"}``, one per
failed post, and the partition's ``failed``, in alerts); they never crash the flow. A firing
alert whose post failed stays in the FiringSet and goes out again at its next re-send. Only a
non-Alert item (a wiring bug) raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinwatch.alerting.alertmanager import AlertmanagerClient, AlertmanagerError, FiringSet
from twinwatch.alerting.persistence import AlertStore
from twinwatch.alerting.rules import check_links, links
from twinwatch.alerting.webhook import WebhookClient, WebhookError
from twinwatch.config import AlertmanagerService, ConfigError
from twinwatch.metrics import RECORDS_OUT, SINK_ERRORS, SINK_RETRIES, SINK_WRITE_SECONDS
from twinwatch.schema import Alert

__all__ = ["AlertmanagerSink"]

log = logging.getLogger(__name__)
SINK = "alertmanager"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _alerts(items: Iterable[Any]) -> list[Alert]:
    latest: dict[str, Alert] = {}
    for item in items:
        for a in item if isinstance(item, (list, tuple)) else (item,):
            if type(a) is not Alert:
                raise TypeError(f"AlertmanagerSink takes Alert records, got {type(a).__name__}")
            if a.status != "pending":
                latest.pop(a.fingerprint, None)  # keep batch order of the last states
                latest[a.fingerprint] = a
    return list(latest.values())


class _AlertmanagerPartition(StatelessSinkPartition[Any]):
    def __init__(
        self,
        cfg: AlertmanagerService,
        client: AlertmanagerClient | None,
        clock: Callable[[], datetime],
        background: bool,
        webhook: WebhookClient | None = None,
        store: AlertStore | None = None,
    ):
        self.cfg = cfg
        self.client = client
        self.webhook = webhook
        self.store = store
        self.clock = clock
        self.firing = FiringSet(cfg.resend_interval_s)
        self.retry: dict[str, Alert] = {}  # fingerprint -> newest undelivered state
        self.sent = 0  # alerts
        self.failed = 0  # alerts
        self.duplicates = 0  # alerts already delivered before a restart, not sent again
        self._links = lambda a: links(a, cfg)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if store is not None:  # pick up where the previous process left off
            for a, sent_at in store.firing():
                self.firing.update([a], sent_at=sent_at)
            self.retry = {a.fingerprint: a for a in store.retry_queue()}
        if background:
            self._thread = threading.Thread(
                target=self._resend_loop, daemon=True, name="twinwatch-alertmanager-resend"
            )
            self._thread.start()

    def _post(self, alerts: list[Alert], now: datetime) -> None:
        if self.client is not None:
            self.client.post(
                alerts, now, self.cfg.firing_ttl_s, self.cfg.generator_url, self._links
            )
        if self.webhook is not None:
            self.webhook.post(
                alerts, now, self.cfg.firing_ttl_s, self.cfg.generator_url, self._links
            )

    def _send(self, alerts: list[Alert], now: datetime) -> bool:
        t0 = time.perf_counter()
        try:
            self._post(alerts, now)
        except (AlertmanagerError, WebhookError) as e:
            self.failed += len(alerts)
            SINK_ERRORS.labels(SINK).inc()
            log.error("alertmanager: could not deliver %d alerts: %s", len(alerts), e)
            for a in alerts:
                self.retry[a.fingerprint] = a
            if self.store is not None:
                self.store.undelivered(alerts)
            return False
        else:
            self.sent += len(alerts)
            RECORDS_OUT.labels(SINK, "alert").inc(len(alerts))
            for a in alerts:  # a delivered state supersedes any older undelivered one
                self.retry.pop(a.fingerprint, None)
            if self.store is not None:
                self.store.delivered(alerts, now)
            return True
        finally:
            SINK_WRITE_SECONDS.labels(SINK).observe(time.perf_counter() - t0)

    def _new(self, alerts: list[Alert]) -> list[Alert]:
        """Drop states already delivered (a replay after restart); when a fingerprint escalates,
        resolve the label set it fired with before (Alertmanager keys alerts by labels)."""
        out = []
        for a in alerts:
            if self.store is not None and self.store.is_duplicate(a):
                self.duplicates += 1
                continue
            before = self.firing.get(a.fingerprint)
            if before is not None and before.severity != a.severity:
                out.append(
                    msgspec.structs.replace(before, status="resolved", at=a.at, ends_at=a.at)
                )
            out.append(a)
        return out

    def resend_due(self) -> int:
        """Re-send the firing alerts that are due; returns how many were due."""
        with self._lock:
            now = self.clock()
            due = self.firing.due(now)
            if due:
                self._send(due, now)
            return len(due)

    def retry_failed(self) -> int:
        """Send again the alerts whose last post failed; returns how many were pending."""
        with self._lock:
            pending = list(self.retry.values())
            if pending:
                self._send(pending, self.clock())
            return len(pending)

    def write_batch(self, items: list[Any]) -> None:
        alerts = _alerts(items)
        with self._lock:
            now = self.clock()
            alerts = self._new(alerts)
            if alerts:
                self._send(alerts, now)
                self.firing.update(alerts, sent_at=now)
            due = self.firing.due(now)
            if due:
                self._send(due, now)

    def _resend_loop(self) -> None:
        tick = min(self.cfg.resend_interval_s / 4, 5.0)
        while not self._stop.wait(tick):
            try:
                self.retry_failed()
                self.resend_due()
            except Exception:  # never let the thread die silently
                log.exception("alertmanager: re-send failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.timeout_s + 1)
        if self.client is not None:
            self.client.close()
        if self.webhook is not None:
            self.webhook.close()
        if self.store is not None:
            self.store.close()


class AlertmanagerSink(DynamicSink[Any]):
    """Sends Alert records (or lists of them) to Alertmanager; one client per worker.

    ``client_factory(cfg, on_retry=...)`` and ``clock`` are injectable for tests;
    ``background_resend=False`` turns the re-send thread off (re-sends then happen only in
    ``write_batch`` or via the partition's ``resend_due()``).
    """

    def __init__(
        self,
        cfg: AlertmanagerService,
        *,
        client_factory: Callable[..., AlertmanagerClient] = AlertmanagerClient.from_config,
        clock: Callable[[], datetime] = _utcnow,
        background_resend: bool = True,
    ):
        if cfg.url is None and cfg.webhook_url is None:
            raise ConfigError(
                "neither alertmanager.url nor alertmanager.webhook_url is set; "
                "do not build an AlertmanagerSink"
            )
        check_links(cfg)
        self.cfg = cfg
        self._factory = client_factory
        self._clock = clock
        self._background = background_resend

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertmanagerPartition:
        def on_retry(attempt: int, delay: float, error: AlertmanagerError) -> None:
            SINK_RETRIES.labels(SINK).inc()

        client = self._factory(self.cfg, on_retry=on_retry) if self.cfg.url else None
        webhook = WebhookClient.from_config(self.cfg) if self.cfg.webhook_url else None
        store = None
        if self.cfg.state_path:  # one file per worker: partitions never share a row
            path = Path(self.cfg.state_path)
            store = AlertStore(
                path
                if worker_count == 1
                else path.with_name(f"{path.stem}-{worker_index}{path.suffix}")
            )
        return _AlertmanagerPartition(
            self.cfg, client, self._clock, self._background, webhook, store
        )
