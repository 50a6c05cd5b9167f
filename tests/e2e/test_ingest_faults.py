"""Nothing lost, nothing silent on the ingest path (issue #15), on real processes: a real
`twinwatch run` subprocess (tests/flowproc.py) with Mosquitto and InfluxDB 1.6.7.

- each MQTT payload that used to crash the flow: the flow stays up, the input is a dead letter,
  the next valid reading is stored;
- a wrong InfluxDB password, then fixed at the restart; a missing database, created while the
  flow runs: every reading ends up stored, and the exit status and log say what happened;
- the MQTT broker unreachable at start: one line naming cause and setting, then the flow
  connects once the broker is there;
- a missing secret, a bad TLS file: one line, exit status 2.
"""

from __future__ import annotations

import json
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
PH = "city/water/sejong-wtp/clearwell/ph"
ENC = msgspec.json.Encoder()
ADMIN_PW = "adm1n-pw-ingest"
WRONG_PW = "Wr0ng-pw-7731"

pytestmark = pytest.mark.services


def _start(env, log_path, *args):
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _publisher(env, name):
    config = load_config(environ=env)
    pub = make_client(config.services.mqtt, name, clean_session=True)
    connect(pub, config.services.mqtt)
    pub.loop_start()
    return pub


def _publish(pub, messages):
    infos = [pub.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(10)


def _reading(t: datetime, value: float, topic: str = CHLORINE) -> tuple[str, bytes]:
    return topic, ENC.encode({"time": t, "value": value})


def _values(influx_url, db, auth=None, where="sensor='chlorine'"):
    r = httpx.get(
        f"{influx_url}/query",
        params={"db": db, "q": f"SELECT value FROM reading WHERE {where}"},
        auth=auth,
        trust_env=False,
    ).json()
    series = r["results"][0].get("series", [])
    return [v[1] for v in series[0]["values"]] if series else []


def _wait(cond, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# --- no input can stop the flow -------------------------------------------------------------

CRASHERS = [  # (payload, reason): each crashed `twinwatch run` before, in a crash loop
    (b'{"time":"0001-01-01T00:00:00+01:00","value":0.5}', "bad_time"),
    (b'{"time":"9999-12-31T23:59:59-01:00","value":0.5}', "bad_time"),
    (
        b'{"time":"2026-11-20T00:00:00Z","value":0.5,"x":' + b"[" * 1000 + b"]" * 1000 + b"}",
        "bad_json",
    ),
    (b'{"time":"2026-11-20T00:00:00Z","value":0.5,"unit":"\xff\xfe"}', "bad_encoding"),
]


def test_each_crashing_input_is_a_dead_letter_and_the_flow_stays_up(
    influxdb, mosquitto, influx_db, tmp_path
):
    env, port = flow_env(tmp_path, mosquitto, influxdb, influx_db, MQTT__CLIENT_ID=f"c-{influx_db}")
    log_path = tmp_path / "flow.log"
    flow = _start(env, log_path, "--idle-timeout", "4")
    try:
        wait_subscribed(f"http://127.0.0.1:{port}/metrics", flow, output=log_path.read_text)
        pub = _publisher(env, f"pub-{influx_db}")
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        expected = []
        for i, (payload, _) in enumerate(CRASHERS):
            value = 0.8 + i / 100
            expected.append(value)
            _publish(pub, [(CHLORINE, payload), _reading(t0 + timedelta(minutes=i), value)])
            # the next valid reading is stored while the flow is still running
            n = i + 1
            _wait(lambda n=n: len(_values(influxdb.url, influx_db)) == n, what=f"reading {i}")
            assert flow.poll() is None, log_path.read_text()[-3000:]
        pub.loop_stop()
        pub.disconnect()
        assert flow.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if flow.poll() is None:
            flow.kill()
    assert _values(influxdb.url, influx_db) == pytest.approx(expected)
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in dead] == [reason for _, reason in CRASHERS]
    log = log_path.read_text()
    assert "Traceback" not in log and "panicked" not in log


# --- a failed write is never acknowledged -------------------------------------------------


@pytest.fixture
def auth_influxdb(service_factory):
    """A real InfluxDB 1.6.7 with authentication on and one admin user."""
    db = service_factory(services.InfluxDB, auth=True)
    httpx.post(
        db.url + "/query",
        data={"q": f"CREATE USER admin WITH PASSWORD '{ADMIN_PW}' WITH ALL PRIVILEGES"},
        trust_env=False,
    ).raise_for_status()
    return db


def test_wrong_password_then_fixed_at_restart_stores_every_reading(
    auth_influxdb, mosquitto, tmp_path
):
    """Before: 401, batch acknowledged and dropped, exit 0, 0 of 200 stored even after the fix."""
    env, port = flow_env(
        tmp_path,
        mosquitto,
        auth_influxdb,
        "authdb",
        MQTT__CLIENT_ID="auth-flow",
        INFLUXDB__USERNAME="admin",
        INFLUXDB__PASSWORD__ENV="TW_TEST_INFLUX_PW",
        INFLUXDB__SPOOL_RETRY_S="0.5",
    )
    log_path = tmp_path / "flow.log"
    flow = _start(dict(env, TW_TEST_INFLUX_PW=WRONG_PW), log_path, "--idle-timeout", "3")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    values = [0.5 + (i % 50) / 100 for i in range(200)]
    try:
        wait_subscribed(f"http://127.0.0.1:{port}/metrics", flow, output=log_path.read_text)
        pub = _publisher(env, "auth-pub")
        _publish(pub, [_reading(t0 + timedelta(seconds=10 * i), v) for i, v in enumerate(values)])
        pub.loop_stop()
        pub.disconnect()
        first = flow.wait(timeout=60)
    finally:
        if flow.poll() is None:
            flow.kill()
    log = log_path.read_text()
    assert first == 1, log[-3000:]  # it could not store them: not a silent success
    assert "HTTP 401" in log and "services.influxdb.username/password" in log
    assert "(200 readings and events) wait in the spool" in log  # + their scores, rollups
    assert WRONG_PW not in log and ADMIN_PW not in log  # no password ever shows

    fixed = _start(dict(env, TW_TEST_INFLUX_PW=ADMIN_PW), log_path, "--idle-timeout", "3")
    assert fixed.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    stored = _values(auth_influxdb.url, "authdb", auth=("admin", ADMIN_PW))
    assert stored == pytest.approx(values)  # all 200, in order


def test_missing_database_created_while_the_flow_runs(influxdb, mosquitto, tmp_path):
    """Before: 404, batch acknowledged and dropped. Now: one loud line, spooled, and stored
    once the database exists, without a restart."""
    db = f"late_{int(time.time() * 1000) % 10**9}"
    env, port = flow_env(
        tmp_path,
        mosquitto,
        influxdb,
        db,
        MQTT__CLIENT_ID=f"late-{db}",
        INFLUXDB__SPOOL_RETRY_S="0.5",
    )
    log_path = tmp_path / "flow.log"
    flow = _start(env, log_path, "--idle-timeout", "6", "--no-create-db")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_subscribed(url, flow, output=log_path.read_text)
        pub = _publisher(env, f"late-pub-{db}")
        _publish(pub, [_reading(t0 + timedelta(seconds=10 * i), 0.7) for i in range(100)])
        _wait(
            lambda: (
                'twinwatch_sink_refused_total{sink="influxdb",status="404"}' in metrics_text(url)
            )
        )
        assert 'twinwatch_spool_bytes{sink="influxdb"} 0.0' not in metrics_text(url)
        influxdb.create_database(db)
        time.sleep(0.6)  # one spool retry interval: the next batch backfills first
        _publish(pub, [_reading(t0 + timedelta(seconds=10 * i), 0.9) for i in range(100, 110)])
        _wait(lambda: len(_values(influxdb.url, db)) == 110, what="backfill while running")
        pub.loop_stop()
        pub.disconnect()
        assert flow.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if flow.poll() is None:
            flow.kill()
        influxdb.drop_database(db)
    log = log_path.read_text()
    loud = [x for x in log.splitlines() if "ERROR" in x and "database not found" in x]
    assert len(loud) == 1, log  # one loud line, not one per chunk or retry
    assert "accepts writes again" in log


# --- clear start-up ---------------------------------------------------------------------


def test_mqtt_unreachable_at_start_is_one_line_then_the_flow_connects(
    influxdb, influx_db, service_factory, tmp_path
):
    """Before: an 83-line Rust panic and no retry."""
    mqtt_port = services.free_port()

    class _Later:  # the broker's address before it exists
        port = mqtt_port

    env, port = flow_env(tmp_path, _Later, influxdb, influx_db, MQTT__CLIENT_ID=f"u-{influx_db}")
    log_path = tmp_path / "flow.log"
    flow = _start(env, log_path, "--idle-timeout", "15")
    try:
        _wait(lambda: "cannot reach MQTT broker" in log_path.read_text(), what="the line")
        time.sleep(2)  # a retry or two
        assert flow.poll() is None
        broker = service_factory(services.Mosquitto, port=mqtt_port)
        assert broker.port == mqtt_port
        wait_subscribed(f"http://127.0.0.1:{port}/metrics", flow, output=log_path.read_text)
        pub = _publisher(env, f"u-pub-{influx_db}")
        _publish(pub, [_reading(datetime.now(UTC) - timedelta(minutes=1), 0.75)])
        _wait(lambda: _values(influxdb.url, influx_db) == [0.75])
        pub.loop_stop()
        pub.disconnect()
        assert flow.wait(timeout=60) == 0
    finally:
        if flow.poll() is None:
            flow.kill()
    log = log_path.read_text()
    lines = [x for x in log.splitlines() if "MQTT broker" in x]
    assert len(lines) == 2, log  # one when it is unreachable, one when it is back
    assert "Connection refused" in lines[0] and "services.mqtt.host/port" in lines[0]
    assert "retrying with backoff" in lines[0] and "reachable again" in lines[1]
    assert "Traceback" not in log and "panicked" not in log


def _run_once(env, *args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "twinwatch.app.cli", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_missing_secret_and_bad_tls_file_are_one_line_each(mosquitto, tmp_path):
    env, _ = flow_env(
        tmp_path,
        mosquitto,
        INFLUXDB__URL="http://127.0.0.1:9",
        INFLUXDB__USERNAME="admin",
        INFLUXDB__PASSWORD__ENV="TW_TEST_NOT_SET",
    )
    env.pop("TW_TEST_NOT_SET", None)
    done = _run_once(env, "--idle-timeout", "1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "twinwatch: services.influxdb.password: environment variable TW_TEST_NOT_SET is not set"
    ]
    env, _ = flow_env(
        tmp_path,
        mosquitto,
        INFLUXDB__URL="http://127.0.0.1:9",
        MQTT__TLS__ENABLED="true",
        MQTT__TLS__CA_FILE=str(tmp_path / "no-such-ca.pem"),
    )
    done = _run_once(env, "--idle-timeout", "1")
    assert done.returncode == 2, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("twinwatch:")]
    assert "services.mqtt.tls" in line and "no-such-ca.pem" in line
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr


def test_a_replay_in_the_wrong_shape_exits_non_zero_and_says_why(influxdb, influx_db, tmp_path):
    """Before: every line dead-lettered, exit 0, nothing printed."""
    path = tmp_path / "wrong.jsonl"
    path.write_text("".join(json.dumps({"ts": i, "v": 1.0}) + "\n" for i in range(5)))
    env, _ = flow_env(tmp_path, type("M", (), {"port": 9}), influxdb, influx_db)
    done = _run_once(env, "--replay", str(path))
    assert done.returncode == 1
    assert "stored nothing: all 5 inputs were dead letters (bad_schema 5)" in done.stderr
    assert str(tmp_path / "dead.jsonl") in done.stderr
