"""Secrets: MQTT username/password against a real password-protected Mosquitto, and no secret
ever shows up in logs (debug level), metrics, dead letters or InfluxDB."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import httpx
import msgspec
import pytest
from flowproc import flow_env, wait_subscribed  # tests/flowproc.py

from twinwatch.app import services
from twinwatch.config import load_config
from twinwatch.mqtt import connect, make_client

MQTT_PW = "mqtt-s3cret-7f3a9"
INFLUX_PW = "influx-s3cret-91c2"


@pytest.fixture
def secured_mosquitto(service_factory, tmp_path, require_services):
    require_services("mosquitto")
    pwfile = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pwfile), "twinwatch", MQTT_PW],
        check=True,
        capture_output=True,
    )
    return service_factory(services.Mosquitto, password_file=str(pwfile))


def _env(broker, influxdb, db, tmp_path, password):
    env, port = flow_env(
        tmp_path,
        broker,
        influxdb,
        db,
        MQTT__USERNAME="twinwatch",
        MQTT__PASSWORD__ENV="TW_MQTT_PW",
        MQTT__CLIENT_ID=f"secret-{db}",
        INFLUXDB__USERNAME="admin",
        INFLUXDB__PASSWORD__ENV="TW_INFLUX_PW",
    )
    return dict(env, TW_MQTT_PW=password, TW_INFLUX_PW=INFLUX_PW), port


@pytest.mark.services
def test_authenticated_mqtt_and_no_secret_anywhere(
    secured_mosquitto, influxdb, influx_db, tmp_path, monkeypatch
):
    env, metrics_port = _env(secured_mosquitto, influxdb, influx_db, tmp_path, MQTT_PW)
    monkeypatch.setenv("TW_MQTT_PW", MQTT_PW)  # the test's own publisher uses the same secret
    config = load_config(environ=env)
    flow = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "-v", "run", "--idle-timeout", "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_subscribed(url, flow)
    pub = make_client(config.services.mqtt, "secret-pub", clean_session=True)  # same creds
    connect(pub, config.services.mqtt)
    pub.loop_start()
    enc = msgspec.json.Encoder()
    t = datetime(2026, 11, 20, tzinfo=UTC)
    infos = [
        pub.publish(
            "city/water/sejong-wtp/clearwell/chlorine", enc.encode({"time": t, "value": 0.8}), qos=1
        ),
        pub.publish("city/water/sejong-wtp/clearwell/chlorine", b"{bad", qos=1),
    ]
    for i in infos:
        i.wait_for_publish(10)
    metrics = httpx.get(url, timeout=2).text
    pub.loop_stop()
    pub.disconnect()
    out, _ = flow.communicate(timeout=60)
    assert flow.returncode == 0, out.decode()[-2000:]
    r = httpx.get(f"{influxdb.url}/query", params={"db": influx_db, "q": "SELECT * FROM reading"})
    assert r.json()["results"][0]["series"][0]["values"][0][-1] == 0.8  # authenticated delivery
    dumped = httpx.get(
        f"{influxdb.url}/query", params={"db": influx_db, "q": "SELECT * FROM /.*/"}
    ).text
    logs = out.decode()
    assert "DEBUG" in logs  # the check below ran against debug-level logs
    dead = (tmp_path / "dead.jsonl").read_text()
    assert "bad_json" in dead and "dead_letter" in dumped  # those outputs were really written
    for secret in (MQTT_PW, INFLUX_PW):
        for where in (logs, metrics, dumped, dead, repr(config)):
            assert secret not in where


@pytest.mark.services
def test_wrong_mqtt_password_is_a_clear_error_without_the_password(
    secured_mosquitto, influxdb, influx_db, tmp_path
):
    wrong = "wrong-pw-4411"
    env, _ = _env(secured_mosquitto, influxdb, influx_db, tmp_path, wrong)
    flow = subprocess.run(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    logs = flow.stdout + flow.stderr
    assert "refused the connection" in logs and "Not authorized" in logs
    assert wrong not in logs
