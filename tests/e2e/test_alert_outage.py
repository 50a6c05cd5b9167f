"""Alertmanager down during an incident (real processes): ingestion goes on, and the alert is
delivered when Alertmanager returns.

The flow's alert sink only queues (alerting/delivery.py): the readings keep reaching InfluxDB
while the delivery thread retries with backoff, and the queued alert reaches Alertmanager, with
the incident's own start, once it is back.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from flowproc import flow_env, wait_subscribed  # tests/flowproc.py

from twinwatch.app import services
from twinwatch.config import load_config
from twinwatch.mqtt import connect, make_client

T0 = datetime(2026, 11, 20, tzinfo=UTC)
CHLORINE = "city/water/sejong-wtp/clearwell/chlorine"


@pytest.mark.services
def test_alert_reaches_alertmanager_after_its_outage(
    service_factory, influxdb, mosquitto, influx_db, tmp_path
):
    am = service_factory(services.Alertmanager)
    env, metrics_port = flow_env(
        tmp_path,
        mosquitto,
        influxdb,
        influx_db,
        am.url,
        MQTT__CLIENT_ID=f"amout-{influx_db}",
        ALERTMANAGER__MAX_BACKOFF_S="1",
        ALERTMANAGER__RESEND_INTERVAL_S="1",
    )
    config = load_config(environ=env)
    am.stop()  # Alertmanager is down when the incident starts
    flow = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_subscribed(url, flow)
        pub = make_client(config.services.mqtt, "amout-pub", clean_session=True)
        connect(pub, config.services.mqtt)
        pub.loop_start()
        enc = msgspec.json.Encoder()
        values = [0.9] * 40 + [0.02, 0.02]  # below the 0.1 mg/L legal minimum: severe
        for i, v in enumerate(values):
            pub.publish(
                CHLORINE, enc.encode({"time": T0 + timedelta(minutes=i), "value": v}), qos=1
            ).wait_for_publish(10)
        # the alert has fired and its delivery failed; the readings are stored all the same
        deadline = time.monotonic() + 30
        while (
            'twinwatch_alerts_total{domain="water",severity="severe",status="firing"} 1.0'
            not in httpx.get(url).text
            or 'twinwatch_sink_errors_total{sink="alertmanager"}' not in httpx.get(url).text
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)

        def stored() -> int:
            r = httpx.get(
                f"{influxdb.url}/query",
                params={"db": influx_db, "q": "SELECT count(value) FROM reading"},
            ).json()["results"][0]
            return r["series"][0]["values"][0][1] if "series" in r else 0

        while stored() < len(values):
            assert time.monotonic() < deadline, "readings not stored while Alertmanager is down"
            time.sleep(0.2)
        depth = [
            float(line.split()[-1])
            for line in httpx.get(url).text.splitlines()
            if line.startswith('twinwatch_alert_queue_depth{receiver="alertmanager"}')
        ]
        assert depth and depth[0] >= 1  # the severe limits alert (and others) wait in the queue
        am.start()  # now Alertmanager comes back
        got = []
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            got = [
                a
                for a in httpx.get(f"{am.url}/api/v2/alerts").json()
                if a["labels"].get("sensor") == "chlorine" and a["labels"].get("rule") == "limits"
            ]
            time.sleep(0.5)
        pub.loop_stop()
        pub.disconnect()
        assert got and got[0]["labels"]["severity"] == "severe"
        assert got[0]["startsAt"].startswith("2026-11-20T00:40")  # the incident's own start
    finally:
        flow.kill()
        flow.wait()
