"""Alertmanager down during an incident (real processes): the alert is delivered when it returns.

The flow's Alertmanager sink keeps firing alerts and re-sends them every resend_interval_s, so an
alert whose first POST failed reaches Alertmanager once it is back.
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
        ALERTMANAGER__MAX_RETRIES="0",
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
        # the alert has fired and its POST failed; now Alertmanager comes back
        deadline = time.monotonic() + 30
        while (
            'twinwatch_alerts_total{domain="water",severity="severe",status="firing"} 1.0'
            not in httpx.get(url).text
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1)
        am.start()
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
