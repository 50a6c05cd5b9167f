"""Alert delivery: every alert state change paged once, in order, off the flow's thread.

    d = Delivery(cfg, notifiers, store, owner=(worker index, worker count))
    d.enqueue(alerts)      the flow's sink: judge the states, queue them durably, return at once
    d.release(alerts)      resolve firing alerts nobody owns any more (config changed)
    d.close()              drain what is ready (up to cfg.timeout_s), stop the thread
    d.run_once()           one delivery pass (what the thread does; tests call it directly)

**Decoupled.** ``enqueue`` is one SQLite transaction (alerting/store.py) and a wake-up; the
notifiers (alerting/notifiers.py) run on this object's own thread. An unreachable receiver
therefore costs the flow nothing: its states wait in a bounded, persisted queue
(``queue_max`` per receiver, oldest dropped beyond, counted), and the thread retries with
exponential backoff and jitter (``max_backoff_s``), per receiver, forever.

**Judged once, against the newest state** (``latest``), before anything is queued:

    new state       newest known          queued
    firing          none / resolved       firing (a replayed older episode: nothing)
    firing          firing, same severity nothing: a duplicate after a replay, or the engine
                                          re-owning an episode after a restart (its start kept)
    firing          firing, other sev.    resolved (the old label set), firing (escalation)
    resolved        firing                resolved, with the start and severity that were paged
    resolved        none / resolved       nothing (a duplicate, or an orphan: never paged firing)
    pending         -                     nothing (pending alerts are not paged)

**In order, per label set** (fingerprint and severity, Alertmanager's identity of an alert):
a receiver gets a label set's states in the order they were queued, one state per request. A
resolve also waits until its firing was accepted ``hold_s`` ago (the notifier's: Alertmanager
pages an alert only when its group is flushed, so an episode that fired and resolved inside
one catch-up batch would otherwise never be paged); everything queued after it for the same
label set waits too, other label sets go on. So a catch-up episode is paged as firing, then
resolved, with its real start and end.

**Re-sends.** Alertmanager resolves a firing alert that is not re-sent within ``firing_ttl_s``,
so every ``resend_interval_s`` the firing label sets a receiver accepted are sent again with a
fresh ``endsAt``, by the worker that owns the fingerprint now (``latest.owner``).

**Refusals.** 5xx/429/timeouts: retried. 401/403/404 (``needs_operator``): the states stay
queued and one loud line says what to fix; retried at the backoff cap. Any other 4xx: the
request is wrong; each alert of the batch is tried alone and those refused are dropped with the
receiver's reason (``rejected``), so one bad alert cannot block the queue.

Metrics: ``twinwatch_alert_queue_depth{receiver}``, ``twinwatch_alert_queue_dropped_total``,
``twinwatch_alert_deliveries_total{receiver,outcome}``, and the sinks' ``twinwatch_sink_errors``
/ ``_retries`` / ``_write_seconds`` with ``sink`` = the receiver.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from twinwatch.alerting.notifiers import Notifier
from twinwatch.alerting.store import DeliveryStore
from twinwatch.config import AlertmanagerService
from twinwatch.http import HttpError, backoff_delay
from twinwatch.metrics import (
    ALERT_DELIVERIES,
    ALERT_QUEUE_DEPTH,
    ALERT_QUEUE_DROPPED,
    RECORDS_OUT,
    SINK_ERRORS,
    SINK_RETRIES,
    SINK_WRITE_SECONDS,
)
from twinwatch.schema import Alert

__all__ = ["Delivery", "judge"]

log = logging.getLogger(__name__)
BATCH_MAX = 200  # alerts per request
_BACKOFF_S = 0.5


def _utcnow() -> datetime:
    return datetime.now(UTC)


def judge(alert: Alert, newest: Alert | None) -> list[Alert]:
    """What to queue for ``alert`` given the newest known state of its fingerprint (pure; the
    table in the module docstring)."""
    if alert.status == "firing":
        if newest is None:
            return [alert]
        if newest.status == "resolved":
            # a new episode starts after the last one ended; an earlier start is a replay
            return [alert] if alert.starts_at >= (newest.ends_at or newest.at) else []
        if newest.severity == alert.severity:
            return []
        old = msgspec.structs.replace(newest, status="resolved", at=alert.at, ends_at=alert.at)
        return [old, msgspec.structs.replace(alert, starts_at=newest.starts_at)]
    if alert.status == "resolved":
        if newest is None or newest.status != "firing":
            return []
        return [
            msgspec.structs.replace(
                alert,
                starts_at=newest.starts_at,
                severity=newest.severity,
                ends_at=max(alert.ends_at or alert.at, newest.starts_at),
            )
        ]
    return []


class _Receiver:
    """One notifier's delivery state in this process: backoff and the current failure streak."""

    def __init__(self, notifier: Notifier):
        self.notifier = notifier
        self.name = notifier.name
        self.failures = 0  # consecutive failed requests
        self.next_try = 0.0  # monotonic
        self.next_resend: datetime | None = None  # no re-send is due before this


