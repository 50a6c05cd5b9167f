"""kill -9 the flow mid-stream, restart it: nothing lost, nothing duplicated (real processes).

Mosquitto holds the flow's persistent session; the flow acknowledges MQTT messages only once their
readings are durable in InfluxDB (flows/acks.py) and snapshots its state into a Bytewax recovery
directory. Alertmanager (real, with a webhook receiver counting notifications) must notify the
limit breach once, although the flow dies right after it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import msgspec
import pytest
from flowproc import flow_env, wait_subscribed  # tests/flowproc.py

from twinwatch.app import services
from twinwatch.config import load_config
from twinwatch.mqtt import connect, make_client

T0 = datetime(2026, 11, 20, tzinfo=UTC)
SENSORS = {"strain-1": 120.0, "strain-2": 95.0, "accel-rms": 4.0, "tilt": 0.4, "temp": 10.0}
NAMES = list(SENSORS)


class _Receiver(BaseHTTPRequestHandler):
    notifications: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.notifications.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _start_flow(env, log):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twinwatch.app.cli",
            "run",
            "--idle-timeout",
            "5",
            "--recovery-dir",
            env["RECOVERY_DIR"],
            "--epoch-s",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.services
def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    influxdb, mosquitto, influx_db, service_factory, tmp_path
):
    hook = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Receiver.notifications = []
    am = service_factory(
        services.Alertmanager,
        config_text=f"""
route: {{receiver: hook, group_by: [alertname, site, asset, sensor], group_wait: 1s,
        group_interval: 1s, repeat_interval: 1h}}
receivers: [{{name: hook, webhook_configs: [{{url: "http://127.0.0.1:{hook.server_port}/",
                                             send_resolved: false}}]}}]
""",
    )
    env, metrics_port = flow_env(
        tmp_path,
        mosquitto,
        influxdb,
        influx_db,
        am.url,
        MQTT__CLIENT_ID=f"kill-{influx_db}",
        ALERTMANAGER__RESEND_INTERVAL_S="1",
    )
    env["RECOVERY_DIR"] = str(tmp_path / "recovery")
    config = load_config(environ=env)
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    log_path = tmp_path / "flow.log"
    log = log_path.open("wb")
    flow = _start_flow(env, log)
    try:
        wait_subscribed(metrics, flow, output=log_path.read_text)
        pub = make_client(config.services.mqtt, "kill-pub", clean_session=True)
        connect(pub, config.services.mqtt)
        pub.loop_start()
        enc = msgspec.json.Encoder()
        n, rate, sent, killed = 3000, 300, 0, False
        start = time.monotonic()
        while sent < n:
            if not killed and sent >= 1200:
                flow.send_signal(signal.SIGKILL)  # mid-stream, no goodbye
                flow.wait()
                killed = True
                flow = _start_flow(env, log)  # same client id, same recovery dir
            target = min(n, int((time.monotonic() - start) * rate))
            while sent < target:
                i = sent
                name = NAMES[i % len(NAMES)]
                # normal values within each sensor's limits, and one breach (strain-1 > 800)
                value = 3000.0 if i == 1000 else SENSORS[name] * (1 + 0.01 * ((i * 7) % 5))
                t = T0 + timedelta(seconds=10 * (i // len(NAMES)))
                pub.publish(
                    f"city/structures/sejong-bridge/span-2/{name}",
                    enc.encode({"time": t, "value": value}),
                    qos=1,
                ).wait_for_publish(5)
                sent += 1
            time.sleep(0.005)
        pub.loop_stop()
        pub.disconnect()
        assert flow.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    finally:
        if flow.poll() is None:
            flow.kill()
        log.close()

    r = httpx.get(
        f"{influxdb.url}/query",
        params={"db": influx_db, "q": "SELECT count(value) FROM reading GROUP BY sensor"},
    ).json()
    counts = {s["tags"]["sensor"]: s["values"][0][1] for s in r["results"][0]["series"]}
    assert counts == {s: n // len(NAMES) for s in NAMES}  # all N, once per (series, time)
    # the flow's own downtime is not the devices': no series raised `gap` or `stale` (before
    # the fix, each of the 5 series raised a spurious `gap`, firing and resolved: readings
    # between the last snapshot and the kill were stored, acknowledged and forgotten)
    r = httpx.get(
        f"{influxdb.url}/query",
        params={"db": influx_db, "q": "SELECT * FROM alert WHERE rule = 'gap' OR rule = 'stale'"},
    ).json()
    assert r["results"][0].get("series", []) == []
    time.sleep(3)  # group_wait + a re-send cycle
    fired = [
        a
        for note in _Receiver.notifications
        for a in note["alerts"]
        if a["labels"].get("rule") == "limits" and a["status"] == "firing"
    ]
    assert [a["labels"]["sensor"] for a in fired] == ["strain-1"]  # notified exactly once
    hook.shutdown()
