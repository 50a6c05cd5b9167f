"""A sink partition whose writes run on a thread of their own, behind a bounded queue.

    part = Pipelined(inner, max_records=50_000, name="influxdb")   # wraps any sink partition
    part = Pipelined(inner, batch_records=500, flush_interval_s=1.0)  # and fills its requests

The flow's worker thread only queues a batch and goes on computing; the writer thread hands
what it finds queued, up to ``max_records`` records at once, to ``inner.write_batch`` in one call
(under load the queue fills and the batches grow: fewer, larger requests). With
``flush_interval_s``, a writer that finds fewer than ``batch_records`` records queued waits for
more, at most that long after the oldest arrived (Telegraf's ``metric_batch_size`` and
``flush_interval``): at 1,000 readings/s the flow's source batches are a few readings each, and
one request per batch cost the writer thread 15 % of a core and InfluxDB 9 %. ``inner`` keeps every
guarantee it has alone: it acknowledges a source batch (twinwatch.flows.acks) only once the
batch is durable, now on the writer thread, so nothing is acknowledged earlier than before.

Bounded: ``write_batch`` blocks while ``max_records`` records wait, so a slow InfluxDB slows the
worker and, through the MQTT source's own bound, leaves the backlog on the broker. A bug the
inner partition raises on the writer thread is raised again on the worker thread at its next
``write_batch`` or ``close`` (as an inline write would have stopped the flow); the batch it was
writing stays unacknowledged. ``flush`` and ``close`` do not wait for the interval: they wait
until everything queued was handed to ``inner`` (``close`` then closes it).

Measured (docs/architecture.md, "Performance"): the worker used to wait for InfluxDB's answer
for 37-44 % of its time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from bytewax.outputs import StatelessSinkPartition

from twinwatch.metrics import SINK_QUEUED

__all__ = ["Pipelined"]

log = logging.getLogger(__name__)


def _size(items: list[Any]) -> int:
    return sum(len(i) if isinstance(i, list) else 1 for i in items)


class Pipelined(StatelessSinkPartition[Any]):
    def __init__(
        self,
        inner: Any,
        max_records: int = 50_000,
        name: str = "influxdb",
        *,
        batch_records: int = 1,
        flush_interval_s: float = 0.0,
    ):
        if max_records < 1 or batch_records < 1:
            raise ValueError("max_records and batch_records must be >= 1")
        if not flush_interval_s >= 0.0:
            raise ValueError("flush_interval_s must be >= 0")
        self.inner = inner
        self.max_records = max_records
        self.batch_records = min(batch_records, max_records)
        self.flush_interval_s = flush_interval_s
        self._queue: deque[tuple[list[Any], int]] = deque()
        self._queued = 0  # records waiting in the queue
        self._oldest = 0.0  # when the oldest of them arrived (monotonic)
        self._blocked = 0  # write_batch calls waiting for room
        self._hurry = 0  # flush calls waiting: write what is queued without waiting for more
        self._busy = False  # the writer thread is inside inner.write_batch
        self._closing = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._gauge = SINK_QUEUED.labels(name)
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:  # counters and state of the inner partition
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def write_batch(self, items: list[Any]) -> None:
        n = _size(items)
        with self._cond:
            self._raise()
            # wait for room; a batch larger than the bound goes alone into an empty queue
            while self._queued and self._queued + n > self.max_records and self._error is None:
                self._blocked += 1
                self._cond.notify_all()  # a lingering writer: write now
                self._cond.wait()
                self._blocked -= 1
            self._raise()
            first = not self._queue
            if first:
                self._oldest = time.monotonic()
            self._queue.append((items, n))
            self._queued += n
            self._gauge.set(self._queued)
            # wake the writer only when it has something to do: a wake per batch while it
            # waits for more handed the GIL back and forth (alert p99 3x under load)
            if first or self._queued - n < self.batch_records <= self._queued:
                self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every queued batch was handed to the inner partition (tests, close)."""
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                while (self._queue or self._busy) and self._error is None:
                    self._cond.wait()
            finally:
                self._hurry -= 1
            self._raise()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        try:
            self._raise()
        finally:
            self.inner.close()

    def _raise(self) -> None:
        if self._error is not None:  # sticky: nothing drains the queue any more
            raise RuntimeError("the sink's writer thread failed") from self._error

    def _take(self) -> list[Any] | None:
        """Everything queued up to ``max_records`` records (at least one batch); None once
        closing and empty."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            while (
                self._queued < self.batch_records
                and not (self._closing or self._hurry or self._blocked)
                and (left := self._oldest + self.flush_interval_s - time.monotonic()) > 0
            ):
                self._cond.wait(left)  # for more records, the interval, a flush or close
            if not self._queue:
                return None
            items, n = self._queue.popleft()
            taken = n
            while self._queue and taken + self._queue[0][1] <= self.max_records:
                more, m = self._queue.popleft()
                items = items + more
                taken += m
            self._queued -= taken
            self._gauge.set(self._queued)
            self._busy = True
            self._cond.notify_all()
            return items

    def _run(self) -> None:
        while (items := self._take()) is not None:
            try:
                self.inner.write_batch(items)
            except BaseException as e:  # a bug: stop here, the worker raises it
                log.exception("sink writer thread failed; its batch stays unacknowledged")
                with self._cond:
                    self._error = e
                    self._busy = False
                    self._queue.clear()
                    self._queued = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self._busy = False
                self._cond.notify_all()
