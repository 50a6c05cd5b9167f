"""MQTT over TLS against a real Mosquitto TLS listener (certificates from a throwaway CA made with
openssl): the flow verifies the broker and delivers; a plaintext client gets nowhere."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import msgspec
import paho.mqtt.client as paho
import pytest
from flowproc import flow_env, wait_subscribed  # tests/flowproc.py

from twinwatch.app import services
from twinwatch.config import load_config
from twinwatch.mqtt import connect, make_client


@pytest.fixture
def tls_mosquitto(service_factory, tmp_path, require_services):
    require_services("mosquitto")
    d = tmp_path / "pki"
    d.mkdir()

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=twinwatch-test-ca",
    )
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    )
    broker = service_factory(
        services.Mosquitto, tls=(d / "ca.crt", d / "server.crt", d / "server.key")
    )
    return broker, d / "ca.crt"


@pytest.mark.services
def test_flow_over_tls(tls_mosquitto, influxdb, influx_db, tmp_path):
    broker, ca = tls_mosquitto
    env, metrics_port = flow_env(
        tmp_path,
        broker,
        influxdb,
        influx_db,
        MQTT__CLIENT_ID=f"tls-{influx_db}",
        MQTT__TLS__ENABLED="true",
        MQTT__TLS__CA_FILE=str(ca),
    )
    config = load_config(environ=env)
    flow = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_subscribed(f"http://127.0.0.1:{metrics_port}/metrics", flow)
        pub = make_client(config.services.mqtt, "tls-pub", clean_session=True)
        connect(pub, config.services.mqtt)
        pub.loop_start()
        t = datetime(2026, 11, 20, tzinfo=UTC)
        pub.publish(
            "city/water/sejong-wtp/clearwell/chlorine",
            msgspec.json.encode({"time": t, "value": 0.7}),
            qos=1,
        ).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        assert flow.wait(timeout=60) == 0
    finally:
        if flow.poll() is None:
            flow.kill()
    r = httpx.get(
        f"{influxdb.url}/query", params={"db": influx_db, "q": "SELECT value FROM reading"}
    ).json()
    assert r["results"][0]["series"][0]["values"][0][1] == 0.7

    # a plaintext client cannot talk to the TLS listener
    plain = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="plain")
    connected = []
    plain.on_connect = lambda c, u, f, rc, p: connected.append(rc)
    try:
        plain.connect("127.0.0.1", broker.port, keepalive=5)
        plain.loop_start()
        time.sleep(2)
    except OSError:
        pass
    finally:
        plain.loop_stop()
    assert not any(not rc.is_failure for rc in connected)


@pytest.mark.services
def test_a_broker_certificate_from_another_ca_is_one_line(tls_mosquitto, tmp_path):
    """Issue #15: a TLS failure was a 76-line traceback. Now one line naming the cause and the
    setting, exit status 2 (retrying cannot fix a certificate)."""
    broker, _ = tls_mosquitto
    other = tmp_path / "other-ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(tmp_path / "o.key"),
            "-out",
            str(other),
            "-days",
            "1",
            "-subj",
            "/CN=someone-else",
        ],
        check=True,
        capture_output=True,
    )
    env, _ = flow_env(
        tmp_path,
        broker,
        INFLUXDB__URL="http://127.0.0.1:9",
        MQTT__TLS__ENABLED="true",
        MQTT__TLS__CA_FILE=str(other),
    )
    done = subprocess.run(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", "1", "--no-create-db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("twinwatch:")]
    assert "certificate verification failed" in line and "services.mqtt.tls" in line
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 3
