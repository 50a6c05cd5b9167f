"""The InfluxDB sink's writer thread (twinwatch.flows.sinks.pipeline): writes beside the
worker, bounded, acknowledged only once durable. Real InfluxDB 1.6.7 throughout; a hung
InfluxDB is a real one stopped with SIGSTOP."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from twinwatch.app import services
from twinwatch.config import InfluxService
from twinwatch.flows.acks import Acked
from twinwatch.flows.sinks.influx import InfluxSink
from twinwatch.flows.sinks.pipeline import Pipelined
from twinwatch.schema import Reading

T0 = datetime(2026, 11, 23, 1, 0, 0, tzinfo=UTC)


def _readings(n: int, start: int = 0) -> list[Reading]:
    return [
        Reading(T0 + timedelta(seconds=i), "water", "s", "a", "p", "pressure", "kPa", float(i))
        for i in range(start, start + n)
    ]


def _values(url: str, db: str) -> list[float]:
    r = httpx.get(
        f"{url}/query", params={"db": db, "q": "SELECT value FROM reading"}, timeout=10
    ).json()
    series = r["results"][0].get("series", [])
    return [v[1] for v in series[0]["values"]] if series else []


def _until(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.services
def test_acknowledged_only_once_stored_and_in_order(influxdb, influx_db):
    """Each batch's acknowledgement runs on the writer thread after InfluxDB stored it: at
    the moment of each ack, the batch's points are already readable. Batches queued while the
    writer is busy are coalesced into fewer, larger writes, in their order."""
    cfg = InfluxService(url=influxdb.url, database=influx_db, batch_size=500, write_queue=10_000)
    part = InfluxSink(cfg, pipeline=True).build("influxdb", 0, 1)
    assert isinstance(part, Pipelined)
    seen: list[tuple[int, int]] = []  # (batch, points stored when it was acknowledged)

    def ack(i: int):
        return lambda: seen.append((i, len(_values(influxdb.url, influx_db))))

    for i in range(20):
        part.write_batch([Acked(_readings(100, 100 * i), ack(i))])
    part.flush()
    assert [i for i, _ in seen] == list(range(20))
    assert all(stored >= 100 * (i + 1) for i, stored in seen)
    part.close()
    assert _values(influxdb.url, influx_db) == [float(i) for i in range(2000)]
    assert part.written == 2000


@pytest.mark.services
def test_a_hung_influxdb_blocks_the_worker_at_the_bound(service_factory):
    """A real InfluxDB stopped with SIGSTOP (accepts connections, never answers): the writer
    thread waits in its request, the queue takes batches up to ``write_queue`` records, and the
    next ``write_batch`` blocks the worker (so the MQTT source stops reading) instead of
    growing memory. Nothing is acknowledged while InfluxDB hangs; once it resumes, every batch
    is written and acknowledged, in order."""
    influx = service_factory(services.InfluxDB)
    influx.create_database("hung")
    cfg = InfluxService(url=influx.url, database="hung", timeout_s=60, write_queue=300)
    part = InfluxSink(cfg, pipeline=True).build("influxdb", 0, 1)
    acked: list[int] = []
    assert influx.pid is not None
    os.kill(influx.pid, signal.SIGSTOP)
    try:
        part.write_batch([Acked(_readings(300), lambda: acked.append(0))])
        _until(lambda: part._busy)  # the writer took it and waits for InfluxDB
        part.write_batch([Acked(_readings(300, 300), lambda: acked.append(1))])  # fills the queue
        third = threading.Thread(
            target=part.write_batch, args=([Acked(_readings(300, 600), lambda: acked.append(2))],)
        )
        third.start()
        # influxd is stopped, so nothing can complete: the wait only gives a wrong
        # implementation the chance to return
        third.join(timeout=1.0)
        assert third.is_alive() and part._queued == 300 and acked == []
    finally:
        os.kill(influx.pid, signal.SIGCONT)
    third.join(timeout=60)
    assert not third.is_alive()
    part.close()
    assert acked == [0, 1, 2]
    assert _values(influx.url, "hung") == [float(i) for i in range(900)]


def test_an_outage_without_a_spool_leaves_the_batches_unacknowledged():
    """Nothing listens on the port and no spool is configured: the writer thread leaves every
    batch unacknowledged (MQTT redelivers them) and counts the points; close() returns."""
    cfg = InfluxService(
        url=f"http://127.0.0.1:{services.free_port()}", max_retries=0, spool_dir=None
    )
    part = InfluxSink(cfg, pipeline=True).build("influxdb", 0, 1)
    acked: list[int] = []
    for i in range(3):
        part.write_batch([Acked(_readings(10, 10 * i), lambda: acked.append(1))])
    part.close()
    assert acked == [] and part.unacked == 30 and part.written == 0


class _Broken:
    """Stands in for a bug in the inner partition (no server makes the sink raise)."""

    def __init__(self):
        self.closed = False

    def write_batch(self, items):
        raise KeyError("bug")

    def close(self):
        self.closed = True


def test_a_bug_on_the_writer_thread_is_raised_on_the_worker():
    part = Pipelined(_Broken(), max_records=10)
    acked: list[int] = []
    part.write_batch([Acked(_readings(3), lambda: acked.append(1))])
    with pytest.raises(RuntimeError, match="writer thread failed"):
        part.flush()
    with pytest.raises(RuntimeError):
        part.write_batch([_readings(1)])
    with pytest.raises(RuntimeError):
        part.close()
    assert part.inner.closed and acked == []


@pytest.mark.services
def test_gzip_setting_compresses_the_flow_writes(influxdb, influx_db):
    """services.influxdb.gzip reaches the writer the sink makes; real InfluxDB 1.6.7 takes the
    compressed writes."""
    cfg = InfluxService(url=influxdb.url, database=influx_db, gzip=True)
    part = InfluxSink(cfg, pipeline=True).build("influxdb", 0, 1)
    assert part.writer.gzip is True
    part.write_batch([_readings(50)])
    part.close()
    assert _values(influxdb.url, influx_db) == [float(i) for i in range(50)]


def _spy_inner(part: Pipelined) -> list[int]:
    """Records the size of each hand-over to the real inner partition (which still writes)."""
    calls: list[int] = []
    write = part.inner.write_batch

    def recording(items):
        calls.append(sum(len(i) for i in items))
        write(items)

    part.inner.write_batch = recording
    return calls


@pytest.mark.services
def test_small_batches_fill_one_request_before_the_writer_writes(influxdb, influx_db):
    """At low rates the source's batches are a few readings each, some milliseconds apart (the
    loop paces them so). The writer waits until ``batch_size`` records are queued (the interval
    here is far longer than the test), then writes them in one request; each batch is
    acknowledged only after that write. (Without the wait: one request per batch.)"""
    cfg = InfluxService(url=influxdb.url, database=influx_db, batch_size=100, flush_interval_s=600)
    part = InfluxSink(cfg, pipeline=True).build("influxdb", 0, 1)
    calls = _spy_inner(part)
    acked: list[int] = []
    for i in range(10):
        part.write_batch([Acked(_readings(10, 10 * i), lambda i=i: acked.append(i))])
        time.sleep(0.02)  # the pace of a source at 500 readings/s, not a wait for an outcome
    _until(lambda: len(acked) == 10)
    assert calls == [100] and acked == list(range(10))
    assert len(_values(influxdb.url, influx_db)) == 100
    part.close()


@pytest.mark.services
def test_the_flush_interval_bounds_the_wait_and_flush_does_not_wait(influxdb, influx_db):
    """Fewer records than ``batch_size``: written ``flush_interval_s`` after the oldest arrived,
    never before it; ``flush`` (and ``close``) write what is queued at once."""
    cfg = InfluxService(url=influxdb.url, database=influx_db, batch_size=1000, flush_interval_s=0.3)
    part = InfluxSink(cfg, pipeline=True).build("influxdb", 0, 1)
    calls = _spy_inner(part)
    acked: list[float] = []
    started = time.monotonic()
    part.write_batch([Acked(_readings(5), lambda: acked.append(time.monotonic()))])
    _until(lambda: acked)
    assert calls == [5] and acked[0] - started >= 0.3
    part.close()
    cfg = InfluxService(url=influxdb.url, database=influx_db, batch_size=1000, flush_interval_s=600)
    part = InfluxSink(cfg, pipeline=True).build("influxdb", 0, 1)
    acked.clear()
    part.write_batch([Acked(_readings(5, 5), lambda: acked.append(time.monotonic()))])
    started = time.monotonic()
    part.flush()
    assert len(acked) == 1 and acked[0] - started < 60  # not the 600 s interval
    part.write_batch([Acked(_readings(5, 10), lambda: acked.append(time.monotonic()))])
    part.close()
    assert len(acked) == 2
    assert _values(influxdb.url, influx_db) == [float(i) for i in range(15)]
