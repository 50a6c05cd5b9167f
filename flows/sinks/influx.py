"""The Bytewax sink that writes the flow's records to InfluxDB, with an on-disk spool.

    InfluxSink(cfg)          Bytewax DynamicSink; items are records or lists of records

The HTTP client is the kernel's ``twinwatch.influx``; this module adds what a flow needs on top:
encoding per measurement, the spool for outages, metrics, and the acknowledgement of the source
messages once a batch is durable (``twinwatch.flows.acks``).

Sink failure policy: the flow must not crash on a transient InfluxDB outage, and an InfluxDB
problem must not stop alerting (the Alertmanager sink sits in the same flow). So
``write_batch`` never raises for InfluxDB errors. A chunk InfluxDB cannot take after the
writer's retries (``InfluxUnavailable``) goes to the spool; without a spool it and the rest of
the batch are dropped at once (counted). A rejected chunk (``InfluxRejected``) is dropped and
the next chunk is still tried. Both are logged at ERROR and counted in
``SINK_ERRORS{sink="influxdb"}`` and the partition's ``dropped``. Only code errors (a record
type the encoder does not know) raise.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinwatch.config import InfluxService
from twinwatch.flows.acks import ack_all
from twinwatch.flows.sinks.spool import Spool, SpoolFull
from twinwatch.influx import InfluxError, InfluxRejected, InfluxUnavailable, make_writer
from twinwatch.lineprotocol import encode_by_measurement
from twinwatch.metrics import (
    RECORDS_OUT,
    SINK_ERRORS,
    SINK_RETRIES,
    SINK_WRITE_SECONDS,
    SPOOL_BYTES,
    SPOOL_DROPPED,
)

__all__ = ["InfluxSink"]

log = logging.getLogger(__name__)
SINK = "influxdb"


class _Writer(Protocol):
    batch_size: int
    max_retries: int

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

    def __init__(
        self,
        writer: _Writer,
        spool: Spool | None = None,
        retry_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        self.writer = writer
        self.spool = spool
        self.retry_s = retry_s
        self._clock = clock
        self._sleep = sleep
        self._next_try = 0.0
        self.written = 0  # points
        self.dropped = 0  # points
        if spool is not None and len(spool):
            log.warning(
                "influxdb: %d bytes from an earlier run wait in the spool %s; backfilling",
                spool.bytes,
                spool.path,
            )

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
                chunk = lines[i : i + bs]
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
                        log.error(
                            "influxdb unavailable and no spool configured: dropping this batch"
                        )
                    else:
                        self._next_try = self._clock() + self.retry_s
                        log.warning(
                            "influxdb unavailable: spooling to %s until it is back", self.spool.path
                        )
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
        assert self.spool is not None  # the callers checked
        while True:
            try:
                before = self.spool.dropped
                self.spool.push(chunk)
                if self.spool.dropped > before:
                    SPOOL_DROPPED.labels(SINK).inc(self.spool.dropped - before)
                    self.dropped += self.spool.dropped - before
                break
            except SpoolFull:  # policy "block": hold the flow until InfluxDB takes the backlog
                log.error(
                    "influxdb spool full (%d bytes): blocking until InfluxDB is back",
                    self.spool.bytes,
                )
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
            log.warning(
                "influxdb: %d bytes stay in the spool %s; backfilled at the next start",
                self.spool.bytes,
                self.spool.path,
            )
        self.writer.close()


class InfluxSink(DynamicSink[Any]):
    """Writes records (or lists of records) to InfluxDB; one writer per worker.

    The writer is made in ``build`` (secrets are read when the flow starts, not at import).
    """

    def __init__(self, cfg: InfluxService, *, writer_factory: Callable[..., _Writer] = make_writer):
        self.cfg = cfg
        self._factory = writer_factory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _InfluxPartition:
        def on_retry(attempt: int, delay: float, error: InfluxError) -> None:
            SINK_RETRIES.labels(SINK).inc()

        spool = None
        if self.cfg.spool_dir:
            spool = Spool(
                Path(self.cfg.spool_dir) / f"w{worker_index}",
                self.cfg.spool_max_bytes,
                self.cfg.spool_policy,
            )
        return _InfluxPartition(
            self._factory(self.cfg, on_retry=on_retry), spool, self.cfg.spool_retry_s
        )
