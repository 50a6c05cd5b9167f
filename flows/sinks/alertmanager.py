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
from datetime import datetime, timezone
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from alerting.alertmanager import AlertmanagerClient, AlertmanagerError, FiringSet
from twinwatch.config import AlertmanagerService, ConfigError
from twinwatch.metrics import RECORDS_OUT, SINK_ERRORS, SINK_RETRIES, SINK_WRITE_SECONDS
from twinwatch.schema import Alert

__all__ = ["AlertmanagerSink"]

log = logging.getLogger(__name__)
SINK = "alertmanager"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _alerts(items: Iterable[Any]) -> list[Alert]:
    latest: dict[str, Alert] = {}
    for item in items:
        for a in (item if isinstance(item, (list, tuple)) else (item,)):
            if type(a) is not Alert:
                raise TypeError(f"AlertmanagerSink takes Alert records, got {type(a).__name__}")
            if a.status != "pending":
                latest.pop(a.fingerprint, None)  # keep batch order of the last states
                latest[a.fingerprint] = a
    return list(latest.values())


class _AlertmanagerPartition(StatelessSinkPartition[Any]):
    def __init__(self, cfg: AlertmanagerService, client: AlertmanagerClient,
                 clock: Callable[[], datetime], background: bool):
        self.cfg = cfg
        self.client = client
        self.clock = clock
        self.firing = FiringSet(cfg.resend_interval_s)
        self.sent = 0  # alerts
        self.failed = 0  # alerts
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._resend_loop, daemon=True,
                                            name="twinwatch-alertmanager-resend")
            self._thread.start()

    def _send(self, alerts: list[Alert], now: datetime) -> None:
        t0 = time.perf_counter()
        try:
            self.client.post(alerts, now, self.cfg.firing_ttl_s, self.cfg.generator_url)
        except AlertmanagerError as e:
            self.failed += len(alerts)
            SINK_ERRORS.labels(SINK).inc()
            log.error("alertmanager: could not deliver %d alerts: %s", len(alerts), e)
        else:
            self.sent += len(alerts)
            RECORDS_OUT.labels(SINK, "alert").inc(len(alerts))
        finally:
            SINK_WRITE_SECONDS.labels(SINK).observe(time.perf_counter() - t0)

    def resend_due(self) -> int:
        """Re-send the firing alerts that are due; returns how many were due."""
        with self._lock:
            now = self.clock()
            due = self.firing.due(now)
            if due:
                self._send(due, now)
            return len(due)

    def write_batch(self, items: list[Any]) -> None:
        alerts = _alerts(items)
        with self._lock:
            now = self.clock()
            if alerts:
                self._send(alerts, now)
                self.firing.update(alerts, sent_at=now)
            due = self.firing.due(now)
            if due:
                self._send(due, now)

    def _resend_loop(self) -> None:
        tick = self.cfg.resend_interval_s / 4
        while not self._stop.wait(tick):
            try:
                self.resend_due()
            except Exception:  # never let the thread die silently
                log.exception("alertmanager: re-send failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.timeout_s + 1)
        self.client.close()


class AlertmanagerSink(DynamicSink[Any]):
    """Sends Alert records (or lists of them) to Alertmanager; one client per worker.

    ``client_factory(cfg, on_retry=...)`` and ``clock`` are injectable for tests;
    ``background_resend=False`` turns the re-send thread off (re-sends then happen only in
    ``write_batch`` or via the partition's ``resend_due()``).
    """

    def __init__(self, cfg: AlertmanagerService, *,
                 client_factory: Callable[..., AlertmanagerClient] = AlertmanagerClient.from_config,
                 clock: Callable[[], datetime] = _utcnow, background_resend: bool = True):
        if cfg.url is None:
            raise ConfigError("alertmanager.url is not set; do not build an AlertmanagerSink")
        self.cfg = cfg
        self._factory = client_factory
        self._clock = clock
        self._background = background_resend

    def build(self, step_id: str, worker_index: int,
              worker_count: int) -> _AlertmanagerPartition:
        def on_retry(attempt: int, delay: float, error: AlertmanagerError) -> None:
            SINK_RETRIES.labels(SINK).inc()

        client = self._factory(self.cfg, on_retry=on_retry)
        return _AlertmanagerPartition(self.cfg, client, self._clock, self._background)
