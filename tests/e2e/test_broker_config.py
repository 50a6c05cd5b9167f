"""The compose stack's broker config (docker/mosquitto/mosquitto.conf), run by a real Mosquitto
exactly as written (only the listener port and the data directory are this test's): the demo's
burst goes through it into InfluxDB with nothing lost, and the healthcheck of
docker/compose.yaml works with authentication on.

Before (issue #14): with the stack's file, one flow received 14,607 of 19,934 messages of the
demo's burst (27 % lost): mosquitto's defaults allow 20 messages in flight and queue 1,000.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from flowproc import flow_env, wait_subscribed

from twinwatch.app import services, simulator
from twinwatch.config import load_config

pytestmark = pytest.mark.services

DOCKER = Path(__file__).resolve().parents[2] / "docker"
CONF = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()


def test_the_stack_broker_config_takes_the_demos_burst_with_nothing_lost(
    influxdb, influx_db, service_factory, tmp_path
):
    broker = service_factory(services.Mosquitto, config_text=CONF)
    env, port = flow_env(tmp_path, broker, influxdb, influx_db, MQTT__CLIENT_ID="burst")
    config = load_config(environ=env)
    log = tmp_path / "flow.log"
    flow = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", "6"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_subscribed(f"http://127.0.0.1:{port}/metrics", flow, output=log.read_text)
        start = simulator.sim_start(config, simulator.utcnow())
        messages = list(simulator.generate(config, start))  # the demo's simulated day
        simulator.publish_mqtt(messages, mqtt=config.services.mqtt, speed=0, client_id="burst-sim")
        assert flow.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if flow.poll() is None:
            flow.kill()
    kinds = {
        f"city/{d}/{s}/{a}/{x}": ref.sensor.kind for (d, s, a, x), ref in config.catalog.items()
    }
    readings = sum(1 for m in messages if kinds[m.topic] == "reading")
    r = httpx.get(
        f"{influxdb.url}/query",
        params={"db": influx_db, "q": "SELECT count(value) FROM reading"},
        timeout=60,
    ).json()
    assert readings > 100_000
    assert r["results"][0]["series"][0]["values"][0][1] == readings  # every one of them


def _healthcheck() -> str:
    """The mosquitto healthcheck's shell command, as compose hands it to the container."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    test = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "sh", "-c"]
    return test[3].replace("$$", "$")  # compose's escape for a literal $


def test_the_broker_healthcheck_works_with_authentication_on(service_factory, tmp_path):
    if not shutil.which("mosquitto_sub"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and mosquitto_sub is missing (scripts/install-services.sh)")
        pytest.skip("mosquitto_sub is missing (scripts/install-services.sh mosquitto-clients)")
    password = uuid.uuid4().hex
    pwfile = tmp_path / "passwd"
    pwfile.touch(mode=0o600)
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "health", password], check=True)
    broker = service_factory(
        services.Mosquitto,
        config_text=CONF,  # allow_anonymous becomes "false" + this password file
        password_file=str(pwfile),
    )
    command = _healthcheck().replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {broker.port}")
    env = dict(os.environ, MQTT_HEALTHCHECK_USER="health", MQTT_HEALTHCHECK_PASSWORD=password)
    ok = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    env.pop("MQTT_HEALTHCHECK_USER")  # anonymous: refused, so authentication was on
    refused = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=30)
    assert refused.returncode != 0