class Delivery:
    def __init__(
        self,
        cfg: AlertmanagerService,
        notifiers: Sequence[Notifier],
        store: DeliveryStore,
        *,
        owner: tuple[int, int] = (0, 1),
        clock: Callable[[], datetime] = _utcnow,
        background: bool = True,
    ):
        self.cfg = cfg
        self.store = store
        self.owner = owner
        self.clock = clock
        self.receivers = [_Receiver(n) for n in notifiers]
        self.names = [r.name for r in self.receivers]
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._update_depth()
        if background:
            self._thread = threading.Thread(
                target=self._loop, daemon=True, name=f"twinwatch-alert-delivery-{owner[0]}"
            )
            self._thread.start()

    def __repr__(self) -> str:
        return f"<Delivery to {', '.join(self.names)} via {self.store!r}>"

    # --- the flow's side -------------------------------------------------------------------

    def enqueue(self, alerts: Iterable[Alert]) -> int:
        """Judge and queue ``alerts`` (in their order); returns how many states were queued."""
        alerts = [a for a in alerts if a.status != "pending"]
        if not alerts or not self.receivers:
            return 0
        newest = {fp: a for fp, (a, _) in self.store.latest(a.fingerprint for a in alerts).items()}
        queued: list[Alert] = []
        for a in alerts:
            out = judge(a, newest.get(a.fingerprint))
            if not out:
                outcome = "duplicate" if a.fingerprint in newest else "orphan"
                for name in self.names:
                    ALERT_DELIVERIES.labels(name, outcome).inc()
                log.debug("delivery: %s %s not queued (%s)", a.fingerprint, a.status, outcome)
                continue
            queued += out
            newest[a.fingerprint] = out[-1]
        if queued:
            dropped = self.store.enqueue(queued, self.names, self.owner[0], self.cfg.queue_max)
            for name, n in dropped.items():
                ALERT_QUEUE_DROPPED.labels(name).inc(n)
                log.error(
                    "delivery to %s: queue full (%d): dropped the %d oldest alert states",
                    name,
                    self.cfg.queue_max,
                    n,
                )
            self._update_depth()
            self._wake.set()
        return len(queued)

    def release(self, alerts: Iterable[Alert]) -> int:
        """Resolve firing alerts that no part of the flow owns any more (their sensor or rule
        left the config), at the current time."""
        now = self.clock()
        return self.enqueue(
            msgspec.structs.replace(a, status="resolved", at=now, ends_at=now)
            for a in alerts
            if a.status == "firing"
        )

    # --- the delivery thread ---------------------------------------------------------------

    def _update_depth(self) -> None:
        for name in self.names:
            ALERT_QUEUE_DEPTH.labels(name).set(self.store.depth(name))

    def _ready(self, r: _Receiver, now: datetime) -> list[tuple[int, Alert]]:
        """The next request's states: the oldest per label set, none held behind a young
        firing, at most BATCH_MAX."""
        told = None
        hold: timedelta | None = None  # asked only when a resolve is queued
        blocked: set[tuple[str, str]] = set()
        out = []
        for seq, a in self.store.pending(r.name, self.owner):
            key = (a.fingerprint, a.severity)
            if key in blocked:
                continue
            blocked.add(key)  # one state per label set per request: order is kept
            if a.status == "resolved":
                if hold is None:
                    hold = timedelta(seconds=r.notifier.hold_s)
                    told = self.store.told(r.name) if hold else {}
                firing = told.get(key) if told else None
                if firing is not None and now - firing.first_sent < hold:
                    continue
            out.append((seq, a))
            if len(out) >= BATCH_MAX:
                break
        return out

    def _due(self, r: _Receiver, now: datetime) -> list[Alert]:
        """The firing label sets this worker owns whose last send is resend_interval_s old."""
        if r.next_resend is not None and now < r.next_resend:
            return []
        interval = timedelta(seconds=self.cfg.resend_interval_s)
        r.next_resend = now + interval
        told = self.store.told(r.name)
        if not told:
            return []
        newest = self.store.latest(fp for fp, _ in told)
        me, count = self.owner
        due, gone = [], []
        for key, t in told.items():
            current = newest.get(key[0])
            if current is None or current[0].status != "firing" or current[0].severity != key[1]:
                gone.append(key)  # resolved or escalated since: its resolve is queued or sent
                continue
            if not (current[1] == me or (current[1] >= count and me == 0)):
                continue  # another worker owns the fingerprint now
            if now - t.last_sent >= interval:
                due.append(t.alert)
            else:
                r.next_resend = min(r.next_resend, t.last_sent + interval)
        if gone:  # forget those whose resolve is no longer queued (sent, dropped or refused)
            queued = {a.fingerprint for _, a in self.store.pending(r.name, self.owner, 100_000)}
            self.store.forget(r.name, [k for k in gone if k[0] not in queued])
        return due

    def _post(self, r: _Receiver, alerts: Sequence[Alert], now: datetime) -> HttpError | None:
        t0 = time.perf_counter()
        try:
            r.notifier.notify(alerts, now)
        except HttpError as e:
            return e
        finally:
            SINK_WRITE_SECONDS.labels(r.name).observe(time.perf_counter() - t0)
        return None

    def _failed(self, r: _Receiver, e: HttpError, waiting: int) -> None:
        SINK_ERRORS.labels(r.name).inc()
        if r.failures:
            SINK_RETRIES.labels(r.name).inc()
        r.failures += 1
        if e.needs_operator:
            delay = self.cfg.max_backoff_s
            if r.failures == 1:
                log.error(
                    "delivery to %s refused (%s): check services.alertmanager (url, "
                    "credentials, path); %d alert states wait in the queue",
                    r.name,
                    e,
                    waiting,
                )
        else:
            delay = backoff_delay(r.failures - 1, e, _BACKOFF_S, self.cfg.max_backoff_s)
            log_fn = log.error if r.failures == 1 else log.warning
            log_fn(
                "delivery to %s failed (%d in a row): %s; %d alert states wait; retry in %.1fs",
                r.name,
                r.failures,
                e,
                waiting,
                delay,
            )
        r.next_try = time.monotonic() + delay

    def _deliver(self, r: _Receiver, now: datetime) -> int:
        batch = self._ready(r, now)
        if not batch:
            return 0
        e = self._post(r, [a for _, a in batch], now)
        if e is None:
            self._sent(r, batch, now)
            return len(batch)
        if e.retryable or e.needs_operator:
            self._failed(r, e, self.store.depth(r.name))
            return 0
        # The request itself is wrong: find the alerts the receiver refuses, deliver the rest.
        done = 0
        for item in batch:
            e = self._post(r, [item[1]], now)
            if e is None:
                self._sent(r, [item], now)
                done += 1
            elif e.retryable or e.needs_operator:
                self._failed(r, e, self.store.depth(r.name))
                break
            else:
                self.store.discard([item[0]])
                ALERT_DELIVERIES.labels(r.name, "rejected").inc()
                log.error(
                    "delivery to %s: alert %s (%s %s) refused for good: %s",
                    r.name,
                    item[1].fingerprint,
                    item[1].rule,
                    item[1].status,
                    e,
                )
        self._update_depth()
        return done

    def _sent(self, r: _Receiver, batch: Sequence[tuple[int, Alert]], now: datetime) -> None:
        self.store.sent(r.name, batch, now)
        if r.failures:
            log.info("delivery to %s is back after %d failed attempts", r.name, r.failures)
        r.failures = 0
        RECORDS_OUT.labels(r.name, "alert").inc(len(batch))
        ALERT_DELIVERIES.labels(r.name, "sent").inc(len(batch))
        self._update_depth()

    def _resend(self, r: _Receiver, now: datetime) -> int:
        due = self._due(r, now)
        if not due:
            return 0
        for i in range(0, len(due), BATCH_MAX):
            chunk = due[i : i + BATCH_MAX]
            e = self._post(r, chunk, now)
            if e is not None:
                self._failed(r, e, self.store.depth(r.name))
                r.next_resend = None  # due again as soon as the backoff allows
                return i
            self.store.renewed(r.name, [(a.fingerprint, a.severity) for a in chunk], now)
            ALERT_DELIVERIES.labels(r.name, "resent").inc(len(chunk))
        return len(due)

    def run_once(self) -> int:
        """One pass over every receiver not backing off: deliver what is ready (repeatedly,
        while full batches come), then the due re-sends. Returns the states delivered."""
        done = 0
        for r in self.receivers:
            if time.monotonic() < r.next_try:
                continue
            while True:
                n = self._deliver(r, self.clock())
                done += n
                if n < BATCH_MAX:
                    break
            if time.monotonic() >= r.next_try:
                self._resend(r, self.clock())
        return done

    def _loop(self) -> None:
        tick = min(0.5, self.cfg.resend_interval_s / 4)
        while not self._stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            try:
                self.run_once()
            except Exception:  # never let the thread die silently; the queue is on disk
                log.exception("alert delivery pass failed")
                self._stop.wait(1.0)

    def close(self) -> None:
        """Stop the thread after a last attempt, for up to ``timeout_s``, to deliver what is
        ready. Whatever is left (held resolves, a receiver that is down) stays in the store
        and goes out after the next start."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=self.cfg.timeout_s + 5)
            self._thread = None
            deadline = time.monotonic() + self.cfg.timeout_s
            for r in self.receivers:
                r.next_try = 0.0  # one more try each, now
            while time.monotonic() < deadline and self._drain_pass():
                pass
        for r in self.receivers:
            r.notifier.close()
        self._update_depth()
        self.store.close()

    def _drain_pass(self) -> bool:
        """Deliver what is ready once more; True if it made progress and more is ready."""
        progressed = False
        for r in self.receivers:
            if time.monotonic() < r.next_try:
                continue
            progressed |= self._deliver(r, self.clock()) > 0
        return progressed
