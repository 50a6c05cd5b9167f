"""End to end on real services: MQTT (Mosquitto) -> the flow (a real `twinwatch run` process)
-> InfluxDB 1.6.7 + Alertmanager, and the flow's /metrics.

The flow runs as a subprocess exactly as `twinwatch demo` runs it, configured by the shipped example
config plus TWINWATCH__... environment overrides pointing at the fixtures' free ports.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from flowproc import flow_env as make_env  # tests/flowproc.py
from flowproc import wait_subscribed

from twinwatch.config import load_config
from twinwatch.mqtt import connect, make_client

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
CHLORINE = "city/water/sejong-wtp/clearwell/chlorine"
SSHD = "city/security/sejong-soc/gw-1/sshd"


def _query(influxdb, db, q):
    r = httpx.get(f"{influxdb.url}/query", params={"db": db, "q": q, "epoch": "ms"})
    r.raise_for_status()
    return r.json()["results"][0].get("series", [])


@pytest.fixture
def flow_env(influxdb, mosquitto, alertmanager, influx_db, tmp_path):
    return make_env(
        tmp_path,
        mosquitto,
        influxdb,
        influx_db,
        alertmanager.url,
        MQTT__CLIENT_ID=f"flow-{influx_db}",
    )


def test_mqtt_to_influxdb_and_alertmanager(
    flow_env, influxdb, mosquitto, alertmanager, influx_db, tmp_path
):
    env, metrics_port = flow_env
    config = load_config(environ=env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_subscribed(metrics_url, proc)
        enc = msgspec.json.Encoder()
        pub = make_client(config.services.mqtt, "test-publisher", clean_session=True)
        connect(pub, config.services.mqtt)
        pub.loop_start()
        infos = []
        # 60 normal chlorine readings, then 3 below the 0.1 mg/L legal minimum
        values = [0.9 + 0.01 * ((i * 7) % 5) for i in range(60)] + [0.03, 0.02, 0.02]
        for i, v in enumerate(values):
            payload = enc.encode({"time": T0 + timedelta(minutes=i), "value": v})
            infos.append(pub.publish(CHLORINE, payload, qos=1))
        line = "sshd[7]: Failed password for root from 203.0.113.9 port 4242 ssh2"
        for _ in range(5):  # five failures logged in the same second: five distinct events
            infos.append(pub.publish(SSHD, enc.encode({"time": T0, "line": line}), qos=1))
        bad = [
            (CHLORINE, b'{"time": "2026-11-20T00:00:00Z", "value": "high"}'),
            (CHLORINE, b"\xff\xfe"),
            ("city/water/nowhere/x/y", b"{}"),
            ('city/water/a,b=c d/"x"/y', b'{"time":"2026-11-20T00:00:00Z","value":1}'),
        ]
        for topic, payload in bad:
            infos.append(pub.publish(topic, payload, qos=1))
        for info in infos:
            info.wait_for_publish(10)
        # while the flow runs: its /metrics
        expected = [
            'twinwatch_records_in_total{source="mqtt"} 72.0',
            'twinwatch_dead_letters_total{reason="bad_schema"} 1.0',
            'twinwatch_dead_letters_total{reason="bad_encoding"} 1.0',
            'twinwatch_dead_letters_total{reason="unknown_sensor"} 2.0',
            "twinwatch_detect_seconds_bucket",
            'twinwatch_queue_depth{source="mqtt"}',
            'twinwatch_sink_write_seconds_bucket{le="10.0",sink="influxdb"}',
            'twinwatch_records_out_total{measurement="reading",sink="influxdb"} 63.0',
            'twinwatch_alerts_total{domain="water",severity="severe",status="firing"} 1.0',
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = httpx.get(metrics_url).text
            if all(e in text for e in expected):
                break
            time.sleep(0.2)
        assert [e for e in expected if e not in text] == []
        pub.loop_stop()
        pub.disconnect()
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()

    # every valid reading is in InfluxDB, with values intact
    (series,) = _query(
        influxdb,
        influx_db,
        "SELECT value FROM reading WHERE sensor='chlorine' AND site='sejong-wtp'",
    )
    assert [v for _, v in series["values"]] == pytest.approx(values)
    (ev,) = _query(influxdb, influx_db, "SELECT src_ip, kind FROM security_event")
    assert [v[1:] for v in ev["values"]] == [["203.0.113.9", "auth_failure"]] * 5
    (ev_scores,) = _query(
        influxdb, influx_db, "SELECT auth_failures FROM anomaly_score WHERE domain='security'"
    )
    assert [v[0] for v in ev_scores["values"]] == [v[0] for v in ev["values"]]  # same times
    assert [v[1] for v in ev_scores["values"]] == [1.0, 2.0, 3.0, 4.0, 5.0]  # burst counts
    # scores for every reading, the limit breach as an anomaly and a severe firing alert
    (scores,) = _query(
        influxdb, influx_db, "SELECT count(limits) FROM anomaly_score WHERE sensor='chlorine'"
    )
    assert scores["values"][0][1] == len(values)
    (alerts,) = _query(
        influxdb,
        influx_db,
        "SELECT status, severity, rule, value FROM alert WHERE sensor='chlorine' AND rule='limits'",
    )
    assert alerts["values"][0][1:] == ["firing", "severe", "limits", 0.03]
    # dead letters with their reasons in InfluxDB and in the JSONL file
    dead = _query(influxdb, influx_db, "SELECT count(detail) FROM dead_letter GROUP BY reason")
    assert {s["tags"]["reason"]: s["values"][0][1] for s in dead} == {
        "bad_schema": 1,
        "bad_encoding": 1,
        "unknown_sensor": 2,
    }
    lines = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert len(lines) == 4
    # Alertmanager received the firing alert with our labels
    active = httpx.get(f"{alertmanager.url}/api/v2/alerts").json()
    mine = [
        a
        for a in active
        if a["labels"].get("sensor") == "chlorine" and a["labels"].get("rule") == "limits"
    ]
    assert mine and mine[0]["labels"]["severity"] == "severe"
    assert mine[0]["labels"]["site"] == "sejong-wtp"


def test_two_workers_split_the_topics_without_duplicates(flow_env, influxdb, mosquitto, influx_db):
    """`run -w 2`: each worker subscribes through the MQTT shared subscription
    ($share/twinwatch/city/#), so the broker splits messages between them; every reading is
    stored exactly once and both workers took a share."""
    env, metrics_port = flow_env
    env = dict(env, TWINWATCH__SERVICES__ALERTMANAGER__URL="null")
    config = load_config(environ=env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "-w", "2", "--idle-timeout", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_subscribed(metrics_url, proc)
        time.sleep(0.5)  # both workers subscribed (the gauge is shared by the process)
        pub = make_client(config.services.mqtt, "test-publisher-2", clean_session=True)
        connect(pub, config.services.mqtt)
        pub.loop_start()
        enc = msgspec.json.Encoder()
        topics = [
            f"city/structures/sejong-bridge/span-2/{s}"
            for s in ("strain-1", "strain-2", "accel-rms", "tilt", "temp")
        ]
        infos = [
            pub.publish(
                topics[i % 5],
                enc.encode({"time": T0 + timedelta(seconds=10 * (i // 5)), "value": 1.0 + i % 3}),
                qos=1,
            )
            for i in range(500)
        ]
        for info in infos:
            info.wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    counts = {
        s["tags"]["sensor"]: s["values"][0][1]
        for s in _query(influxdb, influx_db, "SELECT count(value) FROM reading GROUP BY sensor")
    }
    assert counts == {t.rsplit("/", 1)[1]: 100 for t in topics}
