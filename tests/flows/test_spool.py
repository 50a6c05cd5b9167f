"""Outage buffering: the on-disk spool, and the InfluxDB sink riding out a real outage.

The outage tests stop and restart a real InfluxDB 1.6.7 (its own instance, same port and data
dir) while the sink keeps writing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from flowproc import flow_env, metrics_text, wait_subscribed  # tests/flowproc.py
from prometheus_client import REGISTRY

from twinwatch.app import services
from twinwatch.config import InfluxService, load_config
from twinwatch.flows.sinks.influx import InfluxSink
from twinwatch.flows.sinks.spool import Spool, SpoolFull
from twinwatch.mqtt import connect, make_client
from twinwatch.schema import Reading

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_spool_is_a_persistent_bounded_fifo(tmp_path):
    s = Spool(tmp_path / "sp", max_bytes=10_000)
    assert not (tmp_path / "sp").exists()  # nothing spooled, no folder
    for i in range(3):
        s.push([f"m v={i}i {i}", f"m v={i}i {i + 100}"])
    again = Spool(tmp_path / "sp", max_bytes=10_000)  # a restart finds the backlog
    assert len(again) == 3 and again.bytes == s.bytes
    got = []
    while (head := again.oldest()) is not None:
        got += head[1]
        again.pop(head[0])
    assert got == [f"m v={i}i {t}" for i in range(3) for t in (i, i + 100)]  # in order
    assert again.bytes == 0 and list((tmp_path / "sp").glob("*.lp")) == []


def test_full_spool_drops_oldest_or_blocks(tmp_path):
    line = "m v=1i 1"
    drop = Spool(tmp_path / "d", max_bytes=3 * (len(line) + 1))
    for i in range(5):
        drop.push([f"m v={i}i 1"])
    assert len(drop) == 3 and drop.dropped == 2
    assert drop.oldest()[1] == ["m v=2i 1"]  # the two oldest went
    block = Spool(tmp_path / "b", max_bytes=2 * (len(line) + 1), policy="block")
    block.push([line])
    block.push([line])
    with pytest.raises(SpoolFull):
        block.push([line])
    assert len(block) == 2 and block.dropped == 0


def _readings(n, start=0):
    return [
        Reading(T0 + timedelta(seconds=i), "water", "s", "a", "p", "pressure", "kPa", float(i))
        for i in range(start, start + n)
    ]


def _count(influx, db):
    r = httpx.get(
        f"{influx.url}/query", params={"db": db, "q": "SELECT value FROM reading"}, timeout=10
    ).json()
    series = r["results"][0].get("series", [])
    return [v[1] for v in series[0]["values"]] if series else []


def _metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.services
def test_sink_spools_during_a_real_outage_and_backfills_in_order(service_factory, tmp_path):
    influx = service_factory(services.InfluxDB)
    influx.create_database("spooltest")
    cfg = InfluxService(
        url=influx.url,
        database="spooltest",
        batch_size=50,
        max_retries=1,
        timeout_s=2,
        spool_dir=str(tmp_path / "spool"),
        spool_retry_s=0.2,
    )
    part = InfluxSink(cfg).build("influxdb", 0, 1)
    part.write_batch([_readings(100)])
    influx.stop()  # outage
    part.write_batch([_readings(100, 100)])
    part.write_batch([_readings(100, 200)])
    assert part.spool.bytes > 0 and len(part.spool) == 4
    assert _metric("twinwatch_spool_bytes", sink="influxdb") == part.spool.bytes
    influx.start()
    time.sleep(0.3)
    part.write_batch([_readings(100, 300)])  # backfill first, then the new batch
    assert len(part.spool) == 0 and _metric("twinwatch_spool_bytes", sink="influxdb") == 0
    part.close()
    assert _count(influx, "spooltest") == [float(i) for i in range(400)]
    assert part.dropped == 0


@pytest.mark.services
def test_backlog_left_at_shutdown_is_backfilled_at_next_start(service_factory, tmp_path):
    influx = service_factory(services.InfluxDB)
    influx.create_database("restart")
    cfg = InfluxService(
        url=influx.url,
        database="restart",
        max_retries=0,
        timeout_s=2,
        spool_dir=str(tmp_path / "spool"),
        spool_retry_s=0.1,
    )
    influx.stop()
    first = InfluxSink(cfg).build("influxdb", 0, 1)
    first.write_batch([_readings(30)])
    first.close()  # InfluxDB still down: the backlog stays on disk
    influx.start()
    second = InfluxSink(cfg).build("influxdb", 0, 1)  # a restarted flow
    second.write_batch([_readings(10, 30)])
    second.close()
    assert _count(influx, "restart") == [float(i) for i in range(40)]


@pytest.mark.services
def test_flow_rides_out_an_influxdb_outage_under_load(service_factory, mosquitto, tmp_path):
    """Fault injection (real processes): the flow subscribes to MQTT, a publisher sends a steady
    stream; InfluxDB is stopped for OUTAGE_S seconds (env TWINWATCH_OUTAGE_S, default 8; the
    closing note reports a 60 s run) and restarted. Every reading arrives exactly once, the spool
    drains, and /metrics showed the backlog during the outage."""
    outage_s = float(os.environ.get("TWINWATCH_OUTAGE_S", "8"))
    influx = service_factory(services.InfluxDB)
    influx.create_database("outage")
    env, metrics_port = flow_env(
        tmp_path,
        mosquitto,
        influx,
        "outage",
        MQTT__CLIENT_ID="outage-flow",
        INFLUXDB__MAX_RETRIES="1",
        INFLUXDB__TIMEOUT_S="2",
        INFLUXDB__SPOOL_RETRY_S="0.5",
    )
    config = load_config(environ=env)
    flow = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", str(outage_s + 10)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        wait_subscribed(metrics_url, flow)
        pub = make_client(config.services.mqtt, "outage-pub", clean_session=True)
        connect(pub, config.services.mqtt)
        pub.loop_start()
        enc = msgspec.json.Encoder()
        sent, backlog_seen = 0, []
        rate, total_s = 200, outage_s + 6  # readings/s, seconds of publishing

        def watch():
            while sent < rate * total_s:
                text = metrics_text(metrics_url)
                for line in text.splitlines():
                    if line.startswith('twinwatch_spool_bytes{sink="influxdb"}'):
                        backlog_seen.append(float(line.split()[-1]))
                time.sleep(0.25)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.monotonic()
        stopped = restarted = False
        while sent < rate * total_s:
            now = time.monotonic() - start
            if not stopped and now > 2:
                influx.stop()
                stopped = True
            if stopped and not restarted and now > 2 + outage_s:
                influx.start()
                restarted = True
            target = int(now * rate)
            while sent < min(target, rate * total_s):
                t = T0 + timedelta(seconds=sent)
                pub.publish(
                    "city/water/sejong-dma-1/inlet/pressure",
                    enc.encode({"time": t, "value": 400.0 + sent % 7}),
                    qos=1,
                )
                sent += 1
            time.sleep(0.01)
        pub.loop_stop()
        pub.disconnect()
        out, _ = flow.communicate(timeout=120)
        assert flow.returncode == 0, out.decode()[-3000:]
    finally:
        if flow.poll() is None:
            flow.kill()
    values = _count(influx, "outage")
    assert len(values) == sent  # every reading, exactly once per (series, time)
    assert max(backlog_seen) > 0  # the metrics showed the spool during the outage
    assert not list((tmp_path / "spool").rglob("*.lp"))  # and it drained
