"""A hung InfluxDB with the spool's `block` policy (issue #15), on real processes: the flow stops
taking messages (the backlog stays on the broker, not in the flow's memory), /metrics shows the
hung sink, and once InfluxDB answers again every reading is stored.

InfluxDB is hung with SIGSTOP: it keeps its socket, accepts connections and never answers, as a
wedged server does. Before: the flow's MQTT queue grew without bound and no metric showed it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from flowproc import flow_env, metrics_text, wait_subscribed

from twinwatch.app import services
from twinwatch.config import load_config
from twinwatch.mqtt import connect, make_client

CHLORINE = "city/water/sejong-wtp/clearwell/chlorine"
MAX_QUEUED = 2000


def _gauge(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m[1]) if m else None


def _count(db, name) -> int:
    r = httpx.get(
        f"{db.url}/query",
        params={"db": name, "q": "SELECT count(value) FROM reading"},
        trust_env=False,
        timeout=10,
    ).json()
    series = r["results"][0].get("series", [])
    return series[0]["values"][0][1] if series else 0


@pytest.mark.services
def test_block_policy_pushes_back_to_the_broker_and_shows_the_hung_sink(
    service_factory, mosquitto, tmp_path
):
    db = service_factory(services.InfluxDB)
    db.create_database("bp")
    env, port = flow_env(
        tmp_path,
        mosquitto,
        db,
        "bp",
        MQTT__CLIENT_ID="bp-flow",
        MQTT__KEEPALIVE_S="120",  # paused longer than 1.5 x keepalive, the broker would drop us
        INFLUXDB__SPOOL_POLICY="block",
        INFLUXDB__SPOOL_MAX_BYTES="20000",
        INFLUXDB__SPOOL_RETRY_S="0.5",
        INFLUXDB__TIMEOUT_S="1",
        INFLUXDB__MAX_RETRIES="0",
        FLOW__MAX_QUEUED=str(MAX_QUEUED),
        FLOW__BATCH_SIZE="500",
    )
    url = f"http://127.0.0.1:{port}/metrics"
    log_path = tmp_path / "flow.log"
    flow = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", "8"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    config = load_config(environ=env)
    pub = make_client(config.services.mqtt, "bp-pub", clean_session=True)
    enc = msgspec.json.Encoder()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    n = 20_000
    stopped = False
    try:
        wait_subscribed(url, flow, output=log_path.read_text)
        connect(pub, config.services.mqtt)
        pub.loop_start()
        os.kill(db.pid, signal.SIGSTOP)  # InfluxDB hangs
        stopped = True
        infos = [
            pub.publish(
                CHLORINE, enc.encode({"time": t0 + timedelta(seconds=i), "value": 0.5}), qos=1
            )
            for i in range(n)
        ]
        for info in infos:
            info.wait_for_publish(60)  # the broker took them all
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = metrics_text(url)
            if _gauge(text, 'twinwatch_source_paused{source="mqtt"}') == 1.0:
                break
            time.sleep(0.2)
        assert _gauge(text, 'twinwatch_source_paused{source="mqtt"}') == 1.0
        time.sleep(2)  # paused: nothing more comes in
        text = metrics_text(url)
        depth = _gauge(text, 'twinwatch_queue_depth{source="mqtt"}')
        assert depth is not None and depth <= MAX_QUEUED
        received = _gauge(text, 'twinwatch_records_in_total{source="mqtt"}') or 0
        assert received + MAX_QUEUED + 1 < n  # most of the backlog waits on the broker
        assert _gauge(text, 'twinwatch_sink_in_flight_batches{sink="influxdb"}') == 1.0
        assert _gauge(text, 'twinwatch_sink_seconds_since_success{sink="influxdb"}') > 2.0
        assert flow.poll() is None

        os.kill(db.pid, signal.SIGCONT)  # InfluxDB answers again
        stopped = False
        deadline = time.monotonic() + 120
        while _count(db, "bp") < n and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _count(db, "bp") == n  # every reading, none lost on the way
        pub.loop_stop()
        pub.disconnect()
        assert flow.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if stopped:
            os.kill(db.pid, signal.SIGCONT)
        if flow.poll() is None:
            flow.kill()
    assert "spool full" in log_path.read_text()
