"""The Bytewax sink that writes the flow's records to InfluxDB, with an on-disk spool.

    InfluxSink(cfg, dead_letter_path=None)    Bytewax DynamicSink; items are records or lists

The HTTP client is the kernel's ``twinwatch.influx``; this module adds what a flow needs on top:
encoding per measurement, the spool for outages, metrics, and the acknowledgement of the source
messages once a batch is durable (``twinwatch.flows.acks``). The flows run each partition behind
``twinwatch.flows.sinks.pipeline.Pipelined``: the writes happen on a thread of their own, beside
the detection, and nothing below changes (``InfluxSink(..., pipeline=True)``).

What InfluxDB answers decides what happens to a chunk of points; nothing is acknowledged that
is not durable, and the sink never raises for InfluxDB's answers (an InfluxDB problem must not
stop alerting, which runs in the same flow):

* 2xx: written.
* Unavailable (connection error, timeout, 5xx, 429) after the writer's retries: the chunk goes
  to the spool and is backfilled in order every ``spool_retry_s``.
* Refused for the whole database (401/403 credentials or permission, 404 database not found,
  any other 4xx that is not about the data): the same as unavailable (spooled, retried), with one
  loud log line naming the setting to fix, ``twinwatch_sink_refused_total{status}``, and a
  non-zero exit status if the run ends before InfluxDB takes the points.
* Bad data (400, 413, 422): the chunk is halved until the points InfluxDB refuses are isolated;
  each becomes a ``write_rejected`` dead letter (file and ``dead_letter`` measurement) and the
  rest of the chunk is written.

Without a spool, a chunk that is neither written nor dead-lettered leaves its batch
unacknowledged (MQTT redelivers it at the next start) and is counted. Seconds since the last
successful write and batches in flight are on ``/metrics``, so a hung InfluxDB shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinwatch.config import InfluxService
from twinwatch.engine.deadletter import dead_letter, internal_error
from twinwatch.flows.acks import ack_all
from twinwatch.flows.sinks.deadletter import DeadLetterFile, worker_path
from twinwatch.flows.sinks.outcome import OUTCOME
from twinwatch.flows.sinks.pipeline import Pipelined
from twinwatch.flows.sinks.spool import Spool, SpoolFull
from twinwatch.influx import InfluxError, InfluxRejected, InfluxUnavailable, make_writer
from twinwatch.lineprotocol import encode_by_measurement, encode_many
from twinwatch.metrics import (
    RECORDS_OUT,
    SINK_ERRORS,
    SINK_IN_FLIGHT,
    SINK_REFUSED,
    SINK_RETRIES,
    SINK_SINCE_SUCCESS,
    SINK_WRITE_SECONDS,
    SPOOL_BYTES,
    SPOOL_DROPPED,
)

__all__ = ["InfluxSink"]

log = logging.getLogger(__name__)
SINK = "influxdb"
BAD_DATA = (400, 413, 422)  # InfluxDB refuses these points; other 4xx refuse the whole database


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


def _measurement(line: str) -> str:
    return line.split(",", 1)[0].split(" ", 1)[0]


def _hint(status: int | None, cfg: InfluxService | None) -> str:
    """What to fix for a refusal, naming the setting."""
    where = f"database {cfg.database!r}" if cfg is not None else "the database"
    if status == 401:
        return "check services.influxdb.username/password (or token)"
    if status == 403:
        return f"the user lacks write permission on {where}"
    if status == 404:
        return (
            f"{where} does not exist: create it, or let twinwatch create it at start "
            "(services.influxdb.create_database)"
        )
    return "check services.influxdb"


class _InfluxPartition(StatelessSinkPartition[Any]):
    """One worker's writer (see the module doc for what each answer leads to)."""

    def __init__(
        self,
        writer: _Writer,
        spool: Spool | None = None,
        retry_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
        dead: DeadLetterFile | None = None,
        cfg: InfluxService | None = None,
    ):
        self.writer = writer
        self.spool = spool
        self.retry_s = retry_s
        self.dead = dead
        self.cfg = cfg
        self._clock = clock
        self._sleep = sleep
        self._next_try = 0.0
        self.written = 0  # points
        self.dropped = 0  # points deleted from a full spool
        self.rejected = 0  # points InfluxDB refused (dead-lettered)
        self.unacked = 0  # points neither written nor spooled (no spool)
        self.refusal: str | None = None  # the standing refusal (auth, database), one line
        self._last_success = time.monotonic()
        SINK_SINCE_SUCCESS.labels(SINK).set_function(lambda: time.monotonic() - self._last_success)
        if spool is not None:
            OUTCOME.spool_path = str(spool.path)
            if len(spool):
                log.warning(
                    "influxdb: %d bytes from an earlier run wait in the spool %s; backfilling",
                    spool.bytes,
                    spool.path,
                )

    # --- the batch ----------------------------------------------------------------------

    def write_batch(self, items: list[Any]) -> None:
        SINK_IN_FLIGHT.labels(SINK).inc()
        try:
            durable = self._write(self._encode(items))
        finally:
            SINK_IN_FLIGHT.labels(SINK).dec()
        if durable:
            ack_all(items)  # written, spooled (fsynced) or dead-lettered: the source may forget

    def _encode(self, items: list[Any]) -> dict[str, list[str]]:
        records = _flatten(items)
        try:
            return encode_by_measurement(records)
        except Exception:  # one record the encoder chokes on must not lose the others
            groups: dict[str, list[str]] = {}
            for rec in records:
                try:
                    one = encode_by_measurement([rec])
                except Exception as e:
                    dl = internal_error("encode", e, "influxdb", repr(rec))
                    if self.dead is not None:
                        self.dead.write([dl], sync=True)
                    one = encode_by_measurement([dl])
                for m, lines in one.items():
                    groups.setdefault(m, []).extend(lines)
            return groups

    def _write(self, groups: dict[str, list[str]]) -> bool:
        """Write every chunk; False if some chunk is neither written, spooled nor
        dead-lettered (the batch must not be acknowledged)."""
        self._backfill()
        durable = True
        bs = self.writer.batch_size
        down = False  # without a spool: once InfluxDB failed, keep the rest for the redelivery
        for m, lines in groups.items():
            for i in range(0, len(lines), bs):
                chunk = lines[i : i + bs]
                if self.spool is not None and len(self.spool):
                    self._to_spool(chunk)  # behind the backlog, in order
                elif down or self._deliver(chunk, retry=True, m=m) == "failed":
                    if self.spool is None:
                        if not down:
                            log.error(
                                "influxdb: %s and no spool configured: leaving this batch "
                                "unacknowledged (redelivered at the next start)",
                                self.refusal or "unavailable",
                            )
                        down, durable = True, False
                        self.unacked += len(chunk)
                        OUTCOME.add("unacked", m, len(chunk))
                    else:
                        self._next_try = self._clock() + self.retry_s
                        if self.refusal is None:
                            log.warning(
                                "influxdb unavailable: spooling to %s until it is back",
                                self.spool.path,
                            )
                        self._to_spool(chunk)
        return durable

    # --- one chunk ----------------------------------------------------------------------

    def _deliver(self, chunk: list[str], retry: bool, m: str | None = None) -> str:
        """Write ``chunk`` (all of measurement ``m``, if given), isolating points InfluxDB
        refuses: "ok" (written or dead-lettered) or "failed" (unavailable or refused: try the
        whole chunk again later)."""
        result, error = self._attempt(chunk, retry, m)
        if result != "bad_data":
            return result
        if len(chunk) == 1:
            self._reject(chunk[0], error)
            return "ok"
        mid = len(chunk) // 2
        for half in (chunk[:mid], chunk[mid:]):
            if self._deliver(half, retry, m) == "failed":
                return "failed"  # the whole chunk is retried; rewriting a point is idempotent
        return "ok"

    def _attempt(
        self, chunk: list[str], retry: bool, m: str | None = None
    ) -> tuple[str, InfluxError | None]:
        saved = self.writer.max_retries
        if not retry:
            self.writer.max_retries = 0
        t0 = time.perf_counter()
        try:
            self.writer.write_chunk(chunk)
        except InfluxUnavailable as e:
            SINK_ERRORS.labels(SINK).inc()
            return "failed", e
        except InfluxRejected as e:
            SINK_ERRORS.labels(SINK).inc()
            if e.status in BAD_DATA:
                return "bad_data", e
            self._refused(e)
            return "failed", e
        finally:
            self.writer.max_retries = saved
            SINK_WRITE_SECONDS.labels(SINK).observe(time.perf_counter() - t0)
        self._succeeded(chunk, m)
        return "ok", None

    def _succeeded(self, chunk: list[str], m: str | None) -> None:
        self._last_success = time.monotonic()
        self.written += len(chunk)
        counts: dict[str, int] = {m: len(chunk)} if m is not None else {}
        if m is None:  # a spooled chunk: read the measurements off the lines
            for line in chunk:
                key = _measurement(line)
                counts[key] = counts.get(key, 0) + 1
        for m, n in counts.items():
            RECORDS_OUT.labels(SINK, m).inc(n)
            OUTCOME.add("stored", m, n)
        if self.refusal is not None:
            log.warning("influxdb accepts writes again (was: %s)", self.refusal)
            self.refusal = None

    def _refused(self, e: InfluxRejected) -> None:
        SINK_REFUSED.labels(SINK, str(e.status)).inc()
        line = f"InfluxDB refused the write (HTTP {e.status}: {e.text[:200]})"
        if self.refusal != line:  # one loud line per refusal, not one per chunk
            self.refusal = line
            OUTCOME.refuse(str(e.status), line)
            keep = (
                f"points are spooled to {self.spool.path} and written once it accepts them"
                if self.spool is not None
                else "points stay unacknowledged at their source"
            )
            log.error("%s; %s; %s", line, _hint(e.status, self.cfg), keep)

    def _reject(self, line: str, error: InfluxError | None) -> None:
        """One point InfluxDB will not take: a dead letter with the server's reason."""
        self.rejected += 1
        text = error.text if error is not None else ""
        dl = dead_letter(
            "influxdb", _measurement(line), "write_rejected", f"InfluxDB: {text}", line
        )
        log.warning("influxdb refused one point (dead-lettered): %s", text[:200])
        if self.dead is not None:
            self.dead.write([dl], sync=True)
        try:  # also in the dead_letter measurement, for the dashboards; best effort
            self.writer.write_chunk(encode_many([dl]))
        except InfluxError as e:
            log.warning("influxdb: could not record the refused point in dead_letter: %s", e)

    # --- spool --------------------------------------------------------------------------

    def _to_spool(self, chunk: list[str]) -> None:
        assert self.spool is not None
        while True:
            try:
                before = self.spool.dropped
                self.spool.push(chunk)
                if self.spool.dropped > before:
                    n = self.spool.dropped - before
                    SPOOL_DROPPED.labels(SINK).inc(n)
                    self.dropped += n
                    OUTCOME.count("dropped", n)
                break
            except SpoolFull:  # policy "block": hold the flow until InfluxDB takes the backlog
                log.error(
                    "influxdb spool full (%d bytes): blocking until InfluxDB takes the backlog "
                    "(the source stops reading: the backlog stays on the broker)",
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
            if self._deliver(lines, retry=False) == "failed":
                self._next_try = self._clock() + self.retry_s
                break
            spool.pop(seq)
        SPOOL_BYTES.labels(SINK).set(spool.bytes)
        if not len(spool):
            log.info("influxdb: spool %s drained", spool.path)

    def close(self) -> None:
        self._backfill(force=True)
        if self.spool is not None and len(self.spool):
            points = self.spool.points()
            for m, n in points.items():
                OUTCOME.add("pending", m, n)
            log.warning(
                "influxdb: %d points (%d bytes) stay in the spool %s; backfilled at the next start",
                points.total(),
                self.spool.bytes,
                self.spool.path,
            )
        self.writer.close()
        if self.dead is not None:
            self.dead.close()


# The writer thread waits for this many records (or flush_interval_s) before it writes: at low
# rates one request per source batch of a few readings cost more than the readings (the writer
# at 15 % of a core at 1,000 readings/s). Not batch_size (5,000): waiting for that many made each
# write a burst of encoding that kept the GIL from the alert path (alert p90 44-61 -> 91-93 ms at
# 9,000 readings/s, benchmarks.alert_latency).
FILL_RECORDS = 500


class InfluxSink(DynamicSink[Any]):
    """Writes records (or lists of records) to InfluxDB; one writer per worker.

    The writer is made in ``build`` (secrets are read when the flow starts, not at import).
    ``pipeline``: write on a thread of its own behind a bounded queue of
    ``services.influxdb.write_queue`` records (twinwatch.flows.sinks.pipeline), as the flows do;
    without it ``write_batch`` returns once the batch is durable.
    ``dead_letter_path``: where points InfluxDB refuses are recorded (the flow's dead-letter
    file); without it they are only logged and written to the ``dead_letter`` measurement.
    """

    def __init__(
        self,
        cfg: InfluxService,
        *,
        writer_factory: Callable[..., _Writer] = make_writer,
        dead_letter_path: str | Path | None = None,
        pipeline: bool = False,
    ):
        self.cfg = cfg
        self._factory = writer_factory
        self.dead_letter_path = dead_letter_path
        self.pipeline = pipeline

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        def on_retry(attempt: int, delay: float, error: InfluxError) -> None:
            SINK_RETRIES.labels(SINK).inc()

        spool = None
        if self.cfg.spool_dir:
            spool = Spool(
                Path(self.cfg.spool_dir) / f"w{worker_index}",
                self.cfg.spool_max_bytes,
                self.cfg.spool_policy,
            )
        dead = None
        if self.dead_letter_path is not None:
            dead = DeadLetterFile(worker_path(self.dead_letter_path, worker_index))
        part = _InfluxPartition(
            self._factory(self.cfg, on_retry=on_retry),
            spool,
            self.cfg.spool_retry_s,
            dead=dead,
            cfg=self.cfg,
        )
        if self.pipeline and self.cfg.write_queue:
            return Pipelined(
                part,
                self.cfg.write_queue,
                SINK,
                batch_records=min(self.cfg.batch_size, FILL_RECORDS),
                flush_interval_s=self.cfg.flush_interval_s,
            )
        return part
