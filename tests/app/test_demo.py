"""`twinwatch demo` end to end, as the README runs it but unpaced and on free ports:
real InfluxDB 1.6.7, Mosquitto and Alertmanager started by the demo itself under a temp dir.

Checks the issue's acceptance: the summary shows every injected incident class detected with a
delay; afterwards InfluxQL returns readings for all four domains, anomaly scores and alerts, and
Alertmanager shows firing alerts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from twinwatch.app import services
from twinwatch.config import load_config


@pytest.mark.services
def test_demo_detects_every_incident_class(tmp_path, require_services):
    require_services("influxdb", "mosquitto", "alertmanager")
    ports = {name: services.free_port() for name in ("influx", "mqtt", "am", "metrics")}
    env = dict(
        os.environ,
        TWINWATCH__SERVICES__INFLUXDB__URL=f"http://127.0.0.1:{ports['influx']}",
        TWINWATCH__SERVICES__MQTT__PORT=str(ports["mqtt"]),
        TWINWATCH__SERVICES__MQTT__CLIENT_ID="demo-test-flow",
        TWINWATCH__SERVICES__ALERTMANAGER__URL=f"http://127.0.0.1:{ports['am']}",
        TWINWATCH__SERVICES__METRICS__PORT=str(ports["metrics"]),
        TWINWATCH__FLOW__DEAD_LETTER_PATH=str(tmp_path / "dead.jsonl"),
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(tmp_path / "spool"),
        TWINWATCH__SERVICES__ALERTMANAGER__STATE_PATH=str(tmp_path / "alert-delivery.sqlite"),
        TWINWATCH__SIMULATION__LABELS_PATH=str(tmp_path / "incidents.jsonl"),
    )
    var = tmp_path / "var"
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "twinwatch.app.cli",
                "demo",
                "--var",
                str(var),
                "--speed",
                "1e9",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = run.stdout
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        config = load_config(environ=env)
        kinds = {i.kind for i in config.simulation.incidents}
        detected = set(re.findall(r"^  (\w+) +\S+ +after +[\d.]+ min by ", out, re.M))
        assert detected == kinds, out[-4000:]
        n = len(config.simulation.incidents)
        assert f"incidents injected vs detected: {n}/{n}" in out

        url, db = config.services.influxdb.url, config.services.influxdb.database

        def count(q):
            r = httpx.get(f"{url}/query", params={"db": db, "q": q}).json()
            return {
                tuple(s.get("tags", {}).values()): s["values"][0][1]
                for s in r["results"][0].get("series", [])
            }

        readings = count("SELECT count(value) FROM reading GROUP BY domain")
        events = count("SELECT count(message) FROM security_event GROUP BY domain")
        assert set(readings) | set(events) == {
            ("structures",),
            ("water",),
            ("energy",),
            ("security",),
        }
        scores = count("SELECT count(hits) FROM anomaly_score GROUP BY domain")
        assert scores == {**readings, **events}  # one score point per reading and event
        published = int(re.search(r"messages published: ([\d,]+)", out)[1].replace(",", ""))
        assert sum(readings.values()) + sum(events.values()) == published  # nothing lost
        assert count("SELECT count(value) FROM alert WHERE status='firing'")[()] >= n
        active = httpx.get(f"{config.services.alertmanager.url}/api/v2/alerts").json()
        assert any(a["status"]["state"] == "active" for a in active)
    finally:
        services.down(var)
